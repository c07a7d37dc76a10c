/**
 * The secret port: turns a `{ secret, field? }` reference from the config into its value. Secrets
 * Manager in AWS (`aws-secrets.ts`), a local JSON file or the environment locally (`local-secrets.ts`).
 * Every resolved value is registered with the log scrubber before it is returned, and no error raised
 * here ever contains a value: only names, and what to do.
 */
import type { SecretRef } from '../config/schema.js';
import { SecretError } from '../errors.js';
import { registerSecret } from '../log.js';

export interface SecretResolver {
  /** The secret's value (or the named field of a JSON secret). Throws SecretError. */
  resolve(ref: SecretRef): Promise<string>;
}

/** Field names quoted in a "field missing" error, to help fix a typo; never values. */
const MAX_FIELD_NAMES_IN_MESSAGE = 10;

/** `secret "name"` or `field "f" of secret "name"`, for messages. */
export function describeRef(ref: SecretRef): string {
  return ref.field === undefined
    ? `secret "${ref.secret}"`
    : `field "${ref.field}" of secret "${ref.secret}"`;
}

/**
 * Picks `ref.field` out of a secret's text when the reference names one, registers the result (and the
 * whole text) for scrubbing and returns it. `where` says where the secret lives, for messages.
 */
export function finishSecret(ref: SecretRef, raw: string, where: string): string {
  registerSecret(raw);
  let value = raw;
  if (ref.field !== undefined) value = pickField(ref, parseObject(ref, raw, where), where);
  if (value.length === 0)
    throw new SecretError(
      'SECRET_EMPTY',
      `The ${describeRef(ref)} in ${where} is empty. Store the real value there.`,
      { details: { secret: ref.secret, field: ref.field } },
    );
  registerSecret(value);
  return value;
}

/** Reads `ref.field` from an already-parsed object. */
export function pickField(ref: SecretRef, object: Record<string, unknown>, where: string): string {
  const field = ref.field ?? '';
  const value = Object.hasOwn(object, field) ? object[field] : undefined;
  if (typeof value === 'string') return value;
  const names = Object.keys(object).slice(0, MAX_FIELD_NAMES_IN_MESSAGE);
  const problem =
    value === undefined
      ? `has no field "${field}" (fields present: ${names.length ? names.join(', ') : 'none'})`
      : `has a field "${field}" that is not a string`;
  throw new SecretError(
    'SECRET_FIELD_MISSING',
    `Secret "${ref.secret}" in ${where} ${problem}. Fix the "field" in the config or add the field to the secret.`,
    { details: { secret: ref.secret, field } },
  );
}

function parseObject(ref: SecretRef, raw: string, where: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // No cause: JSON.parse messages quote the text, which is the secret.
    parsed = undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new SecretError(
      'SECRET_FIELD_MISSING',
      `The config reads field "${ref.field}" of secret "${ref.secret}" in ${where}, but that secret is not a JSON object. ` +
        'Store it as {"field": "value"} or remove "field" from the reference.',
      { details: { secret: ref.secret, field: ref.field } },
    );
  return parsed as Record<string, unknown>;
}

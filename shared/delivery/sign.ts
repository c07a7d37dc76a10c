/**
 * Standard Webhooks signing (spec 1.0.0, symmetric `v1`): the signed content is
 * `${webhook-id}.${webhook-timestamp}.${body}` over the exact bytes we send, HMAC-SHA256 keyed with the
 * base64-decoded part of a `whsec_<base64>` secret. The `webhook-signature` header is a space-separated
 * list with one `v1,<base64>` entry per secret, so an endpoint rotating its secret verifies with either
 * the old or the new one during the overlap.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { SecretError } from '../errors.js';

/** The serialisation prefix Standard Webhooks uses for symmetric secrets. */
export const SECRET_PREFIX = 'whsec_';
/** Spec lower bound for secret entropy; a shorter HMAC key is guessable offline from one signature. */
export const MIN_SECRET_BYTES = 24;
/** Spec upper bound; HMAC-SHA256 hashes longer keys down anyway, so longer adds nothing. */
export const MAX_SECRET_BYTES = 64;
/** Signing with more keys than this means a rotation was never finished (the config allows 4). */
export const MAX_SIGNING_SECRETS = 4;

// Strict base64 (standard alphabet, optional padding): Buffer.from() silently skips junk characters,
// which would turn a typo into a different key instead of an error.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/;
// The spec requires that id and timestamp cannot smuggle a `.` that would shift the signed fields.
const SAFE_ID = /^[A-Za-z0-9_-]{1,200}$/;

export interface SignInput {
  /** `webhook-id`: stable per event across retries and replays. */
  id: string;
  /** `webhook-timestamp`: Unix seconds of this attempt. */
  timestamp: number;
  /** The exact body bytes sent; never re-serialise between signing and sending. */
  body: string | Buffer;
  /** `whsec_...` secrets; every delivery is signed with each (rotation). */
  secrets: readonly string[];
}

/**
 * Imported HMAC keys by secret text: an endpoint signs every delivery with the same one or two secrets,
 * so each is decoded, validated and imported (createSecretKey) once, not per request. A KeyObject also
 * keeps the key bytes out of reach of code holding the cache entry (a shared Buffer could be mutated).
 */
const keyCache = new Map<string, KeyObject>();
/** Entries kept; more distinct secrets than this in one process means rotation churn, so start over. */
const KEY_CACHE_LIMIT = 256;

/**
 * Decodes a `whsec_<base64>` secret into its HMAC key. Throws SecretError naming the problem and the
 * position (`label`), never the value.
 */
export function parseSecret(secret: string, label = 'secret'): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) {
    throw new SecretError(
      'WEBHOOK_SECRET_INVALID',
      `Webhook ${label} does not start with "${SECRET_PREFIX}"; store it as whsec_<base64 of 24-64 random bytes> (e.g. \`echo whsec_$(openssl rand -base64 32)\`).`,
    );
  }
  const encoded = secret.slice(SECRET_PREFIX.length).trim();
  if (!BASE64.test(encoded)) {
    throw new SecretError(
      'WEBHOOK_SECRET_INVALID',
      `Webhook ${label} is not valid base64 after "${SECRET_PREFIX}"; regenerate it with \`openssl rand -base64 32\`.`,
    );
  }
  const key = Buffer.from(encoded, 'base64');
  if (key.length < MIN_SECRET_BYTES || key.length > MAX_SECRET_BYTES) {
    throw new SecretError(
      'WEBHOOK_SECRET_INVALID',
      `Webhook ${label} decodes to ${key.length} bytes; Standard Webhooks secrets are ${MIN_SECRET_BYTES}-${MAX_SECRET_BYTES} random bytes.`,
    );
  }
  return key;
}

/** The imported HMAC key for a secret, from the cache when it was seen before (parseSecret's errors). */
export function signingKey(secret: string, label = 'secret'): KeyObject {
  const cached = keyCache.get(secret);
  if (cached) return cached;
  const key = parseSecret(secret, label);
  const imported = createSecretKey(key);
  key.fill(0);
  if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.clear();
  keyCache.set(secret, imported);
  return imported;
}

/** One `v1,<base64>` signature for one key. */
export function signWithKey(
  key: KeyObject | Buffer,
  id: string,
  timestamp: number,
  body: string | Buffer,
): string {
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.`);
  mac.update(body);
  return `v1,${mac.digest('base64')}`;
}

/** The `webhook-signature` header value: one `v1,` entry per secret, space-separated. */
export function signPayload(input: SignInput): string {
  const { id, timestamp, body, secrets } = input;
  if (!SAFE_ID.test(id)) {
    throw new SecretError(
      'WEBHOOK_ID_INVALID',
      'webhook-id must be 1-200 characters from [A-Za-z0-9_-] so the signed content stays unambiguous.',
    );
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new SecretError('WEBHOOK_TIMESTAMP_INVALID', 'webhook-timestamp must be whole Unix seconds.');
  }
  if (secrets.length === 0 || secrets.length > MAX_SIGNING_SECRETS) {
    throw new SecretError(
      'WEBHOOK_SECRET_INVALID',
      `An endpoint needs 1-${MAX_SIGNING_SECRETS} signing secrets (got ${secrets.length}).`,
    );
  }
  let header = '';
  for (let i = 0; i < secrets.length; i++) {
    const signature = signWithKey(signingKey(secrets[i] as string, `secrets[${i}]`), id, timestamp, body);
    header = i === 0 ? signature : `${header} ${signature}`;
  }
  return header;
}

/** The three Standard Webhooks headers for one attempt. */
export function webhookHeaders(input: SignInput): Record<string, string> {
  return {
    'webhook-id': input.id,
    'webhook-timestamp': String(input.timestamp),
    'webhook-signature': signPayload(input),
  };
}

/** Shared bits for the auth tests: mailbox builders, a map-backed resolver, a settable clock. */
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { MailboxConfig, type SecretRef } from '../../../shared/config/schema.js';
import { serializeError } from '../../../shared/log.js';
import type { SecretResolver } from '../../../shared/secrets/resolver.js';

export const rand = (prefix: string) => `${prefix}-${randomBytes(10).toString('hex')}`;

export class TestClock {
  constructor(public t = 1_700_000_000_000) {}
  now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A resolver over a plain map `secret` (or `secret#field`) -> value; counts calls. */
export function mapResolver(values: Record<string, string>): SecretResolver & { calls: number } {
  const r = {
    calls: 0,
    async resolve(ref: SecretRef): Promise<string> {
      r.calls++;
      const key = ref.field ? `${ref.secret}#${ref.field}` : ref.secret;
      const v = values[key];
      if (v === undefined) throw new Error(`no secret ${key}`);
      return v;
    },
  };
  return r;
}

export function appMailbox(authority: string, extra: Record<string, unknown> = {}): MailboxConfig {
  return MailboxConfig.parse({
    id: 'm365',
    host: 'outlook.office365.com',
    user: 'billing@contoso.example',
    auth: {
      type: 'oauth2-microsoft-app',
      tenantId: 'tenant-1',
      clientId: 'client-app-1',
      clientSecret: { secret: 'm365-app' },
      authority,
      ...extra,
    },
  });
}

export function delegatedMailbox(authority: string, extra: Record<string, unknown> = {}): MailboxConfig {
  return MailboxConfig.parse({
    id: 'm365-user',
    host: 'outlook.office365.com',
    user: 'alice@contoso.example',
    auth: {
      type: 'oauth2-microsoft-delegated',
      clientId: 'client-public-1',
      refreshToken: { secret: 'm365-rt' },
      authority,
      ...extra,
    },
  });
}

export function googleMailbox(authority: string, extra: Record<string, unknown> = {}): MailboxConfig {
  return MailboxConfig.parse({
    id: 'gmail',
    host: 'pop.gmail.com',
    user: 'bob@gmail.example',
    auth: {
      type: 'oauth2-google',
      clientId: 'client-google-1.apps.googleusercontent.com',
      clientSecret: { secret: 'google-client' },
      refreshToken: { secret: 'google-rt' },
      authority,
      ...extra,
    },
  });
}

export async function rejection(
  p: Promise<unknown>,
): Promise<Error & { code?: string; transient?: boolean }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').toBeInstanceOf(Error);
  return err as Error & { code?: string; transient?: boolean };
}

/** Everything an error could leak: message, stack, serialised form with cause chain and details. */
export function errorText(err: unknown): string {
  const e = err as Error;
  return [e.message, e.stack ?? '', JSON.stringify(serializeError(err)), JSON.stringify(err)].join('\n');
}

/** Asserts none of `secrets` appears in `text` (and says which one did). */
export function expectNoSecrets(text: string, secrets: readonly string[]): void {
  for (const s of secrets) expect(text.includes(s), `leaked ${s.slice(0, 6)}...`).toBe(false);
}

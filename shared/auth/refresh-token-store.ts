/**
 * Refresh tokens: where the current one comes from, and what happens when the provider rotates it.
 *
 * The stored token lives in a secret (Secrets Manager, or the local secrets file). Microsoft returns a
 * new refresh token on every refresh; we keep the newest one in memory for this process (the secret
 * resolvers cache what they read, so re-reading would hand back the old one) and write it back with the
 * SecretWriter's read-compare-write, so the next cold start begins from it. A failed write-back is
 * logged, not thrown: the access token is good, and the previous refresh token stays valid (see
 * shared/secrets/writer.ts for why no token is lost).
 */
import type { SecretRef } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { SecretResolver } from '../secrets/resolver.js';
import type { SecretWriteOutcome, SecretWriter } from '../secrets/writer.js';
import { isOAuthError } from './errors.js';
import {
  requestToken,
  type TokenHttpDeps,
  type TokenRequestContext,
  type TokenResponse,
} from './token-endpoint.js';

export class RefreshTokenStore {
  private readonly latest = new Map<string, string>();

  /** The newest refresh token this process knows for `key`, else the secret's value. */
  async current(key: string, ref: SecretRef, secrets: SecretResolver): Promise<string> {
    return this.latest.get(key) ?? (await secrets.resolve(ref));
  }

  /** Records a rotation in memory and writes it back; returns the outcome (or 'failed'/'no-writer'). */
  async rotated(p: {
    key: string;
    ref: SecretRef;
    previous: string;
    next: string;
    writer: SecretWriter | undefined;
    logger: Logger;
  }): Promise<SecretWriteOutcome | 'failed' | 'no-writer'> {
    this.latest.set(p.key, p.next);
    if (!p.writer) {
      p.logger.warn(
        'oauth refresh token rotated but no secret writer is configured; the stored one stays in use',
        {
          secret: p.ref.secret,
        },
      );
      return 'no-writer';
    }
    try {
      const outcome = await p.writer.write(p.ref, p.next, p.previous);
      p.logger.info('oauth refresh token written back', {
        secret: p.ref.secret,
        field: p.ref.field,
        outcome,
      });
      return outcome;
    } catch (err) {
      p.logger.warn('oauth refresh token write-back failed; the previous one stays valid', {
        secret: p.ref.secret,
        error: err,
      });
      return 'failed';
    }
  }

  /** Makes `value` the newest refresh token for `key` (after `pophook auth` stored a new one). */
  set(key: string, value: string): void {
    this.latest.set(key, value);
  }

  /** Drops `value` for `key` (it was refused), so the next attempt reads the secret again. */
  forget(key: string, value: string): void {
    if (this.latest.get(key) === value) this.latest.delete(key);
  }

  clear(): void {
    this.latest.clear();
  }
}

/** The process-wide store (one per warm Lambda instance or CLI process). */
export const sharedRefreshTokens = new RefreshTokenStore();

export interface RefreshGrantParams {
  /** Store key: mailbox plus client plus secret reference. */
  key: string;
  tokenUrl: string;
  ref: SecretRef;
  clientId: string;
  clientSecret: string | undefined;
  /** Sent when set (Microsoft wants it; Google documents no scope on refresh and keeps the granted one). */
  scope?: string;
  ctx: Omit<TokenRequestContext, 'secrets' | 'grant'>;
  secrets: SecretResolver;
  writer: SecretWriter | undefined;
  store: RefreshTokenStore;
  logger: Logger;
  http: TokenHttpDeps;
}

/** The refresh_token grant with rotation handling, shared by Microsoft delegated and Google. */
export async function refreshGrant(p: RefreshGrantParams): Promise<TokenResponse> {
  const refreshToken = await p.store.current(p.key, p.ref, p.secrets);
  const form: Record<string, string> = {
    grant_type: 'refresh_token',
    client_id: p.clientId,
    refresh_token: refreshToken,
  };
  if (p.scope !== undefined) form.scope = p.scope;
  if (p.clientSecret !== undefined) form.client_secret = p.clientSecret;
  const secrets = [refreshToken, ...(p.clientSecret ? [p.clientSecret] : [])];
  let token: TokenResponse;
  try {
    token = await requestToken(p.tokenUrl, form, { ...p.ctx, grant: 'refresh_token', secrets }, p.http);
  } catch (err) {
    if (isOAuthError(err, 'OAUTH_INVALID_GRANT')) p.store.forget(p.key, refreshToken);
    throw err;
  }
  if (token.refreshToken && token.refreshToken !== refreshToken)
    await p.store.rotated({
      key: p.key,
      ref: p.ref,
      previous: refreshToken,
      next: token.refreshToken,
      writer: p.writer,
      logger: p.logger,
    });
  return token;
}

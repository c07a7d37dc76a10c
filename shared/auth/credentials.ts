/**
 * Mailbox config -> POP3 credentials. `password` auth resolves the password secret; the OAuth types get
 * an access token from Microsoft or Google (cached per mailbox across polls, refreshed before expiry,
 * one request for concurrent callers) and log in with XOAUTH2 or OAUTHBEARER as `mailbox.user`.
 *
 * @example
 * const credentials = createCredentialsProvider({ secrets, secretWriter, logger });
 * const { credentials: creds, expiresAt } = await credentials.getCredentialsWithExpiry(mailbox);
 * await session.login(creds); // end the session before expiresAt (Gmail closes it then)
 */
import { type Clock, systemClock } from '../clock.js';
import type { MailboxConfig } from '../config/schema.js';
import { type Logger, registerSecret, silentLogger } from '../log.js';
import type { Pop3Credentials } from '../pop3/types.js';
import type { SecretResolver } from '../secrets/resolver.js';
import type { SecretWriter } from '../secrets/writer.js';
import { googleToken } from './google.js';
import {
  type AcquiredToken,
  microsoftAppOnlyToken,
  microsoftDelegatedToken,
  type ProviderDeps,
  type TokenInfo,
} from './microsoft.js';
import { type RefreshTokenStore, sharedRefreshTokens } from './refresh-token-store.js';
import { type CachedToken, sharedTokenCache, type TokenCache } from './token-cache.js';

export interface CredentialsDeps {
  secrets: SecretResolver;
  /** Where rotated refresh tokens are written back; without one they are only kept in memory. */
  secretWriter?: SecretWriter;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  clock?: Clock;
  logger?: Logger;
  /** @default the process-wide cache (warm Lambda reuse) */
  cache?: TokenCache;
  /** @default the process-wide store of rotated refresh tokens */
  refreshTokens?: RefreshTokenStore;
}

export interface CredentialsWithExpiry {
  credentials: Pop3Credentials;
  /** Epoch ms when the access token expires (OAuth only): close the POP session before it. */
  expiresAt?: number;
  /** What the access token says about itself (roles, scopes, ids), for `pophook check` diagnostics. */
  tokenInfo?: TokenInfo;
}

export interface CredentialsProvider {
  /** The credentials for `mailbox` (usable as `PollDeps.credentials`). */
  (mailbox: MailboxConfig): Promise<Pop3Credentials>;
  getCredentialsWithExpiry(mailbox: MailboxConfig): Promise<CredentialsWithExpiry>;
  /** Expiry of the cached access token for `mailbox`, if any. */
  tokenExpiresAt(mailbox: MailboxConfig): number | undefined;
  /** Forgets the cached access token, e.g. after the POP server refused it. */
  invalidate(mailbox: MailboxConfig): void;
}

interface CacheValue extends CachedToken {
  info?: TokenInfo;
}

/** Builds the credentials provider for the poller, `pophook check` and `pophook poll`. */
export function createCredentialsProvider(deps: CredentialsDeps): CredentialsProvider {
  const clock = deps.clock ?? systemClock;
  const logger = (deps.logger ?? silentLogger).child({ component: 'auth' });
  const cache = deps.cache ?? sharedTokenCache;
  const providerDeps: ProviderDeps = {
    secrets: deps.secrets,
    secretWriter: deps.secretWriter,
    refreshTokens: deps.refreshTokens ?? sharedRefreshTokens,
    logger,
    http: { fetch: deps.fetch ?? globalThis.fetch },
  };

  const acquire = async (mailbox: MailboxConfig, key: string): Promise<CacheValue> => {
    const auth = mailbox.auth;
    const log = logger.child({ mailbox: mailbox.id, authType: auth.type });
    const started = clock.now();
    let token: AcquiredToken;
    const mlog = { ...providerDeps, logger: log };
    if (auth.type === 'oauth2-microsoft-app') token = await microsoftAppOnlyToken(mailbox, auth, mlog);
    else if (auth.type === 'oauth2-microsoft-delegated')
      token = await microsoftDelegatedToken(mailbox, auth, key, mlog);
    else if (auth.type === 'oauth2-google') token = await googleToken(mailbox, auth, key, mlog);
    else throw new Error(`not an OAuth mailbox: ${mailbox.id}`);
    log.info('oauth access token acquired', { expiresInS: token.expiresInS });
    return {
      accessToken: token.accessToken,
      expiresAt: started + token.expiresInS * 1000,
      ...(token.info ? { info: token.info } : {}),
    };
  };

  const getCredentialsWithExpiry = async (mailbox: MailboxConfig): Promise<CredentialsWithExpiry> => {
    const auth = mailbox.auth;
    if (auth.type === 'password') {
      const password = await deps.secrets.resolve(auth.password);
      registerSecret(password);
      return { credentials: { mechanism: auth.mechanism, user: mailbox.user, password } };
    }
    const key = cacheKey(mailbox);
    const token = (await cache.get(key, clock, () => acquire(mailbox, key))) as CacheValue;
    return {
      credentials: { mechanism: auth.mechanism, user: mailbox.user, accessToken: token.accessToken },
      expiresAt: token.expiresAt,
      ...(token.info ? { tokenInfo: token.info } : {}),
    };
  };

  const provider = (async (mailbox: MailboxConfig) =>
    (await getCredentialsWithExpiry(mailbox)).credentials) as CredentialsProvider;
  provider.getCredentialsWithExpiry = getCredentialsWithExpiry;
  provider.tokenExpiresAt = (mailbox) =>
    mailbox.auth.type === 'password' ? undefined : cache.expiresAt(cacheKey(mailbox));
  provider.invalidate = (mailbox) => {
    if (mailbox.auth.type !== 'password') cache.invalidate(cacheKey(mailbox));
  };
  return provider;
}

/**
 * Everything that decides which token a mailbox gets: a config change (other app, tenant, user or
 * refresh-token secret) must not reuse a token cached for the old settings.
 */
export function cacheKey(mailbox: MailboxConfig): string {
  const a = mailbox.auth;
  if (a.type === 'password') return JSON.stringify([mailbox.id, a.type]);
  const parts: unknown[] = [mailbox.id, a.type, a.authority ?? '', a.clientId, mailbox.user];
  if (a.type === 'oauth2-microsoft-app') parts.push(a.tenantId, a.clientSecret);
  else parts.push(a.tenantId ?? '', a.refreshToken, a.clientSecret ?? null);
  return JSON.stringify(parts);
}

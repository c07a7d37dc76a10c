/**
 * Access tokens live for about an hour; polls come every few minutes. A warm Lambda (or a long-running
 * `pophook poll --watch`) keeps each token in a module-level cache and asks the provider again only when
 * less than TOKEN_REFRESH_MARGIN_MS remains, so a session never starts with a token about to expire
 * (Gmail closes a POP session when its token expires). Concurrent callers for the same key share one
 * request (single flight); failures are not cached.
 */
import type { Clock } from '../clock.js';

/** Refresh this long before expiry: a poll session (and Gmail's token-bound session) must fit in it. */
export const TOKEN_REFRESH_MARGIN_MS = 5 * 60_000;

export interface CachedToken {
  accessToken: string;
  /** Epoch ms at which the provider said the token expires. */
  expiresAt: number;
}

interface Entry {
  token: CachedToken;
  /** Epoch ms after which we ask again (expiresAt minus the margin, or half the lifetime if shorter). */
  refreshAt: number;
}

export interface TokenCacheOptions {
  /** @default TOKEN_REFRESH_MARGIN_MS */
  marginMs?: number;
}

export class TokenCache {
  private readonly marginMs: number;
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();

  constructor(options: TokenCacheOptions = {}) {
    this.marginMs = options.marginMs ?? TOKEN_REFRESH_MARGIN_MS;
  }

  /**
   * The cached token for `key` if still fresh at `clock.now()`, else the result of `acquire()`
   * (shared with any concurrent caller for the same key).
   */
  async get(key: string, clock: Clock, acquire: () => Promise<CachedToken>): Promise<CachedToken> {
    const fresh = this.peek(key, clock);
    if (fresh) return fresh;
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const started = clock.now();
    const request = acquire().then((token) => {
      // A token that lives shorter than twice the margin is refreshed at half its life instead, so a
      // short-lived token is still reused a little rather than fetched on every call.
      const life = Math.max(0, token.expiresAt - started);
      this.entries.set(key, { token, refreshAt: token.expiresAt - Math.min(this.marginMs, life / 2) });
      return token;
    });
    this.inflight.set(key, request);
    try {
      return await request;
    } finally {
      if (this.inflight.get(key) === request) this.inflight.delete(key);
    }
  }

  /** The cached token if it is still fresh, without asking anyone. */
  peek(key: string, clock: Clock): CachedToken | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (clock.now() < entry.refreshAt) return entry.token;
    return undefined;
  }

  /** The expiry of the cached token (fresh or not), for the poller's session budget. */
  expiresAt(key: string): number | undefined {
    return this.entries.get(key)?.token.expiresAt;
  }

  /** Forgets `key`, e.g. after the server refused the token. */
  invalidate(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
    this.inflight.clear();
  }
}

/** The process-wide cache (one per warm Lambda instance or CLI process). */
export const sharedTokenCache = new TokenCache();

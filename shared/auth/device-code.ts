/**
 * The OAuth 2.0 device authorization grant (RFC 8628) against Microsoft: `pophook auth` prints a short
 * code and a URL, the user signs in on any browser (no listener on this machine, so it works over SSH),
 * and we poll the token endpoint at the interval the server asks for, slowing down on `slow_down`, until
 * it issues the tokens, the user declines, or the code expires.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { type Clock, systemClock } from '../clock.js';
import { registerSecret } from '../log.js';
import { sanitizeForeignText } from '../sanitize.js';
import { OAuthError } from './errors.js';
import { microsoftEndpoints } from './microsoft.js';
import {
  parseTokenResult,
  postForm,
  type TokenRequestContext,
  type TokenResponse,
  tokenErrorFrom,
} from './token-endpoint.js';

/** RFC 8628 §3.2: poll every 5 s when the server names no interval. */
export const DEFAULT_DEVICE_POLL_INTERVAL_S = 5;
/** RFC 8628 §3.5: each `slow_down` adds 5 s to the interval. */
export const SLOW_DOWN_STEP_S = 5;
/** Longest wait we accept from the server between polls (a bogus interval must not hang the command). */
export const MAX_DEVICE_POLL_INTERVAL_S = 60;
/** Code lifetime assumed when the server names none (Microsoft's codes last 15 minutes). */
export const DEFAULT_DEVICE_CODE_LIFETIME_S = 900;

export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export interface DeviceCodeFlowOptions {
  /** Base URL; default `https://login.microsoftonline.com`. */
  authority?: string;
  tenantId: string;
  clientId: string;
  /** Only for confidential app registrations; public clients send none. */
  clientSecret?: string;
  scope: string;
  mailboxId?: string;
  /** Prints one line for the user (the code and URL). */
  print: (line: string) => void;
  fetch?: typeof fetch;
  clock?: Clock;
  /** Waits `ms`; injected by tests. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
}

/** Runs the device-code flow and returns the tokens (with a refresh token when `offline_access` was asked). */
export async function runDeviceCodeFlow(opts: DeviceCodeFlowOptions): Promise<TokenResponse> {
  const clock = opts.clock ?? systemClock;
  const sleep = opts.sleep ?? ((ms: number, signal?: AbortSignal) => delay(ms, undefined, { signal }));
  const http = { fetch: opts.fetch ?? globalThis.fetch, ...(opts.signal ? { signal: opts.signal } : {}) };
  const endpoints = microsoftEndpoints(opts.authority, opts.tenantId);
  const ctx = (grant: TokenRequestContext['grant'], secrets: string[]): TokenRequestContext => ({
    provider: 'microsoft',
    grant,
    clientId: opts.clientId,
    tenantId: opts.tenantId,
    secrets,
    ...(opts.mailboxId ? { mailboxId: opts.mailboxId } : {}),
  });

  const start = await postForm(
    endpoints.deviceCode,
    { client_id: opts.clientId, scope: opts.scope },
    ctx('device_code', []),
    http,
  );
  const b = start.body;
  const deviceCode = b?.device_code;
  const userCode = b?.user_code;
  const verificationUri = b?.verification_uri ?? b?.verification_url;
  if (
    start.status !== 200 ||
    typeof deviceCode !== 'string' ||
    typeof userCode !== 'string' ||
    typeof verificationUri !== 'string'
  ) {
    if (typeof b?.error === 'string' || start.status !== 200)
      throw tokenErrorFrom(start, ctx('device_code', []), endpoints.deviceCode);
    throw new OAuthError(
      'OAUTH_BAD_RESPONSE',
      'The device-code endpoint answered without a device code, user code and URL.',
      {
        details: { status: start.status },
      },
    );
  }
  registerSecret(deviceCode);
  const secrets = [deviceCode, ...(opts.clientSecret ? [opts.clientSecret] : [])];
  const lifetimeS = seconds(b?.expires_in, DEFAULT_DEVICE_CODE_LIFETIME_S, 3600);
  let intervalS = seconds(b?.interval, DEFAULT_DEVICE_POLL_INTERVAL_S, MAX_DEVICE_POLL_INTERVAL_S);
  const deadline = clock.now() + lifetimeS * 1000;

  opts.print(
    `To sign in, open ${sanitizeForeignText(verificationUri, 200)} in a browser and enter the code ${sanitizeForeignText(userCode, 32)}`,
  );
  opts.print(
    `Waiting for the sign-in to finish (the code expires in ${Math.round(lifetimeS / 60)} minutes)...`,
  );

  const form: Record<string, string> = {
    grant_type: DEVICE_CODE_GRANT,
    client_id: opts.clientId,
    device_code: deviceCode,
  };
  if (opts.clientSecret) form.client_secret = opts.clientSecret;
  for (;;) {
    await sleep(intervalS * 1000, opts.signal);
    if (clock.now() >= deadline) throw expired(opts.mailboxId);
    let result: Awaited<ReturnType<typeof postForm>>;
    try {
      result = await postForm(endpoints.token, form, ctx('device_code', secrets), http);
    } catch (err) {
      // A network blip while the user is signing in: keep polling until the code expires.
      if (err instanceof OAuthError && err.code === 'OAUTH_ENDPOINT_UNAVAILABLE') continue;
      throw err;
    }
    const error = typeof result.body?.error === 'string' ? result.body.error : undefined;
    if (error === 'authorization_pending') continue;
    if (error === 'slow_down') {
      intervalS = Math.min(intervalS + SLOW_DOWN_STEP_S, MAX_DEVICE_POLL_INTERVAL_S);
      continue;
    }
    if (error === 'expired_token' || error === 'code_expired') throw expired(opts.mailboxId);
    if ((result.status >= 500 && !error) || error === 'temporarily_unavailable' || error === 'server_error')
      continue;
    return parseTokenResult(result, ctx('device_code', secrets), endpoints.token);
  }
}

function expired(mailboxId: string | undefined): OAuthError {
  return new OAuthError(
    'OAUTH_SIGN_IN_FAILED',
    `The sign-in code expired before the sign-in finished. Run "pophook auth ${mailboxId ?? '<mailbox>'}" again and sign in within the time shown.`,
  );
}

function seconds(raw: unknown, fallback: number, max: number): number {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : Number.NaN;
  if (!Number.isFinite(n) || n < 0) return fallback;
  return Math.min(n, max);
}

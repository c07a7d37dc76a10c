/**
 * The authorization-code flow for installed apps with a loopback redirect (RFC 8252 §7.3) and PKCE S256
 * (RFC 7636), as Google requires for "Desktop app" clients: listen on 127.0.0.1 with an ephemeral port,
 * send the user to the authorization URL, wait for the browser's redirect, check `state`, and exchange
 * the code with the verifier. A redirect with the wrong state is refused and ignored (it did not come
 * from the sign-in we started), so a stray or forged request cannot end or hijack the flow.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { registerSecret } from '../log.js';
import { OAuthError } from './errors.js';
import {
  checkEndpointUrl,
  type OAuthProvider,
  requestToken,
  type TokenRequestContext,
  type TokenResponse,
  tokenErrorFrom,
} from './token-endpoint.js';

/** How long we wait for the browser to come back: enough to find a password and pass 2-step verification. */
export const LOOPBACK_TIMEOUT_MS = 5 * 60_000;
/** PKCE verifier entropy (32 bytes -> 43 base64url characters, RFC 7636 §4.1). */
const VERIFIER_BYTES = 32;
/** `state` entropy: unguessable by a page that probes the listener. */
const STATE_BYTES = 16;

export interface LoopbackFlowOptions {
  provider: OAuthProvider;
  authorizeUrl: string;
  tokenUrl: string;
  clientId: string;
  clientSecret?: string;
  scope: string;
  /** Pre-fills the account on the sign-in page. */
  loginHint?: string;
  /** Extra authorization parameters; Google gets `access_type=offline` and `prompt=consent` by default. */
  extraParams?: Record<string, string>;
  mailboxId?: string;
  print: (line: string) => void;
  /** Opens the authorization URL in a browser; failures are ignored (the URL is printed too). */
  openUrl?: (url: string) => Promise<void> | void;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** @default LOOPBACK_TIMEOUT_MS */
  timeoutMs?: number;
}

/** PKCE pair: a random verifier and its S256 challenge. */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(VERIFIER_BYTES).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** Runs the loopback flow and returns the tokens. */
export async function runLoopbackFlow(opts: LoopbackFlowOptions): Promise<TokenResponse> {
  const authorize = checkEndpointUrl(opts.authorizeUrl, 'authorization');
  const { verifier, challenge } = pkcePair();
  const state = randomBytes(STATE_BYTES).toString('base64url');
  registerSecret(verifier);
  const ctx: TokenRequestContext = {
    provider: opts.provider,
    grant: 'authorization_code',
    clientId: opts.clientId,
    secrets: [verifier, ...(opts.clientSecret ? [opts.clientSecret] : [])],
    ...(opts.mailboxId ? { mailboxId: opts.mailboxId } : {}),
  };

  let settle: { resolve(code: string): void; reject(err: unknown): void } | undefined;
  const codePromise = new Promise<string>((resolve, reject) => {
    settle = { resolve, reject };
  });
  // Settled while we may still be printing or opening the browser; awaited below.
  codePromise.catch(() => undefined);
  const server = createServer((req, res) => handle(req, res));
  const timer = setTimeout(
    () =>
      settle?.reject(
        new OAuthError(
          'OAUTH_SIGN_IN_FAILED',
          `No sign-in came back within ${Math.round((opts.timeoutMs ?? LOOPBACK_TIMEOUT_MS) / 60_000)} minutes. ` +
            `Run "pophook auth ${opts.mailboxId ?? '<mailbox>'}" again and finish the sign-in in the browser.`,
        ),
      ),
    opts.timeoutMs ?? LOOPBACK_TIMEOUT_MS,
  );
  const onAbort = () => settle?.reject(opts.signal?.reason ?? new Error('aborted'));
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  let redirectUri = '';
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const reply = (status: number, text: string) => {
      res.writeHead(status, {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': "default-src 'none'",
        'cache-control': 'no-store',
        connection: 'close',
      });
      res.end(`<!doctype html><meta charset="utf-8"><title>pophook</title><p>${text}</p>\n`);
    };
    const url = new URL(req.url ?? '/', redirectUri);
    if (req.method !== 'GET') return reply(405, 'Method not allowed.');
    if (url.pathname !== '/') return reply(404, 'Not found.');
    const got = url.searchParams.get('state') ?? '';
    if (!sameString(got, state))
      return reply(
        400,
        'This sign-in response does not belong to the pophook command waiting here; it was ignored.',
      );
    const error = url.searchParams.get('error');
    if (error) {
      reply(200, 'The sign-in did not complete. Return to the terminal for details.');
      const description = url.searchParams.get('error_description');
      settle?.reject(
        tokenErrorFrom(
          { status: 400, body: { error, ...(description ? { error_description: description } : {}) } },
          ctx,
          opts.tokenUrl,
        ),
      );
      return;
    }
    const code = url.searchParams.get('code');
    if (!code) return reply(400, 'The sign-in response carries no authorization code.');
    registerSecret(code);
    reply(200, 'pophook is signed in. You can close this tab and return to the terminal.');
    settle?.resolve(code);
  };

  try {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const url = new URL(authorize);
    const params: Record<string, string> = {
      client_id: opts.clientId,
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: opts.scope,
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...(opts.loginHint ? { login_hint: opts.loginHint } : {}),
      ...(opts.extraParams ??
        (opts.provider === 'google' ? { access_type: 'offline', prompt: 'consent' } : {})),
    };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    const link = url.toString();
    opts.print(`Open this URL in a browser to sign in${opts.loginHint ? ` as ${opts.loginHint}` : ''}:`);
    opts.print(link);
    opts.print('Waiting for the browser to come back to this machine...');
    try {
      await opts.openUrl?.(link);
    } catch {
      // The URL is printed; a missing browser is not an error.
    }
    const code = await codePromise;
    const form: Record<string, string> = {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      client_id: opts.clientId,
      code_verifier: verifier,
    };
    if (opts.clientSecret) form.client_secret = opts.clientSecret;
    return await requestToken(
      opts.tokenUrl,
      form,
      { ...ctx, secrets: [...ctx.secrets, code] },
      { fetch: opts.fetch ?? globalThis.fetch, ...(opts.signal ? { signal: opts.signal } : {}) },
    );
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runLoopbackFlow } from '../../../shared/auth/loopback-flow.js';
import { startTokenEndpoint, type TokenEndpoint } from '../../fixtures/token-endpoint.js';
import { errorText, expectNoSecrets, rand, rejection } from './helpers.js';

let ep: TokenEndpoint;
let printed: string[];
const clientSecret = rand('gcs');

beforeEach(async () => {
  ep = await startTokenEndpoint();
  printed = [];
});
afterEach(async () => {
  await ep.close();
});

const base = () => ({
  provider: 'google' as const,
  authorizeUrl: `${ep.url}/auth`,
  tokenUrl: `${ep.url}/token`,
  clientId: 'desktop-client-1',
  clientSecret,
  scope: 'https://mail.google.com/',
  loginHint: 'bob@gmail.example',
  mailboxId: 'gmail',
  print: (l: string) => printed.push(l),
});

/** What a browser does after sign-in: GET the redirect URI with code and state. */
async function redirect(
  authUrl: URL,
  params: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const target = new URL(authUrl.searchParams.get('redirect_uri') ?? '');
  for (const [k, v] of Object.entries(params)) target.searchParams.set(k, v);
  const res = await fetch(target);
  return { status: res.status, body: await res.text() };
}

describe('loopback flow (Google)', () => {
  it('builds a PKCE S256 authorization URL, refuses a wrong state, exchanges the right code', async () => {
    const seen: { status: number; body: string }[] = [];
    let authUrl: URL | undefined;
    const token = await runLoopbackFlow({
      ...base(),
      openUrl: async (url) => {
        authUrl = new URL(url);
        const q = authUrl.searchParams;
        expect(authUrl.origin + authUrl.pathname).toBe(`${ep.url}/auth`);
        expect(q.get('response_type')).toBe('code');
        expect(q.get('client_id')).toBe('desktop-client-1');
        expect(q.get('scope')).toBe('https://mail.google.com/');
        expect(q.get('code_challenge_method')).toBe('S256');
        expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(q.get('access_type')).toBe('offline');
        expect(q.get('prompt')).toBe('consent');
        expect(q.get('login_hint')).toBe('bob@gmail.example');
        expect(q.get('redirect_uri')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
        expect((q.get('state') ?? '').length).toBeGreaterThanOrEqual(20);

        const code = ep.issueCode({
          codeChallenge: q.get('code_challenge') ?? '',
          redirectUri: q.get('redirect_uri') ?? '',
          clientId: 'desktop-client-1',
        });
        // A forged redirect (wrong state) is refused and does not end the flow.
        seen.push(await redirect(authUrl, { code, state: 'forged-state' }));
        expect(ep.requests).toHaveLength(0);
        seen.push(await redirect(authUrl, { code, state: q.get('state') ?? '' }));
      },
    });
    expect(seen[0]?.status).toBe(400);
    expect(seen[0]?.body).toMatch(/does not belong/);
    expect(seen[1]?.status).toBe(200);
    expect(seen[1]?.body).toMatch(/signed in/);
    const req = ep.requestsTo('/token')[0];
    expect(req?.form.grant_type).toBe('authorization_code');
    expect(req?.form.client_secret).toBe(clientSecret);
    expect(req?.form.redirect_uri).toBe(authUrl?.searchParams.get('redirect_uri'));
    expect(req?.form.code_verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(token.refreshToken).toMatch(/^rt-/);
    expect(printed.some((l) => l.startsWith(`${ep.url}/auth?`))).toBe(true);
    expectNoSecrets(printed.join('\n'), [clientSecret, token.accessToken, token.refreshToken ?? 'x']);
    // The listener is gone once the flow returns.
    await expect(fetch(authUrl?.searchParams.get('redirect_uri') ?? '')).rejects.toThrow();
  });

  it('a wrong PKCE verifier (code bound to another challenge) is OAUTH_INVALID_GRANT', async () => {
    const err = await rejection(
      runLoopbackFlow({
        ...base(),
        openUrl: async (url) => {
          const u = new URL(url);
          const code = ep.issueCode({
            codeChallenge: 'not-the-challenge',
            redirectUri: u.searchParams.get('redirect_uri') ?? '',
            clientId: 'desktop-client-1',
          });
          await redirect(u, { code, state: u.searchParams.get('state') ?? '' });
        },
      }),
    );
    expect(err.code).toBe('OAUTH_INVALID_GRANT');
    expect(err.message).toMatch(/pophook auth gmail/);
    expectNoSecrets(errorText(err), [clientSecret]);
  });

  it('access_denied from the browser is OAUTH_CONSENT_REQUIRED; no answer at all times out', async () => {
    const denied = await rejection(
      runLoopbackFlow({
        ...base(),
        openUrl: async (url) => {
          const u = new URL(url);
          await redirect(u, { error: 'access_denied', state: u.searchParams.get('state') ?? '' });
        },
      }),
    );
    expect(denied.code).toBe('OAUTH_CONSENT_REQUIRED');
    const timedOut = await rejection(runLoopbackFlow({ ...base(), timeoutMs: 50 }));
    expect(timedOut.code).toBe('OAUTH_SIGN_IN_FAILED');
    expect(ep.requests).toHaveLength(0);
  });

  it('stops when aborted (Ctrl-C)', async () => {
    const ac = new AbortController();
    const p = runLoopbackFlow({
      ...base(),
      signal: ac.signal,
      openUrl: () => ac.abort(new Error('interrupted')),
    });
    expect((await rejection(p)).message).toBe('interrupted');
  });
});

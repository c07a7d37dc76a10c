import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCredentialsProvider } from '../../../shared/auth/credentials.js';
import { RefreshTokenStore } from '../../../shared/auth/refresh-token-store.js';
import { TOKEN_REFRESH_MARGIN_MS, TokenCache } from '../../../shared/auth/token-cache.js';
import { MailboxConfig } from '../../../shared/config/schema.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { AwsSecretResolver } from '../../../shared/secrets/aws-secrets.js';
import { LocalSecretResolver } from '../../../shared/secrets/local-secrets.js';
import { AwsSecretWriter, LocalSecretWriter } from '../../../shared/secrets/writer.js';
import { startTokenEndpoint, type TokenEndpoint } from '../../fixtures/token-endpoint.js';
import {
  appMailbox,
  delegatedMailbox,
  errorText,
  expectNoSecrets,
  googleMailbox,
  mapResolver,
  rand,
  rejection,
  TestClock,
} from './helpers.js';

let ep: TokenEndpoint;
let clientSecret: string;
let clock: TestClock;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pophook-auth-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  clientSecret = rand('cs');
  clock = new TestClock();
  ep = await startTokenEndpoint({ clientSecret });
});
afterEach(async () => {
  await ep.close();
});

function provider(extra: Partial<Parameters<typeof createCredentialsProvider>[0]> = {}) {
  const logger = createMemoryLogger();
  const p = createCredentialsProvider({
    secrets: mapResolver({ 'm365-app': clientSecret, 'google-client': clientSecret }),
    clock,
    logger,
    cache: new TokenCache(),
    refreshTokens: new RefreshTokenStore(),
    ...extra,
  });
  return { p, logger };
}

describe('password auth', () => {
  it('maps each mechanism and resolves the password secret', async () => {
    for (const mechanism of ['auto', 'plain', 'user', 'apop'] as const) {
      const mailbox = MailboxConfig.parse({
        id: 'isp',
        host: 'pop.example.com',
        user: 'u@example.com',
        auth: { type: 'password', password: { secret: 'pw', field: 'password' }, mechanism },
      });
      const { p } = provider({ secrets: mapResolver({ 'pw#password': 'hunter2-x' }) });
      const got = await p.getCredentialsWithExpiry(mailbox);
      expect(got).toEqual({ credentials: { mechanism, user: 'u@example.com', password: 'hunter2-x' } });
      expect(p.tokenExpiresAt(mailbox)).toBeUndefined();
    }
  });
});

describe('Microsoft app-only (client credentials)', () => {
  it('posts the client credentials grant with the Exchange .default scope and returns XOAUTH2 credentials', async () => {
    const { p } = provider();
    const mailbox = appMailbox(ep.url);
    const got = await p.getCredentialsWithExpiry(mailbox);
    expect(ep.requests).toHaveLength(1);
    const req = ep.requests[0];
    expect(req?.method).toBe('POST');
    expect(req?.path).toBe('/tenant-1/oauth2/v2.0/token');
    expect(req?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(req?.form).toEqual({
      grant_type: 'client_credentials',
      client_id: 'client-app-1',
      client_secret: clientSecret,
      scope: 'https://outlook.office365.com/.default',
    });
    expect(got.credentials).toEqual({
      mechanism: 'xoauth2',
      user: 'billing@contoso.example',
      accessToken: ep.issued[0],
    });
    expect(got.expiresAt).toBe(clock.t + 3600_000);
    expect(p.tokenExpiresAt(mailbox)).toBe(got.expiresAt);
    // The plain function form gives the same credentials.
    expect(await p(mailbox)).toEqual(got.credentials);
  });

  it('reports what a JWT access token says about itself (roles, service principal id) for diagnostics', async () => {
    await ep.close();
    ep = await startTokenEndpoint({
      clientSecret,
      jwtClaims: { roles: ['POP.AccessAsApp'], oid: 'sp-1', tid: 'tenant-1' },
    });
    const got = await provider().p.getCredentialsWithExpiry(appMailbox(ep.url));
    expect(got.tokenInfo).toEqual({ roles: ['POP.AccessAsApp'], objectId: 'sp-1', tenantId: 'tenant-1' });
  });

  it('honours mechanism oauthbearer', async () => {
    const { p } = provider();
    const creds = await p(appMailbox(ep.url, { mechanism: 'oauthbearer' }));
    expect(creds.mechanism).toBe('oauthbearer');
  });

  it('invalid_client -> OAUTH_INVALID_CLIENT saying what to fix, without the secret or trace ids', async () => {
    const { p, logger } = provider({ secrets: mapResolver({ 'm365-app': 'the-wrong-secret-value' }) });
    const err = await rejection(p(appMailbox(ep.url)));
    expect(err.code).toBe('OAUTH_INVALID_CLIENT');
    expect(err.transient).toBe(false);
    expect(err.message).toMatch(/invalid_client, AADSTS7000215/);
    expect(err.message).toMatch(/client secret is wrong or expired/);
    expect(err.message).toMatch(/secret "m365-app"/);
    expect(err.message).toMatch(/Value \(not its Secret ID\)/);
    expect(err.message).not.toMatch(/Trace ID|Correlation ID|Timestamp|0b1c2d3e/);
    expectNoSecrets(errorText(err) + logger.lines.join('\n'), ['the-wrong-secret-value', clientSecret]);
  });

  it('missing consent -> OAUTH_CONSENT_REQUIRED naming POP.AccessAsApp and admin consent', async () => {
    ep.enqueue({
      status: 400,
      json: {
        error: 'invalid_grant',
        error_description:
          "AADSTS65001: The user or administrator has not consented to use the application with ID 'x'.",
        error_codes: [65001],
      },
    });
    const err = await rejection(provider().p(appMailbox(ep.url)));
    expect(err.code).toBe('OAUTH_CONSENT_REQUIRED');
    expect(err.message).toMatch(/POP\.AccessAsApp/);
    expect(err.message).toMatch(/Grant admin consent/);
  });

  it('5xx, 429, a refused connection and a timeout-free hang-up are OAUTH_ENDPOINT_UNAVAILABLE (transient), and not cached', async () => {
    const { p } = provider();
    const mailbox = appMailbox(ep.url);
    ep.enqueue({ status: 503, text: '<html>down</html>' }, { status: 429, json: {} }, { hangUp: true });
    for (let i = 0; i < 3; i++) {
      const err = await rejection(p(mailbox));
      expect(err.code).toBe('OAUTH_ENDPOINT_UNAVAILABLE');
      expect(err.transient).toBe(true);
    }
    expect((await p(mailbox)).mechanism).toBe('xoauth2');
    const closed = await startTokenEndpoint();
    const url = closed.url;
    await closed.close();
    const err = await rejection(p(appMailbox(url)));
    expect(err.code).toBe('OAUTH_ENDPOINT_UNAVAILABLE');
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it('a 200 that is not a token response is OAUTH_BAD_RESPONSE; a 404 says to check authority', async () => {
    const { p } = provider();
    ep.enqueue({ text: '<html>login page</html>' }, { status: 404, text: 'nope' });
    const a = await rejection(p(appMailbox(ep.url)));
    expect(a.code).toBe('OAUTH_BAD_RESPONSE');
    const b = await rejection(p(appMailbox(ep.url)));
    expect(b.code).toBe('OAUTH_BAD_RESPONSE');
    expect(b.transient).toBe(false);
    expect(b.message).toMatch(/authority/);
  });

  it('refuses a plain-http authority that is not on this machine', async () => {
    const err = await rejection(provider().p(appMailbox('http://login.example.com')));
    expect(err.message).toMatch(/must use https/);
    expect(ep.requests).toHaveLength(0);
  });
});

describe('token cache', () => {
  it('two polls within the token lifetime make one token request', async () => {
    const { p } = provider();
    const mailbox = appMailbox(ep.url);
    const a = await p(mailbox);
    clock.advance(10 * 60_000);
    const b = await p(mailbox);
    expect(b).toEqual(a);
    expect(ep.requests).toHaveLength(1);
  });

  it('re-acquires once less than the margin remains (a long poll crossing expiry)', async () => {
    const { p } = provider();
    const mailbox = appMailbox(ep.url);
    const first = await p.getCredentialsWithExpiry(mailbox);
    clock.advance(3600_000 - TOKEN_REFRESH_MARGIN_MS - 1);
    expect((await p(mailbox)).mechanism).toBe('xoauth2');
    expect(ep.requests).toHaveLength(1);
    clock.advance(2);
    const second = await p.getCredentialsWithExpiry(mailbox);
    expect(ep.requests).toHaveLength(2);
    expect(second.credentials).not.toEqual(first.credentials);
    expect(second.expiresAt).toBe(clock.t + 3600_000);
  });

  it('a token shorter-lived than twice the margin is reused for half its life', async () => {
    await ep.close();
    ep = await startTokenEndpoint({ clientSecret, expiresIn: 120 });
    const { p } = provider();
    const mailbox = appMailbox(ep.url);
    await p(mailbox);
    clock.advance(59_000);
    await p(mailbox);
    expect(ep.requests).toHaveLength(1);
    clock.advance(2_000);
    await p(mailbox);
    expect(ep.requests).toHaveLength(2);
  });

  it('concurrent callers share one in-flight request', async () => {
    ep.enqueue({
      delayMs: 150,
      json: { token_type: 'Bearer', access_token: 'slow-token-1234', expires_in: 3600 },
    });
    const { p } = provider();
    const mailbox = appMailbox(ep.url);
    const all = await Promise.all(Array.from({ length: 8 }, () => p(mailbox)));
    expect(ep.requests).toHaveLength(1);
    for (const c of all)
      expect(c).toEqual({ mechanism: 'xoauth2', user: mailbox.user, accessToken: 'slow-token-1234' });
  });

  it('invalidate() drops the cached token; the default cache is shared by providers in one process', async () => {
    const mailbox = appMailbox(ep.url);
    const shared = () =>
      createCredentialsProvider({
        secrets: mapResolver({ 'm365-app': clientSecret }),
        clock,
        refreshTokens: new RefreshTokenStore(),
      });
    const a = shared();
    const b = shared();
    await a(mailbox);
    await b(mailbox);
    expect(ep.requests).toHaveLength(1);
    b.invalidate(mailbox);
    await a(mailbox);
    expect(ep.requests).toHaveLength(2);
  });

  it('different mailboxes (or configs) get different tokens', async () => {
    const { p } = provider();
    await p(appMailbox(ep.url));
    await p(appMailbox(ep.url, { clientId: 'client-app-2' }));
    expect(ep.requests).toHaveLength(2);
  });
});

describe('refresh-token flows', () => {
  it('Microsoft delegated: refresh grant with POP.AccessAsUser.All offline_access at the organizations tenant', async () => {
    const rt = rand('rt');
    ep.refreshTokens.add(rt);
    const { p } = provider({ secrets: mapResolver({ 'm365-rt': rt }) });
    const mailbox = delegatedMailbox(ep.url);
    const got = await p.getCredentialsWithExpiry(mailbox);
    expect(ep.requests[0]?.path).toBe('/organizations/oauth2/v2.0/token');
    expect(ep.requests[0]?.form).toEqual({
      grant_type: 'refresh_token',
      client_id: 'client-public-1',
      refresh_token: rt,
      scope: 'https://outlook.office365.com/POP.AccessAsUser.All offline_access',
    });
    expect(got.credentials).toEqual({
      mechanism: 'xoauth2',
      user: 'alice@contoso.example',
      accessToken: ep.issued[0],
    });
  });

  it('Google: refresh grant at /token with the client secret and no scope; no rotation, nothing written', async () => {
    const rt = rand('rt');
    ep.refreshTokens.add(rt);
    const writes: unknown[] = [];
    const { p } = provider({
      secrets: mapResolver({ 'google-rt': rt, 'google-client': clientSecret }),
      secretWriter: {
        write: async (...args) => {
          writes.push(args);
          return 'written';
        },
        describe: () => 'x',
      },
    });
    const got = await p.getCredentialsWithExpiry(googleMailbox(ep.url));
    expect(ep.requests[0]?.path).toBe('/token');
    expect(ep.requests[0]?.form).toEqual({
      grant_type: 'refresh_token',
      client_id: 'client-google-1.apps.googleusercontent.com',
      refresh_token: rt,
      client_secret: clientSecret,
    });
    expect(got.credentials.mechanism).toBe('xoauth2');
    expect(got.expiresAt).toBe(clock.t + 3600_000);
    expect(writes).toHaveLength(0);
  });

  it('a revoked refresh token -> OAUTH_INVALID_GRANT telling to run pophook auth, no token in it', async () => {
    const rt = rand('rt-revoked');
    const { p, logger } = provider({
      secrets: mapResolver({ 'google-rt': rt, 'google-client': clientSecret }),
    });
    const err = await rejection(p(googleMailbox(ep.url)));
    expect(err.code).toBe('OAUTH_INVALID_GRANT');
    expect(err.message).toMatch(/Run "pophook auth gmail"/);
    expect(err.message).toMatch(/secret "google-rt"/);
    expect(err.message).toMatch(/invalid_grant: Token has been expired or revoked/);
    expectNoSecrets(errorText(err) + logger.lines.join('\n'), [rt, clientSecret]);
  });

  it('a rotated refresh token is written back to the local secrets file (other keys kept) and used next', async () => {
    await ep.close();
    ep = await startTokenEndpoint({ rotateRefreshTokens: true });
    const rt0 = rand('rt');
    ep.refreshTokens.add(rt0);
    const file = join(dir, `secrets-${rand('f')}.json`);
    await writeFile(file, JSON.stringify({ other: 'keep-me', 'm365-rt': rt0, nested: { a: 'b' } }), {
      mode: 0o600,
    });
    const { p, logger } = provider({
      secrets: new LocalSecretResolver({ file, env: {} }),
      secretWriter: new LocalSecretWriter({ file }),
    });
    const mailbox = delegatedMailbox(ep.url);
    await p(mailbox);
    const afterFirst = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    const rt1 = afterFirst['m365-rt'] as string;
    expect(rt1).not.toBe(rt0);
    expect(ep.refreshTokens.has(rt1)).toBe(true);
    expect(afterFirst).toEqual({ other: 'keep-me', 'm365-rt': rt1, nested: { a: 'b' } });

    // The next refresh (token near expiry) redeems the rotated token, not the one the resolver cached.
    clock.advance(3600_000);
    await p(mailbox);
    expect(ep.requests[1]?.form.refresh_token).toBe(rt1);
    const rt2 = (JSON.parse(await readFile(file, 'utf8')) as Record<string, string>)['m365-rt'];
    expect(rt2).not.toBe(rt1);
    expect(
      logger.records.filter((r) => r.message === 'oauth refresh token written back').map((r) => r.outcome),
    ).toEqual(['written', 'written']);
    expectNoSecrets(logger.lines.join('\n'), [rt0, rt1, rt2 ?? 'x', ...ep.issued]);
  });

  it('does not overwrite a refresh token another run stored meanwhile, and keeps working', async () => {
    await ep.close();
    ep = await startTokenEndpoint({ rotateRefreshTokens: true });
    const rt0 = rand('rt');
    ep.refreshTokens.add(rt0);
    const file = join(dir, `secrets-${rand('f')}.json`);
    await writeFile(file, JSON.stringify({ 'm365-rt': { token: rt0, note: 'x' } }), { mode: 0o600 });
    const resolver = new LocalSecretResolver({ file, env: {} });
    const mailbox = delegatedMailbox(ep.url, { refreshToken: { secret: 'm365-rt', field: 'token' } });
    await resolver.resolve({ secret: 'm365-rt', field: 'token' }); // resolver caches rt0
    // Another run rotates first and stores its token.
    await writeFile(file, JSON.stringify({ 'm365-rt': { token: 'rt-from-other-run', note: 'x' } }), {
      mode: 0o600,
    });
    const { p, logger } = provider({ secrets: resolver, secretWriter: new LocalSecretWriter({ file }) });
    await p(mailbox);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      'm365-rt': { token: 'rt-from-other-run', note: 'x' },
    });
    expect(logger.records.find((r) => r.message === 'oauth refresh token written back')?.outcome).toBe(
      'superseded',
    );
  });

  it('a failed write-back is logged and the access token still returned', async () => {
    await ep.close();
    ep = await startTokenEndpoint({ rotateRefreshTokens: true });
    const rt0 = rand('rt');
    ep.refreshTokens.add(rt0);
    const file = join(dir, `ro-${rand('f')}`, 'secrets.json'); // directory does not exist
    const { p, logger } = provider({
      secrets: mapResolver({ 'm365-rt': rt0 }),
      secretWriter: new LocalSecretWriter({ file }),
    });
    expect((await p(delegatedMailbox(ep.url))).mechanism).toBe('xoauth2');
    expect(
      logger.records.some(
        (r) => r.message === 'oauth refresh token write-back failed; the previous one stays valid',
      ),
    ).toBe(true);
  });

  it('AWS: a rotation calls PutSecretValue with the new token; not when the stored value changed', async () => {
    await ep.close();
    ep = await startTokenEndpoint({ rotateRefreshTokens: true });
    const sm = mockClient(SecretsManagerClient);
    try {
      const rt0 = rand('rt');
      ep.refreshTokens.add(rt0);
      sm.on(GetSecretValueCommand).resolves({ SecretString: rt0, VersionId: 'v1' });
      sm.on(PutSecretValueCommand).resolves({});
      const client = new SecretsManagerClient({ region: 'us-east-1' });
      const { p } = provider({
        secrets: new AwsSecretResolver({ client, clock }),
        secretWriter: new AwsSecretWriter({ client }),
      });
      const mailbox = delegatedMailbox(ep.url);
      await p(mailbox);
      const puts = sm.commandCalls(PutSecretValueCommand);
      expect(puts).toHaveLength(1);
      const rt1 = puts[0]?.args[0].input.SecretString;
      expect(rt1).toMatch(/^rt-/);
      expect(rt1).not.toBe(rt0);
      expect(ep.refreshTokens.has(rt1 ?? '')).toBe(true);
      expect(puts[0]?.args[0].input.SecretId).toBe('m365-rt');

      // Meanwhile another run stored a different token: the next rotation must not overwrite it.
      sm.on(GetSecretValueCommand).resolves({ SecretString: 'rt-other-run', VersionId: 'v3' });
      clock.advance(3600_000);
      await p(mailbox);
      expect(sm.commandCalls(PutSecretValueCommand)).toHaveLength(1);
    } finally {
      sm.restore();
    }
  });
});

describe('secrecy', () => {
  it('no token or client secret appears in any log line or error, across success and failure paths', async () => {
    await ep.close();
    ep = await startTokenEndpoint({ clientSecret, rotateRefreshTokens: true });
    const rt = rand('rt');
    ep.refreshTokens.add(rt);
    const file = join(dir, `secrets-${rand('f')}.json`);
    await writeFile(
      file,
      JSON.stringify({ 'm365-rt': rt, 'm365-app': clientSecret, 'google-client': clientSecret }),
    );
    await chmod(file, 0o600);
    const { p, logger } = provider({
      secrets: new LocalSecretResolver({ file, env: {} }),
      secretWriter: new LocalSecretWriter({ file }),
    });
    const errors: unknown[] = [];
    await p(appMailbox(ep.url));
    await p(delegatedMailbox(ep.url));
    ep.enqueue({
      status: 500,
      json: { error: 'server_error', error_description: `echo ${clientSecret} ${rt}` },
    });
    errors.push(await rejection(p(googleMailbox(ep.url, { refreshToken: { secret: 'm365-rt' } }))));
    ep.enqueue({
      status: 401,
      json: { error: 'invalid_client', error_description: `bad secret ${clientSecret}` },
    });
    errors.push(await rejection(p(appMailbox(ep.url, { clientId: 'other' }))));
    ep.enqueue({ text: `{"access_token": 12, "refresh_token": "${rt}"` });
    errors.push(await rejection(p(appMailbox(ep.url, { clientId: 'third' }))));

    const rotated = (JSON.parse(await readFile(file, 'utf8')) as Record<string, string>)['m365-rt'] ?? 'x';
    const secrets = [clientSecret, rt, rotated, ...ep.issued];
    const logged = logger.lines.join('\n');
    expectNoSecrets(logged, secrets);
    // Not even scrubbed: secrets are never handed to the logger in the first place.
    expect(logged).not.toMatch(/REDACTED/);
    for (const err of errors) {
      expectNoSecrets(errorText(err), secrets);
      expect(errorText(err)).not.toMatch(/REDACTED/);
    }
    expect(errors.map((e) => (e as { code: string }).code)).toEqual([
      'OAUTH_ENDPOINT_UNAVAILABLE',
      'OAUTH_INVALID_CLIENT',
      'OAUTH_BAD_RESPONSE',
    ]);
  });
});

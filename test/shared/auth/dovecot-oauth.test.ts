/**
 * End to end against a real Dovecot with `passdb oauth2`: our token endpoint fixture issues access
 * tokens that Dovecot's introspection accepts, the credentials provider fetches them, and the POP3
 * client logs in with XOAUTH2 and OAUTHBEARER. A revoked token fails with the decoded challenge, and
 * explainAuthFailure shows it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCredentialsProvider } from '../../../shared/auth/credentials.js';
import { explainAuthFailure } from '../../../shared/auth/explain.js';
import { RefreshTokenStore } from '../../../shared/auth/refresh-token-store.js';
import { TokenCache } from '../../../shared/auth/token-cache.js';
import { MailboxConfig } from '../../../shared/config/schema.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { connect } from '../../../shared/pop3/client.js';
import type { Pop3ConnectOptions } from '../../../shared/pop3/types.js';
import { type Dovecot, dovecotAvailable, requireDovecot, startDovecot } from '../../fixtures/dovecot.js';
import { startTokenEndpoint, type TokenEndpoint } from '../../fixtures/token-endpoint.js';
import { errorText, expectNoSecrets, mapResolver, rand, rejection } from './helpers.js';

requireDovecot();

describe.runIf(dovecotAvailable())('OAuth credentials vs Dovecot', () => {
  const tokens: Record<string, string> = {};
  const clientSecret = rand('cs');
  let d: Dovecot;
  let ep: TokenEndpoint;
  beforeAll(async () => {
    d = await startDovecot({ oauth: { tokens }, messages: ['Subject: hi\r\n\r\nhello\r\n'] });
    // Every token the endpoint issues is one Dovecot's introspection accepts for the test user.
    ep = await startTokenEndpoint({ clientSecret, onAccessToken: (t) => (tokens[t] = d.user) });
  });
  afterAll(async () => {
    await ep?.close();
    await d?.stop();
  });

  const mailbox = (mechanism: 'xoauth2' | 'oauthbearer', id = `m365-${mechanism}`) =>
    MailboxConfig.parse({
      id,
      host: d.host,
      port: d.tlsPort,
      user: d.user,
      auth: {
        type: 'oauth2-microsoft-app',
        tenantId: 'tenant-1',
        clientId: 'app-1',
        clientSecret: { secret: 'app' },
        authority: ep.url,
        mechanism,
      },
    });
  const opts = (extra: Partial<Pop3ConnectOptions> = {}): Pop3ConnectOptions => ({
    host: d.host,
    port: d.tlsPort,
    tls: 'implicit',
    servername: 'localhost',
    ca: d.caPem,
    ...extra,
  });

  for (const mechanism of ['xoauth2', 'oauthbearer'] as const) {
    it(`logs in with ${mechanism.toUpperCase()} using the provider's token`, async () => {
      const logger = createMemoryLogger();
      const credentials = createCredentialsProvider({
        secrets: mapResolver({ app: clientSecret }),
        cache: new TokenCache(),
        refreshTokens: new RefreshTokenStore(),
        logger,
      });
      const creds = await credentials(mailbox(mechanism));
      const s = await connect(opts({ logger, transcript: true }));
      try {
        await s.login(creds);
        expect(s.authMechanism).toBe(mechanism.toUpperCase());
        expect((await s.stat()).count).toBe(1);
        await s.quit();
      } finally {
        s.close();
      }
      expect(creds.mechanism === 'xoauth2' || creds.mechanism === 'oauthbearer').toBe(true);
      expectNoSecrets(logger.lines.join('\n'), [clientSecret, ...ep.issued]);
    });
  }

  it('a revoked token fails with POP3_AUTH_FAILED; explainAuthFailure shows the decoded challenge', async () => {
    const credentials = createCredentialsProvider({
      secrets: mapResolver({ app: clientSecret }),
      cache: new TokenCache(),
      refreshTokens: new RefreshTokenStore(),
    });
    const mb = mailbox('xoauth2', 'm365-revoked');
    const got = await credentials.getCredentialsWithExpiry(mb);
    const creds = got.credentials;
    if (creds.mechanism !== 'xoauth2') throw new Error('expected xoauth2');
    delete tokens[creds.accessToken];
    const s = await connect(opts({ localAddress: '127.0.0.9' }));
    let err: Error & { code?: string };
    try {
      err = await rejection(s.login(creds));
    } finally {
      s.close();
    }
    expect(err.code).toBe('POP3_AUTH_FAILED');
    expectNoSecrets(errorText(err), [creds.accessToken]);
    const lines = explainAuthFailure(err, mb, got.tokenInfo);
    const text = lines.join('\n');
    expect(text).toMatch(/issued an access token, but the POP server refused the login/);
    expect(text).toMatch(/decoded: \{"status":"401"/);
    expect(text).toMatch(/New-ServicePrincipal -AppId app-1/);
    expect(text).toMatch(/Add-MailboxPermission -Identity testuser/);
    expect(text).toMatch(/Set-CASMailbox -Identity testuser -PopEnabled \$true/);
    expectNoSecrets(text, [creds.accessToken, clientSecret]);

    // After invalidate() the next call fetches a fresh token, which works.
    credentials.invalidate(mb);
    const fresh = await credentials(mb);
    expect(fresh).not.toEqual(creds);
    const s2 = await connect(opts());
    try {
      await s2.login(fresh);
      await s2.quit();
    } finally {
      s2.close();
    }
  });
});

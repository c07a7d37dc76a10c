import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runDeviceCodeFlow } from '../../../shared/auth/device-code.js';
import { startTokenEndpoint, type TokenEndpoint } from '../../fixtures/token-endpoint.js';
import { errorText, expectNoSecrets, rejection, TestClock } from './helpers.js';

let ep: TokenEndpoint;
let clock: TestClock;
let waits: number[];
let printed: string[];

beforeEach(async () => {
  ep = await startTokenEndpoint({ pendingPolls: 2 });
  clock = new TestClock();
  waits = [];
  printed = [];
});
afterEach(async () => {
  await ep.close();
});

/** A sleep that advances the injected clock instead of waiting. */
const sleep = async (ms: number) => {
  waits.push(ms);
  clock.advance(ms);
};

const run = () =>
  runDeviceCodeFlow({
    authority: ep.url,
    tenantId: 'organizations',
    clientId: 'public-client-1',
    scope: 'https://outlook.office365.com/POP.AccessAsUser.All offline_access',
    mailboxId: 'm365-user',
    print: (l) => printed.push(l),
    clock,
    sleep,
  });

describe('device-code flow', () => {
  it('prints the code and URL, polls through authorization_pending, returns access and refresh tokens', async () => {
    const token = await run();
    expect(ep.requestsTo('/devicecode')[0]?.form).toEqual({
      client_id: 'public-client-1',
      scope: 'https://outlook.office365.com/POP.AccessAsUser.All offline_access',
    });
    expect(ep.requestsTo('/devicecode')[0]?.path).toBe('/organizations/oauth2/v2.0/devicecode');
    const polls = ep.requestsTo('/token');
    expect(polls).toHaveLength(3);
    const deviceCode = polls[0]?.form.device_code ?? '';
    expect(polls[0]?.form).toEqual({
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      client_id: 'public-client-1',
      device_code: deviceCode,
    });
    expect(waits).toEqual([1000, 1000, 1000]);
    expect(printed[0]).toBe(
      'To sign in, open https://microsoft.com/devicelogin in a browser and enter the code ABCD-EFGH',
    );
    expect(token.accessToken).toBe(ep.issued[0]);
    expect(token.refreshToken).toMatch(/^rt-/);
    expectNoSecrets(printed.join('\n'), [deviceCode, token.accessToken, token.refreshToken ?? 'x']);
  });

  it('slows down by 5 s on slow_down and keeps polling through a 503', async () => {
    ep.enqueue(
      {
        json: {
          device_code: 'dc-abcdef',
          user_code: 'WXYZ',
          verification_uri: 'https://example.test/device',
          expires_in: 900,
          interval: 2,
        },
      },
      { status: 400, json: { error: 'slow_down' } },
      { status: 503, text: 'busy' },
      { status: 400, json: { error: 'authorization_pending' } },
    );
    ep.enqueue({
      json: {
        access_token: 'at-final-1234',
        refresh_token: 'rt-final-1234',
        expires_in: 3600,
        token_type: 'Bearer',
      },
    });
    const token = await run();
    expect(waits).toEqual([2000, 7000, 7000, 7000]);
    expect(token).toEqual({ accessToken: 'at-final-1234', refreshToken: 'rt-final-1234', expiresInS: 3600 });
  });

  it('stops with OAUTH_SIGN_IN_FAILED when the code expires (by the clock or by the server)', async () => {
    ep.enqueue({
      json: {
        device_code: 'dc-abcdef',
        user_code: 'WXYZ',
        verification_uri: 'https://x.test/d',
        expires_in: 3,
        interval: 1,
      },
    });
    ep.enqueue(
      ...Array.from({ length: 2 }, () => ({ status: 400, json: { error: 'authorization_pending' } })),
    );
    const byClock = await rejection(run());
    expect(byClock).toMatchObject({ code: 'OAUTH_SIGN_IN_FAILED' });
    expect(byClock.message).toMatch(/pophook auth m365-user/);
    expect(ep.requestsTo('/token')).toHaveLength(2);

    ep.enqueue({
      json: {
        device_code: 'dc-abcdef',
        user_code: 'WXYZ',
        verification_uri: 'https://x.test/d',
        expires_in: 900,
      },
    });
    ep.enqueue({ status: 400, json: { error: 'expired_token' } });
    expect(await rejection(run())).toMatchObject({ code: 'OAUTH_SIGN_IN_FAILED' });
  });

  it('a declined sign-in is OAUTH_CONSENT_REQUIRED; a bad client id at /devicecode is classified', async () => {
    ep.enqueue(
      {
        json: {
          device_code: 'dc-abcdef',
          user_code: 'WXYZ',
          verification_uri: 'https://x.test/d',
          expires_in: 900,
        },
      },
      {
        status: 400,
        json: {
          error: 'authorization_declined',
          error_description: 'The end user denied the authorization request.',
        },
      },
    );
    const declined = await rejection(run());
    expect(declined).toMatchObject({ code: 'OAUTH_CONSENT_REQUIRED' });
    expect(declined.message).toMatch(/declined/);

    ep.enqueue({
      status: 400,
      json: {
        error: 'unauthorized_client',
        error_description:
          "AADSTS700016: Application with identifier 'public-client-1' was not found in the directory 'Contoso'.",
      },
    });
    const unknown = await rejection(run());
    expect(unknown).toMatchObject({ code: 'OAUTH_INVALID_CLIENT' });
    expect(unknown.message).toMatch(/does not exist in tenant organizations/);
    expectNoSecrets(errorText(unknown), ['dc-abcdef']);
  });
});

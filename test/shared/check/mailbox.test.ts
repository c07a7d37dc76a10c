import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkMailbox, explainMechanism } from '../../../shared/check/mailbox.js';
import { MailboxConfig } from '../../../shared/config/schema.js';
import { Pop3Error } from '../../../shared/pop3/errors.js';
import type { Pop3Capabilities, Pop3Session } from '../../../shared/pop3/types.js';

function caps(over: Partial<Pop3Capabilities> = {}): Pop3Capabilities {
  return {
    raw: new Map([['USER', []]]),
    sasl: [],
    pipelining: false,
    uidl: true,
    top: true,
    user: true,
    stls: false,
    respCodes: true,
    advertised: true,
    ...over,
  };
}

const mailbox = (over: Record<string, unknown> = {}) =>
  MailboxConfig.parse({
    id: 'm',
    host: '127.0.0.1',
    tls: 'none',
    allowInsecureAuth: true,
    user: 'u',
    auth: { type: 'password', password: { secret: 'p' } },
    ...over,
  });

/** A session double: the TCP probe still needs a real listener, the POP3 part is scripted. */
function fakeSession(c: Pop3Capabilities, options: { loginError?: Error; uidl?: boolean } = {}): Pop3Session {
  return {
    state: 'AUTHORIZATION',
    greeting: '+OK hello',
    capabilities: c,
    tls: undefined,
    authMechanism: 'USER',
    login: async () => {
      if (options.loginError) throw options.loginError;
    },
    stat: async () => ({ count: 2, size: 1234 }),
    uidl: async () => {
      if (options.uidl === false) throw new Pop3Error('POP3_COMMAND_FAILED', 'no');
      return [];
    },
    quit: async () => undefined,
    close: () => undefined,
  } as unknown as Pop3Session;
}

describe('checkMailbox steps that depend on what the server advertises', () => {
  let server: net.Server;
  let port: number;
  beforeAll(async () => {
    server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const run = (m: MailboxConfig, session: Pop3Session) =>
    checkMailbox(m, {
      credentials: async () => ({ credentials: { mechanism: 'auto', user: 'u', password: 'x' } }),
      connect: async () => session,
    });

  it('LOGIN-DELAY longer than pollEveryMinutes and EXPIRE 0 with retention keep are warnings with a fix', async () => {
    const r = await run(
      mailbox({ port, retention: 'keep', pollEveryMinutes: 5 }),
      fakeSession(caps({ loginDelaySeconds: 900, expire: 0 })),
    );
    const step = (name: string) => r.steps.find((s) => s.name === name);
    expect(step('LOGIN-DELAY')).toMatchObject({
      ok: true,
      warning: true,
      fix: 'Set pollEveryMinutes: 15 or more for mailbox "m".',
    });
    expect(step('EXPIRE')).toMatchObject({ ok: true, warning: true });
    expect(step('EXPIRE')?.detail).toContain('deletes each message as soon as it is retrieved');
    expect(step('STAT')?.detail).toBe('2 messages, 1234 bytes on the server');
    expect(r.ok).toBe(true);
  });

  it('no UIDL fails with retention keep (and says to use delete), and is a warning with delete', async () => {
    const noUidl = caps({ uidl: false });
    const keep = await run(mailbox({ port, retention: 'keep' }), fakeSession(noUidl, { uidl: false }));
    expect(keep.steps.find((s) => s.name === 'UIDL')).toMatchObject({
      ok: false,
      fix: 'Set retention: delete for mailbox "m" (messages are then recognised by their content hash).',
    });
    const del = await run(mailbox({ port }), fakeSession(noUidl, { uidl: false }));
    expect(del.steps.find((s) => s.name === 'UIDL')).toMatchObject({ ok: true, warning: true });
  });

  it('IN-USE at login is explained as another client holding the mailbox', async () => {
    const r = await run(
      mailbox({ port }),
      fakeSession(caps(), { loginError: new Pop3Error('POP3_IN_USE', 'in use') }),
    );
    expect(r.steps.at(-1)).toMatchObject({ name: 'login', ok: false });
    expect(r.steps.at(-1)?.detail).toContain('another client holds it open');
  });

  it('a host that does not resolve stops at DNS', async () => {
    const r = await checkMailbox(mailbox({ host: 'pop.example.invalid' }), {
      credentials: async () => {
        throw new Error('not reached');
      },
      resolve: async () => {
        throw Object.assign(new Error('nope'), { code: 'ENOTFOUND' });
      },
    });
    expect(r.steps).toEqual([
      expect.objectContaining({
        name: 'DNS',
        ok: false,
        detail: 'pop.example.invalid does not resolve (ENOTFOUND)',
      }),
    ]);
  });
});

describe('explainMechanism', () => {
  it('auto picks PLAIN when advertised, else USER, and never APOP', () => {
    expect(explainMechanism(mailbox(), caps({ sasl: ['PLAIN', 'LOGIN'] })).detail).toMatch(/^SASL PLAIN/);
    const user = explainMechanism(mailbox(), caps());
    expect(user.detail).toBe('USER/PASS: the server does not advertise SASL PLAIN');
    expect(user.lines?.[0]).toMatch(/^not APOP/);
    const apop = explainMechanism(
      mailbox({ auth: { type: 'password', password: { secret: 'p' }, mechanism: 'apop' } }),
      caps(),
    );
    expect(apop).toMatchObject({ warning: true });
  });

  it('OAuth: XOAUTH2, with a warning when the server does not list it', () => {
    const oauth = mailbox({
      auth: { type: 'oauth2-google', clientId: 'c', refreshToken: { secret: 'r' } },
    });
    expect(explainMechanism(oauth, caps({ sasl: ['XOAUTH2'] })).detail).toMatch(
      /^XOAUTH2: OAuth access token/,
    );
    expect(explainMechanism(oauth, caps({ sasl: ['PLAIN'] }))).toMatchObject({ warning: true });
  });
});

import { createHash } from 'node:crypto';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryLogger, serializeError } from '../../../shared/log.js';
import { connect } from '../../../shared/pop3/client.js';
import { isPop3Error, type Pop3ErrorCode } from '../../../shared/pop3/errors.js';
import type { Pop3ConnectOptions, Pop3Session } from '../../../shared/pop3/types.js';
import { testCerts } from '../../fixtures/certs.js';
import { type FakePop3Script, type FakePop3Server, startFakePop3 } from '../../fixtures/fake-pop3.js';

const servers: Array<{ close(): Promise<void> }> = [];
const sessions: Pop3Session[] = [];

afterEach(async () => {
  for (const s of sessions.splice(0)) s.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function fake(script: FakePop3Script = {}): Promise<FakePop3Server> {
  const srv = await startFakePop3(script);
  servers.push(srv);
  return srv;
}

/** Small timeouts: every stall in these tests must end in well under a second. */
const FAST = { connectMs: 2000, greetingMs: 1000, tlsHandshakeMs: 1000, idleMs: 400, sessionMs: 10_000 };

async function open(srv: FakePop3Server, options: Partial<Pop3ConnectOptions> = {}): Promise<Pop3Session> {
  const session = await connect({
    host: '127.0.0.1',
    port: srv.port,
    tls: 'none',
    allowInsecureAuth: true,
    timeouts: FAST,
    ...options,
  });
  sessions.push(session);
  return session;
}

async function loggedIn(script: FakePop3Script = {}, options: Partial<Pop3ConnectOptions> = {}) {
  const srv = await fake(script);
  const session = await open(srv, options);
  await session.login({ mechanism: 'user', user: 'user', password: 'secret' });
  return { srv, session };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function codeOf(promise: Promise<unknown>): Promise<Pop3ErrorCode | string> {
  try {
    await promise;
  } catch (err) {
    return isPop3Error(err) ? err.code : String(err);
  }
  return 'resolved';
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Client-side sockets of this process (the fake server's are counted separately via srv.open()). */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TLSWrap').length;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const CREDENTIAL_VERBS = /^(USER|PASS|AUTH|APOP)\b/i;

const TRICKY = Buffer.concat([
  Buffer.from('Subject: tricky\r\n\r\n.\r\n..\r\n.foo\r\n'),
  Buffer.from([0x00, 0x0d, 0x41, 0x0a, 0x2e, 0xff, 0x80, 0x0d, 0x0a]),
  Buffer.from('last line\r\n'),
]);

describe('POP3 client basics', () => {
  it('logs in, lists, retrieves byte-exact, deletes and commits on QUIT', async () => {
    const { srv, session } = await loggedIn({ messages: [TRICKY, 'Subject: b\r\n\r\nbody\r\n'] });
    expect(session.state).toBe('TRANSACTION');
    expect(session.authMechanism).toBe('USER');
    expect(await session.stat()).toEqual({ count: 2, size: TRICKY.length + 20 });
    expect(await session.list()).toEqual([
      { n: 1, size: TRICKY.length },
      { n: 2, size: 20 },
    ]);
    const stream = await session.retr(1);
    expect(stream.messageNumber).toBe(1);
    expect(sha(await readAll(stream))).toBe(sha(TRICKY));
    const top = await session.top(2, 0);
    expect((await readAll(top)).toString()).toBe('Subject: b\r\n\r\n');
    await session.dele(1);
    await session.quit();
    expect(session.state).toBe('CLOSED');
    expect(srv.expunged).toEqual([1]);
    await until(() => srv.open() === 0);
  });

  it('close() drops the connection without committing deletions', async () => {
    const { srv, session } = await loggedIn({ messages: ['a\r\n'] });
    await session.dele(1);
    session.close();
    expect(session.state).toBe('CLOSED');
    await until(() => srv.open() === 0);
    expect(srv.expunged).toEqual([]);
    expect(await codeOf(session.stat())).toBe('POP3_CONNECTION_CLOSED');
  });

  it('handles replies split into 1-byte writes and the terminator split at every offset', async () => {
    const body = Buffer.from('Subject: s\r\n\r\n.dot\r\nend\r\n');
    const wire = Buffer.concat([
      Buffer.from('+OK\r\n'),
      Buffer.from('Subject: s\r\n\r\n..dot\r\nend\r\n.\r\n'),
    ]);
    const term = wire.length - 5;
    const { session } = await loggedIn({
      greeting: (c) =>
        c.write('+OK split greeting\r\n', { splitAt: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], delayMs: 1 }),
      messages: [body],
      handlers: {
        RETR: (c, _l, args) => c.write(wire, { splitAt: [1, 3, 4, term + Number(args[0]) - 1], delayMs: 3 }),
      },
    });
    expect(session.greeting).toBe('+OK split greeting');
    for (let i = 0; i <= 5; i++) {
      expect((await readAll(await session.retr(i + 1))).equals(body)).toBe(true);
    }
  });

  it('refuses calls in the wrong state', async () => {
    const srv = await fake();
    const session = await open(srv);
    expect(await codeOf(session.stat())).toBe('POP3_USAGE');
    await session.login({ mechanism: 'user', user: 'user', password: 'secret' });
    expect(await codeOf(session.login({ mechanism: 'user', user: 'user', password: 'secret' }))).toBe(
      'POP3_USAGE',
    );
    expect(await codeOf(session.retr(0))).toBe('POP3_USAGE');
  });
});

describe('TLS and STLS', () => {
  const certs = testCerts();
  const tlsScript = (mode: 'implicit' | 'starttls', pair = certs.valid) => ({
    mode,
    cert: pair.cert,
    key: pair.key,
  });

  it('accepts a certificate from a custom CA (implicit TLS) and reports TLS info', async () => {
    const srv = await fake({ tls: tlsScript('implicit') });
    const session = await open(srv, { tls: 'implicit', ca: certs.ca, allowInsecureAuth: false });
    expect(session.tls?.authorized).toBe(true);
    expect(session.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(session.tls?.fingerprint256).toBe(certs.valid.fingerprint256);
    await session.login({ mechanism: 'auto', user: 'user', password: 'secret' });
    expect(session.state).toBe('TRANSACTION');
  });

  it('verifies the name with SNI for a host name', async () => {
    const srv = await fake({ tls: tlsScript('implicit') });
    const session = await open(srv, { host: 'localhost', tls: 'implicit', ca: certs.ca });
    expect(session.tls?.subject).toBe('localhost');
  });

  const refusals: Array<[string, () => { pair: typeof certs.valid; ca?: string }, RegExp]> = [
    ['self-signed', () => ({ pair: certs.selfSigned, ca: certs.ca }), /self-signed/],
    ['unknown CA', () => ({ pair: certs.valid }), /unknown CA/],
    ['wrong host', () => ({ pair: certs.wrongHost, ca: certs.ca }), /hostname mismatch/],
    ['expired', () => ({ pair: certs.expired, ca: certs.ca }), /expired/],
  ];
  for (const [name, setup, message] of refusals) {
    it(`refuses a ${name} certificate with POP3_TLS and sends nothing`, async () => {
      const { pair, ca } = setup();
      const srv = await fake({ tls: tlsScript('implicit', pair) });
      const err = await connect({
        host: '127.0.0.1',
        port: srv.port,
        tls: 'implicit',
        ca,
        timeouts: FAST,
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPop3Error(err, 'POP3_TLS')).toBe(true);
      expect((err as Error).message).toMatch(message);
      expect(srv.received).toEqual([]);
    });
  }

  it('checks certificate pins', async () => {
    const srv = await fake({ tls: tlsScript('implicit') });
    const pin = certs.valid.fingerprint256.toLowerCase();
    const ok = await open(srv, { tls: 'implicit', ca: certs.ca, pinSha256: ['00:11', pin] });
    expect(ok.tls?.authorized).toBe(true);
    const err = await codeOf(open(srv, { tls: 'implicit', ca: certs.ca, pinSha256: ['ab'.repeat(32)] }));
    expect(err).toBe('POP3_TLS');
  });

  it('upgrades with STLS, discards pre-TLS capabilities and re-reads CAPA', async () => {
    const srv = await fake({
      tls: tlsScript('starttls'),
      handlers: {
        CAPA: (c) =>
          c.session.secure
            ? c.multi('+OK', 'USER\r\nUIDL\r\nSASL PLAIN\r\nIMPLEMENTATION after-tls\r\n')
            : c.multi('+OK', 'STLS\r\nSASL LOGIN\r\nIMPLEMENTATION before-tls\r\n'),
      },
    });
    const session = await open(srv, { tls: 'starttls', ca: certs.ca, allowInsecureAuth: false });
    expect(session.tls?.authorized).toBe(true);
    expect(session.capabilities.raw.get('IMPLEMENTATION')).toEqual(['after-tls']);
    expect(session.capabilities.stls).toBe(false);
    expect(session.capabilities.sasl).toEqual(['PLAIN']);
    await session.login({ mechanism: 'auto', user: 'user', password: 'secret' });
    expect(srv.received.slice(0, 4)).toEqual(['CAPA', 'STLS', 'CAPA', expect.stringMatching(/^AUTH PLAIN /)]);
  });

  const injections: Array<[string, string | Buffer]> = [
    ['a fake post-TLS CAPA (EAST B_1)', '+OK Begin TLS negotiation now.\r\n+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n'],
    [
      'binary junk (EAST B_2)',
      Buffer.concat([Buffer.from('+OK go\r\n'), Buffer.from([0x16, 0x03, 0x01, 0x00])]),
    ],
    ['a partial line', '+OK go\r\n+OK'],
  ];
  for (const [name, reply] of injections) {
    it(`aborts on bytes injected after the STLS +OK: ${name}`, async () => {
      const srv = await fake({
        tls: tlsScript('starttls'),
        handlers: {
          STLS: async (c) => {
            await c.write(reply);
            await c.startTls().catch(() => {});
          },
        },
      });
      expect(await codeOf(open(srv, { tls: 'starttls', ca: certs.ca }))).toBe('POP3_STLS_INJECTION');
      await until(() => srv.open() === 0);
      expect(srv.received).toEqual(['CAPA', 'STLS']);
    });
  }

  it('aborts when STLS is refused, not advertised, or CAPA is hidden', async () => {
    const refused = await fake({
      tls: tlsScript('starttls'),
      handlers: { STLS: (c) => c.line('-ERR STARTTLS not supported') },
    });
    expect(await codeOf(open(refused, { tls: 'starttls', ca: certs.ca }))).toBe('POP3_STLS_UNAVAILABLE');
    expect(refused.received).toEqual(['CAPA', 'STLS']);

    const hidden = await fake({ tls: tlsScript('starttls'), capa: ['USER', 'SASL PLAIN'] });
    expect(await codeOf(open(hidden, { tls: 'starttls', ca: certs.ca }))).toBe('POP3_STLS_UNAVAILABLE');
    expect(hidden.received).toEqual(['CAPA']);

    const noCapa = await fake({ tls: tlsScript('starttls'), capa: null });
    expect(await codeOf(open(noCapa, { tls: 'starttls', ca: certs.ca }))).toBe('POP3_STLS_UNAVAILABLE');
    expect(noCapa.received).toEqual(['CAPA']);
  });

  it('refuses to send credentials without TLS unless allowInsecureAuth', async () => {
    const srv = await fake();
    const session = await open(srv, { allowInsecureAuth: false });
    expect(await codeOf(session.login({ mechanism: 'auto', user: 'user', password: 'secret' }))).toBe(
      'POP3_INSECURE_AUTH_REFUSED',
    );
    expect(await codeOf(session.login({ mechanism: 'xoauth2', user: 'user', accessToken: 'tok' }))).toBe(
      'POP3_INSECURE_AUTH_REFUSED',
    );
    expect(srv.received.filter((l) => CREDENTIAL_VERBS.test(l))).toEqual([]);
  });

  it('times out a stalled TLS handshake', async () => {
    const silent = net.createServer(() => {});
    const sockets = new Set<net.Socket>();
    silent.on('connection', (s) => sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    servers.push({
      close: () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    });
    const port = (silent.address() as net.AddressInfo).port;
    const err = await connect({
      host: '127.0.0.1',
      port,
      tls: 'implicit',
      timeouts: { ...FAST, tlsHandshakeMs: 150 },
    })
      .then(() => undefined)
      .catch((e: unknown) => e);
    expect(isPop3Error(err, 'POP3_TIMEOUT')).toBe(true);
    expect((err as { details: { phase: string } }).details.phase).toBe('tls');
  });
});

describe('response codes and typed errors', () => {
  const passReply = (line: string, capa?: string[]) =>
    fake({ capa, handlers: { PASS: (c) => c.line(line) } }).then(async (srv) => {
      const session = await open(srv);
      return session.login({ mechanism: 'user', user: 'user', password: 'secret' }).then(
        () => undefined,
        (e: unknown) => e,
      );
    });

  it('maps [IN-USE], [LOGIN-DELAY], [SYS/TEMP], [SYS/PERM] and [AUTH]', async () => {
    const inUse = await passReply('-ERR [IN-USE] Mailbox locked by another session');
    expect(inUse).toMatchObject({ code: 'POP3_IN_USE', transient: true, command: 'PASS ***' });
    expect((inUse as { response: string }).response).toBe('-ERR [IN-USE] Mailbox locked by another session');

    const delay = await passReply('-ERR [login-delay] wait', ['USER', 'LOGIN-DELAY 900', 'EXPIRE NEVER']);
    expect(delay).toMatchObject({
      code: 'POP3_LOGIN_DELAY',
      transient: true,
      details: { loginDelaySeconds: 900 },
    });

    expect(await passReply('-ERR [SYS/TEMP] try later')).toMatchObject({
      code: 'POP3_SYS_TEMP',
      transient: true,
    });
    expect(await passReply('-ERR [SYS/PERM] account disabled')).toMatchObject({
      code: 'POP3_SYS_PERM',
      transient: false,
    });
    expect(await passReply('-ERR [AUTH] bad password')).toMatchObject({
      code: 'POP3_AUTH_FAILED',
      transient: false,
    });
    // Untagged: a credential failure unless the server promised AUTH-RESP-CODE.
    expect(await passReply('-ERR no', ['USER'])).toMatchObject({ code: 'POP3_AUTH_FAILED' });
    expect(await passReply('-ERR no', ['USER', 'AUTH-RESP-CODE'])).toMatchObject({
      code: 'POP3_COMMAND_FAILED',
      transient: true,
    });
  });

  it('exposes LOGIN-DELAY and EXPIRE from CAPA', async () => {
    const srv = await fake({ capa: ['USER', 'LOGIN-DELAY 900', 'EXPIRE 0', 'top', 'pipelining'] });
    const session = await open(srv);
    expect(session.capabilities).toMatchObject({
      loginDelaySeconds: 900,
      expire: 0,
      top: true,
      pipelining: true,
      advertised: true,
    });
  });

  it('classifies an -ERR greeting and sanitises server text', async () => {
    const temp = await fake({ greeting: '-ERR [SYS/TEMP] \u001b[31mgo away\u0007' });
    const err = await connect({ host: '127.0.0.1', port: temp.port, tls: 'none', timeouts: FAST }).catch(
      (e) => e,
    );
    expect(err).toMatchObject({ code: 'POP3_SYS_TEMP' });
    expect(err.response).toBe('-ERR [SYS/TEMP] go away?');
    const plain = await fake({ greeting: '-ERR busy' });
    expect(await codeOf(connect({ host: '127.0.0.1', port: plain.port, tls: 'none', timeouts: FAST }))).toBe(
      'POP3_CONNECT_FAILED',
    );
  });

  it('reports a refused TCP connection as POP3_CONNECT_FAILED', async () => {
    const srv = await fake();
    const port = srv.port;
    await srv.close();
    expect(await codeOf(connect({ host: '127.0.0.1', port, tls: 'none', timeouts: FAST }))).toBe(
      'POP3_CONNECT_FAILED',
    );
  });

  it('treats a double +OK greeting and an unsolicited line as protocol violations', async () => {
    const twice = await fake({ greeting: (c) => c.write('+OK hello\r\n+OK hello again\r\n') });
    expect(await codeOf(open(twice))).toBe('POP3_PROTOCOL');

    const { session } = await loggedIn({ handlers: { NOOP: (c) => c.write('+OK\r\n.\r\n') } });
    await session.noop();
    await until(() => session.state === 'CLOSED');
    const err = await session.stat().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'POP3_CONNECTION_CLOSED', cause: { code: 'POP3_PROTOCOL' } });

    // Unsolicited bytes while a reply is awaited are not taken as that reply.
    // (With pipelining an extra line would be indistinguishable from the next reply.)
    const { session: s2 } = await loggedIn(
      { handlers: { STAT: (c) => c.write('+OK 1 10\r\n+OK 2 20\r\n') } },
      { pipelining: false },
    );
    const [first, second] = await Promise.allSettled([s2.stat(), s2.noop()]);
    expect(first).toMatchObject({ status: 'fulfilled', value: { count: 1, size: 10 } });
    expect(second.status).toBe('rejected');
  });

  it('fails RETR of a deleted message with POP3_COMMAND_FAILED and keeps the session', async () => {
    const { session } = await loggedIn({
      messages: ['a\r\n'],
      handlers: { RETR: (c) => c.line('-ERR no such message') },
    });
    expect(await codeOf(session.retr(1))).toBe('POP3_COMMAND_FAILED');
    expect(await session.stat()).toEqual({ count: 1, size: 3 });
  });

  it('errors the stream when a message exceeds maxMessageBytes', async () => {
    const { session, srv } = await loggedIn(
      { messages: [Buffer.alloc(5000, 0x61)] },
      { limits: { maxMessageBytes: 1000 } },
    );
    const stream = await session.retr(1);
    expect(await codeOf(readAll(stream))).toBe('POP3_MESSAGE_TOO_LARGE');
    await until(() => srv.open() === 0);
  });
});

describe('timeouts and release of resources', () => {
  it('a server stalling mid-RETR hits the idle timeout; the stream errors and the socket is released', async () => {
    const before = tcpHandles();
    const { srv, session } = await loggedIn({
      messages: ['x'],
      handlers: {
        RETR: async (c) => {
          await c.write('+OK 100 octets\r\nSubject: half a message\r\n');
          await c.stall();
        },
      },
    });
    const stream = await session.retr(1);
    const started = Date.now();
    const err = await readAll(stream).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'POP3_TIMEOUT', command: 'RETR 1', details: { phase: 'idle' } });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(session.state).toBe('CLOSED');
    await until(() => srv.open() === 0 && tcpHandles() <= before);
  });

  it('a reply that never ends (slow drip) hits the session deadline', async () => {
    const { srv, session } = await loggedIn(
      {
        messages: ['x'],
        handlers: {
          RETR: async (c) => {
            await c.write('+OK\r\n');
            while (srv.open() > 0) {
              await c.write('drip ');
              await new Promise((r) => setTimeout(r, 20));
            }
          },
        },
      },
      { timeouts: { ...FAST, sessionMs: 800 } },
    );
    const err = await readAll(await session.retr(1)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'POP3_TIMEOUT', details: { phase: 'session' } });
    await until(() => srv.open() === 0);
  });

  it('times out a missing greeting', async () => {
    const srv = await fake({ greeting: (c) => c.stall() });
    const err = await open(srv, { timeouts: { ...FAST, greetingMs: 150 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'POP3_TIMEOUT', details: { phase: 'greeting' } });
    await until(() => srv.open() === 0);
  });

  it('caps a 100 KB greeting: fails after the limit, long before the server finishes', async () => {
    let written = 0;
    const srv = await fake({
      greeting: async (c) => {
        let closed = false;
        void c.stall().then(() => {
          closed = true;
        });
        await c.write('+OK ');
        for (let i = 0; i < 100 && !closed; i++) {
          await c.write('A'.repeat(1024));
          written++;
          await new Promise((r) => setTimeout(r, 2));
        }
        await c.write('\r\n');
      },
    });
    expect(await codeOf(open(srv))).toBe('POP3_LINE_TOO_LONG');
    await until(() => srv.open() === 0);
    expect(written).toBeLessThan(40);
  });

  it('a slow consumer is not the server going silent: no idle timeout while the socket is paused', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 0x62);
    const { session } = await loggedIn({ messages: [big] }, { timeouts: { ...FAST, idleMs: 150 } });
    const stream = await session.retr(1);
    await new Promise((r) => setTimeout(r, 600)); // 4x idleMs without reading
    expect((await readAll(stream)).length).toBe(big.length + 2); // the server appends CRLF
    expect(session.state).toBe('TRANSACTION');
  });

  it('a server closing mid-reply fails the stream with POP3_CONNECTION_CLOSED', async () => {
    const { session } = await loggedIn({
      messages: ['x'],
      handlers: {
        RETR: async (c) => {
          await c.write('+OK\r\npartial');
          c.destroy();
        },
      },
    });
    expect(await codeOf(readAll(await session.retr(1)))).toBe('POP3_CONNECTION_CLOSED');
  });

  it('an AbortSignal ends the session and releases the socket', async () => {
    const controller = new AbortController();
    const { srv, session } = await loggedIn(
      { messages: ['x'], handlers: { RETR: (c) => c.stall() } },
      { signal: controller.signal, timeouts: { ...FAST, idleMs: 10_000 } },
    );
    const pending = session.retr(1);
    setTimeout(() => controller.abort(), 20);
    expect(await pending.catch((e: unknown) => e)).toMatchObject({
      code: 'POP3_CONNECTION_CLOSED',
      details: { aborted: true },
    });
    await until(() => srv.open() === 0);
  });
});

describe('SASL', () => {
  const token = 'ya29.short-token';
  const longToken = `ya29.${'L'.repeat(400)}`;

  it('XOAUTH2 sends a short token inline', async () => {
    const srv = await fake({ token });
    const session = await open(srv);
    await session.login({ mechanism: 'xoauth2', user: 'user', accessToken: token });
    expect(session.authMechanism).toBe('XOAUTH2');
    const auth = srv.received.find((l) => l.startsWith('AUTH'));
    expect(auth).toBe(
      `AUTH XOAUTH2 ${Buffer.from(`user=user\x01auth=Bearer ${token}\x01\x01`).toString('base64')}`,
    );
  });

  it('XOAUTH2 uses the two-step form when the line would exceed 255 octets', async () => {
    const srv = await fake({ token: longToken });
    const session = await open(srv);
    await session.login({ mechanism: 'xoauth2', user: 'user', accessToken: longToken });
    const i = srv.received.indexOf('AUTH XOAUTH2');
    expect(i).toBeGreaterThan(-1);
    expect(Buffer.from(srv.received[i + 1] ?? '', 'base64').toString()).toBe(
      `user=user\x01auth=Bearer ${longToken}\x01\x01`,
    );
  });

  it('XOAUTH2 decodes the error challenge, answers it and fails with POP3_AUTH_FAILED', async () => {
    for (const accessToken of ['wrong', `wrong-${'x'.repeat(300)}`]) {
      const srv = await fake({ token });
      const session = await open(srv);
      const err = await session
        .login({ mechanism: 'xoauth2', user: 'user', accessToken })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'POP3_AUTH_FAILED',
        details: { challenge: { status: '401', schemes: 'bearer', scope: 'pop' } },
      });
      expect(srv.received.at(-1)).toBe(''); // the empty answer that lets the server finish
    }
  });

  it('OAUTHBEARER logs in, and answers an error challenge with %x01', async () => {
    const srv = await fake({ token: longToken });
    const session = await open(srv, { host: 'localhost' });
    await session.login({ mechanism: 'oauthbearer', user: 'user', accessToken: longToken });
    expect(session.authMechanism).toBe('OAUTHBEARER');
    const i = srv.received.indexOf('AUTH OAUTHBEARER');
    expect(Buffer.from(srv.received[i + 1] ?? '', 'base64').toString()).toBe(
      `n,a=user,\x01host=localhost\x01port=${srv.port}\x01auth=Bearer ${longToken}\x01\x01`,
    );

    const bad = await fake({ token });
    const s2 = await open(bad);
    const err = await s2
      .login({ mechanism: 'oauthbearer', user: 'user', accessToken: 'nope' })
      .catch((e) => e);
    expect(err).toMatchObject({ code: 'POP3_AUTH_FAILED', details: { challenge: { status: '401' } } });
    expect(bad.received.at(-1)).toBe('AQ==');
  });

  it('auto picks SASL PLAIN when advertised, USER/PASS otherwise; APOP only on request', async () => {
    const plain = await fake();
    await (await open(plain)).login({ mechanism: 'auto', user: 'user', password: 'secret' });
    expect(plain.received).toContain(`AUTH PLAIN ${Buffer.from('\0user\0secret').toString('base64')}`);

    const user = await fake({ capa: ['USER', 'UIDL'] });
    const s = await open(user);
    await s.login({ mechanism: 'auto', user: 'user', password: 'secret' });
    expect(s.authMechanism).toBe('USER');
    expect(user.received.filter((l) => CREDENTIAL_VERBS.test(l))).toEqual(['USER user', 'PASS secret']);

    const apop = await fake();
    const a = await open(apop);
    await a.login({ mechanism: 'apop', user: 'user', password: 'secret' });
    expect(a.authMechanism).toBe('APOP');
    const digest = createHash('md5').update('<1234.5678@fake.test>secret').digest('hex');
    expect(apop.received).toContain(`APOP user ${digest}`);

    const noStamp = await fake({ greeting: '+OK no timestamp here' });
    const n = await open(noStamp);
    expect(await codeOf(n.login({ mechanism: 'apop', user: 'user', password: 'secret' }))).toBe(
      'POP3_NOT_SUPPORTED',
    );
  });
});

describe('listings and message streams', () => {
  it('keeps duplicate and odd-character UIDLs exactly', async () => {
    const uidls = ['dup', 'dup', 'a b  c ', 'x/../y', '..', '.lead', `${'z'.repeat(300)}`, '%2F\xe4\xff'];
    const { session } = await loggedIn({ messages: uidls.map(() => 'm\r\n'), uidls });
    expect(await session.uidl()).toEqual(uidls.map((uidl, i) => ({ n: i + 1, uidl })));
  });

  it('handles an empty maildrop', async () => {
    const { session } = await loggedIn({ messages: [] });
    expect(await session.stat()).toEqual({ count: 0, size: 0 });
    expect(await session.list()).toEqual([]);
    expect(await session.uidl()).toEqual([]);
    expect(await collect(session.retrMany([]))).toEqual([]);
  });

  it('falls back when CAPA fails: USER/PASS, no pipelining, UIDL probed', async () => {
    const { session, srv } = await loggedIn({ capa: null, messages: ['a\r\n', 'b\r\n'] });
    expect(session.capabilities).toMatchObject({
      advertised: false,
      user: true,
      pipelining: false,
      uidl: false,
    });
    expect(session.authMechanism).toBe('USER');
    expect(await session.uidl()).toEqual([
      { n: 1, uidl: 'uid-1' },
      { n: 2, uidl: 'uid-2' },
    ]);
    expect(session.capabilities.uidl).toBe(true);
    await collect(session.retrMany([1, 2]));
    expect(srv.maxPipelined()).toBeLessThanOrEqual(1);

    const { session: s2 } = await loggedIn({ capa: null, handlers: { UIDL: (c) => c.line('-ERR what?') } });
    expect(await codeOf(s2.uidl())).toBe('POP3_NOT_SUPPORTED');
  });

  it('retrMany gives identical bytes pipelined and unpipelined', async () => {
    const messages = Array.from({ length: 40 }, (_, i) =>
      Buffer.concat([
        Buffer.from(`Subject: ${i}\r\n\r\n`),
        TRICKY,
        Buffer.alloc(i * 997, 0x2e),
        Buffer.from('\r\n'),
      ]),
    );
    const results: string[][] = [];
    for (const pipelining of [true, false]) {
      const { session, srv } = await loggedIn({ messages }, { pipelining, limits: { pipelineWindow: 8 } });
      const hashes = (await collect(session.retrMany(messages.map((_, i) => i + 1)))).map(sha);
      results.push(hashes);
      if (pipelining) expect(srv.maxPipelined()).toBeGreaterThan(1);
      else expect(srv.maxPipelined()).toBeLessThanOrEqual(1);
      expect(srv.received.filter((l) => l.startsWith('RETR'))).toEqual(
        messages.map((_, i) => `RETR ${i + 1}`),
      );
    }
    expect(results[0]).toEqual(messages.map(sha));
    expect(results[1]).toEqual(results[0]);
  });

  it('retrMany yields a failing stream for a refused message and goes on', async () => {
    const { session } = await loggedIn({
      messages: ['a\r\n', 'b\r\n', 'c\r\n'],
      handlers: {
        RETR: (c, line, args) => (args[0] === '2' ? c.line('-ERR gone') : c.defaults.RETR?.(c, line, args)),
      },
    });
    const out: Array<string | number> = [];
    for await (const stream of session.retrMany([1, 2, 3])) {
      try {
        out.push((await readAll(stream)).toString());
      } catch (err) {
        out.push(isPop3Error(err, 'POP3_COMMAND_FAILED') ? stream.messageNumber : 'other');
      }
    }
    expect(out).toEqual(['a\r\n', 2, 'c\r\n']);
  });

  it('retrMany stopped early drains what was requested and leaves the session usable', async () => {
    const messages = Array.from({ length: 20 }, (_, i) => `Subject: ${i}\r\n\r\n${'y'.repeat(5000)}\r\n`);
    const { session } = await loggedIn({ messages });
    for await (const stream of session.retrMany(messages.map((_, i) => i + 1))) {
      await readAll(stream);
      if (stream.messageNumber === 3) break;
    }
    expect(await session.stat()).toMatchObject({ count: 20 });
    const again = await session.retr(20);
    expect((await readAll(again)).toString()).toBe(messages[19]);
  });

  it('a consumer destroying a stream early drains the rest; the session goes on', async () => {
    const { session } = await loggedIn({ messages: [Buffer.alloc(2_000_000, 0x61), 'small\r\n'] });
    const big = await session.retr(1);
    big.destroy();
    expect((await readAll(await session.retr(2))).toString()).toBe('small\r\n');
  });
});

describe('secrets stay out of logs and errors', () => {
  it('never logs or throws the password, token or derived blobs', async () => {
    const password = 'pw-Secret-4711';
    const accessToken = `tok-Secret-${'9'.repeat(300)}`;
    const logger = createMemoryLogger('debug');
    const errors: unknown[] = [];
    const opts = { logger, transcript: true };
    const body = 'Subject: private\r\n\r\nconfidential-body-text\r\n';
    const script: FakePop3Script = {
      password,
      token: accessToken,
      handlers: {
        // A hostile server echoing the secret back must not get it into an error.
        PASS: (c, line) => c.line(`-ERR [AUTH] rejected ${line.slice(5)}`),
      },
    };
    const attempts: Array<(s: Pop3Session) => Promise<void>> = [
      (s) => s.login({ mechanism: 'user', user: 'user', password }),
      (s) => s.login({ mechanism: 'plain', user: 'user', password: `${password}-wrong` }),
      (s) => s.login({ mechanism: 'apop', user: 'user', password: `${password}-wrong` }),
      (s) => s.login({ mechanism: 'xoauth2', user: 'user', accessToken: `${accessToken}-wrong` }),
      (s) => s.login({ mechanism: 'oauthbearer', user: 'user', accessToken: `${accessToken}-wrong` }),
    ];
    for (const attempt of attempts) {
      const srv = await fake(script);
      const session = await open(srv, opts);
      await attempt(session).catch((e: unknown) => errors.push(e));
    }
    // Echoes in a garbage status line, and a long token echoed past the 256-character cap.
    const garbage = await fake({ handlers: { PASS: (c, line) => c.line(`GARBAGE ${line}`) } });
    await (await open(garbage, opts))
      .login({ mechanism: 'user', user: 'user', password })
      .catch((e: unknown) => errors.push(e));
    const echo = await fake({
      handlers: {
        AUTH: async (c) => {
          await c.line('+ ');
          const ir = await c.readLine();
          await c.line(`-ERR [AUTH] rejected ${Buffer.from(ir, 'base64').toString('latin1')} ${ir}`);
        },
      },
    });
    await (await open(echo, opts))
      .login({ mechanism: 'xoauth2', user: 'user', accessToken })
      .catch((e: unknown) => errors.push(e));
    // And successful logins, with the transcript on.
    const ok = await fake({ ...script, handlers: {} });
    await (await open(ok, opts)).login({ mechanism: 'plain', user: 'user', password });
    await (await open(ok, opts)).login({ mechanism: 'user', user: 'user', password });
    const last = await open(ok, opts);
    await last.login({ mechanism: 'xoauth2', user: 'user', accessToken });
    const withMail = await fake({ ...script, handlers: {}, messages: [body] });
    const reader = await open(withMail, opts);
    await reader.login({ mechanism: 'user', user: 'user', password });
    expect((await readAll(await reader.retr(1))).toString()).toBe(body);
    expect((await readAll(await reader.top(1, 5))).toString()).toBe(body);

    expect(errors.map((e) => (e as { code: string }).code)).toEqual([
      ...Array(5).fill('POP3_AUTH_FAILED'),
      'POP3_PROTOCOL',
      'POP3_AUTH_FAILED',
    ]);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const secrets = [
      password,
      accessToken.slice(0, 40),
      b64(`\0user\0${password}`),
      b64(`user=user\x01auth=Bearer ${accessToken}`).slice(0, 40),
      createHash('md5').update(`<1234.5678@fake.test>${password}-wrong`).digest('hex'),
    ];
    const haystacks = [
      ...logger.lines,
      ...errors.map((e) => JSON.stringify(serializeError(e))),
      ...errors.map((e) => inspect(e, { depth: 10 })),
      ...errors.map((e) => String((e as Error).stack)),
    ];
    expect(logger.lines.some((l) => l.includes('PASS ***'))).toBe(true);
    expect(logger.lines.some((l) => l.includes('RETR 1'))).toBe(true);
    expect(logger.lines.some((l) => l.includes('confidential-body-text'))).toBe(false);
    for (const secret of secrets) {
      for (const text of haystacks)
        expect(text.includes(secret), `${secret} leaked into ${text.slice(0, 200)}`).toBe(false);
    }
  });
});

async function collect(iter: AsyncIterable<Readable>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const stream of iter) out.push(await readAll(stream));
  return out;
}

/**
 * The POP3 client against a real Dovecot 2.3 (test/fixtures/dovecot.ts), exhaustively: every login
 * mechanism, both TLS modes, every command, byte-exact RETR from 0 bytes to 50 MB, deletion
 * semantics, pipelining, OAuth (inline and two-step, seen on the wire) and plaintext refusal.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type AddressInfo, createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../../shared/pop3/client.js';
import { isPop3Error } from '../../../shared/pop3/errors.js';
import type { Pop3ConnectOptions, Pop3Credentials, Pop3Session } from '../../../shared/pop3/types.js';
import { type Dovecot, dovecotAvailable, requireDovecot, startDovecot } from '../../fixtures/dovecot.js';
import { crlfSize } from '../../fixtures/maildir.js';
import { makeMessage } from '../../fixtures/messages.js';

// Under CI=true a missing Dovecot fails this file; elsewhere the suites below do not run (with a warning).
requireDovecot();

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function streamSha(s: AsyncIterable<unknown>): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of s) {
    const b = chunk as Buffer;
    h.update(b);
    bytes += b.length;
  }
  return { sha256: h.digest('hex'), bytes };
}

/**
 * What RETR must yield for a Maildir file: Dovecot sends bare LFs as CRLF and ends a message that
 * lacks a final line break with CRLF before the terminator, so the client cannot tell it apart
 * (RFC 1939 §3). That includes a 0-byte file: Dovecot sends `+OK 0 octets`, an empty line, then ".".
 */
function onTheWire(file: Buffer): Buffer {
  const crlf = Buffer.from(file.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
  return crlf.subarray(-2).toString() === '\r\n' ? crlf : Buffer.concat([crlf, Buffer.from('\r\n')]);
}

function tlsOpts(d: Dovecot, extra: Partial<Pop3ConnectOptions> = {}): Pop3ConnectOptions {
  return { host: d.host, port: d.tlsPort, tls: 'implicit', servername: 'localhost', ca: d.caPem, ...extra };
}

function plainOpts(d: Dovecot, extra: Partial<Pop3ConnectOptions> = {}): Pop3ConnectOptions {
  return { host: d.host, port: d.port, tls: 'none', allowInsecureAuth: true, ...extra };
}

async function withSession<T>(
  opts: Pop3ConnectOptions,
  creds: Pop3Credentials,
  fn: (s: Pop3Session) => Promise<T>,
): Promise<T> {
  const s = await connect(opts);
  try {
    await s.login(creds);
    const out = await fn(s);
    await s.quit();
    return out;
  } finally {
    s.close();
  }
}

async function expectPop3Error(p: Promise<unknown>, code: string): Promise<unknown> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeDefined();
  expect(isPop3Error(err) ? err.code : err).toBe(code);
  return err;
}

/** A TCP relay that records what the client sends (to see inline vs two-step SASL on the wire). */
async function recordingProxy(
  target: number,
): Promise<{ port: number; sent: () => string; close(): Promise<void> }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = netConnect({ host: '127.0.0.1', port: target });
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => chunks.push(d));
    client.pipe(upstream).pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    sent: () => Buffer.concat(chunks).toString('latin1'),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe.runIf(dovecotAvailable())('POP3 client vs Dovecot: mailbox', () => {
  let d: Dovecot;
  let files: Buffer[];
  const user = (): Pop3Credentials => ({ mechanism: 'user', user: d.user, password: d.password });

  beforeAll(async () => {
    d = await startDovecot({
      messages: [
        Buffer.alloc(0),
        'x',
        makeMessage({ index: 1, size: 1000 }),
        makeMessage({ index: 2, size: 20_000 }),
        'Subject: LF only in the Maildir\n\n.starts with a dot\n.\nend\n',
        makeMessage({ index: 3, size: 300_000, attachments: 3 }),
        makeMessage({ index: 4, size: 5 * 1024 * 1024 }),
      ],
    });
    files = (await d.listMessages()).map((m) => m.bytes);
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('logs in with USER/PASS, SASL PLAIN, auto (= PLAIN) and APOP over implicit TLS', async () => {
    const cases: [Pop3Credentials['mechanism'], string][] = [
      ['user', 'USER'],
      ['plain', 'PLAIN'],
      ['auto', 'PLAIN'],
      ['apop', 'APOP'],
    ];
    for (const [mechanism, used] of cases) {
      const creds = { mechanism, user: d.user, password: d.password } as Pop3Credentials;
      const count = await withSession(tlsOpts(d), creds, async (s) => {
        expect(s.state).toBe('TRANSACTION');
        expect(s.authMechanism).toBe(used);
        return (await s.stat()).count;
      });
      expect(count).toBe(files.length);
    }
  });

  it('logs in on the plain port only when insecure auth is explicitly allowed', async () => {
    const s = await connect({ host: d.host, port: d.port, tls: 'none' });
    try {
      await expectPop3Error(s.login(user()), 'POP3_INSECURE_AUTH_REFUSED');
    } finally {
      s.close();
    }
    expect(await withSession(plainOpts(d), user(), async (s) => (await s.stat()).count)).toBe(files.length);
  });

  it('a wrong password is POP3_AUTH_FAILED', async () => {
    const s = await connect(tlsOpts(d, { localAddress: '127.0.0.6' }));
    try {
      await expectPop3Error(
        s.login({ mechanism: 'user', user: d.user, password: 'wrong' }),
        'POP3_AUTH_FAILED',
      );
    } finally {
      s.close();
    }
  });

  it('verifies the certificate on implicit TLS and after STLS', async () => {
    await withSession(tlsOpts(d), user(), async (s) => {
      expect(s.tls?.authorized).toBe(true);
      expect(s.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
    });
    await withSession(
      { host: d.host, port: d.port, tls: 'starttls', servername: 'localhost', ca: d.caPem },
      user(),
      async (s) => {
        expect(s.tls?.authorized).toBe(true);
        expect(s.capabilities.stls).toBe(false); // CAPA re-read after the upgrade
        expect(s.capabilities.pipelining).toBe(true);
      },
    );
    // Without the test CA the self-signed certificate is rejected, on both ports.
    await expectPop3Error(
      connect({ host: d.host, port: d.tlsPort, tls: 'implicit', servername: 'localhost' }),
      'POP3_TLS',
    );
    await expectPop3Error(
      connect({ host: d.host, port: d.port, tls: 'starttls', servername: 'localhost' }),
      'POP3_TLS',
    );
  });

  it('STAT, LIST and UIDL agree with the Maildir; UIDLs are stable across sessions', async () => {
    const first = await withSession(tlsOpts(d), user(), async (s) => {
      const st = await s.stat();
      expect(st.count).toBe(files.length);
      // Dovecot reports virtual sizes: the file with bare LFs counted as CRLF.
      expect(st.size).toBe(files.reduce((n, f) => n + crlfSize(f), 0));
      const list = await s.list();
      expect(list.map((e) => e.n)).toEqual(files.map((_, i) => i + 1));
      expect(list.map((e) => e.size)).toEqual(files.map((f) => crlfSize(f)));
      const uidl = await s.uidl();
      expect(new Set(uidl.map((u) => u.uidl)).size).toBe(files.length);
      return uidl;
    });
    const second = await withSession(tlsOpts(d), user(), (s) => s.uidl());
    expect(second).toEqual(first);
  });

  it('TOP returns the header block plus the requested body lines, unstuffed', async () => {
    const f = files[2] as Buffer;
    const headerEnd = f.indexOf('\r\n\r\n') + 4;
    const bodyLines = f.subarray(headerEnd).toString('latin1').split('\r\n');
    await withSession(tlsOpts(d), user(), async (s) => {
      expect((await streamSha(await s.top(3, 0))).sha256).toBe(sha(f.subarray(0, headerEnd)));
      // Body lines 1-4 include ".Leading dot" and "." itself.
      const want = Buffer.concat([
        f.subarray(0, headerEnd),
        Buffer.from(`${bodyLines.slice(0, 4).join('\r\n')}\r\n`),
      ]);
      expect((await streamSha(await s.top(3, 4))).sha256).toBe(sha(want));
    });
  });

  it('RETR returns every message byte-exact (0 B to 5 MB, LF and CRLF files, dot lines)', async () => {
    await withSession(tlsOpts(d), user(), async (s) => {
      for (const [i, f] of files.entries()) {
        const stream = await s.retr(i + 1);
        expect(stream.messageNumber).toBe(i + 1);
        const want = onTheWire(f);
        expect({ n: i + 1, ...(await streamSha(stream)) }).toEqual({
          n: i + 1,
          sha256: sha(want),
          bytes: want.length,
        });
      }
    });
  });

  it('pipelined and unpipelined retrMany give identical results', async () => {
    const run = (pipelining: boolean, tls: boolean) =>
      withSession(tls ? tlsOpts(d, { pipelining }) : plainOpts(d, { pipelining }), user(), async (s) => {
        const out: string[] = [];
        for await (const stream of s.retrMany(files.map((_, i) => i + 1))) {
          out.push(`${stream.messageNumber}:${(await streamSha(stream)).sha256}`);
        }
        return out;
      });
    const want = files.map((f, i) => `${i + 1}:${sha(onTheWire(f))}`);
    expect(await run(true, false)).toEqual(want);
    expect(await run(false, false)).toEqual(want);
    expect(await run(true, true)).toEqual(want);
  });
});

describe.runIf(dovecotAvailable())('POP3 client vs Dovecot: 50 MB and deletion', () => {
  let d: Dovecot;
  beforeAll(async () => {
    d = await startDovecot({ messages: [1, 2, 3].map((index) => makeMessage({ index, size: 2000 })) });
  });
  afterAll(async () => {
    await d?.stop();
  });
  const creds = (): Pop3Credentials => ({ mechanism: 'user', user: d.user, password: d.password });

  it('DELE then close() (no QUIT) deletes nothing; DELE then QUIT removes the message', async () => {
    const before = await d.listMessages();
    const s = await connect(tlsOpts(d));
    await s.login(creds());
    await s.dele(1);
    s.close();
    // Give the server time to notice the dropped session: it must not expunge anything.
    await new Promise((r) => setTimeout(r, 200));
    expect((await d.listMessages()).map((m) => sha(m.bytes))).toEqual(before.map((m) => sha(m.bytes)));
    await withSession(tlsOpts(d), creds(), async (t) => {
      expect((await t.stat()).count).toBe(before.length);
      await t.dele(1);
    });
    const after = await d.listMessages();
    expect(after.map((m) => sha(m.bytes))).toEqual(before.slice(1).map((m) => sha(m.bytes)));
  });

  it('streams a 50 MB message byte-exact over implicit TLS', async () => {
    const big = await d.addLargeMessage(50 * 1024 * 1024, 50);
    expect((await streamSha(createReadStream(big.path))).sha256).toBe(big.sha256);
    await withSession(tlsOpts(d), creds(), async (s) => {
      const n = (await s.stat()).count;
      expect((await s.list()).at(-1)?.size).toBe(big.size);
      expect(await streamSha(await s.retr(n))).toEqual({ sha256: big.sha256, bytes: big.size });
    });
  }, 60_000);
});

describe.runIf(dovecotAvailable())('POP3 client vs Dovecot: OAuth', () => {
  // Long enough that `AUTH XOAUTH2 <base64>` exceeds RFC 2449's 255-octet command line: two-step.
  const longToken = `ya29.${'a1B2c3D4'.repeat(40)}`;
  const tokens: Record<string, string> = { 'short-token': 'testuser', [longToken]: 'testuser' };
  let d: Dovecot;
  beforeAll(async () => {
    d = await startDovecot({ oauth: { tokens } });
  });
  afterAll(async () => {
    await d?.stop();
  });

  for (const mechanism of ['xoauth2', 'oauthbearer'] as const) {
    it(`${mechanism}: inline initial response for a short token, two-step for a long one`, async () => {
      const name = mechanism.toUpperCase();
      for (const [token, twoStep] of [
        ['short-token', false],
        [longToken, true],
      ] as const) {
        const proxy = await recordingProxy(d.port);
        try {
          await withSession(
            { host: d.host, port: proxy.port, tls: 'none', allowInsecureAuth: true },
            { mechanism, user: d.user, accessToken: token },
            async (s) => {
              expect(s.authMechanism).toBe(name);
              expect((await s.stat()).count).toBe(0);
            },
          );
          const authLine =
            proxy
              .sent()
              .split('\r\n')
              .find((l) => l.startsWith('AUTH ')) ?? '';
          if (twoStep) expect(authLine).toBe(`AUTH ${name}`);
          else expect(authLine).toMatch(new RegExp(`^AUTH ${name} [A-Za-z0-9+/=]+$`));
          expect(authLine.length).toBeLessThanOrEqual(255);
        } finally {
          await proxy.close();
        }
      }
      // And over implicit TLS, the way it runs in production.
      await withSession(tlsOpts(d), { mechanism, user: d.user, accessToken: longToken }, async (s) => {
        expect(s.authMechanism).toBe(name);
      });
    });
  }

  it('a revoked token fails with POP3_AUTH_FAILED carrying the decoded challenge', async () => {
    tokens['revoked-token'] = 'testuser';
    const creds: Pop3Credentials = { mechanism: 'xoauth2', user: d.user, accessToken: 'revoked-token' };
    await withSession(tlsOpts(d), creds, async () => {});
    delete tokens['revoked-token'];
    const s = await connect(tlsOpts(d, { localAddress: '127.0.0.7' }));
    try {
      const err = await expectPop3Error(s.login(creds), 'POP3_AUTH_FAILED');
      const details = isPop3Error(err) ? err.details : undefined;
      expect(details?.challenge).toMatchObject({ status: '401' });
      expect(JSON.stringify(details)).not.toMatch(/revoked-token/);
    } finally {
      s.close();
    }
  });
});

describe.runIf(dovecotAvailable())('POP3 client vs Dovecot: ssl = required', () => {
  let d: Dovecot;
  beforeAll(async () => {
    d = await startDovecot({ ssl: 'required', messages: ['Subject: hi\r\n\r\nbody\r\n'] });
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('plaintext login is refused from 127.0.0.2 unless STLS upgrades the connection', async () => {
    // Dovecot counts 127.0.0.1 -> 127.0.0.1 as secure; only another source address sees the refusal.
    const s = await connect(plainOpts(d, { localAddress: '127.0.0.2' }));
    try {
      const err = await s.login({ mechanism: 'user', user: d.user, password: d.password }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPop3Error(err) ? err.code : err).toMatch(/^POP3_(AUTH_FAILED|INSECURE_AUTH_REFUSED)$/);
    } finally {
      s.close();
    }
    const count = await withSession(
      {
        host: d.host,
        port: d.port,
        tls: 'starttls',
        servername: 'localhost',
        ca: d.caPem,
        localAddress: '127.0.0.5',
      },
      { mechanism: 'user', user: d.user, password: d.password },
      async (t) => (await t.stat()).count,
    );
    expect(count).toBe(1);
  });
});

/**
 * Hostile POP3 servers, modelled on the EAST test cases ("Why TLS is better without STARTTLS",
 * USENIX Security 2021: Buffering B_1/B_2, Negotiation O_1-O_4, certificate T_1-T_4, `others/`) plus
 * the lying and broken servers of research §8 A. Each runs through the real `pollLocal` with the
 * local runtime (lease, state, archive, queue), and each asserts:
 *   - no credential leaves the client before TLS where TLS was required (fake server's received lines);
 *   - the password (and its SASL PLAIN form) is nowhere: logs (unscrubbed, POP3 transcript on), the
 *     poll result, and every file the run wrote;
 *   - no crash: pollLocal resolves, with a typed, stable error code;
 *   - bounded time, and where the server floods, bounded heap.
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { testCerts } from '../fixtures/certs.js';
import { dotStuff, type FakePop3Script } from '../fixtures/fake-pop3.js';
import { makeMessage } from '../fixtures/messages.js';
import { CREDENTIAL_VERBS, type HostileOptions, type HostileRun, pollFake } from './helpers.js';

const runs: HostileRun[] = [];
afterEach(async () => {
  await Promise.all(runs.splice(0).map((r) => r.close()));
});

async function poll(script: FakePop3Script, o: HostileOptions = {}): Promise<HostileRun> {
  const run = await pollFake(script, o);
  runs.push(run);
  return run;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MSGS = [1, 2, 3].map((index) => makeMessage({ index, size: 2000 + index * 100 }));
/** Every hostile case must settle in well under this (timeouts are ~1 s). */
const TIME_BOUND_MS = 5000;
/** Far below the 10 MB the flooding servers send: the body is streamed, never held. */
const HEAP_BOUND_BYTES = 48 * 1024 * 1024;

type LoggedError = { code?: string; transient?: boolean; cause?: LoggedError };

/** The innermost pophook `code` (not Node's) in the cause chain of the logged 'Poll failed' error. */
function rootCode(run: HostileRun): string | undefined {
  const line = run.logger.lines.find((l) => l.includes('"Poll failed"'));
  let err = line ? (JSON.parse(line) as { err?: LoggedError }).err : undefined;
  let code: string | undefined;
  // Only our errors carry `transient`; below them are Node's (TLS, socket) errors.
  while (err && err.transient !== undefined) {
    code = err.code ?? code;
    err = err.cause;
  }
  return code;
}

/**
 * The common post-conditions: a typed error (or ok), no leak, bounded time, lease released. `root` is
 * the code at the bottom of the cause chain (any of them when several are acceptable); the surfaced
 * code is the root itself or one of `via`, the wrappers a failure can come through (a closed session,
 * the archive write that was consuming the stream).
 */
async function expectContained(run: HostileRun, root: string | string[], via: string[] = []) {
  const roots = Array.isArray(root) ? root : [root];
  if (root === 'ok') {
    expect(run.result.error).toBeUndefined();
    expect(run.result.outcome).toBe('ok');
  } else {
    expect([...roots, ...via]).toContain(run.result.error?.code);
    expect(run.result.error?.message.length).toBeGreaterThan(20);
    expect(roots).toContain(rootCode(run));
  }
  expect(await run.leaks()).toEqual([]);
  expect(run.ms).toBeLessThan(TIME_BOUND_MS);
  expect(await run.runtime.archive.pendingTempFiles()).toEqual([]);
  // The lease was released: the next poll is not refused as 'lease-held'.
  const lease = await run.runtime.state.acquireLease('hostile', 'probe', 1000);
  expect(lease).toBeDefined();
  if (lease) await run.runtime.state.releaseLease(lease);
}

/** How a stream failure may surface: through the closed session or the archive write consuming it. */
const WRAPPERS = ['POP3_CONNECTION_CLOSED', 'ARCHIVE_WRITE_FAILED'];

/** Raw archived messages (path and bytes). */
async function rawObjects(run: HostileRun) {
  return (await run.tree()).filter((f) => f.path.startsWith('archive/raw/') && f.path.endsWith('.eml'));
}

describe('EAST STLS cases (tls: starttls)', () => {
  const certs = testCerts();
  const starttls = { mode: 'starttls' as const, cert: certs.valid.cert, key: certs.valid.key };
  const opts: HostileOptions = { tls: 'starttls', ca: certs.ca };
  const noCredentials = (run: HostileRun) =>
    expect(run.srv.received.filter((l) => CREDENTIAL_VERBS.test(l))).toEqual([]);

  const injections: Array<[string, string | Buffer]> = [
    [
      'B_1: fake post-TLS CAPA in the STLS reply',
      '+OK Begin fake TLS negotiation now.\r\n+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n',
    ],
    [
      'B_2: binary junk after +OK',
      Buffer.concat([Buffer.from('+OK go\r\n'), Buffer.from([0x16, 3, 1, 0, 0xff])]),
    ],
  ];
  for (const [name, reply] of injections) {
    it(`${name} -> POP3_STLS_INJECTION, nothing sent after STLS`, async () => {
      const run = await poll(
        {
          tls: starttls,
          messages: MSGS,
          handlers: {
            STLS: async (c) => {
              await c.write(reply);
              await c.startTls().catch(() => {});
            },
          },
        },
        opts,
      );
      await expectContained(run, 'POP3_STLS_INJECTION');
      expect(run.srv.received).toEqual(['CAPA', 'STLS']);
      expect(run.result.error?.transient).toBe(false);
    });
  }

  it('O_1: STLS not advertised -> POP3_STLS_UNAVAILABLE, no plaintext fallback', async () => {
    const run = await poll({ tls: starttls, capa: ['USER', 'UIDL', 'SASL PLAIN'], messages: MSGS }, opts);
    await expectContained(run, 'POP3_STLS_UNAVAILABLE');
    noCredentials(run);
  });

  it('O_2: STLS advertised but refused -> POP3_STLS_UNAVAILABLE', async () => {
    const run = await poll(
      { tls: starttls, messages: MSGS, handlers: { STLS: (c) => c.line('-ERR STARTTLS not supported') } },
      opts,
    );
    await expectContained(run, 'POP3_STLS_UNAVAILABLE');
    noCredentials(run);
  });

  it('O_3: CAPA hidden -> POP3_STLS_UNAVAILABLE', async () => {
    const run = await poll({ tls: starttls, capa: null, messages: MSGS }, opts);
    await expectContained(run, 'POP3_STLS_UNAVAILABLE');
    noCredentials(run);
  });

  it('O_4: APOP timestamp + STLS, post-TLS CAPA drops STLS -> works over TLS, APOP never used', async () => {
    const run = await poll(
      {
        tls: starttls,
        greeting: '+OK ready <4711.1700000000@evil.test>',
        messages: MSGS,
        handlers: {
          CAPA: (c) =>
            c.session.secure
              ? c.multi('+OK', 'USER\r\nUIDL\r\nSASL PLAIN\r\n')
              : c.multi('+OK', 'STLS\r\nUSER\r\nUIDL\r\nSASL PLAIN\r\n'),
        },
      },
      opts,
    );
    await expectContained(run, 'ok');
    expect(run.result.fetched).toBe(3);
    expect(run.srv.received.slice(0, 3)).toEqual(['CAPA', 'STLS', 'CAPA']);
    expect(run.srv.received.some((l) => /^APOP/i.test(l))).toBe(false);
  });

  it('a server that pretends to be TLS-less after STLS +OK (stalls the handshake) -> POP3_TIMEOUT', async () => {
    const run = await poll(
      { tls: starttls, messages: MSGS, handlers: { STLS: (c) => c.line('+OK go').then(() => c.stall()) } },
      opts,
    );
    await expectContained(run, 'POP3_TIMEOUT');
    noCredentials(run);
  });
});

describe('EAST certificate cases (implicit TLS)', () => {
  const certs = testCerts();
  const cases: Array<[string, () => { pair: typeof certs.valid; ca?: string; host?: string }]> = [
    ['T_1 self-signed', () => ({ pair: certs.selfSigned, ca: certs.ca })],
    ['T_2 unknown root', () => ({ pair: certs.valid })],
    ['T_3 wrong host', () => ({ pair: certs.wrongHost, ca: certs.ca, host: 'localhost' })],
    ['T_4 expired', () => ({ pair: certs.expired, ca: certs.ca })],
  ];
  for (const [name, setup] of cases) {
    it(`${name} -> POP3_TLS, not one command sent`, async () => {
      const { pair, ca, host } = setup();
      const run = await poll(
        { tls: { mode: 'implicit', cert: pair.cert, key: pair.key }, messages: MSGS },
        { tls: 'implicit', ...(ca ? { ca } : {}), ...(host ? { host } : {}) },
      );
      await expectContained(run, 'POP3_TLS');
      expect(run.srv.received).toEqual([]);
      expect(run.result.error?.transient).toBe(false);
    });
  }
});

describe('EAST others: greetings and unsolicited data', () => {
  it('a greeting with ANSI escapes and control characters is sanitised in every log line', async () => {
    const run = await poll({
      greeting: '+OK \x1b[2J\x1b[31mPWNED\x1b[0m\x07\x08 ready <1.2@x>',
      messages: MSGS,
    });
    await expectContained(run, 'ok');
    expect(run.result.fetched).toBe(3);
    for (const line of run.logger.lines) expect(line).not.toMatch(/\\u001b|\x1b|\\u0007/);
  });

  it('a 100 KB greeting line fails fast with POP3_LINE_TOO_LONG', async () => {
    const run = await poll({ greeting: `+OK ${'A'.repeat(100_000)}` });
    await expectContained(run, 'POP3_LINE_TOO_LONG');
    expect(run.srv.received).toEqual([]);
  });

  it('a 100 KB line inside a message is archived byte-exact', async () => {
    const long = Buffer.concat([
      Buffer.from('Subject: long line\r\n\r\n'),
      Buffer.alloc(100_000, 0x61),
      Buffer.from('\r\n.\r\n..\r\nend\r\n'),
    ]);
    const run = await poll({ messages: [long] });
    await expectContained(run, 'ok');
    const raws = await rawObjects(run);
    expect(raws.map((r) => sha(r.bytes))).toEqual([sha(long)]);
  });

  it('unsolicited lines after the greeting are a protocol violation (POP3_PROTOCOL), no login', async () => {
    const run = await poll({
      greeting: async (c) => {
        await c.line('+OK ready');
        await c.line('+OK I am also ready');
        await c.line('-ERR just kidding');
      },
      messages: MSGS,
    });
    await expectContained(run, 'POP3_PROTOCOL');
    expect(run.srv.received.filter((l) => CREDENTIAL_VERBS.test(l))).toEqual([]);
  });

  it('a double +OK to DELE (FTGate) is a protocol error; nothing is expunged without QUIT', async () => {
    const run = await poll({
      messages: MSGS,
      handlers: { DELE: (c, _l, args) => c.write(`+OK deleted ${args[0]}\r\n+OK deleted again\r\n`) },
    });
    // The desync is found between commands, so the next command may report the closed session.
    await expectContained(run, 'POP3_PROTOCOL', WRAPPERS);
    expect(run.result.error?.message).toMatch(/nobody asked for/);
    expect(run.srv.expunged).toEqual([]);
    // The mail is safe: archived once each, and still on the server for the next poll.
    expect((await rawObjects(run)).map((r) => sha(r.bytes)).sort()).toEqual(MSGS.map(sha).sort());
  });

  it('an extra ".CRLF" after a listing desyncs nothing silently (POP3_PROTOCOL)', async () => {
    const run = await poll({
      messages: MSGS,
      handlers: { LIST: (c) => c.write('+OK\r\n1 2100\r\n2 2200\r\n3 2300\r\n.\r\n.\r\n') },
    });
    await expectContained(run, 'POP3_PROTOCOL', WRAPPERS);
    expect(run.result.fetched).toBe(0);
    expect(run.srv.expunged).toEqual([]);
  });
});

describe('replies that never end, end early, or lie', () => {
  it('a listing that drips forever hits the session deadline (POP3_TIMEOUT)', async () => {
    const run = await poll(
      {
        messages: MSGS,
        handlers: {
          LIST: async (c) => {
            let closed = false;
            void c.stall().then(() => {
              closed = true;
            });
            await c.write('+OK\r\n');
            for (let i = 1; !closed && i < 1000; i++) {
              await c.write(`${i} 100\r\n`);
              await new Promise((r) => setTimeout(r, 50));
            }
          },
        },
      },
      { timeouts: { sessionMs: 1500 } },
    );
    await expectContained(run, 'POP3_TIMEOUT');
  });

  it('a RETR that stalls mid-message hits the idle timeout; no partial object, nothing deleted', async () => {
    const run = await poll({
      messages: MSGS,
      handlers: {
        RETR: async (c, _l, args) => {
          if (args[0] !== '2') return c.defaults.RETR?.(c, _l, args);
          await c.write(
            Buffer.concat([Buffer.from('+OK\r\n'), dotStuff((MSGS[1] as Buffer).subarray(0, 700))]),
          );
          await c.stall();
        },
      },
    });
    await expectContained(run, 'POP3_TIMEOUT', WRAPPERS);
    expect(run.srv.expunged).toEqual([]);
    const raws = await rawObjects(run);
    expect(raws.map((r) => sha(r.bytes))).toEqual([sha(MSGS[0] as Buffer)]);
  });

  it('connection closed mid-listing -> POP3_CONNECTION_CLOSED, nothing fetched', async () => {
    const run = await poll({
      messages: MSGS,
      handlers: {
        UIDL: async (c) => {
          await c.write('+OK\r\n1 uid-1\r\n2 ui');
          c.destroy();
        },
      },
    });
    await expectContained(run, 'POP3_CONNECTION_CLOSED');
    expect(run.result.fetched).toBe(0);
    expect(await rawObjects(run)).toEqual([]);
  });

  it('connection closed mid-RETR -> POP3_CONNECTION_CLOSED; earlier messages archived once, none deleted', async () => {
    const run = await poll({
      messages: MSGS,
      capa: ['USER', 'UIDL'], // no PIPELINING: one RETR at a time, so message 1 is complete first
      handlers: {
        RETR: async (c, _l, args) => {
          if (args[0] !== '2') return c.defaults.RETR?.(c, _l, args);
          await c.write(
            Buffer.concat([Buffer.from('+OK\r\n'), dotStuff((MSGS[1] as Buffer).subarray(0, 900))]),
          );
          c.destroy();
        },
      },
    });
    await expectContained(run, 'POP3_CONNECTION_CLOSED', WRAPPERS);
    expect(run.srv.expunged).toEqual([]);
    expect((await rawObjects(run)).map((r) => sha(r.bytes))).toEqual([sha(MSGS[0] as Buffer)]);
  });

  it('LIST says 100 octets, RETR sends 10 MB: the per-message limit stops it, memory stays flat', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x42);
    const tenMb = {
      size: 100,
      *generate() {
        yield Buffer.from('Subject: liar\r\n\r\n');
        for (let sent = 0; sent < 10 * 1024 * 1024; sent += chunk.length) yield chunk;
        yield Buffer.from('\r\n');
      },
    };
    const run = await poll({ messages: [tenMb] }, { maxMessageBytes: 2 * 1024 * 1024 });
    // Stopped either by the per-message byte limit or, earlier, as a lie about the LIST size.
    await expectContained(run, ['POP3_MESSAGE_TOO_LARGE', 'POP3_PROTOCOL'], WRAPPERS);
    expect(await rawObjects(run)).toEqual([]);
    expect(run.srv.expunged).toEqual([]);
    expect(run.peakHeapBytes).toBeLessThan(HEAP_BOUND_BYTES);
  });

  it('a RETR that never ends (endless data, no terminator) is cut at the limit', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x43);
    const run = await poll(
      {
        messages: [Buffer.alloc(5000, 0x43)],
        handlers: {
          RETR: async (c) => {
            let closed = false;
            void c.stall().then(() => {
              closed = true;
            });
            await c.write('+OK\r\nSubject: endless\r\n\r\n');
            while (!closed) {
              await c.write(chunk);
              await new Promise((r) => setImmediate(r));
            }
          },
        },
      },
      { maxMessageBytes: 2 * 1024 * 1024 },
    );
    await expectContained(run, ['POP3_MESSAGE_TOO_LARGE', 'POP3_PROTOCOL'], WRAPPERS);
    expect(await rawObjects(run)).toEqual([]);
    expect(run.peakHeapBytes).toBeLessThan(HEAP_BOUND_BYTES);
  });
});

describe('hostile UIDLs', () => {
  it('UIDLs with spaces, slashes, ".." and 300 characters are archived under hashed keys only', async () => {
    const uidls = ['has spaces in it', '../../../../etc/passwd', '..', `L${'x'.repeat(299)}`];
    const messages = uidls.map((_, i) => makeMessage({ index: 40 + i, size: 1500 }));
    const run = await poll({ messages, uidls });
    await expectContained(run, 'ok');
    expect(run.result.fetched).toBe(4);
    const files = await run.tree();
    const raws = files.filter((f) => f.path.startsWith('archive/raw/') && f.path.endsWith('.eml'));
    expect(raws.map((r) => sha(r.bytes)).sort()).toEqual(messages.map(sha).sort());
    for (const r of raws)
      expect(r.path).toMatch(/^archive\/raw\/hostile\/\d{4}\/\d{2}\/\d{2}\/[0-9a-f]{32}\.eml$/);
    for (const f of files) {
      const segments = f.path.split('/');
      expect(segments).not.toContain('..');
      expect(f.path).not.toMatch(/passwd|has spaces|xxxxxxxxxx/);
    }
    // Deleted only after archiving, and every one of them.
    expect(run.srv.expunged.sort()).toEqual([1, 2, 3, 4]);
  });
});

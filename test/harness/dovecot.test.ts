import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Dovecot, dovecotAvailable, requireDovecot, startDovecot } from '../fixtures/dovecot.js';
import { crlfSize } from '../fixtures/maildir.js';
import { makeMessage, writeLargeMessage } from '../fixtures/messages.js';

// Under CI=true this throws (the file fails); elsewhere it warns and the Dovecot suites below do not run.
requireDovecot();

// A hung server should fail the test with a clear message, well before vitest's 30 s test timeout.
const LINE_TIMEOUT_MS = 10_000;

/** A deliberately dumb POP3 line reader over a raw socket: the fixture is tested without our client. */
class Raw {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private ended: Error | undefined;
  greeting = '';

  private constructor(public sock: Socket | TLSSocket) {
    this.attach(sock);
  }

  private attach(sock: Socket | TLSSocket): void {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    sock.on('error', (e) => {
      this.ended = e;
      this.waiter?.();
    });
    sock.on('close', () => {
      this.ended ??= new Error('connection closed');
      this.waiter?.();
    });
  }

  /** `tls`: implicit TLS, verified against `ca` (or the system roots when `ca` is undefined). */
  static async open(
    port: number,
    o: { tls?: boolean; ca?: string; localAddress?: string } = {},
  ): Promise<Raw> {
    const tcp = netConnect({ host: '127.0.0.1', port, localAddress: o.localAddress });
    const sock = o.tls ? tlsConnect({ socket: tcp, ca: o.ca, servername: 'localhost' }) : tcp;
    const raw = new Raw(sock);
    raw.greeting = await raw.line();
    return raw;
  }

  async line(): Promise<string> {
    for (;;) {
      const eol = this.buf.indexOf('\r\n');
      if (eol !== -1) {
        const l = this.buf.subarray(0, eol).toString('latin1');
        this.buf = this.buf.subarray(eol + 2);
        return l;
      }
      if (this.ended) throw this.ended;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no reply within ${LINE_TIMEOUT_MS} ms`)),
          LINE_TIMEOUT_MS,
        );
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  async cmd(c: string): Promise<string> {
    this.sock.write(`${c}\r\n`);
    return this.line();
  }

  /** A multi-line reply: status line plus the unstuffed body bytes. */
  async multi(c: string): Promise<{ status: string; body: Buffer }> {
    const status = await this.cmd(c);
    if (!status.startsWith('+OK')) return { status, body: Buffer.alloc(0) };
    const lines: string[] = [];
    for (;;) {
      const l = await this.line();
      if (l === '.') break;
      lines.push(l.startsWith('.') ? l.slice(1) : l);
    }
    return { status, body: Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1') };
  }

  async stls(ca: string): Promise<void> {
    expect(await this.cmd('STLS')).toMatch(/^\+OK/);
    const plain = this.sock;
    plain.removeAllListeners('data');
    const secure = tlsConnect({ socket: plain, ca, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.attach(secure);
  }

  close(): void {
    this.sock.destroy();
  }
}

async function login(
  d: Dovecot,
  o: { tls?: boolean; ca?: string; localAddress?: string; port?: number } = {},
): Promise<Raw> {
  const raw = await Raw.open(o.port ?? d.port, o);
  expect(await raw.cmd(`USER ${d.user}`)).toMatch(/^\+OK/);
  expect(await raw.cmd(`PASS ${d.password}`)).toMatch(/^\+OK Logged in/);
  return raw;
}

async function stat(d: Dovecot): Promise<{ count: number; size: number }> {
  const raw = await login(d);
  const m = /^\+OK (\d+) (\d+)/.exec(await raw.cmd('STAT'));
  await raw.cmd('QUIT');
  raw.close();
  return { count: Number(m?.[1]), size: Number(m?.[2]) };
}

const seed = [1, 2, 3].map((i) => makeMessage({ index: i, size: i * 3000 }));

describe.runIf(dovecotAvailable())('dovecot fixture', () => {
  let d: Dovecot;
  beforeAll(async () => {
    d = await startDovecot({ messages: seed });
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('serves the seeded messages over plain POP3 with USER/PASS', async () => {
    const raw = await login(d);
    expect(raw.greeting).toMatch(/^\+OK .*<[^>]+>$/); // APOP timestamp: apop is on by default
    const st = /^\+OK (\d+) (\d+)$/.exec(await raw.cmd('STAT'));
    expect(Number(st?.[1])).toBe(3);
    expect(Number(st?.[2])).toBe(seed.reduce((n, m) => n + m.length, 0));
    // Delivery order is UID order, and the bytes come back exactly as written (CRLF).
    for (const [i, m] of seed.entries()) {
      const { status, body } = await raw.multi(`RETR ${i + 1}`);
      expect(status).toMatch(/^\+OK/);
      expect(body.equals(m)).toBe(true);
    }
    expect(await raw.cmd('QUIT')).toMatch(/^\+OK/);
    raw.close();
    expect(await d.messageCount()).toBe(3);
  });

  it('APOP works against the {PLAIN} passwd-file', async () => {
    const raw = await Raw.open(d.port);
    const ts = /<[^>]+>/.exec(raw.greeting)?.[0] ?? '';
    const digest = createHash('md5')
      .update(ts + d.password)
      .digest('hex');
    expect(await raw.cmd(`APOP ${d.user} ${digest}`)).toMatch(/^\+OK Logged in/);
    raw.close();
  });

  it('implicit TLS on tlsPort verifies against caPem with servername localhost', async () => {
    const raw = await login(d, { port: d.tlsPort, tls: true, ca: d.caPem });
    const sock = raw.sock as TLSSocket;
    expect(sock.authorized).toBe(true);
    expect(sock.getPeerCertificate().subject?.CN).toBe('localhost');
    raw.close();
    // And the certificate is really checked: without caPem the handshake fails.
    await expect(Raw.open(d.tlsPort, { tls: true })).rejects.toThrow(/certificate/i);
  });

  it('STLS upgrades the plain port', async () => {
    const raw = await Raw.open(d.port);
    await raw.stls(d.caPem);
    expect(await raw.cmd(`USER ${d.user}`)).toMatch(/^\+OK/);
    expect(await raw.cmd(`PASS ${d.password}`)).toMatch(/^\+OK Logged in/);
    raw.close();
  });

  it('addMessages delivers atomically into new/ and STAT grows', async () => {
    const before = await stat(d);
    const extra = [makeMessage({ index: 10, size: 500 }), 'Subject: lf only\n\nbody\n'];
    const paths = await d.addMessages(extra);
    expect(paths).toHaveLength(2);
    for (const p of paths) expect(dirname(p).endsWith('/new')).toBe(true);
    expect(paths[1]).toMatch(
      new RegExp(`,S=${extra[1]?.length},W=${crlfSize(Buffer.from(extra[1] as string))}$`),
    );
    const after = await stat(d);
    expect(after.count).toBe(before.count + 2);
    // POP3 sizes count CRLF: the LF-only message is 3 octets bigger on the wire.
    expect(after.size - before.size).toBe((extra[0] as Buffer).length + (extra[1] as string).length + 3);
    const listed = await d.listMessages();
    expect(listed.map((m) => m.bytes.length).slice(-2)).toEqual([(extra[0] as Buffer).length, 23]);
    expect(await d.messageCount()).toBe(after.count);
  });

  it('a bad password fails fast (auth_failure_delay = 0), from its own source address', async () => {
    const raw = await Raw.open(d.port, { localAddress: '127.0.0.9' });
    await raw.cmd(`USER ${d.user}`);
    const t0 = Date.now();
    expect(await raw.cmd('PASS wrong')).toMatch(/^-ERR \[AUTH\]/);
    // Dovecot's default auth_failure_delay is 2 s; the fixture sets 0.
    expect(Date.now() - t0).toBeLessThan(1900);
    raw.close();
    expect(await d.logTail()).toMatch(/pop3-login/);
  });

  it('two instances run at once, independent', async () => {
    const e = await startDovecot({ user: 'other', password: 'pw2', messages: ['Subject: x\r\n\r\nhi\r\n'] });
    try {
      expect(new Set([d.port, d.tlsPort, e.port, e.tlsPort]).size).toBe(4);
      expect(e.maildir).not.toBe(d.maildir);
      expect((await stat(e)).count).toBe(1);
      expect((await stat(d)).count).toBeGreaterThanOrEqual(3);
    } finally {
      await e.stop();
    }
  });

  it('addLargeMessage streams an exact-size CRLF message into the Maildir', async () => {
    const size = 3 * 1024 * 1024 + 17;
    const r = await d.addLargeMessage(size, 7);
    const bytes = await readFile(r.path);
    expect(bytes.length).toBe(size);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(r.sha256);
    const raw = await login(d);
    const n = Number(/^\+OK (\d+)/.exec(await raw.cmd('STAT'))?.[1]);
    expect(await raw.cmd(`LIST ${n}`)).toBe(`+OK ${n} ${size}`);
    const { body } = await raw.multi(`RETR ${n}`);
    expect(createHash('sha256').update(body).digest('hex')).toBe(r.sha256);
    raw.close();
  });
});

describe.runIf(dovecotAvailable())('dovecot fixture: oauth', () => {
  const tokens: Record<string, string> = { 'good-token': 'testuser' };
  let d: Dovecot;
  beforeAll(async () => {
    d = await startDovecot({ oauth: { tokens } });
  });
  afterAll(async () => {
    await d?.stop();
  });

  const xoauth2 = (user: string, token: string) =>
    Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');

  it('advertises XOAUTH2 and OAUTHBEARER and accepts a good token', async () => {
    const raw = await Raw.open(d.port);
    const capa = [await raw.cmd('CAPA')];
    for (let l = await raw.line(); l !== '.'; l = await raw.line()) capa.push(l);
    expect(capa.join('\n')).toMatch(/^SASL .*XOAUTH2.*OAUTHBEARER/m);
    expect(await raw.cmd(`AUTH XOAUTH2 ${xoauth2('testuser', 'good-token')}`)).toMatch(/^\+OK Logged in/);
    raw.close();
    expect(d.oauthUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/introspect$/);
  });

  it('a bad token gets the base64 JSON challenge, then -ERR after an empty line', async () => {
    const raw = await Raw.open(d.port, { localAddress: '127.0.0.3' });
    const challenge = await raw.cmd(`AUTH XOAUTH2 ${xoauth2('testuser', 'bad-token')}`);
    expect(challenge).toMatch(/^\+ /);
    expect(JSON.parse(Buffer.from(challenge.slice(2), 'base64').toString())).toMatchObject({ status: '401' });
    expect(await raw.cmd('')).toMatch(/^-ERR \[AUTH\]/);
    raw.close();
  });

  it('revoking a token (deleting it from the record) takes effect on the next login', async () => {
    tokens['short-lived'] = 'testuser';
    const a = await Raw.open(d.port, { localAddress: '127.0.0.4' });
    expect(await a.cmd(`AUTH XOAUTH2 ${xoauth2('testuser', 'short-lived')}`)).toMatch(/^\+OK/);
    a.close();
    delete tokens['short-lived'];
    const b = await Raw.open(d.port, { localAddress: '127.0.0.4' });
    expect(await b.cmd(`AUTH XOAUTH2 ${xoauth2('testuser', 'short-lived')}`)).toMatch(/^\+ /);
    expect(await b.cmd('')).toMatch(/^-ERR/);
    b.close();
  });
});

describe.runIf(dovecotAvailable())('dovecot fixture: ssl required, apop off', () => {
  let d: Dovecot;
  beforeAll(async () => {
    d = await startDovecot({ ssl: 'required', apop: false, password: 'secret' });
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('refuses plaintext login from 127.0.0.2 until STLS', async () => {
    // Dovecot treats a connection whose source equals its destination (127.0.0.1 -> 127.0.0.1) as
    // secure, so the refusal is only observable from another loopback source address.
    const raw = await Raw.open(d.port, { localAddress: '127.0.0.2' });
    expect(raw.greeting).not.toMatch(/</); // no APOP timestamp when apop is off
    await raw.cmd(`USER ${d.user}`);
    expect(await raw.cmd(`PASS ${d.password}`)).toMatch(/^-ERR .*[Pp]laintext/);
    await raw.stls(d.caPem);
    expect(await raw.cmd(`USER ${d.user}`)).toMatch(/^\+OK/);
    expect(await raw.cmd(`PASS ${d.password}`)).toMatch(/^\+OK Logged in/);
    raw.close();
  });

  it('still allows plaintext from 127.0.0.1 (the quirk the comment above documents)', async () => {
    const raw = await login(d);
    raw.close();
  });
});

describe.runIf(dovecotAvailable())('dovecot fixture: stop()', () => {
  it('frees both ports and removes the temp dir', async () => {
    const d = await startDovecot({ messages: ['Subject: a\r\n\r\nb\r\n'] });
    const root = dirname(dirname(dirname(d.maildir)));
    expect(existsSync(join(root, 'dovecot.conf'))).toBe(true);
    await d.stop();
    expect(existsSync(root)).toBe(false);
    for (const port of [d.port, d.tlsPort]) {
      const srv = createServer();
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(port, '127.0.0.1', () => resolve());
      });
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
    await d.stop(); // idempotent
  });
});

describe.runIf(dovecotAvailable())('dovecot fixture: no orphans', () => {
  // A child process starts a server and dies without stop(): by 'exit' (hook) or SIGKILL (watchdog).
  async function orphan(how: 'exit' | 'kill'): Promise<{ pid: number; dir: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'pophook-orphan-'));
    const script = join(dir, 'child.mts');
    const fixture = new URL('../fixtures/dovecot.ts', import.meta.url).href;
    await writeFile(
      script,
      `import { startDovecot } from ${JSON.stringify(fixture)};
const d = await startDovecot();
const root = d.maildir.split('/').slice(0, -3).join('/');
const pid = (await import('node:fs')).readFileSync(root + '/run/master.pid', 'utf8').trim();
process.stdout.write(JSON.stringify({ pid: Number(pid), dir: root }) + '\\n');
${how === 'exit' ? 'process.exit(0);' : 'setInterval(() => {}, 1000);'}
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out);
      });
      child.on('error', reject);
      child.on('exit', () => resolve(out));
    });
    const info = JSON.parse(line) as { pid: number; dir: string };
    if (how === 'kill') child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
    await rm(dir, { recursive: true, force: true });
    return info;
  }

  const gone = (pid: number) => {
    try {
      process.kill(pid, 0);
      return readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z');
    } catch {
      return true;
    }
  };

  async function eventually(check: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    return check();
  }

  it('the exit hook kills a server its process forgot to stop', async () => {
    const { pid, dir } = await orphan('exit');
    expect(await eventually(() => gone(pid) && !existsSync(dir), 3000)).toBe(true);
  });

  it('the watchdog kills the server when its process is SIGKILLed', async () => {
    const { pid, dir } = await orphan('kill');
    expect(await eventually(() => gone(pid) && !existsSync(dir), 5000)).toBe(true);
  });
});

describe('requireDovecot', () => {
  it('fails under CI=true when the binary is missing, and only warns elsewhere', () => {
    const ci = process.env.CI;
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      process.env.CI = 'true';
      expect(() => requireDovecot('/nonexistent/dovecot')).toThrow(/CI=true/);
      process.env.CI = '';
      expect(() => requireDovecot('/nonexistent/dovecot')).not.toThrow();
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/Skipping Dovecot/));
      expect(dovecotAvailable('/nonexistent/dovecot')).toBe(false);
    } finally {
      if (ci === undefined) delete process.env.CI;
      else process.env.CI = ci;
      warn.mockRestore();
    }
  });
});

describe('messages generator', () => {
  it('makes deterministic, exact-size, CRLF-only MIME with dot lines and an encoded subject', async () => {
    for (const size of [0, 900, 4000, 4001, 20_000, 100_003]) {
      const m = makeMessage({ index: 5, size });
      const again = makeMessage({ index: 5, size });
      expect(m.equals(again)).toBe(true);
      if (size >= 900) expect(m.length).toBe(size);
      expect(crlfSize(m)).toBe(m.length); // no bare LF
      expect(m.includes('\r\r')).toBe(false);
      const text = m.toString('latin1');
      expect(text).toMatch(/\r\n\.Leading dot/);
      expect(text).toMatch(/\r\n\.\r\n/);
      expect(text).toMatch(/^Subject: =\?UTF-8\?B\?/m);
      const parsed = await simpleParser(m);
      expect(parsed.subject).toBe('Test message 5 héllo wörld');
      expect(parsed.attachments.length).toBe(size > 4000 ? 1 : 0);
    }
  });

  it('supports custom subject, headers and explicit or counted attachments', async () => {
    const m = makeMessage({
      index: 1,
      size: 30_000,
      subject: 'Grüße',
      extraHeaders: { 'X-Test': 'yes' },
      attachments: 3,
    });
    expect(m.length).toBe(30_000);
    const p = await simpleParser(m);
    expect(p.subject).toBe('Grüße');
    expect(p.headers.get('x-test')).toBe('yes');
    expect(p.attachments).toHaveLength(3);
    const content = Buffer.from('hello attachment');
    const q = await simpleParser(
      makeMessage({ index: 2, attachments: [{ filename: 'a.txt', contentType: 'text/plain', content }] }),
    );
    expect(q.attachments[0]?.content.equals(content)).toBe(true);
    expect(q.attachments[0]?.filename).toBe('a.txt');
  });

  it('writeLargeMessage streams an exact-size, parseable message to disk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pophook-msg-'));
    try {
      const path = join(dir, 'big.eml');
      const size = 2 * 1024 * 1024 + 5;
      const r = await writeLargeMessage(path, size, 3);
      const bytes = await readFile(path);
      expect(r.size).toBe(size);
      expect(bytes.length).toBe(size);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(r.sha256);
      expect(crlfSize(bytes)).toBe(size);
      const p = await simpleParser(bytes);
      expect(p.attachments[0]?.size).toBeGreaterThan(size * 0.7);
      const again = await writeLargeMessage(join(dir, 'again.eml'), size, 3);
      expect(again.sha256).toBe(r.sha256);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

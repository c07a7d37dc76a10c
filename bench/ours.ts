/**
 * pophook's contenders and the server limit, each one complete POP3 session timed from connect to QUIT:
 *
 *   pipeline  pollLocal() with the local runtime: RETR streamed into the archive (fsynced, hashed),
 *             parsed with mailparser, event JSON written, a delivery job enqueued, state recorded.
 *             Retention `keep` and a fresh data dir, so every run fetches everything.
 *   client    the POP3 client alone: LIST, pipelined RETR of every message, each streamed to SHA-256.
 *   limit     a minimal reader that sends every RETR at once and only looks for "\r\n.\r\n".
 */
import { createHash } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseConfig } from '../shared/config/load.js';
import { silentLogger } from '../shared/log.js';
import { connect } from '../shared/pop3/client.js';
import { createLocalRuntime, pollLocal } from '../shared/runtime/local.js';

export interface Pop3Target {
  host: string;
  port: number;
  tls: boolean;
  user: string;
  password: string;
  caPem: string;
}

export interface FetchRun {
  seconds: number;
  messages: number;
  bytes: number;
}

const WEBHOOK_SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

/** The local runtime the pipeline contender polls with: one mailbox kept on the server, one endpoint. */
export async function pipelineRuntime(t: Pop3Target, dataDir: string, maxMessageBytes = 300 * 1024 * 1024) {
  const config = parseConfig({
    version: 1,
    mailboxes: [
      {
        id: 'inbox',
        host: t.host,
        port: t.port,
        tls: t.tls ? 'implicit' : 'none',
        ...(t.tls ? { ca: t.caPem } : { allowInsecureAuth: true }),
        user: t.user,
        auth: { type: 'password', password: { secret: 'pop' } },
        retention: 'keep',
        limits: { maxMessageBytes, maxMessagesPerRun: 1_000_000, maxBytesPerRun: 100 * 1024 ** 3 },
      },
    ],
    endpoints: [{ id: 'hook', url: 'https://hooks.example.com/pophook', secrets: [{ secret: 'hook' }] }],
    local: { dataDir },
  });
  return createLocalRuntime(config, {
    env: { POPHOOK_SECRET_POP: t.password, POPHOOK_SECRET_HOOK: WEBHOOK_SECRET },
    logger: silentLogger,
  });
}

/** The full local pipeline, once, into `dataDir` (which must be fresh). */
export async function pipelineRun(
  t: Pop3Target,
  dataDir: string,
  maxMessageBytes = 300 * 1024 * 1024,
): Promise<FetchRun & { outcome: string; parseErrors: number }> {
  const runtime = await pipelineRuntime(t, dataDir, maxMessageBytes);
  try {
    const t0 = performance.now();
    const [r] = await pollLocal(runtime, ['inbox'], { connectOptions: { servername: 'localhost' } });
    const seconds = (performance.now() - t0) / 1000;
    if (r?.outcome !== 'ok')
      throw new Error(`pipeline poll ended ${r?.outcome}: ${r?.error?.code} ${r?.error?.message}`);
    return { seconds, messages: r.fetched, bytes: r.bytes, outcome: r.outcome, parseErrors: r.parseErrors };
  } finally {
    await runtime.close();
  }
}

/** The POP3 client alone: every message RETRieved (pipelined) and streamed into a SHA-256. */
export async function clientRun(t: Pop3Target): Promise<FetchRun> {
  const t0 = performance.now();
  const session = await connect({
    host: t.host,
    port: t.port,
    tls: t.tls ? 'implicit' : 'none',
    servername: 'localhost',
    ca: t.caPem,
    allowInsecureAuth: !t.tls,
  });
  try {
    await session.login({ mechanism: 'auto', user: t.user, password: t.password });
    const list = await session.list();
    let bytes = 0;
    let messages = 0;
    for await (const stream of session.retrMany(list.map((e) => e.n))) {
      // Plain listeners, not stream.pipeline(): pipeline's per-call AbortController costs more
      // (DOMException stack capture) than a 20 KB message takes to frame and hash.
      const hash = createHash('sha256');
      await new Promise<void>((resolve, reject) => {
        stream.on('data', (c: Buffer) => {
          bytes += c.length;
          hash.update(c);
        });
        stream.once('end', resolve);
        stream.once('error', reject);
      });
      hash.digest();
      messages++;
    }
    await session.quit();
    return { seconds: (performance.now() - t0) / 1000, messages, bytes };
  } catch (err) {
    session.close();
    throw err;
  }
}

const TERMINATOR = Buffer.from('\r\n.\r\n');

/**
 * The server limit: USER/PASS, STAT, then every RETR written at once; each reply is framed on
 * "\r\n.\r\n" only (dot-stuffing means a body never contains it) and discarded, keeping just the
 * last 4 bytes of a chunk in case a terminator straddles two chunks. `bytes` counts wire body bytes
 * (dot-stuffed), so it can differ from the other contenders by a few bytes per message.
 */
export function rawRun(t: Pop3Target): Promise<FetchRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const sock: Socket = t.tls
      ? tlsConnect({ host: t.host, port: t.port, ca: t.caPem, servername: 'localhost' })
      : netConnect({ host: t.host, port: t.port });
    let buf: Buffer = Buffer.alloc(0);
    let state: 'greeting' | 'user' | 'pass' | 'stat' | 'status' | 'body' | 'quit' = 'greeting';
    let n = 0;
    let done = 0;
    let bytes = 0;
    const fail = (err: Error) => {
      sock.destroy();
      reject(err);
    };
    sock.on('error', reject);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (state === 'body') {
          // buf starts with the status line's CRLF, so an empty body ("+OK\r\n.\r\n") frames too.
          const i = buf.indexOf(TERMINATOR);
          if (i < 0) {
            if (buf.length > 4) {
              bytes += buf.length - 4;
              buf = buf.subarray(buf.length - 4);
            }
            return;
          }
          bytes += i + 2;
          buf = buf.subarray(i + TERMINATOR.length);
          done++;
          state = done === n ? 'quit' : 'status';
          if (state === 'quit') sock.write('QUIT\r\n');
          continue;
        }
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.subarray(0, eol).toString('latin1');
        if (!line.startsWith('+OK')) return fail(new Error(`${state}: ${line}`));
        if (state === 'status') {
          buf = buf.subarray(eol);
          bytes -= 2;
          state = 'body';
          continue;
        }
        buf = buf.subarray(eol + 2);
        if (state === 'greeting') {
          state = 'user';
          sock.write(`USER ${t.user}\r\n`);
        } else if (state === 'user') {
          state = 'pass';
          sock.write(`PASS ${t.password}\r\n`);
        } else if (state === 'pass') {
          state = 'stat';
          sock.write('STAT\r\n');
        } else if (state === 'stat') {
          n = Number(line.split(' ')[1]);
          if (n === 0) {
            state = 'quit';
            sock.write('QUIT\r\n');
            continue;
          }
          state = 'status';
          let cmds = '';
          for (let k = 1; k <= n; k++) cmds += `RETR ${k}\r\n`;
          sock.write(cmds);
        } else if (state === 'quit') {
          sock.destroy();
          resolve({ seconds: (performance.now() - t0) / 1000, messages: done, bytes });
          return;
        }
      }
    });
  });
}

/**
 * POP3 RETR throughput against a real, throwaway Dovecot: our client (pipelined and not) vs a
 * minimal raw pipelined reader that only finds "\r\n.\r\n" (the practical server ceiling).
 *
 *   npx tsx bench/pop3-throughput.ts [--messages 2000] [--size 20000] [--runs 3]
 *
 * Times only the RETR phase (login, STAT and QUIT excluded) and reports the median of the runs.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { parseArgs } from 'node:util';
import { connect } from '../shared/pop3/client.js';
import { type Dovecot, startDovecot } from '../test/fixtures/dovecot.js';
import { makeMessage } from '../test/fixtures/messages.js';

// The raw reader keeps this many RETRs in flight (what the research measured as the ceiling).
const RAW_WINDOW = 100;
const TERMINATOR = Buffer.from('\r\n.\r\n');

type Mode = 'plain' | 'tls';

interface Run {
  seconds: number;
  messages: number;
  bytes: number;
}

/** Pipelined RETR 1..n, framing replies on "\r\n.\r\n" only (no unstuffing, no per-line work). */
function rawRun(d: Dovecot, mode: Mode, n: number, octets: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const sock: Socket =
      mode === 'tls'
        ? tlsConnect({ host: d.host, port: d.tlsPort, ca: d.caPem, servername: 'localhost' })
        : netConnect({ host: d.host, port: d.port });
    let buf: Buffer = Buffer.alloc(0);
    let state: 'greeting' | 'user' | 'pass' | 'retr' | 'quit' = 'greeting';
    let sent = 0;
    let done = 0;
    let t0 = 0n;
    const pump = () => {
      let s = '';
      while (sent < n && sent - done < RAW_WINDOW) s += `RETR ${++sent}\r\n`;
      if (s) sock.write(s);
    };
    sock.on('error', reject);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (state === 'retr') {
          // Dot-stuffing guarantees a body never contains CRLF.CRLF, so the first one ends the reply.
          const i = buf.indexOf(TERMINATOR);
          if (i < 0) return;
          if (buf[0] !== 0x2b) return reject(new Error(`RETR failed: ${buf.subarray(0, 80).toString()}`));
          buf = buf.subarray(i + TERMINATOR.length);
          if (++done === n) {
            const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
            state = 'quit';
            sock.write('QUIT\r\n');
            resolve({ seconds, messages: n, bytes: octets });
            return;
          }
          pump();
          continue;
        }
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.subarray(0, eol).toString('latin1');
        buf = buf.subarray(eol + 2);
        if (!line.startsWith('+OK')) return reject(new Error(`${state}: ${line}`));
        if (state === 'greeting') {
          state = 'user';
          sock.write(`USER ${d.user}\r\n`);
        } else if (state === 'user') {
          state = 'pass';
          sock.write(`PASS ${d.password}\r\n`);
        } else if (state === 'pass') {
          state = 'retr';
          t0 = process.hrtime.bigint();
          pump();
        } else if (state === 'quit') {
          sock.destroy();
          return;
        }
      }
    });
  });
}

/** Our client: retrMany over every message, each stream fully consumed. */
async function clientRun(d: Dovecot, mode: Mode, pipelining: boolean): Promise<Run> {
  const session = await connect({
    host: d.host,
    port: mode === 'tls' ? d.tlsPort : d.port,
    tls: mode === 'tls' ? 'implicit' : 'none',
    servername: 'localhost',
    ca: d.caPem,
    allowInsecureAuth: mode === 'plain',
    pipelining,
  });
  try {
    await session.login({ mechanism: 'user', user: d.user, password: d.password });
    const { count } = await session.stat();
    const ns = Array.from({ length: count }, (_, i) => i + 1);
    let bytes = 0;
    let messages = 0;
    const t0 = process.hrtime.bigint();
    for await (const stream of session.retrMany(ns)) {
      for await (const chunk of stream) bytes += (chunk as Buffer).length;
      messages++;
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await session.quit();
    return { seconds, messages, bytes };
  } catch (e) {
    session.close();
    throw e;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '2000' },
      size: { type: 'string', default: '20000' },
      runs: { type: 'string', default: '3' },
    },
  });
  const count = Number(values.messages);
  const size = Number(values.size);
  const runs = Number(values.runs);
  const msgs = Array.from({ length: count }, (_, i) => makeMessage({ index: i + 1, size }));
  const octets = msgs.reduce((n, m) => n + m.length, 0);
  const d = await startDovecot({ messages: msgs });
  try {
    // Warm-up: Dovecot indexes the Maildir on first login; the page cache fills.
    await rawRun(d, 'plain', count, octets);
    const rows: { client: string; mode: Mode; msgPerS: number; mbPerS: number; seconds: number }[] = [];
    const clients: [string, (mode: Mode) => Promise<Run>][] = [
      ['pophook client, pipelined', (mode) => clientRun(d, mode, true)],
      ['pophook client, unpipelined', (mode) => clientRun(d, mode, false)],
      [`raw reader, window ${RAW_WINDOW} (ceiling)`, (mode) => rawRun(d, mode, count, octets)],
    ];
    for (const mode of ['plain', 'tls'] as const) {
      for (const [client, run] of clients) {
        const results: Run[] = [];
        // One discarded run per contender: the JIT and TLS session setup warm up, as in a warm Lambda.
        await run(mode);
        for (let r = 0; r < runs; r++) {
          const res = await run(mode);
          if (res.messages !== count || res.bytes !== octets) {
            throw new Error(
              `${client} ${mode}: got ${res.messages} msgs / ${res.bytes} B, want ${count} / ${octets}`,
            );
          }
          results.push(res);
        }
        const seconds = median(results.map((x) => x.seconds));
        rows.push({ client, mode, seconds, msgPerS: count / seconds, mbPerS: octets / seconds / 1e6 });
      }
    }
    console.log(
      `\nDovecot POP3 RETR, ${count} x ${size} B (${(octets / 1e6).toFixed(1)} MB), loopback, median of ${runs}`,
    );
    // Figures on a shared machine mean little without the load they were taken under.
    console.log(
      `${cpus().length} CPUs, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}\n`,
    );
    const header = ['client', 'transport', 'msg/s', 'MB/s', 'seconds'];
    const table = rows.map((r) => [
      r.client,
      r.mode === 'tls' ? 'implicit TLS' : 'plain',
      Math.round(r.msgPerS).toString(),
      r.mbPerS.toFixed(1),
      r.seconds.toFixed(3),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => (row[i] ?? '').length)));
    const fmt = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
    console.log(fmt(header));
    console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const row of table) console.log(fmt(row));
  } finally {
    await d.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});

/**
 * Delivery throughput: signed webhook deliveries per second against a local keep-alive receiver,
 * compared with a bare undici POST loop to the same receiver (the ceiling on this machine), for 1 and
 * 10 endpoints. The receiver runs in a child process so client and server do not share one event loop.
 *
 * Modes (same body size, same in-flight limit per endpoint = the default maxConcurrency of 10):
 *   bare        undici Agent.request, fixed body, keep-alive: the limit
 *   sign+post   createWebhookHttp().post with Standard Webhooks headers (SSRF guard, caps, snippet)
 *   deliverJob  the whole path: job -> attempt log read -> event from an in-memory archive (checked
 *               by event-scan.ts, else parsed) -> payload -> sign -> POST -> classify -> attempt
 *               recorded (in-memory log) -> logging through the product's JSON logger at its
 *               default level, writing to /dev/null (a success logs at debug, so no line; failures
 *               would write one)
 *
 * Fairness: every deliverJob message is a new one (its own eventKey and messageKey), routed to every
 * endpoint, as the poller enqueues it: with 1 endpoint each job reads, checks and splices its event;
 * with 10, the message's 10 jobs run together and share one read and one body (message-cache.ts), as
 * they do in one SQS batch. Not measured: the state store's I/O (DynamoDB in Lambda, fsynced files in
 * local mode), S3 reads and metrics (EMF), which cost the same whatever the delivery code does.
 *
 * Run: npx tsx bench/delivery.ts [seconds-per-run=2] [runs=5] [--only MODE,...] [--endpoints 1,10]
 * (`--help` lists the options). A run gives each contender SECONDS in interleaved 0.25 s slices (see
 * SLICE_SECONDS); the table's `vs bare` column is a contender's median req/s over the bare loop's
 * median from the same runs; bench/run.ts parses it for PASS/MISS.
 */
import { spawn } from 'node:child_process';
import { openSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Agent } from 'undici';
import { DeliveryConfig, EndpointConfig } from '../shared/config/schema.js';
import { deliverJob, type QueuedJob } from '../shared/delivery/deliver.js';
import { createWebhookHttp } from '../shared/delivery/http.js';
import { webhookHeaders } from '../shared/delivery/sign.js';
import { createJsonLogger } from '../shared/log.js';
import type { PophookEvent } from '../shared/mail/event.js';
import type { DeliveryAttempt, DeliveryLog } from '../shared/state/store.js';

const USAGE = `usage: npx tsx bench/delivery.ts [seconds-per-run=2] [runs=5] [options]
  --only MODES       comma-separated contenders to run: bare,sign+post,deliverJob (default: all; the
                     ratio column needs bare)
  --endpoints LIST   comma-separated endpoint counts (default: 1,10)
  --help             this text
Profile one contender: node --cpu-prof --import tsx bench/delivery.ts 3 1 --only deliverJob --endpoints 1`;
const args = parseArgs({
  allowPositionals: true,
  options: {
    only: { type: 'string' },
    endpoints: { type: 'string', default: '1,10' },
    help: { type: 'boolean', default: false },
  },
});
if (args.values.help) {
  console.log(USAGE);
  process.exit(0);
}
const SECONDS = Number(args.positionals[0] ?? 2);
const RUNS = Number(args.positionals[1] ?? 5);
const ENDPOINT_COUNTS = (args.values.endpoints ?? '1,10').split(',').map(Number);
const ONLY = args.values.only?.split(',').map((m) => (m === 'bare' ? 'bare undici' : m));
if (!(SECONDS > 0) || !(RUNS >= 1) || ENDPOINT_COUNTS.some((n) => !(n >= 1))) {
  console.error(USAGE);
  process.exit(2);
}
const IN_FLIGHT_PER_ENDPOINT = 10;
const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

const SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.send(server.address().port));
process.on('disconnect', () => process.exit(0));
`;

function event(): PophookEvent {
  const text = 'Hello, this is a typical short email body. '.repeat(40);
  return {
    type: 'email.received',
    data: {
      version: 1,
      eventId: 'msg_bench',
      messageKey: 'bench',
      mailboxId: 'inbox',
      uidl: 'u1',
      receivedAt: new Date().toISOString(),
      date: new Date().toISOString(),
      messageId: '<bench@example.com>',
      inReplyTo: null,
      references: [],
      subject: 'Benchmark message',
      from: [{ address: 'sender@example.com', name: 'Sender' }],
      to: [{ address: 'me@example.org', name: '' }],
      cc: [],
      bcc: [],
      replyTo: [],
      text,
      textTruncated: false,
      html: `<p>${text}</p>`,
      htmlTruncated: false,
      headers: [{ name: 'subject', value: 'Benchmark message' }],
      attachments: [],
      raw: { key: 'raw/inbox/2025/01/01/bench.eml', size: 4000, sha256: 'a'.repeat(64) },
      authResults: null,
      spam: null,
      charsetWarnings: [],
      parseError: null,
    },
  };
}

interface Sample {
  /** Completed operations per wall-clock second. */
  rate: number;
  /** Client-process CPU time per operation (user + system), in microseconds: insensitive to load. */
  cpuUs: number;
}

/**
 * Each run's SECONDS per contender are cut into slices of about this length, taken in turn (bare,
 * sign+post, deliverJob, bare, ...): load from other processes, which comes and goes within seconds on
 * a shared machine, then falls on every contender alike instead of on whichever ran at the time.
 */
const SLICE_SECONDS = 0.25;

interface Tally {
  done: number;
  ms: number;
  cpuUs: number;
}

/** Runs `once` with `inFlight` concurrent loops for `seconds`, adding to `tally`. */
async function measure(
  inFlight: number,
  once: (worker: number, i: number) => Promise<void>,
  seconds: number,
  tally: Tally,
): Promise<void> {
  let done = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      for (let i = 0; performance.now() < deadline; i++) {
        await once(w, i);
        done++;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  tally.done += done;
  tally.ms += performance.now() - started;
  tally.cpuUs += used.user + used.system;
}

/** One run: SECONDS of each contender, in interleaved slices. */
async function run(
  inFlight: number,
  contenders: { once: (worker: number, i: number) => Promise<void> }[],
): Promise<Sample[]> {
  const slices = Math.max(1, Math.round(SECONDS / SLICE_SECONDS));
  const tallies = contenders.map(() => ({ done: 0, ms: 0, cpuUs: 0 }));
  for (let s = 0; s < slices; s++) {
    // Rotate the order too, so no contender always runs right after another (GC debt, warm caches).
    for (let k = 0; k < contenders.length; k++) {
      const c = (k + s) % contenders.length;
      await measure(
        inFlight,
        (contenders[c] as (typeof contenders)[number]).once,
        SECONDS / slices,
        tallies[c] as Tally,
      );
    }
  }
  return tallies.map((t) => ({ rate: t.done / (t.ms / 1000), cpuUs: t.cpuUs / Math.max(1, t.done) }));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main() {
  const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve) => child.once('message', (p) => resolve(p as number)));
  const base = `http://127.0.0.1:${port}`;
  const ev = event();
  const eventBytes = Buffer.from(JSON.stringify(ev));
  const delivery = DeliveryConfig.parse({});
  // An in-memory attempt log that really records and lists. It forgets all but the latest messages
  // (a message's jobs run together, so its list is complete while they run): the bench measures the
  // delivery code, not a store that grows for ever (its garbage would be charged to deliverJob).
  const attempts = new Map<string, DeliveryAttempt[]>();
  const log: DeliveryLog = {
    recordAttempt: async (a) => {
      if (attempts.size >= 1_000) attempts.clear();
      const list = attempts.get(a.messageKey);
      if (list) list.push(a);
      else attempts.set(a.messageKey, [a]);
    },
    listAttempts: async (messageKey) => [...(attempts.get(messageKey) ?? [])],
    getEndpointState: async () => undefined,
    setEndpointState: async () => {},
  };
  // The product's logger at the Lambda's default level: whatever it writes costs formatting and a syscall.
  const devNull = openSync('/dev/null', 'w');
  const logger = createJsonLogger({
    fields: { fn: 'delivery' },
    write: (line) => writeSync(devNull, `${line}\n`),
  });
  const archive = { getBytes: async () => eventBytes, linkFor: async () => undefined };
  const rows: { endpoints: number; mode: string; samples: Sample[] }[] = [];

  for (const endpointCount of ENDPOINT_COUNTS) {
    const endpoints = Array.from({ length: endpointCount }, (_, i) =>
      EndpointConfig.parse({
        id: `ep${i}`,
        url: `${base}/hook/${i}`,
        secrets: [{ secret: 's' }],
        allowHttp: true,
        allowPrivateNetwork: true,
        maxConcurrency: IN_FLIGHT_PER_ENDPOINT,
      }),
    );
    const inFlight = endpointCount * IN_FLIGHT_PER_ENDPOINT;
    const sampleBody = JSON.stringify({
      type: 'email.received',
      timestamp: ev.data.receivedAt,
      data: ev.data,
    });

    const modes: {
      mode: string;
      setup: () => { once: (w: number, i: number) => Promise<void>; close: () => Promise<void> };
    }[] = [
      {
        mode: 'bare undici',
        setup: () => {
          const agents = endpoints.map(
            () => new Agent({ connections: IN_FLIGHT_PER_ENDPOINT, keepAliveTimeout: 30_000 }),
          );
          return {
            once: async (w) => {
              const e = w % endpointCount;
              const res = await (agents[e] as Agent).request({
                origin: base,
                path: `/hook/${e}`,
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body: sampleBody,
              });
              await res.body.dump();
            },
            close: async () => {
              await Promise.all(agents.map((a) => a.close()));
            },
          };
        },
      },
      {
        mode: 'sign+post',
        setup: () => {
          const http = createWebhookHttp();
          return {
            once: async (w, i) => {
              const endpoint = endpoints[w % endpointCount] as EndpointConfig;
              const headers = webhookHeaders({
                id: `msg_${w}_${i}`,
                timestamp: Math.floor(Date.now() / 1000),
                body: sampleBody,
                secrets: [SECRET],
              });
              const res = await http.post({ endpoint, headers, body: sampleBody });
              if (res.status !== 200) throw new Error(`unexpected ${res.status ?? res.errorCode}`);
            },
            close: () => http.close(),
          };
        },
      },
      {
        mode: 'deliverJob',
        setup: () => {
          const http = createWebhookHttp();
          const deps = {
            config: { endpoints, delivery },
            archive,
            log,
            http,
            clock: { now: () => Date.now() },
            logger,
            random: Math.random,
            resolveSecret: async () => SECRET,
          };
          const sent: number[] = [];
          return {
            once: async (w) => {
              // The endpointCount workers of a group take message n of the group, one endpoint each, at
              // about the same time. Counters persist across runs: no message is ever delivered twice.
              const n = sent[w] ?? 0;
              sent[w] = n + 1;
              const message = `${endpointCount}_${Math.floor(w / endpointCount)}_${n}`;
              const job: QueuedJob = {
                v: 1,
                webhookId: `msg_${message}`,
                type: 'email.received',
                mailboxId: 'inbox',
                messageKey: `k${message}`,
                endpointId: `ep${w % endpointCount}`,
                eventKey: `raw/inbox/2025/01/01/${message}.json`,
              };
              const r = await deliverJob(job, deps);
              if (r.outcome !== 'delivered') throw new Error(`unexpected ${r.outcome} ${r.errorCode ?? ''}`);
            },
            close: () => http.close(),
          };
        },
      },
    ];

    // Interleaved in short slices, so load from elsewhere hits every mode alike (see SLICE_SECONDS).
    const running = modes
      .filter(({ mode }) => !ONLY || ONLY.includes(mode))
      .map(({ mode, setup }) => ({ mode, ...setup(), samples: [] as Sample[] }));
    await run(inFlight, running); // warm-up: connections, JIT
    for (let r = 0; r < RUNS; r++) {
      const samples = await run(inFlight, running);
      for (const [k, m] of running.entries()) m.samples.push(samples[k] as Sample);
    }
    for (const m of running) {
      await m.close();
      rows.push({ endpoints: endpointCount, mode: m.mode, samples: m.samples });
    }
  }
  child.disconnect();

  console.log(
    `\nDelivery throughput (req/s), ${RUNS} runs x ${SECONDS}s, ${IN_FLIGHT_PER_ENDPOINT} in flight per endpoint, body ~${Math.round(Buffer.byteLength(JSON.stringify(ev)) / 1024)} KiB`,
  );
  console.log('| endpoints | mode        | median req/s | min   | max   | vs bare | client CPU us/req |');
  console.log('|-----------|-------------|--------------|-------|-------|---------|-------------------|');
  for (const row of rows) {
    const bare = rows.find((r) => r.endpoints === row.endpoints && r.mode === 'bare undici');
    const rates = row.samples.map((x) => x.rate);
    const ratio = bare ? median(rates) / median(bare.samples.map((x) => x.rate)) : Number.NaN;
    const cells = [
      String(row.endpoints).padEnd(9),
      row.mode.padEnd(11),
      median(rates).toFixed(0).padStart(12),
      Math.min(...rates)
        .toFixed(0)
        .padStart(5),
      Math.max(...rates)
        .toFixed(0)
        .padStart(5),
      ratio.toFixed(2).padStart(7),
      median(row.samples.map((x) => x.cpuUs))
        .toFixed(0)
        .padStart(17),
    ];
    console.log(`| ${cells.join(' | ')} |`);
  }
}

await main();

/**
 * Delivery throughput: signed webhook deliveries per second against a local keep-alive receiver,
 * compared with a bare undici POST loop to the same receiver (the ceiling on this machine), for 1 and
 * 10 endpoints. The receiver runs in a child process so client and server do not share one event loop.
 *
 * Modes (same body size, same in-flight limit per endpoint = the default maxConcurrency of 10):
 *   bare        undici Agent.request, fixed body, keep-alive: the limit
 *   sign+post   createWebhookHttp().post with Standard Webhooks headers (SSRF guard, caps, snippet)
 *   deliverJob  the whole path: job -> event from an in-memory archive -> payload -> sign -> POST ->
 *               classify -> attempt recorded (in-memory log)
 *
 * Run: npx tsx bench/delivery.ts [seconds-per-run=2] [runs=5]
 */
import { spawn } from 'node:child_process';
import { Agent } from 'undici';
import { DeliveryConfig, EndpointConfig } from '../shared/config/schema.js';
import { deliverJob, type QueuedJob } from '../shared/delivery/deliver.js';
import { createWebhookHttp } from '../shared/delivery/http.js';
import { webhookHeaders } from '../shared/delivery/sign.js';
import { silentLogger } from '../shared/log.js';
import type { PophookEvent } from '../shared/mail/event.js';
import type { DeliveryLog } from '../shared/state/store.js';

const SECONDS = Number(process.argv[2] ?? 2);
const RUNS = Number(process.argv[3] ?? 5);
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

/** Runs `once` with `inFlight` concurrent loops for SECONDS. */
async function measure(
  inFlight: number,
  once: (worker: number, i: number) => Promise<void>,
): Promise<Sample> {
  let done = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const started = performance.now();
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
  return {
    rate: done / ((performance.now() - started) / 1000),
    cpuUs: (used.user + used.system) / Math.max(1, done),
  };
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
  // Throughput, not bookkeeping: the log forgets, so every job is a first attempt.
  const log: DeliveryLog = {
    recordAttempt: async () => {},
    listAttempts: async () => [],
    getEndpointState: async () => undefined,
    setEndpointState: async () => {},
  };
  const archive = { getBytes: async () => eventBytes, linkFor: async () => undefined };
  const rows: { endpoints: number; mode: string; samples: Sample[] }[] = [];

  for (const endpointCount of [1, 10]) {
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
            logger: silentLogger,
            random: Math.random,
            resolveSecret: async () => SECRET,
          };
          return {
            once: async (w, i) => {
              const job: QueuedJob = {
                v: 1,
                webhookId: `msg_${w}_${i}`,
                type: 'email.received',
                mailboxId: 'inbox',
                messageKey: `k${w}_${i}`,
                endpointId: `ep${w % endpointCount}`,
                eventKey: 'raw/inbox/2025/01/01/bench.json',
              };
              const r = await deliverJob(job, deps);
              if (r.outcome !== 'delivered') throw new Error(`unexpected ${r.outcome} ${r.errorCode ?? ''}`);
            },
            close: () => http.close(),
          };
        },
      },
    ];

    // Interleaved (one run of each mode per round), so load from elsewhere hits every mode alike.
    const running = modes.map(({ mode, setup }) => ({ mode, ...setup(), samples: [] as Sample[] }));
    for (const m of running) await measure(inFlight, m.once); // warm-up: connections, JIT
    for (let r = 0; r < RUNS; r++) for (const m of running) m.samples.push(await measure(inFlight, m.once));
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
    const bare = rows.find(
      (r) => r.endpoints === row.endpoints && r.mode === 'bare undici',
    ) as (typeof rows)[number];
    const rates = row.samples.map((x) => x.rate);
    const ratio = median(rates) / median(bare.samples.map((x) => x.rate));
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

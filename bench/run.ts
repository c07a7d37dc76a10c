/**
 * pophook benchmarks, side by side with the POP3 clients people already use. Not part of `npm test`.
 *
 *   npm run bench                  full run (5 runs per contender, full datasets; ~40 min on 2 cores)
 *   npm run bench -- --quick       smaller datasets, 3 runs (about two minutes on an idle 2-core machine)
 *   npm run bench -- --only retrieval,slow-link,memory,delivery,cold-start
 *   npm run bench -- --runs 7      override the run count
 *
 * Every section starts its own Dovecot (test/fixtures/dovecot.ts) with a generated Maildir. Prints
 * tables and PASS/MISS against the targets, and writes the same figures to bench/results/<ts>.json
 * (a full run also redraws docs/bench.svg). Peers (mpop, fetchmail, getmail6) are installed with apt
 * when missing; a peer that cannot be installed is reported as unavailable.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderChart } from './chart.js';
import { type BundleRow, benchColdStart, benchDelivery, type DeliveryRow } from './external.js';
import { fmt, MB, median, progress, RESULTS_DIR, ROOT, removeRunDirs, table } from './lib.js';
import { benchMemory, MEMORY_200MB_CASE, MEMORY_ATTACHMENTS_CASE, type MemoryRow } from './memory.js';
import { ensurePeers, type Peer, peerStartup } from './peers.js';
import {
  benchRetrieval,
  type Contender,
  type Dataset,
  type RetrievalRow,
  retrievalTable,
} from './retrieval.js';

const SECTIONS = ['retrieval', 'slow-link', 'memory', 'delivery', 'cold-start'] as const;
type Section = (typeof SECTIONS)[number];

// Targets (the issue's acceptance bar).
const PIPELINE_VS_MPOP = 1.2;
const CLIENT_VS_LIMIT = 0.7;
const SLOW_LINK_VS_FETCHMAIL = 1.5;
const MAX_PEAK_RSS_200MB = 150 * MB;
const DELIVERY_VS_BARE = 0.5;
const MAX_BUNDLE_BYTES = 1.5 * MB;
const MAX_IMPORT_MS = 200;
// One-way delay of the slow link (20 ms each way: a 40 ms round trip).
const SLOW_LINK_DELAY_MS = 20;

interface Plan {
  runs: number;
  datasets: Dataset[];
  /** Transports per dataset id. */
  transports: Record<string, ('plain' | 'tls')[]>;
  /** Datasets where getmail runs (it forks per message: ~10x slower than the rest). */
  getmailIn: string[];
  slowLink: { count: number; size: number; transports: ('plain' | 'tls')[] };
  memoryRuns: number;
  /** Memory cases to run (all when absent). */
  memoryCases?: string[];
  delivery: { seconds: number; runs: number };
  importRuns: number;
}

const FULL: Plan = {
  runs: 5,
  datasets: [
    { id: 'a', label: '2,000 x 20 KB', count: 2000, size: 20_000 },
    { id: 'b', label: '200 x 1 MB', count: 200, size: 1_000_000 },
    { id: 'c', label: '5 x 50 MB', count: 5, size: 50_000_000 },
  ],
  transports: { a: ['plain', 'tls'], b: ['plain', 'tls'], c: ['plain', 'tls'] },
  getmailIn: ['a', 'b', 'c'],
  slowLink: { count: 200, size: 20_000, transports: ['plain', 'tls'] },
  memoryRuns: 3,
  delivery: { seconds: 2, runs: 5 },
  importRuns: 20,
};

// Sized so the whole quick run takes about two minutes on an idle 2-core machine (the pipeline's
// local storage path, ~5-40 ms per message depending on load, dominates; see bench/README.md).
const QUICK: Plan = {
  runs: 3,
  datasets: [
    { id: 'a', label: '200 x 20 KB', count: 200, size: 20_000 },
    { id: 'b', label: '20 x 1 MB', count: 20, size: 1_000_000 },
  ],
  transports: { a: ['plain', 'tls'], b: ['plain'] },
  getmailIn: ['b'],
  slowLink: { count: 50, size: 20_000, transports: ['plain'] },
  memoryRuns: 1,
  memoryCases: ['empty mailbox (baseline)', MEMORY_200MB_CASE, MEMORY_ATTACHMENTS_CASE],
  delivery: { seconds: 0.5, runs: 3 },
  importRuns: 5,
};

interface Target {
  target: string;
  value: string;
  threshold: string;
  pass: boolean;
}

/** Median fsync latency of a 20 KB file in the temp dir: local-mode storage cost depends on it. */
function fsyncProbe(): number {
  const dir = join(tmpdir(), `pophook-bench-fsync-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const buf = Buffer.alloc(20_000, 120);
  const times: number[] = [];
  try {
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      const fd = openSync(join(dir, String(i)), 'w');
      writeSync(fd, buf);
      fsyncSync(fd);
      closeSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return median(times);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      runs: { type: 'string' },
    },
  });
  const quick = values.quick === true;
  const plan: Plan = structuredClone(quick ? QUICK : FULL);
  if (values.runs) plan.runs = Number(values.runs);
  const only = values.only ? (values.only.split(',') as Section[]) : [...SECTIONS];
  for (const s of only)
    if (!SECTIONS.includes(s)) throw new Error(`unknown section "${s}" (${SECTIONS.join(', ')})`);

  await removeRunDirs(); // leftovers of an interrupted run
  const startedAt = new Date();
  const machine = {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? 'unknown',
    node: process.version.slice(1),
    loadAvgStart: loadavg().map((l) => Number(l.toFixed(2))),
    loadAvgEnd: [] as number[],
    fsyncP50Ms: Number(fsyncProbe().toFixed(2)),
  };
  progress(
    `${quick ? 'quick' : 'full'} run: ${only.join(', ')}; ${machine.cpus} CPUs, load ${machine.loadAvgStart.join(' ')}, fsync p50 ${machine.fsyncP50Ms} ms`,
  );

  const needsPeers = only.includes('retrieval') || only.includes('slow-link');
  const available = needsPeers ? ensurePeers() : ({ mpop: false, fetchmail: false, getmail: false } as const);
  const startup = needsPeers ? await peerStartup(available) : {};
  const peer = (p: Peer) => (available[p] ? [p] : []);
  const sections: {
    retrieval?: RetrievalRow[];
    slowLink?: RetrievalRow[];
    memory?: MemoryRow[];
    delivery?: DeliveryRow[];
    coldStart?: BundleRow[];
  } = {};
  const failures: Record<string, string> = {};
  const attempt = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      failures[name] = (err as Error).message.slice(0, 500);
      progress(`SECTION FAILED ${name}: ${failures[name]}`);
    }
  };

  if (only.includes('retrieval'))
    await attempt('retrieval', async () => {
      sections.retrieval = await benchRetrieval({
        datasets: plan.datasets,
        transports: ['plain', 'tls'],
        runs: plan.runs,
        contenders: (ds) =>
          [
            'pophook pipeline',
            'pophook client',
            ...peer('mpop'),
            ...peer('fetchmail'),
            ...(plan.getmailIn.includes(ds.id) ? peer('getmail') : []),
            'server limit',
          ] as Contender[],
        transportsFor: (ds) => plan.transports[ds.id] ?? ['plain'],
      });
    });
  if (only.includes('slow-link'))
    await attempt('slow-link', async () => {
      const { count, size, transports } = plan.slowLink;
      sections.slowLink = await benchRetrieval({
        datasets: [
          {
            id: 'slow',
            label: `${count} x ${size / 1000} KB, +${SLOW_LINK_DELAY_MS} ms each way`,
            count,
            size,
          },
        ],
        transports,
        runs: plan.runs,
        delayMs: SLOW_LINK_DELAY_MS,
        contenders: () =>
          ['pophook pipeline', 'pophook client', ...peer('mpop'), ...peer('fetchmail')] as Contender[],
      });
    });
  if (only.includes('memory'))
    await attempt('memory', async () => {
      sections.memory = await benchMemory({
        runs: plan.memoryRuns,
        ...(plan.memoryCases ? { cases: plan.memoryCases } : {}),
      });
    });
  if (only.includes('delivery'))
    await attempt('delivery', async () => {
      progress('delivery: bench/delivery.ts');
      sections.delivery = await benchDelivery(plan.delivery);
    });
  if (only.includes('cold-start'))
    await attempt('cold-start', async () => {
      progress('cold start: scripts/bundle-size.ts');
      sections.coldStart = await benchColdStart({ runs: plan.importRuns });
    });
  machine.loadAvgEnd = loadavg().map((l) => Number(l.toFixed(2)));

  // Tables.
  const out: string[] = [];
  out.push(
    `\npophook benchmarks (${quick ? 'quick' : 'full'}), ${startedAt.toISOString()}; ${machine.cpus} x ${machine.model}; Node ${machine.node}`,
    `load average ${machine.loadAvgStart.join(' ')} -> ${machine.loadAvgEnd.join(' ')}; fsync p50 ${machine.fsyncP50Ms} ms; median of ${plan.runs} runs`,
  );
  if (Object.keys(startup).length)
    out.push(
      `peer process start (--version): ${Object.entries(startup)
        .map(([p, s]) => `${p} ${(s * 1000).toFixed(0)} ms`)
        .join(', ')}; pophook runs in a warm process`,
    );
  if (sections.retrieval)
    out.push('\n## Retrieval throughput (fetch all, write to disk)\n', retrievalTable(sections.retrieval));
  if (sections.slowLink)
    out.push(`\n## Slow link (+${SLOW_LINK_DELAY_MS} ms each way)\n`, retrievalTable(sections.slowLink));
  if (sections.memory)
    out.push(
      '\n## Memory (peak RSS of a child process, full pipeline)\n',
      table(
        ['case', 'message', 'peak RSS MB', 'before poll MB', 'poll s'],
        sections.memory.map((m) => [
          m.case,
          m.messageBytes ? `${fmt.f1(m.messageBytes / MB)} MB` : '-',
          m.error ? 'failed' : fmt.f1(m.peakRss / MB),
          fmt.f1(m.beforePoll / MB),
          fmt.f2(m.seconds),
        ]),
      ),
    );
  if (sections.delivery)
    out.push(
      '\n## Delivery (signed webhooks/s to a local keep-alive receiver)\n',
      table(
        ['endpoints', 'mode', 'req/s', 'vs bare undici', 'client CPU us/req'],
        sections.delivery.map((d) => [
          String(d.endpoints),
          d.mode,
          fmt.int(d.reqPerS),
          fmt.pct(d.vsBare),
          fmt.int(d.cpuUsPerReq),
        ]),
      ),
    );
  if (sections.coldStart)
    out.push(
      '\n## Cold start (Lambda bundles as infra builds them)\n',
      table(
        ['function', 'minified KB', 'gzip KB', 'import p50 ms', 'process p50 ms'],
        sections.coldStart.map((b) => [
          b.baseline
            ? `(${b.function === 'aws-sdk' ? 'AWS SDK clients alone' : 'empty module'})`
            : b.function,
          b.baseline ? '-' : fmt.int(b.minifiedBytes / 1000),
          b.baseline ? '-' : fmt.int(b.gzipBytes / 1000),
          fmt.int(b.importMs),
          fmt.int(b.processMs),
        ]),
      ),
    );

  const targets = evaluate(sections);
  if (targets.length)
    out.push(
      '\n## Targets\n',
      table(
        ['target', 'measured', 'threshold', 'result'],
        targets.map((t) => [t.target, t.value, t.threshold, t.pass ? 'PASS' : 'MISS']),
      ),
    );
  for (const [name, msg] of Object.entries(failures)) out.push(`\nSECTION FAILED: ${name}: ${msg}`);
  console.log(out.join('\n'));

  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const results = {
    version: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    quick,
    plan,
    machine,
    peerStartupSeconds: startup,
    peersAvailable: available,
    sections,
    targets,
    failures,
  };
  const file = join(RESULTS_DIR, `${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nresults: ${file}`);
  if (sections.retrieval) {
    const subtitle = `median of ${plan.runs} runs · ${machine.cpus} cores · Node ${machine.node} · ${startedAt.toISOString().slice(0, 10)}${quick ? ' · quick mode (smaller datasets)' : ''} · pipeline = archive + parse + enqueue`;
    const svg = renderChart(sections.retrieval, subtitle);
    writeFileSync(join(RESULTS_DIR, `${stamp}.svg`), svg);
    // Only a full run redraws the chart the README shows.
    if (!quick && !values.runs) {
      writeFileSync(join(ROOT, 'docs', 'bench.svg'), svg);
      console.log('chart: docs/bench.svg');
    }
  }
  if (Object.keys(failures).length) process.exitCode = 1;
}

function evaluate(sections: {
  retrieval?: RetrievalRow[];
  slowLink?: RetrievalRow[];
  memory?: MemoryRow[];
  delivery?: DeliveryRow[];
  coldStart?: BundleRow[];
}): Target[] {
  const targets: Target[] = [];
  const find = (rows: RetrievalRow[], label: string, transport: string, c: Contender) =>
    rows.find((r) => r.label === label && r.transport === transport && r.contender === c && !r.error);
  for (const rows of [sections.retrieval ?? []]) {
    const groups = [...new Set(rows.map((r) => `${r.dataset}|${r.label}|${r.transport}`))];
    for (const g of groups) {
      const [id, label, transport] = g.split('|') as [string, string, string];
      const ours = find(rows, label, transport, 'pophook pipeline');
      const mpop = find(rows, label, transport, 'mpop');
      if ((id === 'a' || id === 'b') && ours && mpop) {
        const ratio = ours.msgPerS / mpop.msgPerS;
        targets.push({
          target: `pipeline vs mpop, ${label}, ${transport}`,
          value: `${fmt.x(ratio)} (${fmt.int(ours.msgPerS)} vs ${fmt.int(mpop.msgPerS)} msg/s)`,
          threshold: `>= ${PIPELINE_VS_MPOP}x`,
          pass: ratio >= PIPELINE_VS_MPOP,
        });
      }
      const client = find(rows, label, transport, 'pophook client');
      const limit = find(rows, label, transport, 'server limit');
      if (client && limit) {
        const ratio = client.msgPerS / limit.msgPerS;
        targets.push({
          target: `client vs server limit, ${label}, ${transport}`,
          value: `${fmt.pct(ratio)} (${fmt.int(client.msgPerS)} vs ${fmt.int(limit.msgPerS)} msg/s)`,
          threshold: `>= ${fmt.pct(CLIENT_VS_LIMIT)}`,
          pass: ratio >= CLIENT_VS_LIMIT,
        });
      }
    }
  }
  for (const r of sections.slowLink ?? []) {
    if (r.contender !== 'pophook pipeline' || r.error) continue;
    const fm = find(sections.slowLink ?? [], r.label, r.transport, 'fetchmail');
    if (!fm) continue;
    const ratio = r.msgPerS / fm.msgPerS;
    targets.push({
      target: `slow link: pipeline vs fetchmail, ${r.transport}`,
      value: `${fmt.x(ratio)} (${fmt.int(r.msgPerS)} vs ${fmt.int(fm.msgPerS)} msg/s)`,
      threshold: `>= ${SLOW_LINK_VS_FETCHMAIL}x`,
      pass: ratio >= SLOW_LINK_VS_FETCHMAIL,
    });
  }
  const big = sections.memory?.find((m) => m.case === MEMORY_200MB_CASE && !m.error);
  if (big)
    targets.push({
      target: 'peak RSS, 200 MB message',
      value: `${fmt.f1(big.peakRss / MB)} MB`,
      threshold: `< ${MAX_PEAK_RSS_200MB / MB} MB`,
      pass: big.peakRss < MAX_PEAK_RSS_200MB,
    });
  for (const d of sections.delivery ?? []) {
    if (d.mode !== 'deliverJob') continue;
    targets.push({
      target: `delivery (deliverJob) vs bare undici, ${d.endpoints} endpoint${d.endpoints > 1 ? 's' : ''}`,
      value: `${fmt.pct(d.vsBare)} (${fmt.int(d.reqPerS)} req/s)`,
      threshold: `>= ${fmt.pct(DELIVERY_VS_BARE)}`,
      pass: d.vsBare >= DELIVERY_VS_BARE,
    });
  }
  const sdk = sections.coldStart?.find((b) => b.baseline && b.function === 'aws-sdk');
  for (const b of sections.coldStart ?? []) {
    if (b.baseline) continue;
    targets.push({
      target: `${b.function} bundle size`,
      value: `${fmt.f2(b.minifiedBytes / MB)} MB`,
      threshold: `< ${MAX_BUNDLE_BYTES / MB} MB`,
      pass: b.minifiedBytes < MAX_BUNDLE_BYTES,
    });
    targets.push({
      target: `${b.function} import time`,
      value: `${fmt.int(b.importMs)} ms${sdk ? ` (SDK alone ${fmt.int(sdk.importMs)})` : ''}`,
      threshold: `< ${MAX_IMPORT_MS} ms`,
      pass: b.importMs < MAX_IMPORT_MS,
    });
  }
  return targets;
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(removeRunDirs);

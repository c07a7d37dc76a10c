/**
 * Where the full pipeline's time goes, for the retrieval targets. Against one Dovecot holding
 * `--count` messages of `--size` bytes, interleaved over `--runs` rounds (median reported):
 *
 *   pipeline                as shipped (pollLocal with the local runtime)
 *   pipeline, parse stubbed the parse step replaced by a stub that only drains the stream
 *   pophook client, mpop    for scale
 *
 * with wall, CPU (all threads) and main-thread busy milliseconds per message (the main thread runs
 * POP3, parsing and orchestration; the file writer threads the durable writes). Also prints writer
 * batches per message, wall time per storage call and per parse, and mailparser's CPU cost per message
 * parsed alone from memory.
 *
 *   npx tsx bench/diagnose.ts [--count 500] [--size 20000] [--runs 3]
 *   node --cpu-prof --import tsx bench/diagnose.ts ...   then   npx tsx bench/profile-summary.ts FILE
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sharedDurableWriter } from '../shared/durable-writer.js';
import {
  PIPELINE_CONCURRENCY,
  type PollDeps,
  pollMailbox,
  STATE_WRITE_CONCURRENCY,
} from '../shared/ingest/poll.js';
import { pollDeps } from '../shared/runtime/local.js';
import { makeMessage } from '../test/fixtures/messages.js';
import { childCpuMs, cpuMs, fmt, median, removeRunDirs, table, tempDir } from './lib.js';
import { clientRun, type Pop3Target, pipelineRuntime } from './ours.js';
import { parseContenders } from './parse-contenders.js';
import { runPeer } from './peers.js';
import { dovecotWith, targetOf } from './retrieval.js';

type Variant = 'pipeline' | 'pipeline, parse stubbed';

const stats = new Map<string, { n: number; ms: number }>();
function timed<T extends object>(obj: T, name: string, methods: string[]): void {
  const o = obj as Record<string, unknown>;
  for (const m of methods) {
    const f = (o[m] as (...a: unknown[]) => Promise<unknown>).bind(obj);
    o[m] = async (...a: unknown[]) => {
      const t0 = performance.now();
      try {
        return await f(...a);
      } finally {
        const s = stats.get(`${name}.${m}`) ?? { n: 0, ms: 0 };
        s.n++;
        s.ms += performance.now() - t0;
        stats.set(`${name}.${m}`, s);
      }
    };
  }
}

const stubParse: PollDeps['parse'] = async (input) => {
  for await (const _ of input.source ?? [input.bytes]) {
    // drain
  }
  return {
    version: 1,
    eventId: input.eventId,
    messageKey: input.messageKey,
    mailboxId: input.mailboxId,
    uidl: input.uidl,
    receivedAt: input.receivedAt,
    date: null,
    messageId: null,
    inReplyTo: null,
    references: [],
    subject: '',
    from: [],
    to: [],
    cc: [],
    bcc: [],
    replyTo: [],
    text: '',
    textTruncated: false,
    html: null,
    htmlTruncated: false,
    headers: [],
    attachments: [],
    raw: input.raw,
    authResults: null,
    spam: null,
    charsetWarnings: [],
    parseError: null,
  } as unknown as Awaited<ReturnType<PollDeps['parse']>>;
};

async function pipelineVariant(t: Pop3Target, variant: Variant, instrument: boolean): Promise<number> {
  const dir = await tempDir('diag');
  try {
    const rt = await pipelineRuntime(t, dir.path);
    if (instrument) {
      timed(rt.archive, 'archive', ['putStreamCreateOnly', 'put', 'get']);
      timed(rt.state, 'state', ['createMessage', 'putMessage']);
      timed(rt.queue, 'queue', ['send']);
    }
    const deps = pollDeps(rt);
    const stub = variant === 'pipeline, parse stubbed';
    const realParse = deps.parse;
    deps.parse = stub ? stubParse : realParse;
    if (instrument) {
      const inner = deps.parse;
      deps.parse = async (input, pd) => {
        const t0 = performance.now();
        try {
          return await inner(input, pd);
        } finally {
          const s = stats.get('parse') ?? { n: 0, ms: 0 };
          s.n++;
          s.ms += performance.now() - t0;
          stats.set('parse', s);
        }
      };
    }
    const t0 = performance.now();
    const r = await pollMailbox('inbox', deps);
    const seconds = (performance.now() - t0) / 1000;
    await rt.close();
    if (r.outcome !== 'ok') throw new Error(`${variant}: ${r.outcome} ${r.error?.message}`);
    return seconds;
  } finally {
    await dir.cleanup();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '500' },
      size: { type: 'string', default: '20000' },
      runs: { type: 'string', default: '3' },
    },
  });
  const count = Number(values.count);
  const size = Number(values.size);
  const runs = Number(values.runs);

  // mailparser alone, from memory: CPU per message.
  const msg = makeMessage({ index: 7, size });
  const parseOnce = () => parseContenders.stream(msg);
  for (let i = 0; i < 20; i++) await parseOnce();
  const cpu0 = cpuMs();
  const wall0 = performance.now();
  const PARSES = 100;
  for (let i = 0; i < PARSES; i++) await parseOnce();
  const parseCpuMs = (cpuMs() - cpu0) / PARSES;
  const parseWallMs = (performance.now() - wall0) / PARSES;

  const { dovecot } = await dovecotWith({ id: 'd', label: 'd', count, size });
  const certDir = await tempDir('ca');
  const caFile = join(certDir.path, 'cert.pem');
  writeFileSync(caFile, dovecot.caPem);
  try {
    const t = targetOf(dovecot, false);
    // Instrumented run first (also the warm-up): writer batches per message and per-call wall times.
    const batches0 = sharedDurableWriter().batches;
    await pipelineVariant(t, 'pipeline', true);
    const batchesPerMessage = (sharedDurableWriter().batches - batches0) / count;
    const stageRows = [...stats.entries()].map(([k, s]) => [
      k,
      fmt.int(s.n),
      fmt.f2(s.ms / s.n),
      fmt.f2(s.ms / count),
    ]);

    const variants: (Variant | 'pophook client' | 'mpop')[] = [
      'pipeline',
      'pipeline, parse stubbed',
      'pophook client',
      'mpop',
    ];
    const times = new Map(variants.map((v) => [v, [] as number[]]));
    const cpuMs = new Map(variants.map((v) => [v, [] as number[]]));
    const mainMs = new Map(variants.map((v) => [v, [] as number[]]));
    for (let r = 0; r < runs; r++) {
      for (const v of variants) {
        let s: number;
        const elu = performance.eventLoopUtilization();
        const own = process.cpuUsage();
        const children = childCpuMs();
        if (v === 'pophook client') s = (await clientRun(t)).seconds;
        else if (v === 'mpop') {
          const d = await tempDir('mpop');
          try {
            s = (
              await runPeer(
                'mpop',
                { port: t.port, tls: false, user: t.user, password: t.password, caFile },
                d.path,
                count,
              )
            ).seconds;
          } finally {
            await d.cleanup();
          }
        } else s = await pipelineVariant(t, v, false);
        times.get(v)?.push(s);
        const used = process.cpuUsage(own);
        // mpop's CPU is its own (a reaped child); ours is this process's, all threads.
        cpuMs.get(v)?.push(v === 'mpop' ? childCpuMs() - children : (used.user + used.system) / 1000);
        if (v !== 'mpop') mainMs.get(v)?.push(performance.eventLoopUtilization(elu).active);
      }
      process.stderr.write(`[diagnose] round ${r + 1}/${runs}\n`);
    }
    console.log(
      `\n${count} x ${size} B, plain, median of ${runs}; mailparser alone: ${fmt.f2(parseCpuMs)} ms CPU (${fmt.f2(parseWallMs)} ms wall) per message; ${fmt.f1(batchesPerMessage)} writer batches per message\n`,
    );
    console.log(
      table(
        ['variant', 'msg/s', 'wall ms/msg', 'CPU ms/msg', 'main thread busy ms/msg'],
        variants.map((v) => {
          const s = median(times.get(v) ?? []);
          return [
            v,
            fmt.int(count / s),
            fmt.f2((s * 1000) / count),
            fmt.f2(median(cpuMs.get(v) ?? []) / count),
            v === 'mpop' ? '' : fmt.f2(median(mainMs.get(v) ?? []) / count),
          ];
        }),
      ),
    );
    console.log(
      `\nwall time per call (instrumented run, calls overlap: up to ${PIPELINE_CONCURRENCY} background tasks and ${STATE_WRITE_CONCURRENCY} state writes at once)\n`,
    );
    console.log(table(['call', 'calls', 'ms/call', 'ms/message'], stageRows));
  } finally {
    await dovecot.stop();
    await certDir.cleanup();
  }
}

await main().finally(removeRunDirs);

/**
 * How fast could any implementation of the full pipeline go on this machine, next to mpop? Measures in
 * one run the least CPU the pipeline's required work can cost per message and prints the ceiling that
 * follows from the machine's cores, beside mpop's rate and pophook's own:
 *
 *   parse       the cheaper of mailparser's own simpleParser and pophook's parseMessage (bytes in
 *               memory, attachments drained), CPU per message
 *   files       4 durable files per message (raw message, attachment, event JSON, delivery job), each
 *               priced at what mpop spends on its one file: mpop's CPU per message minus pophook's
 *               POP3 client's (a low price: mpop's own POP3 work is counted as ours, which is lean)
 *   pop3        pophook's POP3 client alone (pipelined RETR into SHA-256), CPU per message
 *
 * ceiling = cores x 1000 / (parse + files + pop3) messages per second. Dovecot's CPU, the state
 * records and every hand-off are left out, so the true ceiling is lower still.
 *
 *   npx tsx bench/floor.ts [--count 1000] [--size 20000] [--runs 3]
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeMessage } from '../test/fixtures/messages.js';
import { childCpuMs, cpuMs, fmt, median, removeRunDirs, table, tempDir } from './lib.js';
import { clientRun, type Pop3Target, pipelineRun } from './ours.js';
import { parseBytes, parseContenders } from './parse-contenders.js';
import { runPeer } from './peers.js';
import { dovecotWith, targetOf } from './retrieval.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    size: { type: 'string', default: '20000' },
    runs: { type: 'string', default: '3' },
  },
});
const count = Number(values.count);
const size = Number(values.size);
const runs = Number(values.runs);
/** Durable files the pipeline makes per message (raw, attachment, event, job). */
const FILES_PER_MESSAGE = 4;

/** CPU per message of the cheaper of parseMessage (bytes) and simpleParser, and the sizes it yields. */
async function parseFloor(msg: Buffer): Promise<{ ms: number; eventBytes: number; attachmentBytes: number }> {
  const event = await parseBytes(msg);
  const eventBytes = Buffer.byteLength(JSON.stringify({ type: 'email.received', data: event }));
  const attachmentBytes = event.attachments.reduce((n, a) => n + a.size, 0);
  const { bytes, simple } = parseContenders;
  const per = new Map<string, number[]>([
    ['bytes', []],
    ['simple', []],
  ]);
  for (let i = 0; i < 300; i++) {
    await bytes(msg);
    await simple(msg);
  }
  for (let r = 0; r < 5; r++) {
    for (const [name, f] of [
      ['bytes', bytes],
      ['simple', simple],
    ] as const) {
      const c0 = cpuMs();
      for (let i = 0; i < 100; i++) await f(msg);
      per.get(name)?.push((cpuMs() - c0) / 100);
    }
  }
  return {
    ms: Math.min(median(per.get('bytes') ?? []), median(per.get('simple') ?? [])),
    eventBytes,
    attachmentBytes,
  };
}

/** The full pipeline as shipped: msg/s and CPU ms per message. */
async function pipeline(t: Pop3Target): Promise<{ rate: number; cpu: number }> {
  const dir = await tempDir('floor-pipeline');
  try {
    const c0 = cpuMs();
    const run = await pipelineRun(t, dir.path);
    return { rate: count / run.seconds, cpu: (cpuMs() - c0) / count };
  } finally {
    await dir.cleanup();
  }
}

async function main(): Promise<void> {
  const msg = makeMessage({ index: 7, size });
  const parse = await parseFloor(msg);
  const { dovecot } = await dovecotWith({ id: 'f', label: 'f', count, size });
  const certDir = await tempDir('ca');
  const caFile = join(certDir.path, 'cert.pem');
  writeFileSync(caFile, dovecot.caPem);
  try {
    const t = targetOf(dovecot, false);
    const mpop: number[] = [];
    const mpopCpu: number[] = [];
    const pop3: number[] = [];
    const ours: number[] = [];
    const oursCpu: number[] = [];
    await clientRun(t); // warm-up: Dovecot indexes, page cache
    await pipeline(t);
    for (let r = 0; r < runs; r++) {
      const d = await tempDir('mpop');
      const children = childCpuMs();
      const run = await runPeer(
        'mpop',
        { port: t.port, tls: false, user: t.user, password: t.password, caFile },
        d.path,
        count,
      );
      mpopCpu.push((childCpuMs() - children) / count);
      await d.cleanup();
      mpop.push(count / run.seconds);
      const c0 = cpuMs();
      await clientRun(t);
      pop3.push((cpuMs() - c0) / count);
      const p = await pipeline(t);
      ours.push(p.rate);
      oursCpu.push(p.cpu);
      process.stderr.write(`[floor] round ${r + 1}/${runs}\n`);
    }
    const cores = cpus().length;
    const perFile = Math.max(0, median(mpopCpu) - median(pop3));
    const floor = parse.ms + FILES_PER_MESSAGE * perFile + median(pop3);
    const ceiling = (cores * 1000) / floor;
    const target = 1.2 * median(mpop);
    console.log(
      `\n${count} x ${size} B, plain, ${cores} cores, median of ${runs}; CPU ms per message; Dovecot's CPU not counted\n`,
    );
    console.log(
      table(
        ['part', 'CPU ms/msg'],
        [
          ['parse (cheaper of simpleParser and parseMessage)', fmt.f2(parse.ms)],
          [
            `${FILES_PER_MESSAGE} durable files (${fmt.int(msg.length)} + ${fmt.int(parse.attachmentBytes)} + ${fmt.int(parse.eventBytes)} + ~400 B) at mpop's price of ${fmt.f2(perFile)}`,
            fmt.f2(FILES_PER_MESSAGE * perFile),
          ],
          ['POP3 client (pipelined RETR, SHA-256)', fmt.f2(median(pop3))],
          ['floor', fmt.f2(floor)],
          ['pophook pipeline as shipped', fmt.f2(median(oursCpu))],
          ['mpop (one Maildir file per message)', fmt.f2(median(mpopCpu))],
        ],
      ),
    );
    console.log(
      `\nceiling on ${cores} cores: ${fmt.int(ceiling)} msg/s; 1.2x mpop: ${fmt.int(target)} msg/s (mpop ${fmt.int(median(mpop))}); pophook pipeline: ${fmt.int(median(ours))} msg/s (${fmt.f2(median(ours) / median(mpop))}x mpop, ${fmt.f2(median(ours) / ceiling)} of the ceiling)`,
    );
  } finally {
    await dovecot.stop();
    await certDir.cleanup();
  }
}

await main().finally(removeRunDirs);

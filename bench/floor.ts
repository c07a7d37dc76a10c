/**
 * Is "full pipeline >= 1.2x mpop" reachable on this machine at all? Measures, in one run, mpop's rate
 * and the least CPU the pipeline's required work can cost per message, and prints the ceiling that
 * follows from the machine's cores:
 *
 *   parse       the cheaper of mailparser's own simpleParser and pophook's parseMessage (bytes in
 *               memory, attachments drained), CPU per message
 *   files       the durable objects every message needs (raw message, attachment, event JSON,
 *               delivery job), each made the cheapest way Node can: synchronous open, write, fsync,
 *               close, link, unlink of the temp name, in batches of 50 with one directory fsync per
 *               batch; CPU per message (no thread hand-offs, no state journal: both cost extra)
 *   pop3        pophook's POP3 client alone (pipelined RETR into SHA-256), CPU per message
 *
 * ceiling = cores x 1000 / (parse + files + pop3) messages per second. Dovecot's own CPU per message is
 * left out, so the true ceiling is lower still. If 1.2x mpop is above it, the target cannot be met
 * here by any implementation that parses and stores each message durably.
 *
 *   npx tsx bench/floor.ts [--count 500] [--size 20000] [--runs 3]
 */
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { simpleParser } from 'mailparser';
import { ParseConfig } from '../shared/config/schema.js';
import { parseMessage } from '../shared/mail/parse.js';
import { makeMessage } from '../test/fixtures/messages.js';
import { fmt, median, removeRunDirs, table, tempDir } from './lib.js';
import { clientRun } from './ours.js';
import { runPeer } from './peers.js';
import { dovecotWith, targetOf } from './retrieval.js';

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
const FILE_BATCH = 50;

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function parseFloor(msg: Buffer): Promise<{ ms: number; eventBytes: number; attachmentBytes: number }> {
  const limits = ParseConfig.parse({});
  let attachmentBytes = 0;
  const ours = () =>
    parseMessage(
      {
        bytes: msg,
        mailboxId: 'm',
        messageKey: 'k',
        eventId: 'e',
        uidl: null,
        receivedAt: '2026-01-01T00:00:00.000Z',
        raw: { key: 'k', size: msg.length, sha256: '' },
        limits,
      },
      {
        writeAttachment: async (_i, _m, content) => {
          let n = 0;
          for await (const c of content) n += (c as Buffer).length;
          attachmentBytes = n;
          return { key: 'a', size: n, sha256: '' };
        },
      },
    );
  const simple = () =>
    simpleParser(msg, {
      skipTextToHtml: true,
      skipTextLinks: true,
      skipImageLinks: true,
      checksumAlgo: false,
    } as Parameters<typeof simpleParser>[1]);
  const eventBytes = Buffer.byteLength(JSON.stringify({ type: 'email.received', data: await ours() }));
  const per = new Map<string, number[]>([
    ['ours', []],
    ['simple', []],
  ]);
  for (let i = 0; i < 50; i++) {
    await ours();
    await simple();
  }
  for (let r = 0; r < 5; r++) {
    for (const [name, f] of [
      ['ours', ours],
      ['simple', simple],
    ] as const) {
      const c0 = cpuMs();
      for (let i = 0; i < 100; i++) await f();
      per.get(name)?.push((cpuMs() - c0) / 100);
    }
  }
  return {
    ms: Math.min(median(per.get('ours') ?? []), median(per.get('simple') ?? [])),
    eventBytes,
    attachmentBytes,
  };
}

/** CPU per message to make `sizes.length` durable files of these sizes, the cheapest way. */
async function filesFloor(sizes: number[]): Promise<number> {
  const dir = await tempDir('floor');
  const tmp = join(dir.path, 'tmp');
  const out = join(dir.path, 'out');
  mkdirSync(tmp);
  mkdirSync(out);
  const bodies = sizes.map((n) => Buffer.alloc(n, 0x61));
  const messages = count;
  let k = 0;
  const c0 = cpuMs();
  for (let m = 0; m < messages; m += FILE_BATCH) {
    for (let i = 0; i < FILE_BATCH; i++) {
      for (const body of bodies) {
        const temp = join(tmp, String(k));
        const fd = openSync(temp, 'wx', 0o600);
        writeSync(fd, body);
        fsyncSync(fd);
        closeSync(fd);
        linkSync(temp, join(out, String(k++)));
        unlinkSync(temp);
      }
    }
    const d = openSync(out, 'r');
    fsyncSync(d);
    closeSync(d);
  }
  const ms = (cpuMs() - c0) / messages;
  await dir.cleanup();
  return ms;
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
    const pop3: number[] = [];
    const files: number[] = [];
    await clientRun(t); // warm-up: Dovecot indexes, page cache
    for (let r = 0; r < runs; r++) {
      const d = await tempDir('mpop');
      const run = await runPeer(
        'mpop',
        { port: t.port, tls: false, user: t.user, password: t.password, caFile },
        d.path,
        count,
      );
      await d.cleanup();
      mpop.push(count / run.seconds);
      const c0 = cpuMs();
      await clientRun(t);
      pop3.push((cpuMs() - c0) / count);
      files.push(await filesFloor([msg.length, parse.attachmentBytes, parse.eventBytes, 400]));
      process.stderr.write(`[floor] round ${r + 1}/${runs}\n`);
    }
    const cores = cpus().length;
    const floor = parse.ms + median(files) + median(pop3);
    const ceiling = (cores * 1000) / floor;
    const target = 1.2 * median(mpop);
    console.log(
      `\n${count} x ${size} B, plain, ${cores} cores, median of ${runs}; CPU ms per message, Dovecot's own CPU not counted\n`,
    );
    console.log(
      table(
        ['part', 'CPU ms/msg'],
        [
          ['parse (cheaper of simpleParser and parseMessage)', fmt.f2(parse.ms)],
          [
            `4 durable files (${fmt.int(msg.length)} + ${fmt.int(parse.attachmentBytes)} + ${fmt.int(parse.eventBytes)} + 400 B), synchronous calls`,
            fmt.f2(median(files)),
          ],
          ['POP3 client (pipelined RETR, SHA-256)', fmt.f2(median(pop3))],
          ['floor', fmt.f2(floor)],
        ],
      ),
    );
    console.log(
      `\nceiling on ${cores} cores: ${fmt.int(ceiling)} msg/s; mpop: ${fmt.int(median(mpop))} msg/s; 1.2x mpop: ${fmt.int(target)} msg/s -> ${ceiling >= target ? 'reachable in principle' : 'not reachable on this machine'}`,
    );
  } finally {
    await dovecot.stop();
    await certDir.cleanup();
  }
}

await main().finally(removeRunDirs);

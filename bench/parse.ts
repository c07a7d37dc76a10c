/**
 * Micro-bench of the parse step alone: `parseMessage` (stream source, and the in-memory `bytes` fast
 * path) against mailparser's own `simpleParser` on the same bytes, in the same process. Contenders
 * run interleaved in rounds so background load hits them alike; medians of the per-round figures are
 * printed as ms wall and ms CPU per message. Messages come from test/fixtures/messages.ts (a text part
 * plus one base64 attachment carrying the bulk); attachments are drained, as a writer would.
 *
 *   npx tsx bench/parse.ts [--size 20000,1000000] [--rounds 5] [--only stream,bytes,simple]
 *   node --cpu-prof --cpu-prof-dir=/tmp/p --import tsx bench/parse.ts --size 20000 --only bytes
 *
 *
 * A worker-thread pool for parsing was measured and not shipped: on 2 cores one worker reached 0.85x
 * the inline rate (it frees ~0.7 ms of the poller's thread per 20 KB message but costs ~13% more CPU
 * in all), two workers 0.6x.
 */
import { parseArgs } from 'node:util';
import { makeMessage } from '../test/fixtures/messages.js';
import { median } from './lib.js';
import { parseContenders } from './parse-contenders.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '20000,1000000' },
    rounds: { type: 'string', default: '5' },
    only: { type: 'string', default: 'stream,bytes,simple' },
  },
});
const sizes = values.size.split(',').map(Number);
const rounds = Number(values.rounds);
const only = new Set(values.only.split(','));
const contenders: Record<string, (msg: Buffer) => Promise<unknown>> = parseContenders;

for (const size of sizes) {
  const msg = makeMessage({ index: 7, size });
  // Enough messages per round for ~0.4 s of work at 20 KB, fewer for big ones.
  const perRound = Math.max(10, Math.round(8_000_000 / size));
  const names = Object.keys(contenders).filter((n) => only.has(n));
  const figures = new Map(names.map((n) => [n, { wall: [] as number[], cpu: [] as number[] }]));
  for (const name of names) {
    for (let i = 0; i < Math.min(perRound, 50); i++) await contenders[name]?.(msg);
  }
  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      const run = contenders[name];
      const fig = figures.get(name);
      if (!run || !fig) continue;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < perRound; i++) await run(msg);
      const cpu = process.cpuUsage(c0);
      fig.wall.push((performance.now() - t0) / perRound);
      fig.cpu.push((cpu.user + cpu.system) / 1000 / perRound);
    }
  }
  for (const [name, fig] of figures) {
    console.log(
      `${String(size).padStart(8)} B  ${name.padEnd(7)} ${median(fig.wall).toFixed(2).padStart(7)} ms wall ${median(
        fig.cpu,
      )
        .toFixed(2)
        .padStart(7)} ms cpu`,
    );
  }
}

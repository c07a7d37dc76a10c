/**
 * Memory: peak RSS (VmHWM from /proc) of a child process running one full-pipeline poll, for an empty
 * mailbox (the fixed cost of Node plus our code), a 20 MB and a 200 MB message (memory must not grow
 * with message size, invariant 5), and a message with 500 attachments (each streamed to the archive).
 * The child runs with the Node flags the Lambda functions are deployed with (LAMBDA_NODE_OPTIONS).
 */

import { LAMBDA_NODE_OPTIONS } from '../infra/constructs/pophook.js';
import { startDovecot } from '../test/fixtures/dovecot.js';
import { makeMessage } from '../test/fixtures/messages.js';
import { bundleChild, median, progress, runTimed, tempDir } from './lib.js';
import { targetOf } from './retrieval.js';

export interface MemoryRow {
  case: string;
  messageBytes: number;
  /** Median peak RSS over the runs, bytes. */
  peakRss: number;
  runs: number[];
  /** RSS high-water mark before the poll started (Node + bundle loaded), bytes. */
  beforePoll: number;
  seconds: number;
  error?: string;
}

interface Case {
  name: string;
  setup: (d: Awaited<ReturnType<typeof startDovecot>>) => Promise<number>;
}

export const MEMORY_200MB_CASE = '200 MB message';
export const MEMORY_ATTACHMENTS_CASE = '500 attachments (2 MB)';

/** Runs every case (or only those named in `cases`), `runs` times each. */
export async function benchMemory(opts: { runs: number; cases?: readonly string[] }): Promise<MemoryRow[]> {
  const child = await bundleChild('memory-child.ts');
  const cases: Case[] = [
    { name: 'empty mailbox (baseline)', setup: async () => 0 },
    { name: '20 MB message', setup: async (d) => (await d.addLargeMessage(20_000_000, 1)).size },
    { name: MEMORY_200MB_CASE, setup: async (d) => (await d.addLargeMessage(200_000_000, 1)).size },
    {
      name: MEMORY_ATTACHMENTS_CASE,
      setup: async (d) => {
        const m = makeMessage({ index: 1, size: 2_000_000, attachments: 500 });
        await d.addMessages([m]);
        return m.length;
      },
    },
  ];
  const rows: MemoryRow[] = [];
  for (const c of cases.filter((x) => !opts.cases || opts.cases.includes(x.name))) {
    progress(`memory: ${c.name}`);
    const dovecot = await startDovecot({});
    try {
      const messageBytes = await c.setup(dovecot);
      const peaks: number[] = [];
      let before = 0;
      let seconds = 0;
      let error: string | undefined;
      for (let r = 0; r < opts.runs; r++) {
        const dir = await tempDir('mem');
        try {
          const job = {
            target: targetOf(dovecot, false),
            dataDir: dir.path,
            maxMessageBytes: 300 * 1024 * 1024,
          };
          // The flags the poller Lambda runs with (NODE_OPTIONS), so the figure is the product's.
          const flags = LAMBDA_NODE_OPTIONS.split(' ');
          const res = await runTimed(process.execPath, [...flags, child, JSON.stringify(job)], {
            sampleRss: true,
          });
          if (res.code !== 0) throw new Error(res.stderr.split('\n').slice(0, 3).join(' / '));
          const out = JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as {
            peakRss: number;
            beforePoll: number;
            seconds: number;
            messages: number;
          };
          if (out.messages !== (messageBytes ? 1 : 0)) throw new Error(`fetched ${out.messages} messages`);
          peaks.push(Math.max(out.peakRss, res.peakRss ?? 0));
          before = out.beforePoll;
          seconds = out.seconds;
        } catch (err) {
          error = (err as Error).message.slice(0, 300);
          progress(`  memory ${c.name} FAILED: ${error}`);
          break;
        } finally {
          await dir.cleanup();
        }
      }
      rows.push({
        case: c.name,
        messageBytes,
        peakRss: median(peaks),
        runs: peaks,
        beforePoll: before,
        seconds,
        ...(error ? { error } : {}),
      });
    } finally {
      await dovecot.stop();
    }
  }
  return rows;
}

/**
 * Child process for the memory benchmark: one full-pipeline poll (archive, parse, enqueue) of the
 * mailbox described by the JSON in argv[2], then one JSON line on stdout with its own peak RSS
 * (VmHWM). Bundled to plain `.mjs` by bench/memory.ts so no TypeScript loader inflates the figure.
 */
import { type Pop3Target, pipelineRun } from './ours.js';

interface Job {
  target: Pop3Target;
  dataDir: string;
  maxMessageBytes: number;
}

function vmHwmSelf(status: string): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

async function main(): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const job = JSON.parse(process.argv[2] ?? '{}') as Job;
  const readHwm = () => vmHwmSelf(readFileSync('/proc/self/status', 'utf8'));
  const beforePoll = readHwm();
  const r = await pipelineRun(job.target, job.dataDir, job.maxMessageBytes);
  const peakRss = readHwm();
  process.stdout.write(
    `${JSON.stringify({ ...r, beforePoll, peakRss, heapUsed: process.memoryUsage().heapUsed })}\n`,
  );
  // Stay alive briefly so the parent's /proc sampler reads the final high-water mark too.
  await new Promise((r) => setTimeout(r, 50));
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});

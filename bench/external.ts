/**
 * Sections measured by existing scripts, run as child processes and parsed, so there is one
 * implementation of each: `bench/delivery.ts` (signed webhooks per second beside a bare undici loop)
 * and `scripts/bundle-size.ts` (the Lambda bundles exactly as infra builds them, and their import time).
 */
import { join } from 'node:path';
import { ROOT, runTimed } from './lib.js';

const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');

export interface DeliveryRow {
  endpoints: number;
  mode: string;
  reqPerS: number;
  min: number;
  max: number;
  vsBare: number;
  cpuUsPerReq: number;
}

/** Runs bench/delivery.ts with `seconds` per run and `runs` runs; parses its table. */
export async function benchDelivery(opts: { seconds: number; runs: number }): Promise<DeliveryRow[]> {
  const r = await runTimed(TSX, [join('bench', 'delivery.ts'), String(opts.seconds), String(opts.runs)], {
    timeoutMs: 15 * 60 * 1000,
  });
  if (r.code !== 0) throw new Error(`bench/delivery.ts exited ${r.code}: ${r.stderr.slice(0, 500)}`);
  const rows: DeliveryRow[] = [];
  for (const line of r.stdout.split('\n')) {
    const cells = line
      .split('|')
      .map((c) => c.trim())
      .filter(Boolean);
    if (cells.length !== 7 || !/^\d+$/.test(cells[0] ?? '')) continue;
    const [endpoints, mode, med, min, max, vs, cpu] = cells as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    rows.push({
      endpoints: Number(endpoints),
      mode,
      reqPerS: Number(med),
      min: Number(min),
      max: Number(max),
      vsBare: Number(vs),
      cpuUsPerReq: Number(cpu),
    });
  }
  if (!rows.length) throw new Error(`no rows in bench/delivery.ts output:\n${r.stdout.slice(0, 500)}`);
  return rows;
}

export interface BundleRow {
  function: string;
  minifiedBytes: number;
  gzipBytes: number;
  sourceMapBytes: number;
  importMs: number;
  processMs: number;
  /** A reference row of bundle-size.ts, not a function: an empty module, or the AWS SDK alone. */
  baseline?: boolean;
}

/** Runs scripts/bundle-size.ts (a CDK synth with bundling, then `runs` imports per bundle). */
export async function benchColdStart(opts: { runs: number }): Promise<BundleRow[]> {
  const r = await runTimed(TSX, [join('scripts', 'bundle-size.ts'), '--runs', String(opts.runs)], {
    timeoutMs: 15 * 60 * 1000,
  });
  if (r.code !== 0) throw new Error(`scripts/bundle-size.ts exited ${r.code}: ${r.stderr.slice(0, 500)}`);
  const rows: BundleRow[] = [];
  const kib = (s: string) => Math.round(Number(s) * 1024);
  for (const line of r.stdout.split('\n')) {
    const m = /^(\S+)\s+([\d.]+) KiB\s+([\d.]+) KiB\s+([\d.]+) KiB\s+([\d.]+) ms\s+([\d.]+) ms\s*$/.exec(
      line.trim(),
    );
    const base = /^(empty-esm|aws-sdk)\s+-\s+-\s+-\s+([\d.]+) ms\s+([\d.]+) ms\s*$/.exec(line.trim());
    if (base) {
      rows.push({
        function: base[1] as string,
        minifiedBytes: 0,
        gzipBytes: 0,
        sourceMapBytes: 0,
        importMs: Number(base[2]),
        processMs: Number(base[3]),
        baseline: true,
      });
      continue;
    }
    if (!m) continue;
    rows.push({
      function: m[1] as string,
      minifiedBytes: kib(m[2] as string),
      gzipBytes: kib(m[3] as string),
      sourceMapBytes: kib(m[4] as string),
      importMs: Number(m[5]),
      processMs: Number(m[6]),
    });
  }
  if (!rows.some((row) => !row.baseline))
    throw new Error(`no rows in scripts/bundle-size.ts output:\n${r.stdout.slice(0, 500)}`);
  return rows;
}

/**
 * Small helpers shared by the benchmark sections: statistics, tables, timed child processes, temp dirs,
 * peak-RSS sampling and the esbuild step that turns a bench child script into plain `.mjs` (so memory
 * figures are not inflated by tsx's loader thread, and the code runs as bundled, like on Lambda).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(BENCH_DIR, '..');
/** Git-ignored; JSON results and bundled child scripts go here. */
export const RESULTS_DIR = join(BENCH_DIR, 'results');

export const MB = 1e6;

/** CPU (user + system) of this process so far, all threads, ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** CPU (user + system) of reaped child processes so far, ms: /proc/self/stat cutime + cstime. */
export function childCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 16 and 17 of stat(5) are at 13 and 14 after the command name; clock ticks (USER_HZ 100).
  return (Number(f[13]) + Number(f[14])) * 10;
}

export function median(xs: readonly number[]): number {
  if (!xs.length) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** A markdown table (also readable on a terminal): numbers right-aligned, text left-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map(
    (_, i) =>
      rows.length > 0 && rows.every((r) => /^([\d.,x%<>~ -]*|n\/a|failed|unavailable)$/.test(r[i] ?? '')),
  );
  const line = (r: readonly string[]) =>
    `| ${r.map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}

export const fmt = {
  int: (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-'),
  /** A rate: whole numbers from 10 up, one decimal below (a 50 MB message takes seconds). */
  rate: (n: number) =>
    Number.isFinite(n) ? (n >= 10 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1)) : '-',
  f1: (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-'),
  f2: (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-'),
  x: (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}x` : '-'),
  pct: (n: number) => (Number.isFinite(n) ? `${(n * 100).toFixed(0)}%` : '-'),
};

export interface Timed {
  seconds: number;
  code: number | null;
  stdout: string;
  stderr: string;
  /** Peak resident set (VmHWM) of the direct child, in bytes, when sampled. */
  peakRss?: number;
}

/**
 * Runs a command, timing from spawn to exit. With `sampleRss`, polls /proc/<pid>/status every 20 ms
 * and keeps the last VmHWM read (the kernel's own high-water mark, so sampling cannot miss a peak;
 * the child must stay alive long enough for one read, which bench children ensure).
 */
export function runTimed(
  cmd: string,
  args: readonly string[],
  opts: {
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    input?: string;
    sampleRss?: boolean;
    timeoutMs?: number;
  } = {},
): Promise<Timed> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd ?? ROOT,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 64 * 1024) stderr += d;
    });
    const sample = () => {
      if (child.pid === undefined) return;
      const hwm = vmHwm(child.pid);
      if (hwm > peak) peak = hwm;
    };
    const sampler = opts.sampleRss ? setInterval(sample, 20) : undefined;
    const killer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.on('error', (err) => {
      clearInterval(sampler);
      clearTimeout(killer);
      reject(err);
    });
    child.on('close', (code) => {
      clearInterval(sampler);
      clearTimeout(killer);
      resolvePromise({
        seconds: (performance.now() - t0) / 1000,
        code,
        stdout,
        stderr,
        ...(opts.sampleRss ? { peakRss: peak } : {}),
      });
    });
    if (opts.input !== undefined) {
      // A child that exits without reading its stdin must not crash us with EPIPE.
      child.stdin?.on('error', () => {});
      child.stdin?.end(opts.input);
    }
  });
}

/** VmHWM (peak RSS) of a live process in bytes; 0 once it is gone. */
export function vmHwm(pid: number | 'self'): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Where the runs write. Not /tmp: the test suite creates and deletes thousands of files there, and on
 * ext4 without a journal (this CI's VMs) the inode allocator walks past every inode deleted in the
 * last 1-6 minutes on each create (`recently_deleted()` in fs/ext4/ialloc.c), so a run right after a
 * mass delete paid 0.12-0.46 ms of CPU per new file (0.03 ms on tmpfs). A directory of our own keeps
 * the runs away from other programs' deletions.
 */
export const BENCH_DATA_DIR = join(RESULTS_DIR, '.data');
const deferred: string[] = [];

/**
 * A fresh directory for one run. `cleanup()` only queues it for `removeRunDirs()` at the end of the
 * bench: removing a run's thousands of files right before the next contender's run would charge that
 * contender for the deletions (see BENCH_DATA_DIR), and the one with more files per message most.
 */
export async function tempDir(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  mkdirSync(BENCH_DATA_DIR, { recursive: true });
  const path = await mkdtemp(join(BENCH_DATA_DIR, `${prefix}-`));
  return {
    path,
    cleanup: async () => {
      deferred.push(path);
    },
  };
}

/** Removes every run directory handed out so far (and leftovers of an interrupted bench). */
export async function removeRunDirs(): Promise<void> {
  deferred.length = 0;
  await rm(BENCH_DATA_DIR, { recursive: true, force: true });
}

/**
 * Bundles a bench child script with esbuild (ESM, node20, packages external) into bench/results/.build,
 * inside the repository so its bare imports resolve from node_modules. Returns the `.mjs` path.
 */
export async function bundleChild(entry: string): Promise<string> {
  const { build } = await import('esbuild');
  const outdir = join(RESULTS_DIR, '.build');
  mkdirSync(outdir, { recursive: true });
  const outfile = join(outdir, `${entry.replace(/^.*\//, '').replace(/\.ts$/, '')}.mjs`);
  await build({
    entryPoints: [join(BENCH_DIR, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One line on stderr, so progress does not mix with the tables on stdout. */
export function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** Running the CLI in-process (fast) or as the real binary in a child process (only where it matters). */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../cli/main.js';
import { type Capture, capture } from './capture.js';

export const repo = fileURLToPath(new URL('../../', import.meta.url));
export const bin = path.join(repo, 'bin/pophook.mjs');
/** A line that looks like a stack frame. */
export const STACK_LINE = /^\s+at .+[:(]/m;

export interface InProcessResult {
  code: number;
  stdout: Capture;
  stderr: Capture;
}

/** `pophook <args>` in this process, with captured output. */
export async function cli(
  args: string[],
  options: { cwd: string; env?: Record<string, string>; signal?: AbortSignal },
): Promise<InProcessResult> {
  const stdout = capture();
  const stderr = capture();
  const code = await main(args, {
    stdout,
    stderr,
    env: options.env ?? {},
    cwd: options.cwd,
    signal: options.signal ?? new AbortController().signal,
  });
  return { code, stdout, stderr };
}

export interface Child {
  process: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
  /** Resolves once `pattern` appears in stdout + stderr. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** The real `pophook` binary as a child process. */
export function spawnCli(args: string[], options: { cwd: string; env?: Record<string, string> }): Child {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: options.cwd,
    env: { ...process.env, NO_COLOR: '1', POPHOOK_CONFIG: '', ...options.env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | string>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  return {
    process: child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
    async waitFor(pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = (stdout + stderr).match(pattern);
        if (m) return m;
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`timed out waiting for ${pattern}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

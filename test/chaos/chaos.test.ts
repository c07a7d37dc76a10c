/**
 * The one-minute chaos run as part of `npm test`: real Dovecot, a worker process SIGKILLed at random,
 * POP3 through a fault proxy, archive/queue/state faults, a failing receiver (see chaos/run.ts). It
 * must end with every message archived exactly once and delivered under one webhook-id.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { dovecotAvailable, requireDovecot } from '../fixtures/dovecot.js';

requireDovecot();
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** One minute of chaos plus Dovecot start, the drain and the checks, on two busy cores. */
const RUN_TIMEOUT_MS = 180_000;

describe.runIf(dovecotAvailable())('chaos run (1 minute)', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  it(
    'loses nothing, archives once, keeps one webhook-id per message',
    async () => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const proc = spawn(
        process.execPath,
        ['--import', 'tsx', 'chaos/run.ts', '--seed', '1', '--minutes', '1'],
        {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      child = proc;
      proc.stdout?.on('data', (c: Buffer) => out.push(c));
      proc.stderr?.on('data', (c: Buffer) => err.push(c));
      const code = await new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      expect({ code, stderr: code === 0 ? '' : stderr.slice(-4000) }).toEqual({ code: 0, stderr: '' });
      const lines = stdout.split('\n').filter(Boolean);
      expect(lines).toHaveLength(1);
      const m =
        /^chaos: seed 1, messages (\d+), faults (\d+), lost 0, duplicate archives 0, id mismatches 0$/.exec(
          lines[0] ?? '',
        );
      expect(m, stdout).not.toBeNull();
      expect(Number(m?.[1])).toBeGreaterThan(20);
      expect(Number(m?.[2])).toBeGreaterThan(20);
    },
    RUN_TIMEOUT_MS,
  );
});

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueueError } from '../../../shared/errors.js';
import { LocalJobQueue } from '../../../shared/queue/local-queue.js';
import type { QueueSendItem } from '../../../shared/queue/queue.js';

const REPO = resolve(import.meta.dirname, '../../..');
const MODULE = pathToFileURL(join(REPO, 'shared/queue/local-queue.ts')).href;

let tmp: string;
let n = 0;
const children: ChildProcess[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'pophook-local-queue-'));
});

afterAll(async () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

class TestClock {
  t = Date.parse('2025-03-01T12:00:00Z');
  now = () => this.t;
}

const freshDir = () => join(tmp, `q${n++}`);
const jobs = (count: number, prefix = 'job'): QueueSendItem[] =>
  Array.from({ length: count }, (_, i) => ({ id: `${prefix}-${i}`, body: JSON.stringify({ v: 1, n: i }) }));

describe('LocalJobQueue', () => {
  it('sends, receives oldest first up to max, and acks', async () => {
    const clock = new TestClock();
    const q = new LocalJobQueue({ dir: freshDir(), clock });
    await q.send(jobs(3));
    clock.t += 1;
    await q.send(jobs(2, 'later'));
    const first = await q.receive(4, 30_000);
    expect(first.map((j) => j.body)).toEqual([...jobs(3), ...jobs(1, 'later')].map((j) => j.body));
    for (const job of first) {
      expect(job.receiveCount).toBe(1);
      expect(job.firstReceivedAt).toBe(clock.t);
    }
    expect(await q.depth()).toEqual({ ready: 1, delayed: 0, inflight: 4, dead: 0 });
    for (const job of first) expect(await q.ack(job.receipt)).toBe(true);
    const rest = await q.receive(10, 30_000);
    expect(rest).toHaveLength(1);
    await q.ack(rest[0]?.receipt ?? '');
    expect(await q.depth()).toEqual({ ready: 0, delayed: 0, inflight: 0, dead: 0 });
    expect(await q.receive(10, 30_000)).toEqual([]);
  });

  it('makes a job receivable again when its visibility ends, with receiveCount 2', async () => {
    const clock = new TestClock();
    const q = new LocalJobQueue({ dir: freshDir(), clock });
    await q.send(jobs(1));
    const [first] = await q.receive(1, 1_000);
    if (!first) throw new Error('nothing received');
    clock.t += 999;
    expect(await q.receive(1, 1_000)).toEqual([]);
    clock.t += 1;
    const [again] = await q.receive(1, 1_000);
    expect(again).toMatchObject({
      id: first.id,
      body: first.body,
      receiveCount: 2,
      firstReceivedAt: first.firstReceivedAt,
    });
    expect(await q.ack(first.receipt)).toBe(false); // stale receipt: the job was redelivered
    expect(await q.ack(again?.receipt ?? '')).toBe(true);
    expect((await q.depth()).inflight).toBe(0);
  });

  it('delays a job on retryLater and on send with delaySeconds', async () => {
    const clock = new TestClock();
    const q = new LocalJobQueue({ dir: freshDir(), clock });
    await q.send([{ id: 'd', body: 'delayed', delaySeconds: 60 }]);
    await q.send([{ id: 'now', body: 'now' }]);
    const [job] = await q.receive(10, 30_000);
    expect(job?.body).toBe('now');
    expect(await q.retryLater(job?.receipt ?? '', 5_000)).toBe(true);
    expect(await q.depth()).toEqual({ ready: 0, delayed: 2, inflight: 0, dead: 0 });
    clock.t += 4_999;
    expect(await q.receive(10, 30_000)).toEqual([]);
    clock.t += 1;
    const [retried] = await q.receive(10, 30_000);
    expect(retried).toMatchObject({ body: 'now', receiveCount: 2 });
    await q.ack(retried?.receipt ?? '');
    clock.t += 55_000;
    const [delayed] = await q.receive(10, 30_000);
    expect(delayed).toMatchObject({ body: 'delayed', receiveCount: 1 });
  });

  it('dead-letters with a reason, lists, and redrives with a fresh receive count', async () => {
    const clock = new TestClock();
    const q = new LocalJobQueue({ dir: freshDir(), clock });
    await q.send(jobs(2));
    const received = await q.receive(2, 30_000);
    const dead = received[0];
    if (!dead) throw new Error('nothing received');
    expect(await q.deadLetter(dead.receipt, 'endpoint ep-1 answered 410 Gone')).toBe(true);
    expect(await q.deadLetter(dead.receipt, 'again')).toBe(false);
    const letters = await q.listDeadLetters();
    expect(letters).toEqual([
      {
        id: dead.id,
        body: dead.body,
        reason: 'endpoint ep-1 answered 410 Gone',
        deadAt: clock.t,
        receiveCount: 1,
        firstReceivedAt: dead.firstReceivedAt,
        enqueuedAt: clock.t,
      },
    ]);
    expect((await q.depth()).dead).toBe(1);
    expect(await q.redriveDeadLetters()).toBe(1);
    expect(await q.listDeadLetters()).toEqual([]);
    const [redriven] = await q.receive(10, 30_000);
    expect(redriven).toMatchObject({ id: dead.id, body: dead.body, receiveCount: 1 });
  });

  it('survives re-opening: ready and in-flight jobs are still there', async () => {
    const dir = freshDir();
    const clock = new TestClock();
    const before = new LocalJobQueue({ dir, clock });
    await before.send(jobs(3));
    await before.receive(1, 1_000);
    const after = new LocalJobQueue({ dir, clock });
    expect(await after.depth()).toEqual({ ready: 2, delayed: 0, inflight: 1, dead: 0 });
    clock.t += 1_000;
    expect((await after.receive(10, 1_000)).map((j) => j.receiveCount).sort()).toEqual([1, 1, 2]);
  });

  it('gives each job to exactly one of two concurrent receivers', async () => {
    const dir = freshDir();
    await new LocalJobQueue({ dir }).send(jobs(30));
    const [a, b] = await Promise.all([
      new LocalJobQueue({ dir }).receive(30, 30_000),
      new LocalJobQueue({ dir }).receive(30, 30_000),
    ]);
    const ids = [...(a ?? []), ...(b ?? [])].map((j) => j.id);
    expect(ids).toHaveLength(30);
    expect(new Set(ids).size).toBe(30);
  });

  it('validates bodies like SQS and writes nothing for a bad batch', async () => {
    const dir = freshDir();
    const q = new LocalJobQueue({ dir });
    const err = await q.send([...jobs(2), { id: 'bad', body: 'x\ud800' }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueError);
    expect(err).toMatchObject({ code: 'QUEUE_MESSAGE_INVALID', message: expect.stringContaining('"bad"') });
    expect(await q.depth()).toEqual({ ready: 0, delayed: 0, inflight: 0, dead: 0 });
  });

  it('removes temp files a killed send left behind, but not fresh ones, and keeps every job', async () => {
    const dir = freshDir();
    const queue = new LocalJobQueue({ dir });
    await queue.send(jobs(2));
    await mkdir(join(dir, 'tmp'), { recursive: true });
    await writeFile(join(dir, 'tmp', 'left-by-a-crash.json'), '{"id":"x"');
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(join(dir, 'tmp', 'left-by-a-crash.json'), old, old);
    await writeFile(join(dir, 'tmp', 'in-progress.json'), '{');
    expect(await queue.cleanupTemp(60 * 60 * 1000)).toBe(1);
    expect(await readdir(join(dir, 'tmp'))).toEqual(['in-progress.json']);
    expect((await queue.receive(10, 30_000)).map((j) => JSON.parse(j.body).n).sort()).toEqual([0, 1]);
    expect(await new LocalJobQueue({ dir: freshDir() }).cleanupTemp(0)).toBe(0);
  });

  it('refuses a receipt it did not issue', async () => {
    const q = new LocalJobQueue({ dir: freshDir() });
    await expect(q.ack('../../etc/passwd')).rejects.toMatchObject({ code: 'QUEUE_RECEIPT_INVALID' });
  });

  it('loses nothing when a consumer process is killed with SIGKILL mid-processing', async () => {
    const dir = freshDir();
    const producer = new LocalJobQueue({ dir });
    const all = jobs(12);
    await producer.send(all);
    const bodies = new Map(all.map((j) => [j.body, j.id]));

    // The consumer announces each ack before making it, so "announced" over-approximates "acked".
    const script = join(tmp, 'consumer.mts');
    await writeFile(
      script,
      `import { LocalJobQueue } from ${JSON.stringify(MODULE)};
const q = new LocalJobQueue({ dir: process.argv[2] });
for (let round = 0; round < 2; round++) {
  for (const job of await q.receive(3, 30000)) {
    process.stdout.write('ack ' + job.body + '\\n');
    await q.ack(job.receipt);
  }
}
const held = await q.receive(3, 30000);
process.stdout.write('busy ' + held.length + '\\n');
setInterval(() => {}, 1000);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, dir], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    let err = '';
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    await new Promise<void>((resolvePromise, reject) => {
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (/busy \d+\n/.test(out)) resolvePromise();
      });
      child.on('exit', (code) => reject(new Error(`consumer exited early (${code}): ${err.slice(-500)}`)));
    });
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;

    const acked = out
      .split('\n')
      .filter((l) => l.startsWith('ack '))
      .map((l) => bodies.get(l.slice(4)));
    expect(acked).toHaveLength(6);
    expect(out).toContain('busy 3');

    const q = new LocalJobQueue({ dir });
    expect(await q.depth()).toMatchObject({ ready: 3, inflight: 3 });
    const remaining = await q.receive(20, 30_000);
    expect(remaining).toHaveLength(3);
    for (const job of remaining) expect(await q.ack(job.receipt)).toBe(true);
    // The jobs the killed consumer held come back once their visibility ends (30 s; a clock 31 s
    // ahead stands in for waiting).
    const later = new LocalJobQueue({ dir, clock: { now: () => Date.now() + 31_000 } });
    const recovered = await later.receive(20, 30_000);
    expect(recovered).toHaveLength(3);
    for (const job of recovered) expect(job.receiveCount).toBe(2);

    const seen = new Set([...acked, ...[...remaining, ...recovered].map((j) => bodies.get(j.body))]);
    expect(seen.size).toBe(all.length);
    expect((await readdir(join(dir, 'tmp'))).length).toBe(0);
  });

  it('loses nothing when a consumer is killed at an arbitrary point of a receive/ack loop', async () => {
    const dir = freshDir();
    const all = jobs(100);
    await new LocalJobQueue({ dir }).send(all);
    const bodies = new Map(all.map((j) => [j.body, j.id]));
    const script = join(tmp, 'loop-consumer.mts');
    await writeFile(
      script,
      `import { LocalJobQueue } from ${JSON.stringify(MODULE)};
const q = new LocalJobQueue({ dir: process.argv[2] });
for (;;) {
  const batch = await q.receive(2, 30000);
  if (batch.length === 0) break;
  for (const job of batch) {
    process.stdout.write('ack ' + job.body + '\\n');
    await q.ack(job.receipt);
    await new Promise((r) => setTimeout(r, 2)); // "work", so the kill lands mid-loop
  }
}
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, dir], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise<void>((resolvePromise) => {
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.split('ack ').length > 20) resolvePromise();
      });
      void exited.then(() => resolvePromise());
    });
    child.kill('SIGKILL');
    await exited;

    const acked = out
      .split('\n')
      .filter((l) => l.startsWith('ack '))
      .map((l) => bodies.get(l.slice(4)));
    expect(acked.length).toBeGreaterThan(19);
    expect(acked.length).toBeLessThan(100); // killed mid-loop, not after it finished
    const later = new LocalJobQueue({ dir, clock: { now: () => Date.now() + 31_000 } });
    const rest = await later.receive(1000, 30_000);
    const seen = new Set([...acked, ...rest.map((j) => bodies.get(j.body))]);
    expect(seen.size).toBe(all.length);
    // Every job exists once: no file was duplicated by the kill.
    expect(new Set(rest.map((j) => j.id)).size).toBe(rest.length);
  });
});

/**
 * File-based job queue for local mode: the JobQueue port for the poller plus a small SQS-like consumer
 * API for the local delivery worker. Durable (a sent job is fsynced before send() returns) and safe with
 * a producer and a consumer process working on the same directory at once.
 *
 * Layout: `ready/`, `inflight/`, `dead/` and `tmp/` under `dir`. A job's content
 * (`{id, itemId, body, enqueuedAt}`) never changes; its queue state lives in its file name,
 *
 *   <time, 15 digits>~<id>~<receiveCount>~<firstReceivedAt ms, 0 if never>.json
 *
 * where `time` is when it becomes visible (ready/) or when its visibility ends (inflight/), and `id`
 * starts with the send time and a counter, so ties keep send order. Every state
 * change is therefore one rename(2): atomic, and between two consumers exactly one rename of a given
 * name succeeds. A consumer killed mid-job leaves its job in inflight/ with a deadline in the past,
 * which the next receive() claims again (receiveCount + 1): nothing is lost, nothing is duplicated
 * beyond SQS's own at-least-once.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Clock, systemClock } from '../clock.js';
import { fsyncDir } from '../dir-sync.js';
import { type DurableWriter, sharedDurableWriter } from '../durable-writer.js';
import { QueueError } from '../errors.js';
import { readJsonFile } from '../json-file.js';
import { type Logger, silentLogger } from '../log.js';
import { type JobQueue, type QueueSendItem, validateQueueBody } from './queue.js';

/** SQS batch entry ids: 1-80 of these characters. Checked locally too, so local mode catches what AWS would refuse. */
const SEND_ITEM_ID = /^[A-Za-z0-9_-]{1,80}$/;
/** SQS DelaySeconds range. */
export const MAX_DELAY_SECONDS = 900;
/** Dead-letter reasons are for people reading `pophook dlq`; longer text is cut. */
const MAX_REASON_CHARS = 1000;
const TIME_DIGITS = 15;
/** Jobs carry message metadata (subjects, addresses): readable by the owner only. */
const JOB_FILE_MODE = 0o600;
const JOB_FILE = /^(\d{15})~([0-9a-f]{29})~(\d+)~(\d+)\.json$/;
/** Orders jobs sent in the same millisecond by one process. */
let sequence = 0;

/** Job ids sort in send order: send time, then a per-process counter, then randomness across processes. */
function newJobId(now: number): string {
  sequence = (sequence + 1) % 1_000_000;
  const time = String(Math.max(0, Math.floor(now))).padStart(TIME_DIGITS, '0');
  return `${time}${String(sequence).padStart(6, '0')}${randomBytes(4).toString('hex')}`;
}

/**
 * Checks a send call the way SQS would, before anything is sent: ids unique and well-formed, bodies
 * within size and character limits, delays in range. Throws QUEUE_MESSAGE_INVALID naming the item.
 */
export function validateSendItems(items: readonly QueueSendItem[]): void {
  const seen = new Set<string>();
  for (const item of items) {
    const problem = !SEND_ITEM_ID.test(item.id)
      ? 'id must be 1-80 letters, digits, "-" or "_"'
      : seen.has(item.id)
        ? 'id is used twice in one send'
        : item.delaySeconds !== undefined &&
            (!Number.isInteger(item.delaySeconds) ||
              item.delaySeconds < 0 ||
              item.delaySeconds > MAX_DELAY_SECONDS)
          ? `delaySeconds must be an integer from 0 to ${MAX_DELAY_SECONDS}`
          : validateQueueBody(item.body);
    if (problem) {
      const id = item.id.slice(0, 80);
      throw new QueueError(
        'QUEUE_MESSAGE_INVALID',
        `Queue item "${id}" was refused before sending: ${problem}. Nothing from this batch was sent; this is a bug, report it.`,
        { transient: false, details: { itemId: id, problem } },
      );
    }
    seen.add(item.id);
  }
}

export interface ReceivedJob {
  /** Names this delivery of the job; pass it to ack/retryLater/deadLetter. Stale after the visibility ends. */
  receipt: string;
  /** Stable id of the job across deliveries. */
  id: string;
  body: string;
  /** 1 on the first delivery. */
  receiveCount: number;
  /** Epoch ms of the first delivery. */
  firstReceivedAt: number;
  /** Epoch ms when the job was sent. */
  enqueuedAt: number;
}

export interface DeadLetter {
  id: string;
  body: string;
  reason: string;
  /** Epoch ms. */
  deadAt: number;
  receiveCount: number;
  firstReceivedAt: number;
  enqueuedAt: number;
}

export interface QueueDepth {
  /** Receivable now. */
  ready: number;
  /** Waiting out a delay or a retryLater. */
  delayed: number;
  inflight: number;
  dead: number;
}

interface JobContent {
  id: string;
  itemId: string;
  body: string;
  enqueuedAt: number;
  reason?: string;
  deadAt?: number;
}

interface JobName {
  name: string;
  time: number;
  id: string;
  receiveCount: number;
  firstReceivedAt: number;
}

export interface LocalJobQueueOptions {
  /** The queue directory, e.g. `<dataDir>/queue`. Created on first use. */
  dir: string;
  clock?: Clock;
  logger?: Logger;
  /** Writes sent jobs on worker threads in batches; default the process-wide writer. */
  writer?: DurableWriter;
}

/** JobQueue on the local filesystem, with a consumer API. See the module comment for the guarantees. */
export class LocalJobQueue implements JobQueue {
  readonly description: string;
  private readonly dir: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private ready = false;
  private readonly writer: DurableWriter;

  constructor(options: LocalJobQueueOptions) {
    this.dir = options.dir;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.writer = options.writer ?? sharedDurableWriter();
    this.description = `local queue at ${options.dir}`;
  }

  async send(items: QueueSendItem[]): Promise<void> {
    validateSendItems(items);
    if (items.length === 0) return;
    await this.io('send', async () => {
      await this.init();
      const now = this.clock.now();
      // One batch on the writer thread: each job fsynced, renamed into ready/, ready/ fsynced once
      // after the last rename (the poller deletes mail once send() returns).
      await Promise.all(
        items.map((item) => {
          const content: JobContent = {
            id: newJobId(now),
            itemId: item.id,
            body: item.body,
            enqueuedAt: now,
          };
          const visibleAt = now + (item.delaySeconds ?? 0) * 1000;
          return this.writer.write({
            temp: join(this.dir, 'tmp', `${content.id}.json`),
            target: join(this.dir, 'ready', jobName(visibleAt, content.id, 0, 0)),
            bytes: Buffer.from(JSON.stringify(content), 'utf8'),
            mode: 'replace',
            fileMode: JOB_FILE_MODE,
          });
        }),
      );
    });
  }

  /**
   * Claims up to `max` receivable jobs (ready ones whose delay has passed, and in-flight ones whose
   * visibility has ended), oldest first, hiding each for `visibilityMs`.
   */
  async receive(max: number, visibilityMs: number): Promise<ReceivedJob[]> {
    return this.io('receive', async () => {
      await this.init();
      const now = this.clock.now();
      const candidates: Array<JobName & { from: 'ready' | 'inflight' }> = [];
      for (const from of ['ready', 'inflight'] as const) {
        for (const job of await this.list(from)) if (job.time <= now) candidates.push({ ...job, from });
      }
      candidates.sort((a, b) => a.time - b.time || (a.name < b.name ? -1 : 1));
      const out: ReceivedJob[] = [];
      for (const job of candidates) {
        if (out.length >= max) break;
        const receiveCount = job.receiveCount + 1;
        const firstReceivedAt = job.firstReceivedAt || now;
        const receipt = jobName(now + visibilityMs, job.id, receiveCount, firstReceivedAt);
        if (!(await renameIfPresent(join(this.dir, job.from, job.name), join(this.dir, 'inflight', receipt))))
          continue; // another consumer claimed it first
        const content = await readContent(join(this.dir, 'inflight', receipt));
        if (!content) continue; // claimed again after our (already expired) visibility
        if (job.from === 'inflight')
          this.logger.warn('queue job visibility expired; redelivering', { jobId: job.id, receiveCount });
        out.push({
          receipt,
          id: job.id,
          body: content.body,
          receiveCount,
          firstReceivedAt,
          enqueuedAt: content.enqueuedAt,
        });
      }
      return out;
    });
  }

  /** Deletes a received job. False if the receipt is stale (the visibility ended and it was redelivered). */
  async ack(receipt: string): Promise<boolean> {
    return this.io('ack', async () => {
      try {
        await unlink(join(this.dir, 'inflight', checkReceipt(receipt).name));
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
    });
  }

  /** Returns a received job to the queue, receivable again after `delayMs`. False if the receipt is stale. */
  async retryLater(receipt: string, delayMs: number): Promise<boolean> {
    return this.io('retryLater', async () => {
      const job = checkReceipt(receipt);
      const target = jobName(
        this.clock.now() + Math.max(0, delayMs),
        job.id,
        job.receiveCount,
        job.firstReceivedAt,
      );
      return renameIfPresent(join(this.dir, 'inflight', job.name), join(this.dir, 'ready', target));
    });
  }

  /** Moves a received job to the dead-letter directory with a reason. False if the receipt is stale. */
  async deadLetter(receipt: string, reason: string): Promise<boolean> {
    return this.io('deadLetter', async () => {
      const job = checkReceipt(receipt);
      const now = this.clock.now();
      const deadPath = join(this.dir, 'dead', jobName(now, job.id, job.receiveCount, job.firstReceivedAt));
      if (!(await renameIfPresent(join(this.dir, 'inflight', job.name), deadPath))) return false;
      // The move is what matters; the reason is added after it (a crash here loses only the reason).
      const content = await readContent(deadPath);
      if (content) {
        const annotated: JobContent = { ...content, reason: reason.slice(0, MAX_REASON_CHARS), deadAt: now };
        const tmp = join(this.dir, 'tmp', `${job.id}-dead.json`);
        await writeFile(tmp, JSON.stringify(annotated));
        await rename(tmp, deadPath);
      }
      this.logger.warn('queue job dead-lettered', { jobId: job.id, receiveCount: job.receiveCount });
      return true;
    });
  }

  async listDeadLetters(): Promise<DeadLetter[]> {
    return this.io('listDeadLetters', async () => {
      const out: DeadLetter[] = [];
      for (const job of await this.list('dead')) {
        const content = await readContent(join(this.dir, 'dead', job.name));
        if (!content) continue;
        out.push({
          id: job.id,
          body: content.body,
          reason: content.reason ?? '(reason not recorded)',
          deadAt: content.deadAt ?? job.time,
          receiveCount: job.receiveCount,
          firstReceivedAt: job.firstReceivedAt,
          enqueuedAt: content.enqueuedAt,
        });
      }
      return out;
    });
  }

  /** Moves every dead letter back to the queue with a fresh receive count. Returns how many moved. */
  async redriveDeadLetters(): Promise<number> {
    return this.io('redriveDeadLetters', async () => {
      const now = this.clock.now();
      let moved = 0;
      for (const job of await this.list('dead')) {
        const target = join(this.dir, 'ready', jobName(now, job.id, 0, 0));
        if (await renameIfPresent(join(this.dir, 'dead', job.name), target)) moved++;
      }
      return moved;
    });
  }

  async depth(): Promise<QueueDepth> {
    return this.io('depth', async () => {
      const now = this.clock.now();
      const ready = await this.list('ready');
      const inflight = await this.list('inflight');
      const expired = inflight.filter((j) => j.time <= now).length;
      return {
        ready: ready.filter((j) => j.time <= now).length + expired,
        delayed: ready.filter((j) => j.time > now).length,
        inflight: inflight.length - expired,
        dead: (await this.list('dead')).length,
      };
    });
  }

  /**
   * Removes files in tmp/ older than `olderThanMs`: a send or dead-letter killed between writing its
   * temp file and renaming it (the job was never sent, or is still in inflight/). A live write is
   * milliseconds old. Returns how many were removed.
   */
  async cleanupTemp(olderThanMs: number): Promise<number> {
    return this.io('cleanupTemp', async () => {
      const dir = join(this.dir, 'tmp');
      const cutoff = this.clock.now() - olderThanMs;
      let removed = 0;
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw err;
      }
      for (const name of names) {
        const path = join(dir, name);
        try {
          if ((await stat(path)).mtimeMs > cutoff) continue;
          await unlink(path);
          removed++;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      if (removed > 0) this.logger.info('Removed stale queue temp files', { removed });
      return removed;
    });
  }

  private async init(): Promise<void> {
    if (this.ready) return;
    const created = await mkdir(this.dir, { recursive: true });
    for (const sub of ['ready', 'inflight', 'dead', 'tmp'])
      await mkdir(join(this.dir, sub), { recursive: true });
    // The subdirectories' names (and a new queue directory's own) must survive a crash before a job is
    // reported sent into them.
    await fsyncDir(this.dir);
    if (created) await fsyncDir(dirname(this.dir));
    this.ready = true;
  }

  private async list(sub: 'ready' | 'inflight' | 'dead'): Promise<JobName[]> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, sub));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: JobName[] = [];
    for (const name of names) {
      const job = parseJobName(name);
      if (job) out.push(job);
    }
    return out;
  }

  private async io<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof QueueError) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new QueueError(
        'QUEUE_IO',
        `Local queue in ${this.dir} failed a ${op} (${code}). Check the directory is writable and has free space.`,
        { cause: err, details: { op, dir: this.dir, errno: code } },
      );
    }
  }
}

function jobName(time: number, id: string, receiveCount: number, firstReceivedAt: number): string {
  return `${String(Math.max(0, Math.floor(time))).padStart(TIME_DIGITS, '0')}~${id}~${receiveCount}~${firstReceivedAt}.json`;
}

function parseJobName(name: string): JobName | undefined {
  const m = JOB_FILE.exec(name);
  if (!m) return undefined;
  return {
    name,
    time: Number(m[1]),
    id: m[2] as string,
    receiveCount: Number(m[3]),
    firstReceivedAt: Number(m[4]),
  };
}

function checkReceipt(receipt: string): JobName {
  const job = parseJobName(receipt);
  if (!job)
    throw new QueueError(
      'QUEUE_RECEIPT_INVALID',
      'That is not a receipt this queue issued; pass ReceivedJob.receipt.',
      {
        transient: false,
      },
    );
  return job;
}

async function renameIfPresent(from: string, to: string): Promise<boolean> {
  try {
    await rename(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

function readContent(path: string): Promise<JobContent | undefined> {
  return readJsonFile<JobContent>(
    path,
    (cause) =>
      new QueueError('QUEUE_CORRUPT', `Queue file ${path} is not valid JSON. Move it aside and restart.`, {
        cause,
        transient: false,
      }),
  );
}

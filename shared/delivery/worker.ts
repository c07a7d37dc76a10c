/**
 * The local worker: drains the local (on-disk) queue with the same `deliverJob` the Lambda uses, so
 * local mode and AWS share every delivery rule. Outcome mapping mirrors sqs-batch.ts: delivered /
 * skipped / disabled -> ack; retry -> retryLater(delay) (the local queue has no 12 h visibility cap,
 * so the full delay is passed); failed and unparseable jobs -> deadLetter; a thrown error (archive or
 * state down) -> retryLater after a back-off.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { type DeliverResult, parseJob, type QueuedJob } from './deliver.js';
import { BATCH_CONCURRENCY, DEFAULT_ENDPOINT_CONCURRENCY, runKeyed } from './sqs-batch.js';

/** Jobs taken per receive: one batch's worth, like an SQS batch. */
export const WORKER_BATCH_SIZE = 10;
/**
 * How long a received job stays invisible to other workers: longer than any one attempt (the endpoint
 * timeout is at most 120 s) plus payload and state I/O, so a live worker never loses its job.
 */
export const WORKER_VISIBILITY_MS = 5 * 60 * 1000;
/** Back-off after an infrastructure error (archive or state unavailable). */
export const WORKER_ERROR_BACKOFF_MS = 60 * 1000;
/** Pause between polls of an empty queue. */
export const WORKER_IDLE_MS = 1000;

/** One received message. */
export interface LocalQueueMessage {
  /** Opaque handle for ack / retryLater / deadLetter. */
  receipt: string;
  body: string;
}

/** The consumer side of the local queue (implemented by shared/queue/local-queue.ts). */
export interface LocalJobConsumer {
  receive(max: number, visibilityMs: number): Promise<LocalQueueMessage[]>;
  // Results are ignored: a stale receipt means the job was redelivered, and that delivery settles it.
  ack(receipt: string): Promise<unknown>;
  retryLater(receipt: string, delayMs: number): Promise<unknown>;
  deadLetter(receipt: string, reason: string): Promise<unknown>;
}

export interface WorkerDeps {
  queue: LocalJobConsumer;
  deliver: (job: QueuedJob) => Promise<DeliverResult>;
  logger: Logger;
  endpointConcurrency?: (endpointId: string) => number;
  concurrency?: number;
  batchSize?: number;
}

export interface WorkerStats {
  received: number;
  delivered: number;
  retried: number;
  failed: number;
  other: number;
}

/** Receives one batch and settles every message in it. */
export async function drainOnce(deps: WorkerDeps): Promise<WorkerStats> {
  const { queue, logger } = deps;
  const messages = await queue.receive(deps.batchSize ?? WORKER_BATCH_SIZE, WORKER_VISIBILITY_MS);
  const stats: WorkerStats = { received: messages.length, delivered: 0, retried: 0, failed: 0, other: 0 };
  const items = messages.map((m) => {
    try {
      return { m, job: parseJob(m.body) };
    } catch (err) {
      return { m, error: err as Error };
    }
  });
  await runKeyed(
    items,
    (i) => i.job?.endpointId ?? '',
    (key) => deps.endpointConcurrency?.(key) ?? DEFAULT_ENDPOINT_CONCURRENCY,
    deps.concurrency ?? BATCH_CONCURRENCY,
    async ({ m, job, error }) => {
      try {
        if (!job) {
          logger.error('Invalid delivery job; dead-lettered', { errorCode: errorCode(error) });
          await queue.deadLetter(m.receipt, `invalid job: ${error?.message ?? 'unparseable'}`);
          stats.failed++;
          return;
        }
        let result: DeliverResult;
        try {
          result = await deps.deliver(job);
        } catch (err) {
          logger.error('Delivery job failed; will retry', {
            endpointId: job.endpointId,
            messageKey: job.messageKey,
            errorCode: errorCode(err),
            error: err,
          });
          await queue.retryLater(m.receipt, WORKER_ERROR_BACKOFF_MS);
          stats.retried++;
          return;
        }
        if (result.outcome === 'retry') {
          await queue.retryLater(m.receipt, Math.max(0, result.delayMs ?? 0));
          stats.retried++;
        } else if (result.outcome === 'failed') {
          await queue.deadLetter(m.receipt, result.errorCode ?? 'delivery failed');
          stats.failed++;
        } else {
          await queue.ack(m.receipt);
          if (result.outcome === 'delivered') stats.delivered++;
          else stats.other++;
        }
      } catch (err) {
        // The queue itself failed to settle the message: its visibility timeout brings it back.
        logger.error('Local queue operation failed', { errorCode: errorCode(err), error: err });
      }
    },
  );
  return stats;
}

/** Drains until `signal` aborts, pausing `idleMs` whenever the queue is empty. */
export async function runWorker(deps: WorkerDeps & { signal: AbortSignal; idleMs?: number }): Promise<void> {
  while (!deps.signal.aborted) {
    let stats: WorkerStats | undefined;
    try {
      stats = await drainOnce(deps);
    } catch (err) {
      deps.logger.error('Local queue receive failed', { errorCode: errorCode(err), error: err });
    }
    if (!stats || stats.received === 0) {
      await sleep(deps.idleMs ?? WORKER_IDLE_MS, undefined, { signal: deps.signal }).catch(() => {});
    }
  }
}

/**
 * The SQS side of delivery: one Lambda batch in, `{ batchItemFailures }` out (the event source mapping
 * must enable ReportBatchItemFailures, or Lambda ignores the list and retries the whole batch).
 *
 * Per record: delivered / skipped / disabled -> success (Lambda deletes it). retry -> the message's
 * visibility is set to the delay (one step of at most ~11.75 h; a longer delay is reached over several
 * receives, each parked again by deliverJob without an attempt), then reported as failed so it stays
 * queued. failed -> visibility 0 and reported, so it cycles without sending until SQS moves it to the
 * DLQ at maxReceiveCount (`retry.requiredMaxReceiveCount`, which the CDK uses). A thrown error
 * (archive or state store down) is reported without touching visibility: the queue's own visibility
 * timeout is the back-off.
 *
 * Records run concurrently under two bounds: a global cap, and each endpoint's `maxConcurrency`.
 * The scheduler never starts a record whose endpoint is at its cap while another endpoint's record
 * is waiting, so one slow endpoint cannot occupy every slot and starve the rest.
 */
import { ChangeMessageVisibilityCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { errorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { type DeliverResult, parseJob, type QueuedJob } from './deliver.js';
import { visibilityStepSeconds } from './retry.js';

/** Records in flight at once per batch; delivery is I/O-bound, but sockets and memory are not free. */
export const BATCH_CONCURRENCY = 32;
/** Per-endpoint cap when the endpoint is unknown (the job will be skipped quickly anyway). */
export const DEFAULT_ENDPOINT_CONCURRENCY = 10;

/**
 * Runs `fn` over `items` with at most `globalLimit` in flight and at most `limitOf(key)` per key.
 * Picks, whenever a slot frees, the oldest waiting item whose key has room. Never rejects: `fn` must
 * handle its own errors.
 */
export async function runKeyed<T>(
  items: readonly T[],
  keyOf: (item: T) => string,
  limitOf: (key: string) => number,
  globalLimit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const pending = [...items];
  const active = new Map<string, number>();
  let running = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      if (pending.length === 0 && running === 0) {
        resolve();
        return;
      }
      for (let i = 0; i < pending.length && running < globalLimit; ) {
        const item = pending[i] as T;
        const key = keyOf(item);
        const inKey = active.get(key) ?? 0;
        if (inKey >= Math.max(1, limitOf(key))) {
          i++;
          continue;
        }
        pending.splice(i, 1);
        active.set(key, inKey + 1);
        running++;
        void fn(item)
          .catch(() => {})
          .finally(() => {
            running--;
            active.set(key, (active.get(key) ?? 1) - 1);
            pump();
          });
      }
    };
    pump();
  });
}

export interface SqsBatchDeps {
  deliver: (job: QueuedJob) => Promise<DeliverResult>;
  sqs: Pick<SQSClient, 'send'>;
  /** URL of the queue the records came from (ChangeMessageVisibility needs it). */
  queueUrl: string;
  logger: Logger;
  /** The endpoint's maxConcurrency. */
  endpointConcurrency?: (endpointId: string) => number;
  concurrency?: number;
}

interface Prepared {
  record: SQSRecord;
  job?: QueuedJob;
}

/** Processes one SQS batch; returns exactly the records that must stay on the queue. */
export async function handleSqsBatch(event: SQSEvent, deps: SqsBatchDeps): Promise<SQSBatchResponse> {
  const failures: string[] = [];
  const prepared: Prepared[] = event.Records.map((record) => {
    try {
      return { record, job: parseJob(record.body) };
    } catch (err) {
      deps.logger.error('Invalid delivery job; sending it toward the DLQ', {
        messageId: record.messageId,
        errorCode: errorCode(err),
        error: (err as Error).message,
      });
      return { record };
    }
  });

  const setVisibility = async (record: SQSRecord, seconds: number) => {
    try {
      await deps.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: deps.queueUrl,
          ReceiptHandle: record.receiptHandle,
          VisibilityTimeout: seconds,
        }),
      );
    } catch (err) {
      // The message still comes back after the queue's default visibility: later than planned or
      // sooner, never lost. deliverJob re-parks it if it is early.
      deps.logger.warn('ChangeMessageVisibility failed', {
        messageId: record.messageId,
        errorCode: errorCode(err),
      });
    }
  };

  await runKeyed(
    prepared,
    (p) => p.job?.endpointId ?? '',
    (key) => deps.endpointConcurrency?.(key) ?? DEFAULT_ENDPOINT_CONCURRENCY,
    deps.concurrency ?? BATCH_CONCURRENCY,
    async ({ record, job }) => {
      if (!job) {
        await setVisibility(record, 0);
        failures.push(record.messageId);
        return;
      }
      let result: DeliverResult;
      try {
        result = await deps.deliver(job);
      } catch (err) {
        deps.logger.error('Delivery job failed; SQS will retry it', {
          messageId: record.messageId,
          endpointId: job.endpointId,
          messageKey: job.messageKey,
          errorCode: errorCode(err),
          error: err,
        });
        failures.push(record.messageId);
        return;
      }
      if (result.outcome === 'retry') {
        await setVisibility(record, visibilityStepSeconds(result.delayMs ?? 0));
        failures.push(record.messageId);
      } else if (result.outcome === 'failed') {
        await setVisibility(record, 0);
        failures.push(record.messageId);
      }
    },
  );

  // Report in batch order: easier to read in logs, and tests can compare exactly.
  const order = new Map(event.Records.map((r, i) => [r.messageId, i]));
  failures.sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
  return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
}

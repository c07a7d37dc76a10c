/**
 * SQS implementation of the JobQueue port. Items are validated first (one bad item sends nothing), then
 * sent with SendMessageBatch in batches of at most 10 entries and 256 KiB. Entries SQS reports as failed
 * (throttling, internal errors) are retried with capped, jittered backoff; entries it refuses as our
 * fault are not. Whatever is still unsent after the last attempt is named in one QueueError.
 */
import {
  SendMessageBatchCommand,
  type SendMessageBatchCommandOutput,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { QueueError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { validateSendItems } from './local-queue.js';
import { type JobQueue, MAX_QUEUE_MESSAGE_BYTES, type QueueSendItem } from './queue.js';

/** SendMessageBatch accepts at most 10 entries. */
export const SQS_BATCH_MAX_ENTRIES = 10;
/** SendMessageBatch's total payload limit (sum of bodies) at the queue's default size limit. */
export const SQS_BATCH_MAX_BYTES = MAX_QUEUE_MESSAGE_BYTES;
/** Attempts per entry, including the first: SQS partial failures are usually throttling that clears in seconds. */
export const SEND_MAX_ATTEMPTS = 5;
/** First retry delay; doubles per attempt (full jitter), so the worst case adds about 3 s to a poll. */
export const SEND_RETRY_BASE_MS = 200;
/** Cap on one retry delay, to stay well inside a Lambda timeout. */
export const SEND_RETRY_MAX_MS = 2_000;
/** Failed ids quoted in an error message; the full list is in `details.failedIds`. */
const MAX_IDS_IN_MESSAGE = 10;

/** Error names that no retry can fix: the queue is gone or we may not write to it. */
const PERMANENT_CALL_ERRORS = new Set([
  'QueueDoesNotExist',
  'AWS.SimpleQueueService.NonExistentQueue',
  'AccessDeniedException',
  'AccessDenied',
  'KmsAccessDenied',
  'KmsDisabled',
  'KmsNotFound',
  'InvalidAddress',
  'InvalidSecurity',
]);

export interface SqsJobQueueOptions {
  client: SQSClient;
  queueUrl: string;
  logger?: Logger;
  /** Injected in tests so backoff does not wait. */
  sleep?: (ms: number) => Promise<void>;
}

interface Failure {
  id: string;
  code: string;
  senderFault: boolean;
}

/** JobQueue on an SQS standard queue. */
export class SqsJobQueue implements JobQueue {
  readonly description: string;
  private readonly client: SQSClient;
  private readonly queueUrl: string;
  private readonly logger: Logger;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(options: SqsJobQueueOptions) {
    this.client = options.client;
    this.queueUrl = options.queueUrl;
    this.logger = options.logger ?? silentLogger;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.description = `SQS queue ${options.queueUrl.split('/').pop() ?? options.queueUrl}`;
  }

  async send(items: QueueSendItem[]): Promise<void> {
    validateSendItems(items);
    const failures: Failure[] = [];
    for (const batch of packBatches(items)) failures.push(...(await this.sendBatch(batch)));
    if (failures.length === 0) return;

    const ids = failures.map((f) => f.id);
    const shown = ids.slice(0, MAX_IDS_IN_MESSAGE).join(', ');
    const more = ids.length > MAX_IDS_IN_MESSAGE ? ` and ${ids.length - MAX_IDS_IN_MESSAGE} more` : '';
    const permanent = failures.every((f) => f.senderFault);
    throw new QueueError(
      'QUEUE_SEND_FAILED',
      `${ids.length} of ${items.length} jobs could not be sent to ${this.description} (${shown}${more}). ` +
        (permanent
          ? 'SQS refused them as invalid; check the queue exists and its settings (size limit, KMS key).'
          : 'SQS kept failing after retries; the run will try again. If it persists, check the queue and its throttling alarms.'),
      {
        transient: !permanent,
        details: {
          queue: this.description,
          failedIds: ids,
          errorCodes: [...new Set(failures.map((f) => f.code))],
          sent: items.length - ids.length,
        },
      },
    );
  }

  /** Sends one batch, retrying retryable failures; returns what is still unsent. */
  private async sendBatch(batch: QueueSendItem[]): Promise<Failure[]> {
    let pending = batch;
    const final: Failure[] = [];
    for (let attempt = 1; pending.length > 0; attempt++) {
      const failed = await this.trySend(pending);
      final.push(...failed.filter((f) => f.senderFault));
      const retryable = failed.filter((f) => !f.senderFault);
      if (retryable.length === 0) break;
      if (attempt >= SEND_MAX_ATTEMPTS) {
        final.push(...retryable);
        break;
      }
      const delay = Math.random() * Math.min(SEND_RETRY_MAX_MS, SEND_RETRY_BASE_MS * 2 ** (attempt - 1));
      this.logger.warn('queue send partly failed; retrying', {
        queue: this.description,
        attempt,
        failed: retryable.length,
        errorCodes: [...new Set(retryable.map((f) => f.code))],
        delayMs: Math.round(delay),
      });
      await this.sleep(delay);
      const retryIds = new Set(retryable.map((f) => f.id));
      pending = pending.filter((item) => retryIds.has(item.id));
    }
    return final;
  }

  private async trySend(items: QueueSendItem[]): Promise<Failure[]> {
    const entries: SendMessageBatchRequestEntry[] = items.map((item) => ({
      Id: item.id,
      MessageBody: item.body,
      ...(item.delaySeconds === undefined ? {} : { DelaySeconds: item.delaySeconds }),
    }));
    let out: SendMessageBatchCommandOutput;
    try {
      out = await this.client.send(
        new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: entries }),
      );
    } catch (err) {
      const name = errorName(err);
      if (PERMANENT_CALL_ERRORS.has(name)) throw this.callError(name, err);
      // The SDK has already retried this call; count it as every entry failing once.
      return items.map((item) => ({ id: item.id, code: name, senderFault: false }));
    }
    const sent = new Set((out.Successful ?? []).map((s) => s.Id));
    const failedById = new Map((out.Failed ?? []).map((f) => [f.Id, f]));
    const failures: Failure[] = [];
    for (const item of items) {
      if (sent.has(item.id)) continue;
      const f = failedById.get(item.id);
      // An entry in neither list was not confirmed: send it again (a duplicate beats a loss).
      failures.push({ id: item.id, code: f?.Code ?? 'NotConfirmed', senderFault: f?.SenderFault === true });
    }
    return failures;
  }

  private callError(name: string, err: unknown): QueueError {
    const what =
      name.startsWith('Kms') || name === 'InvalidSecurity'
        ? "the role may not use the queue's KMS key; grant kms:GenerateDataKey and kms:Decrypt"
        : name.includes('Exist') || name === 'InvalidAddress'
          ? 'the queue does not exist; deploy the stack or fix the queue URL'
          : 'the role may not send to it; grant sqs:SendMessage (the stack does this)';
    return new QueueError('QUEUE_SEND_FAILED', `Cannot send to ${this.description}: ${what}.`, {
      cause: err,
      transient: false,
      details: { queue: this.description, awsError: name },
    });
  }
}

/** Greedy packing in input order: at most 10 entries and SQS_BATCH_MAX_BYTES of bodies per batch. */
export function packBatches(items: readonly QueueSendItem[]): QueueSendItem[][] {
  const batches: QueueSendItem[][] = [];
  let current: QueueSendItem[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = Buffer.byteLength(item.body, 'utf8');
    if (
      current.length > 0 &&
      (current.length >= SQS_BATCH_MAX_ENTRIES || bytes + size > SQS_BATCH_MAX_BYTES)
    ) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

function errorName(err: unknown): string {
  return err && typeof err === 'object' && 'name' in err && typeof err.name === 'string' ? err.name : 'Error';
}

/**
 * The queue port between ingestion and delivery. The poller routes each event to the endpoints whose
 * rules match and enqueues one job per (message, endpoint): one endpoint failing never delays or
 * re-sends to another. Jobs are thin; the event itself lives in the archive.
 */

export interface DeliveryJob {
  v: 1;
  /** Standard Webhooks `webhook-id`: the same on every retry and every replay of this message. */
  webhookId: string;
  type: 'email.received' | 'email.skipped' | 'webhook.test';
  mailboxId: string;
  messageKey: string;
  endpointId: string;
  /** Archive key of the event JSON. */
  eventKey: string;
  /** Set on replays, so the attempt log can tell them apart. */
  replay?: boolean;
  /** When a replay was requested: a replay starts a fresh retry run from then on. */
  replayedAt?: string;
}

export interface QueueSendItem {
  /** Unique within one call; SQS batch entry id. */
  id: string;
  body: string;
  delaySeconds?: number;
}

export interface JobQueue {
  readonly description: string;
  /**
   * Sends all items, in batches. Validates each body (size limit, allowed characters) first. Retries
   * partial batch failures; throws QueueError if any item could not be sent, naming which.
   */
  send(items: QueueSendItem[]): Promise<void>;
}

/** SQS message size limit we hold ourselves to (the queue default; SQS allows up to 1 MiB if raised). */
export const MAX_QUEUE_MESSAGE_BYTES = 256 * 1024;

/** SQS accepts only XML-legal characters: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF. */

const SQS_ILLEGAL = /[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/u;

export function validateQueueBody(body: string): string | undefined {
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes > MAX_QUEUE_MESSAGE_BYTES)
    return `body is ${bytes} bytes, over the ${MAX_QUEUE_MESSAGE_BYTES}-byte queue limit`;
  if (SQS_ILLEGAL.test(body)) return 'body holds characters SQS does not accept';
  return undefined;
}

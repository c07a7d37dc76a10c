/** Shared builders for the delivery tests: events, endpoints, secrets, a settable clock, memory ports. */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { SQSRecord } from 'aws-lambda';
import { DeliveryConfig, EndpointConfig } from '../../../shared/config/schema.js';
import type { QueuedJob } from '../../../shared/delivery/deliver.js';
import type { EmailReceivedData, PophookEvent } from '../../../shared/mail/event.js';
import type { JobQueue, QueueSendItem } from '../../../shared/queue/queue.js';
import type { DeliveryAttempt, DeliveryLog, EndpointState } from '../../../shared/state/store.js';
import type { Archive, ObjectInfo } from '../../../shared/storage/archive.js';

export const newSecret = (bytes = 32) => `whsec_${randomBytes(bytes).toString('base64')}`;

/** Signing secrets made on first use, by name: `resolve` is a DeliverDeps.resolveSecret. */
export function lazySecrets() {
  const byName = new Map<string, string>();
  return {
    byName,
    resolve: async (ref: { secret: string }) => {
      if (!byName.has(ref.secret)) byName.set(ref.secret, newSecret());
      return byName.get(ref.secret) as string;
    },
  };
}

export interface TestClock {
  now(): number;
  set(ms: number): void;
  advance(ms: number): void;
}

export function testClock(start = Date.now()): TestClock {
  let t = start;
  return {
    now: () => t,
    set: (ms) => {
      t = ms;
    },
    advance: (ms) => {
      t += ms;
    },
  };
}

/** An endpoint for a receiver on 127.0.0.1 (so http and private addresses are allowed). */
export function localEndpoint(id: string, url: string, extra: Record<string, unknown> = {}): EndpointConfig {
  return EndpointConfig.parse({
    id,
    url,
    secrets: [{ secret: `${id}-secret` }],
    allowHttp: true,
    allowPrivateNetwork: true,
    timeoutMs: 2000,
    ...extra,
  });
}

export const defaultDelivery = (extra: Record<string, unknown> = {}) => DeliveryConfig.parse(extra);

let counter = 0;

export function receivedEvent(
  overrides: Partial<EmailReceivedData> = {},
): PophookEvent & { type: 'email.received' } {
  counter++;
  const messageKey = overrides.messageKey ?? `${'0'.repeat(24)}${String(counter).padStart(8, '0')}`;
  const mailboxId = overrides.mailboxId ?? 'inbox';
  const receivedAt = overrides.receivedAt ?? '2025-03-04T05:06:07.000Z';
  const d = new Date(receivedAt);
  const day = `${d.getUTCFullYear()}/${String(d.getUTCMonth() + 1).padStart(2, '0')}/${String(d.getUTCDate()).padStart(2, '0')}`;
  const data: EmailReceivedData = {
    version: 1,
    eventId: `msg_${messageKey}`,
    messageKey,
    mailboxId,
    uidl: 'uidl-1',
    receivedAt,
    date: receivedAt,
    messageId: '<m1@example.com>',
    inReplyTo: null,
    references: [],
    subject: 'Invoice 42',
    from: [{ address: 'billing@example.com', name: 'Billing' }],
    to: [{ address: 'me@example.org', name: '' }],
    cc: [],
    bcc: [],
    replyTo: [],
    text: 'Hello there',
    textTruncated: false,
    html: '<p>Hello there</p>',
    htmlTruncated: false,
    headers: [
      { name: 'subject', value: 'Invoice 42' },
      { name: 'x-priority', value: '1' },
    ],
    attachments: [],
    raw: { key: `raw/${mailboxId}/${day}/${messageKey}.eml`, size: 1234, sha256: 'a'.repeat(64) },
    authResults: null,
    spam: null,
    charsetWarnings: [],
    parseError: null,
    ...overrides,
  };
  return { type: 'email.received', data };
}

export const eventKeyOf = (event: PophookEvent & { type: 'email.received' }) =>
  event.data.raw.key.replace(/\.eml$/, '.json');

/** The delivery job the poller enqueues for `event` (stored at `eventKey`) and one endpoint. */
export function jobFor(
  event: PophookEvent & { type: 'email.received' },
  eventKey: string,
  endpointId: string,
): QueuedJob {
  return {
    v: 1,
    webhookId: event.data.eventId,
    type: 'email.received',
    mailboxId: event.data.mailboxId,
    messageKey: event.data.messageKey,
    endpointId,
    eventKey,
  };
}

/** An in-memory Archive; `linkBase` makes linkFor return URLs (like S3), else undefined (like local). */
export class MemoryArchive implements Archive {
  readonly description = 'memory';
  readonly objects = new Map<string, Buffer>();
  constructor(private readonly linkBase?: string) {}

  async putStreamCreateOnly(key: string, body: Readable) {
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    const created = !this.objects.has(key);
    if (created) this.objects.set(key, Buffer.concat(chunks));
    return { key, size: this.objects.get(key)?.length ?? 0, sha256: '', created };
  }
  async put(key: string, body: Buffer | string | Readable) {
    const buf = typeof body === 'string' ? Buffer.from(body) : Buffer.isBuffer(body) ? body : Buffer.alloc(0);
    this.objects.set(key, buf);
    return { key, size: buf.length, sha256: '' };
  }
  async get(key: string) {
    return Readable.from([await this.getBytes(key)]);
  }
  async getBytes(key: string) {
    const b = this.objects.get(key);
    if (!b) throw Object.assign(new Error(`no such key ${key}`), { code: 'ARCHIVE_NOT_FOUND' });
    return b;
  }
  async head(key: string): Promise<ObjectInfo | undefined> {
    const b = this.objects.get(key);
    return b ? { key, size: b.length } : undefined;
  }
  async list(prefix: string, options: { cursor?: string; limit?: number } = {}) {
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    const start = options.cursor ? keys.indexOf(options.cursor) + 1 : 0;
    const limit = options.limit ?? 1000;
    const page = keys.slice(start, start + limit);
    const more = start + limit < keys.length;
    return {
      items: page.map((key) => ({ key, size: this.objects.get(key)?.length ?? 0 })),
      ...(more ? { cursor: page.at(-1) } : {}),
    };
  }
  async linkFor(key: string, expiresInSeconds: number) {
    return this.linkBase ? `${this.linkBase}/${key}?X-Amz-Expires=${expiresInSeconds}` : undefined;
  }
  putEvent(event: PophookEvent & { type: 'email.received' }) {
    this.objects.set(eventKeyOf(event), Buffer.from(JSON.stringify(event)));
    return eventKeyOf(event);
  }
}

export class MemoryDeliveryLog implements DeliveryLog {
  readonly attempts: DeliveryAttempt[] = [];
  readonly states = new Map<string, EndpointState>();
  async recordAttempt(attempt: DeliveryAttempt) {
    this.attempts.push(attempt);
  }
  async listAttempts(messageKey: string) {
    return this.attempts.filter((a) => a.messageKey === messageKey);
  }
  async getEndpointState(endpointId: string) {
    return this.states.get(endpointId);
  }
  async setEndpointState(state: EndpointState) {
    this.states.set(state.endpointId, state);
  }
}

export class MemoryQueue implements JobQueue {
  readonly description = 'memory queue';
  readonly sent: QueueSendItem[] = [];
  async send(items: QueueSendItem[]) {
    this.sent.push(...items);
  }
}

/** An SQS record as Lambda's event source delivers it, first receive. */
export function record(id: string, body: string): SQSRecord {
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: '0',
      SenderId: 'x',
      ApproximateFirstReceiveTimestamp: '0',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:pophook-deliveries',
    awsRegion: 'us-east-1',
  };
}

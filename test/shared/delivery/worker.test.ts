import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DeliverResult, deliverJob, type QueuedJob } from '../../../shared/delivery/deliver.js';
import { createWebhookHttp } from '../../../shared/delivery/http.js';
import {
  drainOnce,
  type LocalJobConsumer,
  type LocalQueueMessage,
  runWorker,
  WORKER_ERROR_BACKOFF_MS,
} from '../../../shared/delivery/worker.js';
import { silentLogger } from '../../../shared/log.js';
import { LocalJobQueue } from '../../../shared/queue/local-queue.js';
import { LocalStateStore } from '../../../shared/state/local-state.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import {
  defaultDelivery,
  jobFor,
  lazySecrets,
  localEndpoint,
  MemoryArchive,
  receivedEvent,
  testClock,
} from './helpers.js';

describe('local worker: two endpoints, one down for an hour (simulated time)', () => {
  let healthy: Receiver;
  let down: Receiver;
  let dir: string;
  beforeAll(async () => {
    healthy = await startReceiver();
    down = await startReceiver();
    dir = await mkdtemp(join(tmpdir(), 'pophook-worker-'));
  });
  afterAll(async () => {
    await Promise.all([healthy.close(), down.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('the healthy endpoint gets every message once and on time; the other catches up after', async () => {
    const T0 = Date.parse('2025-05-01T00:00:00Z');
    const clock = testClock(T0);
    const downUntil = T0 + 3600_000;
    down.respond(() =>
      clock.now() < downUntil ? { kind: 'status', status: 503 } : { kind: 'status', status: 200 },
    );
    const queue = new LocalJobQueue({ dir: join(dir, 'queue'), clock });
    const log = new LocalStateStore({ dir: join(dir, 'state'), clock });
    const archive = new MemoryArchive();
    const http = createWebhookHttp();
    const endpoints = [localEndpoint('healthy', healthy.url), localEndpoint('down', down.url)];
    const deliver = (job: QueuedJob) =>
      deliverJob(job, {
        config: { endpoints, delivery: defaultDelivery() },
        archive,
        log,
        http,
        clock,
        logger: silentLogger,
        random: () => 0.5,
        resolveSecret: lazySecrets().resolve,
      });

    // 20 messages, one every 3 minutes through the outage.
    const arrivals = Array.from({ length: 20 }, (_, i) => T0 + i * 180_000);
    const enqueuedAt = new Map<string, number>();
    const STEP_MS = 5000;
    let next = 0;
    try {
      for (let t = T0; t <= T0 + 3 * 3600_000; t += STEP_MS) {
        clock.set(t);
        while (next < arrivals.length && (arrivals[next] as number) <= t) {
          const event = receivedEvent({ receivedAt: new Date(t).toISOString() });
          const eventKey = archive.putEvent(event);
          enqueuedAt.set(event.data.eventId, t);
          await queue.send(
            endpoints.map((e, i) => ({
              id: `j${i}`,
              body: JSON.stringify(jobFor(event, eventKey, e.id)),
            })),
          );
          next++;
        }
        while ((await drainOnce({ queue, deliver, logger: silentLogger })).received > 0) {}
      }
    } finally {
      await http.close();
    }

    // Healthy: each message exactly once, in the same 5 s step it arrived.
    const ids = healthy.requests.map((r) => String(r.headers['webhook-id']));
    expect(ids).toHaveLength(20);
    expect(new Set(ids).size).toBe(20);
    for (const r of healthy.requests) {
      const sentAt = Number(r.headers['webhook-timestamp']) * 1000;
      const arrived = enqueuedAt.get(String(r.headers['webhook-id'])) as number;
      expect(sentAt - arrived).toBeLessThan(STEP_MS);
    }
    // Down: refused during the hour, then each message delivered exactly once.
    const accepted = down.requests.filter((r) => Number(r.headers['webhook-timestamp']) * 1000 >= downUntil);
    expect(new Set(accepted.map((r) => r.headers['webhook-id'])).size).toBe(20);
    expect(accepted).toHaveLength(20);
    expect(down.requests.length).toBeGreaterThan(20);
    expect(await queue.depth()).toMatchObject({ ready: 0, delayed: 0, inflight: 0, dead: 0 });
  }, 60_000);
});

describe('drainOnce outcome mapping', () => {
  class FakeConsumer implements LocalJobConsumer {
    readonly settled: string[] = [];
    constructor(private messages: LocalQueueMessage[]) {}
    async receive(max: number) {
      const out = this.messages.slice(0, max);
      this.messages = this.messages.slice(max);
      return out;
    }
    async ack(r: string) {
      this.settled.push(`ack ${r}`);
    }
    async retryLater(r: string, delayMs: number) {
      this.settled.push(`retry ${r} ${delayMs}`);
    }
    async deadLetter(r: string, reason: string) {
      this.settled.push(`dead ${r} ${reason.split(':')[0]}`);
    }
  }
  const job = (endpointId: string): string =>
    JSON.stringify({
      v: 1,
      webhookId: 'msg_x',
      type: 'email.received',
      mailboxId: 'inbox',
      messageKey: 'k',
      endpointId,
      eventKey: 'raw/k.json',
    });
  const outcomes: Record<string, DeliverResult | Error> = {
    ok: { outcome: 'delivered' },
    later: { outcome: 'retry', delayMs: 86_400_000 },
    over: { outcome: 'failed', errorCode: 'HTTP_500' },
    off: { outcome: 'disabled' },
    boom: new Error('state store down'),
  };
  const deliver = async (j: QueuedJob) => {
    const o = outcomes[j.endpointId] as DeliverResult | Error;
    if (o instanceof Error) throw o;
    return o;
  };

  it('acks, retries (full delay), dead-letters and backs off as documented', async () => {
    const consumer = new FakeConsumer([
      ...Object.keys(outcomes).map((id) => ({ receipt: id, body: job(id) })),
      { receipt: 'junk', body: 'not json' },
    ]);
    const stats = await drainOnce({ queue: consumer, deliver, logger: silentLogger });
    expect(stats).toEqual({ received: 6, delivered: 1, retried: 2, failed: 2, other: 1 });
    expect(consumer.settled.sort()).toEqual(
      [
        'ack ok',
        'retry later 86400000',
        'dead over HTTP_500',
        'ack off',
        `retry boom ${WORKER_ERROR_BACKOFF_MS}`,
        'dead junk invalid job',
      ].sort(),
    );
  });

  it('runWorker stops when aborted', async () => {
    const consumer = new FakeConsumer([{ receipt: 'ok', body: job('ok') }]);
    const controller = new AbortController();
    const running = runWorker({
      queue: consumer,
      deliver,
      logger: silentLogger,
      signal: controller.signal,
      idleMs: 10,
    });
    await new Promise((r) => setTimeout(r, 50));
    controller.abort();
    await running;
    expect(consumer.settled).toEqual(['ack ok']);
  });
});

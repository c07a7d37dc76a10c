import { ChangeMessageVisibilityCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EndpointConfig } from '../../../shared/config/schema.js';
import { deliverJob, type QueuedJob } from '../../../shared/delivery/deliver.js';
import { createWebhookHttp, type WebhookHttp } from '../../../shared/delivery/http.js';
import { MAX_VISIBILITY_STEP_SECONDS } from '../../../shared/delivery/retry.js';
import { handleSqsBatch, runKeyed } from '../../../shared/delivery/sqs-batch.js';
import { silentLogger } from '../../../shared/log.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import {
  defaultDelivery,
  jobFor,
  localEndpoint,
  MemoryArchive,
  MemoryDeliveryLog,
  newSecret,
  receivedEvent,
  record,
  testClock,
} from './helpers.js';

const QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/pophook-deliveries';

describe('handleSqsBatch', () => {
  const sqsMock = mockClient(SQSClient);
  const sqs = new SQSClient({ region: 'us-east-1' });
  let ok: Receiver;
  let failing: Receiver;
  let gone: Receiver;
  let busy: Receiver;
  let http: WebhookHttp;
  let archive: MemoryArchive;
  let log: MemoryDeliveryLog;

  beforeAll(async () => {
    [ok, failing, gone, busy] = await Promise.all([
      startReceiver(),
      startReceiver({ behaviour: { kind: 'status', status: 500 } }),
      startReceiver({ behaviour: { kind: 'status', status: 410 } }),
      startReceiver({ behaviour: { kind: 'status', status: 429, headers: { 'retry-after': '86400' } } }),
    ]);
  });
  afterAll(async () => {
    sqsMock.restore();
    await Promise.all([ok.close(), failing.close(), gone.close(), busy.close()]);
  });
  beforeEach(() => {
    sqsMock.reset();
    sqsMock.on(ChangeMessageVisibilityCommand).resolves({});
    http = createWebhookHttp();
    archive = new MemoryArchive();
    log = new MemoryDeliveryLog();
  });
  afterEach(async () => {
    await http.close();
  });

  const endpoints = (): EndpointConfig[] => [
    localEndpoint('ok', ok.url),
    localEndpoint('failing', failing.url),
    localEndpoint('gone', gone.url),
    localEndpoint('busy', busy.url),
    localEndpoint('exhausted', ok.url),
  ];

  function job(endpointId: string): QueuedJob {
    const event = receivedEvent();
    return jobFor(event, archive.putEvent(event), endpointId);
  }

  function deliver(eps: EndpointConfig[]) {
    const clock = testClock(Date.now());
    return (j: QueuedJob) =>
      deliverJob(j, {
        config: { endpoints: eps, delivery: defaultDelivery({ retryScheduleSeconds: [5, 300] }) },
        archive,
        log,
        http,
        clock,
        logger: silentLogger,
        random: () => 0.5,
        resolveSecret: async () => newSecret(),
      });
  }

  it('names exactly the failed records and parks retries with ChangeMessageVisibility', async () => {
    const exhausted = job('exhausted');
    // Its schedule is already over: the attempt log says failed.
    await log.recordAttempt({
      messageKey: exhausted.messageKey,
      endpointId: 'exhausted',
      webhookId: exhausted.webhookId,
      attempt: 3,
      at: new Date().toISOString(),
      outcome: 'failed',
      latencyMs: 1,
    });
    const missing = { ...job('ok'), eventKey: 'raw/inbox/2025/01/01/missing.json' };
    const event: SQSEvent = {
      Records: [
        record('m-ok', JSON.stringify(job('ok'))),
        record('m-500', JSON.stringify(job('failing'))),
        record('m-invalid', '{"v":1,"hello":"world"}'),
        record('m-410', JSON.stringify(job('gone'))),
        record('m-missing', JSON.stringify(missing)),
        record('m-exhausted', JSON.stringify(exhausted)),
        record('m-429', JSON.stringify(job('busy'))),
        record('m-ok2', JSON.stringify(job('ok'))),
      ],
    };
    const eps = endpoints();
    const result = await handleSqsBatch(event, {
      deliver: deliver(eps),
      sqs,
      queueUrl: QUEUE_URL,
      logger: silentLogger,
      endpointConcurrency: (id) => eps.find((e) => e.id === id)?.maxConcurrency ?? 10,
    });
    expect(result.batchItemFailures).toEqual([
      { itemIdentifier: 'm-500' },
      { itemIdentifier: 'm-invalid' },
      { itemIdentifier: 'm-missing' },
      { itemIdentifier: 'm-exhausted' },
      { itemIdentifier: 'm-429' },
    ]);
    const calls = Object.fromEntries(
      sqsMock
        .commandCalls(ChangeMessageVisibilityCommand)
        .map((c) => [c.args[0].input.ReceiptHandle, c.args[0].input.VisibilityTimeout]),
    );
    expect(calls).toEqual({
      'rh-m-500': 5,
      'rh-m-invalid': 0,
      'rh-m-exhausted': 0,
      // Retry-After 24 h is longer than one visibility step: the first step is capped.
      'rh-m-429': MAX_VISIBILITY_STEP_SECONDS,
    });
    for (const c of sqsMock.commandCalls(ChangeMessageVisibilityCommand)) {
      expect(c.args[0].input.QueueUrl).toBe(QUEUE_URL);
    }
  });

  it('still reports the record when ChangeMessageVisibility fails', async () => {
    sqsMock.on(ChangeMessageVisibilityCommand).rejects(new Error('throttled'));
    const result = await handleSqsBatch(
      { Records: [record('m1', JSON.stringify(job('failing')))] },
      { deliver: deliver(endpoints()), sqs, queueUrl: QUEUE_URL, logger: silentLogger },
    );
    expect(result.batchItemFailures).toEqual([{ itemIdentifier: 'm1' }]);
  });

  it('an empty batch reports nothing', async () => {
    const result = await handleSqsBatch(
      { Records: [] },
      { deliver: deliver(endpoints()), sqs, queueUrl: QUEUE_URL, logger: silentLogger },
    );
    expect(result).toEqual({ batchItemFailures: [] });
  });

  it('a slow endpoint at its cap does not hold the batch slots of another endpoint', async () => {
    const slow = await startReceiver({ behaviour: { kind: 'slow', delayMs: 800 } });
    try {
      const eps = [localEndpoint('slow', slow.url, { maxConcurrency: 1 }), localEndpoint('ok', ok.url)];
      const before = ok.requests.length;
      const records = [
        ...Array.from({ length: 3 }, (_, i) => record(`s${i}`, JSON.stringify(job('slow')))),
        ...Array.from({ length: 3 }, (_, i) => record(`o${i}`, JSON.stringify(job('ok')))),
      ];
      const started = Date.now();
      const result = await handleSqsBatch(
        { Records: records },
        {
          deliver: deliver(eps),
          sqs,
          queueUrl: QUEUE_URL,
          logger: silentLogger,
          concurrency: 2,
          endpointConcurrency: (id) => eps.find((e) => e.id === id)?.maxConcurrency ?? 10,
        },
      );
      expect(result.batchItemFailures).toEqual([]);
      const okTimes = ok.requests.slice(before).map((r) => r.at - started);
      expect(okTimes).toHaveLength(3);
      // With a global cap of 2 and the slow endpoint capped at 1, the other slot serves "ok" at once.
      expect(Math.max(...okTimes)).toBeLessThan(700);
      expect(Date.now() - started).toBeGreaterThanOrEqual(2350);
    } finally {
      await slow.close();
    }
  });
});

describe('runKeyed', () => {
  it('respects the global and per-key limits and runs everything', async () => {
    const active = new Map<string, number>();
    let running = 0;
    let peak = 0;
    const peaks = new Map<string, number>();
    const done: number[] = [];
    const items = Array.from({ length: 30 }, (_, i) => ({ i, key: `k${i % 3}` }));
    await runKeyed(
      items,
      (x) => x.key,
      (k) => (k === 'k0' ? 1 : 3),
      4,
      async (x) => {
        running++;
        active.set(x.key, (active.get(x.key) ?? 0) + 1);
        peak = Math.max(peak, running);
        peaks.set(x.key, Math.max(peaks.get(x.key) ?? 0, active.get(x.key) ?? 0));
        try {
          await new Promise((r) => setTimeout(r, 2));
          if (x.i === 7) throw new Error('ignored');
          done.push(x.i);
        } finally {
          running--;
          active.set(x.key, (active.get(x.key) ?? 1) - 1);
        }
      },
    );
    expect(done).toHaveLength(29);
    expect(peak).toBeLessThanOrEqual(4);
    expect(peaks.get('k0')).toBe(1);
  });
});

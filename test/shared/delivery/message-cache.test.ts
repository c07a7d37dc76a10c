import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EndpointConfig } from '../../../shared/config/schema.js';
import { type DeliverDeps, deliverJob, iso, type QueuedJob } from '../../../shared/delivery/deliver.js';
import { createWebhookHttp, type WebhookHttp } from '../../../shared/delivery/http.js';
import {
  MESSAGE_CACHE_MAX_BYTES,
  MESSAGE_CACHE_MAX_ENTRIES,
  MESSAGE_CACHE_TTL_MS,
  MessageCache,
  messageCacheFor,
} from '../../../shared/delivery/message-cache.js';
import { silentLogger } from '../../../shared/log.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import {
  defaultDelivery,
  jobFor,
  lazySecrets,
  localEndpoint,
  MemoryArchive,
  MemoryDeliveryLog,
  receivedEvent,
  type TestClock,
  testClock,
} from './helpers.js';

/** A MemoryArchive that counts event reads and can fail the next ones. */
class CountingArchive extends MemoryArchive {
  reads = 0;
  failNext = 0;
  override async getBytes(key: string) {
    if (key.endsWith('.json')) {
      this.reads++;
      if (this.failNext > 0) {
        this.failNext--;
        throw Object.assign(new Error('archive unavailable'), { code: 'ARCHIVE_UNAVAILABLE' });
      }
    }
    return super.getBytes(key);
  }
}

describe('one read and one body per message, shared by its endpoints (message-cache.ts)', () => {
  let receiver: Receiver;
  let http: WebhookHttp;
  let archive: CountingArchive;
  let clock: TestClock;
  let log: MemoryDeliveryLog;
  const secrets = lazySecrets();

  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver.close();
  });
  beforeEach(() => {
    http = createWebhookHttp();
    archive = new CountingArchive('https://bucket.s3.example');
    clock = testClock(Date.now()); // webhook-timestamp must be recent to verify
    log = new MemoryDeliveryLog();
    receiver.requests.length = 0;
  });
  afterEach(async () => {
    await http.close();
  });

  function deps(endpoints: EndpointConfig[], delivery = defaultDelivery()): DeliverDeps {
    return {
      config: { endpoints, delivery },
      archive,
      log,
      http,
      clock,
      logger: silentLogger,
      random: () => 0.5,
      resolveSecret: secrets.resolve,
    };
  }

  function message(text = 'Hello there') {
    const event = receivedEvent({ text });
    const eventKey = archive.putEvent(event);
    return (endpointId: string): QueuedJob => jobFor(event, eventKey, endpointId);
  }

  const endpointsNamed = (ids: string[], extra: Record<string, unknown> = {}) =>
    ids.map((id) => localEndpoint(id, `${receiver.url}/${id}`, extra));

  function verified(endpointId: string) {
    const req = receiver.requests.find((r) => r.path.endsWith(`/${endpointId}`));
    const secret = secrets.byName.get(`${endpointId}-secret`) as string;
    const body = req?.body.toString() ?? '';
    new Webhook(secret).verify(body, {
      'webhook-id': String(req?.headers['webhook-id']),
      'webhook-timestamp': String(req?.headers['webhook-timestamp']),
      'webhook-signature': String(req?.headers['webhook-signature']),
    });
    return { body, id: req?.headers['webhook-id'] };
  }

  it('fans out one message to 5 endpoints with one archive read; each signature verifies', async () => {
    const ids = ['a', 'b', 'c', 'd', 'e'];
    const d = deps(endpointsNamed(ids));
    const job = message('fan-out body');
    const results = await Promise.all(ids.map((id) => deliverJob(job(id), d)));
    expect(results.every((r) => r.outcome === 'delivered')).toBe(true);
    expect(archive.reads).toBe(1);
    const seen = ids.map(verified);
    expect(new Set(seen.map((s) => s.body)).size).toBe(1);
    expect(new Set(seen.map((s) => s.id)).size).toBe(1);
    expect(JSON.parse(seen[0]?.body ?? '{}').data.text).toBe('fan-out body');
    // Later jobs of the same message (a straggler, a retry) reuse it while it is fresh.
    clock.advance(MESSAGE_CACHE_TTL_MS - 1);
    await deliverJob({ ...job('a'), webhookId: 'msg_other_run' }, d);
    expect(archive.reads).toBe(1);
    clock.advance(1);
    await deliverJob({ ...job('b'), webhookId: 'msg_third_run' }, d);
    expect(archive.reads).toBe(2);
  });

  it('keeps nothing when no other endpoint could use it', async () => {
    const d = deps(endpointsNamed(['solo']));
    const job = message();
    await deliverJob(job('solo'), d);
    await deliverJob({ ...job('solo'), webhookId: 'msg_again' }, d);
    expect(archive.reads).toBe(2);
    expect(messageCacheFor(archive).size).toBe(0);
  });

  it('builds each payload shape once: full and thin endpoints get their own body', async () => {
    const endpoints = [...endpointsNamed(['f1', 'f2']), ...endpointsNamed(['t1', 't2'], { payload: 'thin' })];
    const d = deps(endpoints);
    const job = message('shape text');
    await Promise.all(['f1', 'f2', 't1', 't2'].map((id) => deliverJob(job(id), d)));
    expect(archive.reads).toBe(2);
    expect(JSON.parse(verified('f1').body).data.text).toBe('shape text');
    expect(JSON.parse(verified('t2').body).data).not.toHaveProperty('text');
    expect(verified('f1').body).toBe(verified('f2').body);
    expect(verified('t1').body).toBe(verified('t2').body);
  });

  it('a failed read is not remembered: the jobs fail (queue retries), the next read succeeds', async () => {
    const d = deps(endpointsNamed(['x', 'y']));
    const job = message();
    archive.failNext = 1;
    const failed = await Promise.allSettled([deliverJob(job('x'), d), deliverJob(job('y'), d)]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(archive.reads).toBe(1);
    expect(receiver.requests).toHaveLength(0);
    const ok = await Promise.all([deliverJob(job('x'), d), deliverJob(job('y'), d)]);
    expect(ok.map((r) => r.outcome)).toEqual(['delivered', 'delivered']);
    expect(archive.reads).toBe(2);
  });

  it('reuses a body for at most a tenth of its links lifetime', async () => {
    const d = deps(endpointsNamed(['l1', 'l2']), defaultDelivery({ linkExpirySeconds: 60 }));
    const job = message();
    await deliverJob(job('l1'), d);
    const firstLink = JSON.parse(verified('l1').body).data.links.raw.expiresAt;
    clock.advance(5_999);
    await deliverJob(job('l2'), d);
    expect(archive.reads).toBe(1);
    clock.advance(1);
    await deliverJob({ ...job('l1'), webhookId: 'msg_later' }, d);
    expect(archive.reads).toBe(2);
    const links = receiver.requests.map((r) => JSON.parse(r.body.toString()).data.links.raw.expiresAt);
    expect(links).toEqual([firstLink, firstLink, new Date(Date.parse(firstLink) + 6_000).toISOString()]);
  });
});

describe('MessageCache bounds', () => {
  const ready = (bytes: number) => Promise.resolve({ built: Promise.resolve(Buffer.alloc(bytes)) });
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  it('holds at most MESSAGE_CACHE_MAX_ENTRIES, dropping the oldest', async () => {
    const cache = new MessageCache();
    for (let i = 0; i < MESSAGE_CACHE_MAX_ENTRIES + 20; i++)
      await cache.get(`k${i}`, 0, 1000, () => ready(10));
    await settle();
    expect(cache.size).toBe(MESSAGE_CACHE_MAX_ENTRIES);
    let produced = 0;
    await cache.get('k0', 0, 1000, () => {
      produced++;
      return ready(10);
    });
    expect(produced).toBe(1);
  });

  it('holds at most MESSAGE_CACHE_MAX_BYTES, and never keeps a body over a quarter of it', async () => {
    const cache = new MessageCache();
    const big = Math.floor(MESSAGE_CACHE_MAX_BYTES / 4);
    await (await cache.get('huge', 0, 1000, () => ready(big + 1))).built;
    await settle();
    expect(cache.size).toBe(0);
    for (let i = 0; i < 6; i++) await (await cache.get(`b${i}`, 0, 1000, () => ready(big))).built;
    await settle();
    expect(cache.size).toBe(4);
  });

  it('drops an entry whose build failed', async () => {
    const cache = new MessageCache();
    const failing = () => Promise.resolve({ built: Promise.reject(new Error('link signing failed')) });
    await expect((await cache.get('f', 0, 1000, failing)).built).rejects.toThrow(/link signing/);
    await settle();
    expect(cache.size).toBe(0);
  });
});

describe('iso', () => {
  it('formats exactly like Date#toISOString, across seconds and odd values', () => {
    const samples = [
      0,
      1,
      999,
      1000,
      1001,
      -1,
      -1000,
      -1001,
      Date.now(),
      253402300799999,
      253402300800000,
      1.5,
    ];
    for (let i = 0; i < 2000; i++) samples.push(Math.floor(Math.random() * 4e12) - 1e12);
    // Each value again, twice in a row: the last result is kept.
    for (const ms of samples.slice(0, 50)) samples.push(ms, ms);
    for (const ms of samples) expect(iso(ms)).toBe(new Date(ms).toISOString());
  });
});

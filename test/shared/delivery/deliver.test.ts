import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EndpointConfig } from '../../../shared/config/schema.js';
import { type DeliverDeps, deliverJob, parseJob, type QueuedJob } from '../../../shared/delivery/deliver.js';
import { createWebhookHttp, type WebhookHttp } from '../../../shared/delivery/http.js';
import { DeliveryError } from '../../../shared/errors.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { LocalStateStore } from '../../../shared/state/local-state.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import {
  defaultDelivery,
  jobFor,
  lazySecrets,
  localEndpoint,
  MemoryArchive,
  receivedEvent,
  type TestClock,
  testClock,
} from './helpers.js';

describe('deliverJob against real receivers', () => {
  let receiver: Receiver;
  let other: Receiver;
  let dir: string;
  let http: WebhookHttp;
  let clock: TestClock;
  let log: LocalStateStore;
  let archive: MemoryArchive;
  let logger: ReturnType<typeof createMemoryLogger>;
  const secrets = lazySecrets();

  beforeAll(async () => {
    receiver = await startReceiver();
    other = await startReceiver();
  });
  afterAll(async () => {
    await Promise.all([receiver.close(), other.close()]);
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pophook-deliver-'));
    clock = testClock(Date.now());
    log = new LocalStateStore({ dir, clock });
    archive = new MemoryArchive('https://bucket.s3.example');
    http = createWebhookHttp();
    logger = createMemoryLogger();
    receiver.respond({ kind: 'status', status: 200, body: '{"ok":true}' });
    receiver.requests.length = 0;
    other.requests.length = 0;
  });
  afterEach(async () => {
    await http.close();
    await rm(dir, { recursive: true, force: true });
  });

  function deps(endpoints: EndpointConfig[], schedule = [5, 300, 1800]): DeliverDeps {
    return {
      config: { endpoints, delivery: defaultDelivery({ retryScheduleSeconds: schedule }) },
      archive,
      log,
      http,
      clock,
      logger,
      random: () => 0.5,
      resolveSecret: secrets.resolve,
    };
  }

  function jobOf(endpointId: string, text = 'Hello there'): QueuedJob {
    const event = receivedEvent({ text });
    return jobFor(event, archive.putEvent(event), endpointId);
  }

  it('200: delivered, signed over the exact bytes, attempt recorded', async () => {
    const ep = localEndpoint('ok', receiver.url);
    const job = jobOf('ok', 'secret body text');
    const result = await deliverJob(job, deps([ep]));
    expect(result).toMatchObject({ outcome: 'delivered', attempt: 1, status: 200 });
    const req = receiver.requests[0];
    expect(req?.headers['webhook-id']).toBe(job.webhookId);
    const payload = new Webhook(secrets.byName.get('ok-secret') as string).verify(
      req?.body.toString() ?? '',
      {
        'webhook-id': String(req?.headers['webhook-id']),
        'webhook-timestamp': String(req?.headers['webhook-timestamp']),
        'webhook-signature': String(req?.headers['webhook-signature']),
      },
    ) as { type: string; data: { messageKey: string; text: string } };
    expect(payload.type).toBe('email.received');
    expect(payload.data.text).toBe('secret body text');
    const [attempt] = await log.listAttempts(job.messageKey);
    expect(attempt).toMatchObject({ outcome: 'delivered', status: 200, attempt: 1, endpointId: 'ok' });
    // Logs name the delivery but never carry the secret or the body.
    const text = logger.lines.join('\n');
    expect(text).toContain(job.webhookId);
    expect(text).not.toContain(secrets.byName.get('ok-secret')?.slice(6));
    expect(text).not.toContain('secret body text');
  });

  it('500: retry on schedule with the same webhook-id and a fresh timestamp', async () => {
    receiver.respond({ kind: 'status', status: 500, body: 'oops' });
    const ep = localEndpoint('five', receiver.url);
    const job = jobOf('five');
    const d = deps([ep]);
    const first = await deliverJob(job, d);
    expect(first).toMatchObject({
      outcome: 'retry',
      attempt: 1,
      status: 500,
      errorCode: 'HTTP_500',
      delayMs: 5000,
    });
    // Back before it is due: parked again, nothing sent, nothing recorded.
    clock.advance(1000);
    expect(await deliverJob(job, d)).toEqual({ outcome: 'retry', delayMs: 4000 });
    expect(receiver.requests).toHaveLength(1);
    clock.advance(4000);
    const second = await deliverJob(job, d);
    expect(second).toMatchObject({ outcome: 'retry', attempt: 2, delayMs: 300_000 });
    expect(receiver.requests).toHaveLength(2);
    const [a, b] = receiver.requests;
    expect(b?.headers['webhook-id']).toBe(a?.headers['webhook-id']);
    expect(Number(b?.headers['webhook-timestamp'])).toBe(Number(a?.headers['webhook-timestamp']) + 5);
    const attempts = await log.listAttempts(job.messageKey);
    expect(attempts.map((x) => [x.attempt, x.outcome, x.response])).toEqual([
      [1, 'retry', 'oops'],
      [2, 'retry', 'oops'],
    ]);
    // Attempt 1 was due again exactly when attempt 2 ran (the clock moved 1 s + 4 s).
    expect(attempts[0]?.nextAttemptAt).toBe(new Date(clock.now()).toISOString());
  });

  it('after the last scheduled attempt: failed (dead-letter), and a redelivery does not send again', async () => {
    receiver.respond({ kind: 'status', status: 502 });
    const ep = localEndpoint('last', receiver.url);
    const job = jobOf('last');
    const d = deps([ep], [1]);
    expect((await deliverJob(job, d)).outcome).toBe('retry');
    clock.advance(1000);
    expect(await deliverJob(job, d)).toMatchObject({ outcome: 'failed', attempt: 2, errorCode: 'HTTP_502' });
    expect(await deliverJob(job, d)).toEqual({ outcome: 'failed', errorCode: 'RETRIES_EXHAUSTED' });
    expect(receiver.requests).toHaveLength(2);
  });

  it('410: disables the endpoint; the next job is not sent', async () => {
    receiver.respond({ kind: 'status', status: 410 });
    const ep = localEndpoint('gone', receiver.url);
    const d = deps([ep]);
    expect(await deliverJob(jobOf('gone'), d)).toMatchObject({ outcome: 'disabled', status: 410 });
    expect(await log.getEndpointState('gone')).toMatchObject({
      disabled: true,
      disabledReason: expect.any(String),
    });
    receiver.respond({ kind: 'status', status: 200 });
    const next = jobOf('gone');
    expect(await deliverJob(next, d)).toEqual({ outcome: 'disabled', errorCode: 'ENDPOINT_DISABLED' });
    expect(receiver.requests).toHaveLength(1);
    expect((await log.listAttempts(next.messageKey))[0]).toMatchObject({ outcome: 'disabled' });
  });

  it('429 and 503 with Retry-After: the delay honours it', async () => {
    const ep = localEndpoint('busy', receiver.url);
    receiver.script(
      { kind: 'status', status: 429, headers: { 'retry-after': '120' } },
      {
        kind: 'status',
        status: 503,
        headers: { 'retry-after': new Date(clock.now() + 3_600_000).toUTCString() },
      },
    );
    const r1 = await deliverJob(jobOf('busy'), deps([ep]));
    expect(r1).toMatchObject({ outcome: 'retry', status: 429, delayMs: 120_000 });
    const r2 = await deliverJob(jobOf('busy'), deps([ep]));
    expect(r2.outcome).toBe('retry');
    expect(r2.delayMs).toBeGreaterThan(3_598_000);
    expect(r2.delayMs).toBeLessThanOrEqual(3_600_000);
  });

  it('301: not followed, counted as a failure', async () => {
    receiver.script({ kind: 'redirect', status: 301, location: other.url });
    const r = await deliverJob(jobOf('moved'), deps([localEndpoint('moved', receiver.url)]));
    expect(r).toMatchObject({ outcome: 'retry', status: 301, errorCode: 'HTTP_REDIRECT' });
    expect(other.requests).toHaveLength(0);
  });

  it('slow past the timeout: retry with TIMEOUT', async () => {
    receiver.script({ kind: 'slow', delayMs: 4000 });
    const started = Date.now();
    const r = await deliverJob(
      jobOf('slow'),
      deps([localEndpoint('slow', receiver.url, { timeoutMs: 1000 })]),
    );
    expect(r).toMatchObject({ outcome: 'retry', errorCode: 'TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('50 MB response: delivered quickly without buffering it', async () => {
    receiver.script({ kind: 'big', bytes: 50 * 1024 * 1024 });
    const started = Date.now();
    const r = await deliverJob(jobOf('big'), deps([localEndpoint('big', receiver.url)]));
    expect(r).toMatchObject({ outcome: 'delivered', status: 200 });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('connection reset: retry with CONNECTION_RESET', async () => {
    receiver.script({ kind: 'reset' });
    const r = await deliverJob(jobOf('reset'), deps([localEndpoint('reset', receiver.url)]));
    expect(r).toMatchObject({ outcome: 'retry', errorCode: 'CONNECTION_RESET' });
  });

  it('a duplicate of a delivered job is skipped, not re-sent', async () => {
    const ep = localEndpoint('dup', receiver.url);
    const job = jobOf('dup');
    expect((await deliverJob(job, deps([ep]))).outcome).toBe('delivered');
    expect(await deliverJob(job, deps([ep]))).toEqual({ outcome: 'skipped', errorCode: 'ALREADY_DELIVERED' });
    expect(receiver.requests).toHaveLength(1);
  });

  it('a replay starts a fresh run with the original webhook-id', async () => {
    const ep = localEndpoint('rp', receiver.url);
    const job = jobOf('rp');
    await deliverJob(job, deps([ep]));
    clock.advance(60_000);
    const replayJob: QueuedJob = { ...job, replay: true, replayedAt: new Date(clock.now()).toISOString() };
    expect(await deliverJob(replayJob, deps([ep]))).toMatchObject({ outcome: 'delivered', attempt: 1 });
    expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([job.webhookId, job.webhookId]);
    expect((await deliverJob(replayJob, deps([ep]))).outcome).toBe('skipped');
  });

  it('a malformed secret: nothing sent, attempt recorded, the secret never logged', async () => {
    const ep = localEndpoint('badsecret', receiver.url);
    secrets.byName.set('badsecret-secret', 'whsec_short-and-not-base64!!');
    const job = jobOf('badsecret');
    const r = await deliverJob(job, deps([ep]));
    expect(r).toMatchObject({ outcome: 'retry', errorCode: 'WEBHOOK_SECRET_INVALID' });
    expect(receiver.requests).toHaveLength(0);
    expect(logger.lines.join('\n')).not.toContain('short-and-not-base64');
  });

  it('an endpoint disabled in config or no longer configured: nothing sent', async () => {
    const ep = localEndpoint('paused', receiver.url, { enabled: false });
    expect(await deliverJob(jobOf('paused'), deps([ep]))).toMatchObject({ outcome: 'disabled' });
    expect(await deliverJob(jobOf('gone-from-config'), deps([ep]))).toMatchObject({ outcome: 'skipped' });
    expect(receiver.requests).toHaveLength(0);
  });

  it('one body whether the archived event is scanned or parsed; a broken one is never sent', async () => {
    const ep = localEndpoint('shape', receiver.url);
    const event = receivedEvent({ text: 'line one\r\nline "two" é 😀', subject: 'Ünïcode \u2028' });
    const compact = archive.putEvent(event);
    // The same event pretty-printed: the scan refuses whitespace, so it goes through JSON.parse.
    const pretty = compact.replace(/\.json$/, '.pretty.json');
    archive.objects.set(pretty, Buffer.from(JSON.stringify(event, null, 2)));
    for (const key of [compact, pretty]) {
      const result = await deliverJob(
        { ...jobFor(event, key, 'shape'), webhookId: `w_${key.length}` },
        deps([ep]),
      );
      expect(result.outcome).toBe('delivered');
    }
    const [scanned, parsed] = receiver.requests.map((r) => r.body.toString('utf8'));
    expect(scanned).toBe(parsed);
    expect(JSON.parse(scanned ?? '').data).toMatchObject({
      text: event.data.text,
      subject: event.data.subject,
    });

    // Not JSON (a truncated write): thrown as EVENT_UNREADABLE for the queue to retry, nothing sent.
    const truncated = compact.replace(/\.json$/, '.cut.json');
    archive.objects.set(truncated, archive.objects.get(compact)?.subarray(0, -1) ?? Buffer.alloc(0));
    const invalid = compact.replace(/\.json$/, '.bad.json');
    archive.objects.set(invalid, Buffer.from(JSON.stringify(event).replace('"text":"', '"text":"\\x')));
    for (const key of [truncated, invalid]) {
      await expect(deliverJob(jobFor(event, key, 'shape'), deps([ep]))).rejects.toMatchObject({
        code: 'EVENT_UNREADABLE',
      });
    }
    // An event of another type than the job's: EVENT_MISMATCH.
    const skipped = { ...jobFor(event, compact, 'shape'), type: 'email.skipped' as const };
    await expect(deliverJob(skipped, deps([ep]))).rejects.toMatchObject({ code: 'EVENT_MISMATCH' });
    expect(receiver.requests).toHaveLength(2);
  });

  it('an event missing from the archive is an infrastructure error (thrown, retried by the queue)', async () => {
    const job = { ...jobOf('missing'), eventKey: 'raw/inbox/2025/01/01/nope.json' };
    await expect(deliverJob(job, deps([localEndpoint('missing', receiver.url)]))).rejects.toThrow(
      /no such key/,
    );
  });
});

describe('parseJob', () => {
  it('accepts a job and rejects anything else with JOB_INVALID', () => {
    const job = {
      v: 1,
      webhookId: 'msg_abc',
      type: 'email.received',
      mailboxId: 'inbox',
      messageKey: 'abc',
      endpointId: 'ep',
      eventKey: 'raw/x.json',
    };
    expect(parseJob(JSON.stringify(job))).toEqual(job);
    for (const bad of [
      'nope',
      '{}',
      JSON.stringify({ ...job, v: 2 }),
      JSON.stringify({ ...job, webhookId: 'a.b' }),
      JSON.stringify({ ...job, extra: true }),
      JSON.stringify({ ...job, replayedAt: 'yesterday' }),
    ]) {
      expect(() => parseJob(bad)).toThrow(DeliveryError);
    }
    // The reason names the field, in English.
    expect(() => parseJob(JSON.stringify({ ...job, endpointId: '' }))).toThrow(
      /\(endpointId: Too small: expected string to have >=1 characters\)/,
    );
  });
});

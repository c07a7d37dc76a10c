import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createWebhookHttp,
  RESPONSE_SNIPPET_CHARS,
  Semaphore,
  type WebhookHttp,
} from '../../../shared/delivery/http.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import { localEndpoint } from './helpers.js';

describe('createWebhookHttp', () => {
  let receiver: Receiver;
  let http: WebhookHttp;
  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    await http?.close();
  });

  it('POSTs the exact body and headers, and reuses one keep-alive connection', async () => {
    http = createWebhookHttp();
    const endpoint = localEndpoint('ka', receiver.url);
    const before = receiver.connections;
    for (let i = 0; i < 10; i++) {
      const res = await http.post({ endpoint, headers: { 'webhook-id': `msg_${i}` }, body: `{"i":${i}}` });
      expect(res.status).toBe(200);
      expect(res.snippet).toBe('{"ok":true}');
    }
    // undici may open a second socket while the first is finishing its response; never one per request.
    expect(receiver.connections - before).toBeLessThanOrEqual(2);
    const last = receiver.requests.at(-1);
    expect(last?.method).toBe('POST');
    expect(last?.body.toString()).toBe('{"i":9}');
    expect(last?.headers['content-type']).toBe('application/json');
    expect(last?.headers['webhook-id']).toBe('msg_9');
  });

  it('returns a sanitised, bounded snippet of an error body', async () => {
    http = createWebhookHttp();
    receiver.script({ kind: 'status', status: 500, body: `\u001b[31mboom\u0007${'x'.repeat(10_000)}` });
    const res = await http.post({ endpoint: localEndpoint('err', receiver.url), headers: {}, body: '{}' });
    expect(res.status).toBe(500);
    expect(res.snippet?.startsWith('boom?x')).toBe(true);
    expect(res.snippet?.length).toBeLessThan(RESPONSE_SNIPPET_CHARS + 40);
  });

  it('does not buffer a 50 MB response: reads a snippet and closes', async () => {
    http = createWebhookHttp();
    receiver.script({ kind: 'big', bytes: 50 * 1024 * 1024 });
    const heapBefore = process.memoryUsage().heapUsed;
    const started = Date.now();
    const res = await http.post({ endpoint: localEndpoint('big', receiver.url), headers: {}, body: '{}' });
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(20 * 1024 * 1024);
    expect(res.snippet?.length).toBeLessThanOrEqual(RESPONSE_SNIPPET_CHARS + 30);
  });

  it('times out a slow receiver at timeoutMs', async () => {
    http = createWebhookHttp();
    receiver.script({ kind: 'slow', delayMs: 5000 });
    const started = Date.now();
    const res = await http.post({
      endpoint: localEndpoint('slow', receiver.url, { timeoutMs: 1000 }),
      headers: {},
      body: '{}',
    });
    expect(res.errorCode).toBe('TIMEOUT');
    expect(res.status).toBeUndefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('reports a connection reset', async () => {
    http = createWebhookHttp();
    receiver.script({ kind: 'reset' });
    const res = await http.post({ endpoint: localEndpoint('reset', receiver.url), headers: {}, body: '{}' });
    expect(res.status).toBeUndefined();
    expect(res.errorCode).toBe('CONNECTION_RESET');
  });

  it('reports a refused connection', async () => {
    http = createWebhookHttp();
    const closed = await startReceiver();
    const url = closed.url;
    await closed.close();
    const res = await http.post({ endpoint: localEndpoint('refused', url), headers: {}, body: '{}' });
    expect(res.errorCode).toBe('CONNECTION_REFUSED');
  });

  it('checks the URL once per config: a refused URL sends nothing, and a config change takes effect', async () => {
    http = createWebhookHttp();
    const before = receiver.requests.length;
    const refused = localEndpoint('cfg', receiver.url, { allowHttp: false });
    for (let i = 0; i < 3; i++) {
      const res = await http.post({ endpoint: refused, headers: {}, body: '{}' });
      expect(res.errorCode).toBe('SSRF_BLOCKED');
      expect(res.snippet).toMatch(/scheme http:/);
    }
    expect(receiver.requests.length).toBe(before);
    const allowed = localEndpoint('cfg', receiver.url, { allowHttp: true });
    expect((await http.post({ endpoint: allowed, headers: {}, body: '{}' })).status).toBe(200);
    expect((await http.post({ endpoint: refused, headers: {}, body: '{}' })).errorCode).toBe('SSRF_BLOCKED');
    expect(receiver.requests.length).toBe(before + 1);
  });

  it('reports status, Retry-After and a snippet; sends a Buffer body as is', async () => {
    http = createWebhookHttp();
    receiver.script({ kind: 'status', status: 503, headers: { 'retry-after': '120' }, body: 'busy' });
    const body = Buffer.from('{"é":1}');
    const res = await http.post({ endpoint: localEndpoint('ra', receiver.url), headers: {}, body });
    expect(res).toMatchObject({ status: 503, retryAfter: '120', snippet: 'busy' });
    expect(receiver.requests.at(-1)?.body.equals(body)).toBe(true);
    expect(receiver.requests.at(-1)?.headers['content-length']).toBe(String(body.length));
  });

  it('caps requests in flight per endpoint without blocking other endpoints', async () => {
    http = createWebhookHttp();
    const slow = await startReceiver({ behaviour: { kind: 'slow', delayMs: 800 } });
    try {
      const slowEndpoint = localEndpoint('capped', slow.url, { maxConcurrency: 2 });
      const started = Date.now();
      const slowPosts = Array.from({ length: 4 }, () =>
        http.post({ endpoint: slowEndpoint, headers: {}, body: '{}' }),
      );
      const fast = await http.post({
        endpoint: localEndpoint('other', receiver.url),
        headers: {},
        body: '{}',
      });
      const fastAt = Date.now() - started;
      const results = await Promise.all(slowPosts);
      const total = Date.now() - started;
      expect(fast.status).toBe(200);
      expect(fastAt).toBeLessThan(600);
      expect(results.every((r) => r.status === 200)).toBe(true);
      // 4 requests, 2 at a time, 800 ms each: two rounds.
      expect(total).toBeGreaterThanOrEqual(1580);
    } finally {
      await slow.close();
    }
  });
});

describe('Semaphore', () => {
  it('hands slots over in order and never exceeds the limit', async () => {
    const s = new Semaphore(2);
    let active = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const release = await s.acquire();
        active++;
        peak = Math.max(peak, active);
        order.push(i);
        await new Promise((r) => setTimeout(r, 5));
        active--;
        release();
        release();
      }),
    );
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    expect(s.inFlight).toBe(0);
  });
});

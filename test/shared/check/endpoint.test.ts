import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkEndpoint, explainPingStatus } from '../../../shared/check/endpoint.js';
import { EndpointConfig } from '../../../shared/config/schema.js';
import { createWebhookHttp, type WebhookHttp } from '../../../shared/delivery/http.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';

const SECRET = `whsec_${Buffer.alloc(32, 1).toString('base64')}`;
const endpoint = (over: Record<string, unknown>) =>
  EndpointConfig.parse({ id: 'hook', url: 'https://hooks.test/x', secrets: [{ secret: 's' }], ...over });

describe('checkEndpoint', () => {
  let https: Receiver;
  let http: Receiver;
  const clients: WebhookHttp[] = [];
  const client = (ca?: string) => {
    const c = createWebhookHttp({
      ...(ca ? { ca } : {}),
      resolver: async () => [{ address: '127.0.0.1', family: 4 }],
    });
    clients.push(c);
    return c;
  };
  const resolveSecret = async () => SECRET;
  const loopback = async () => [{ address: '127.0.0.1', family: 4 as const }];

  beforeAll(async () => {
    [https, http] = await Promise.all([startReceiver({ https: true }), startReceiver()]);
  });
  afterAll(async () => {
    await Promise.all([https?.close(), http?.close(), ...clients.map((c) => c.close())]);
  });

  it('passes for https with a trusted certificate, and the ping verifies as Standard Webhooks', async () => {
    const url = `https://hooks.test:${https.port}/hook`;
    const r = await checkEndpoint(endpoint({ url, allowPrivateNetwork: true }), {
      http: client(https.ca),
      resolveSecret,
      resolver: loopback,
      ca: https.ca as string,
    });
    expect(r.steps.map((s) => [s.name, s.ok])).toEqual([
      ['URL', true],
      ['DNS', true],
      ['SSRF', true],
      ['TLS', true],
      ['secrets', true],
      ['ping', true],
    ]);
    expect(r.ok).toBe(true);
    expect(r.steps[2]).toMatchObject({ warning: true, lines: ['127.0.0.1  non-public (ipv4-loopback)'] });
    expect(r.steps[3]?.detail).toMatch(/^TLSv1\.[23] .+; certificate for hooks\.test valid until/);
    const req = https.requests.at(-1);
    const headers = Object.fromEntries(Object.entries(req?.headers ?? {}).map(([k, v]) => [k, String(v)]));
    expect(new Webhook(SECRET).verify(req?.body.toString() ?? '', headers)).toMatchObject({
      type: 'webhook.test',
      data: { endpointId: 'hook', test: true },
    });
  });

  it('an untrusted certificate fails at TLS, shown, and the ping is not sent', async () => {
    const before = https.requests.length;
    const r = await checkEndpoint(
      endpoint({ url: `https://hooks.test:${https.port}/hook`, allowPrivateNetwork: true }),
      { http: client(), resolveSecret, resolver: loopback },
    );
    expect(r.ok).toBe(false);
    expect(r.steps.at(-1)).toMatchObject({
      name: 'TLS',
      ok: false,
      detail: 'the certificate is self-signed (CN=pophook-test-receiver), so nobody vouches for it',
      fix: "The receiver must use a certificate from a public CA (e.g. Let's Encrypt).",
    });
    expect(r.steps.at(-1)?.lines).toContain('names        localhost, hooks.test, 127.0.0.1');
    expect(https.requests.length).toBe(before);
  });

  it('a name that resolves to a private address is refused with the verdict per address', async () => {
    const r = await checkEndpoint(endpoint({}), {
      http: client(),
      resolveSecret,
      resolver: async () => [
        { address: '93.184.216.34', family: 4 },
        { address: '10.1.2.3', family: 4 },
      ],
    });
    expect(r.steps.at(-1)).toMatchObject({
      name: 'SSRF',
      ok: false,
      detail: 'hooks.test resolves to a non-public address, so pophook will not send to it',
      lines: ['93.184.216.34  public', '10.1.2.3  non-public (ipv4-private)'],
    });
    const literal = await checkEndpoint(endpoint({ url: 'https://127.0.0.1/x' }), {
      http: client(),
      resolveSecret,
    });
    expect(literal.steps[0]).toMatchObject({ name: 'URL', ok: false });
    expect(literal.steps[0]?.detail).toContain('non-public address (ipv4-loopback)');
  });

  it('explains redirects, timeouts and a secret that is not whsec_', async () => {
    const e = endpoint({ url: http.url, allowHttp: true, allowPrivateNetwork: true, timeoutMs: 1000 });
    http.script({ kind: 'redirect', status: 302, location: 'https://elsewhere.test/' });
    const redirected = await checkEndpoint(e, { http: client(), resolveSecret });
    expect(redirected.steps.at(-1)).toMatchObject({
      ok: false,
      detail: 'HTTP 302: a redirect, which pophook never follows (Standard Webhooks)',
    });
    http.script({ kind: 'slow', delayMs: 3000 });
    const slow = await checkEndpoint(e, { http: client(), resolveSecret });
    expect(slow.steps.at(-1)).toMatchObject({ ok: false, detail: 'no response within 1000 ms' });
    const bad = await checkEndpoint(e, { http: client(), resolveSecret: async () => 'hunter2' });
    expect(bad.steps.at(-1)).toMatchObject({ name: 'secrets', ok: false });
    expect(bad.steps.at(-1)?.detail).toContain('does not start with "whsec_"');
  });

  it('maps statuses to what to do', () => {
    const e = endpoint({});
    expect(explainPingStatus(204, e).ok).toBe(true);
    expect(explainPingStatus(403, e).detail).toBe('HTTP 403: the receiver rejected the signature');
    expect(explainPingStatus(404, e).fix).toBe('Check the path in the url of endpoint "hook".');
    expect(explainPingStatus(410, e).detail).toContain('410 Gone');
    expect(explainPingStatus(500, e, 'boom').detail).toBe('HTTP 500: the receiver failed (it said: boom)');
  });
});

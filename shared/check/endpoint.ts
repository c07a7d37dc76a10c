/**
 * `pophook check` for one webhook endpoint: the URL policy, DNS and the SSRF verdict for every address,
 * TLS (certificate shown even when refused), the signing secrets, then one signed `webhook.test` POST
 * through the same signing and HTTP client as real deliveries (redirects not followed, SSRF guard in the
 * socket lookup). Nothing is recorded in the delivery log.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { EndpointConfig, SecretRef } from '../config/schema.js';
import type { WebhookHttp } from '../delivery/http.js';
import { webhookHeaders } from '../delivery/sign.js';
import { checkAddress, checkTargetUrl, type Resolver, systemResolver } from '../delivery/ssrf.js';
import { errorCode } from '../errors.js';
import { registerSecret } from '../log.js';
import { explainTcpError, tcpConnect, tlsProbe, tlsStep } from './tls.js';
import { type CheckReport, type CheckStep, report } from './types.js';

export interface EndpointCheckDeps {
  /** The HTTP client deliveries use (createWebhookHttp). */
  http: WebhookHttp;
  resolveSecret: (ref: SecretRef) => Promise<string>;
  /** @default systemResolver (all A/AAAA) */
  resolver?: Resolver;
  /** Extra trusted CA for the TLS step; give the same one to `http`. */
  ca?: string;
  now?: () => number;
  signal?: AbortSignal;
}

/** The body of the test ping: the same shape as the delivery worker's webhook.test event. */
export function testEventBody(endpointId: string, nowMs: number): string {
  return JSON.stringify({
    type: 'webhook.test',
    timestamp: new Date(nowMs).toISOString(),
    data: { endpointId, test: true, source: 'pophook check' },
  });
}

/** What an HTTP status from the ping means, and what to do. */
export function explainPingStatus(status: number, endpoint: EndpointConfig, snippet?: string): CheckStep {
  const said = snippet ? ` (it said: ${snippet.slice(0, 160)})` : '';
  if (status >= 200 && status < 300)
    return { name: 'ping', ok: true, detail: `signed webhook.test accepted: HTTP ${status}` };
  if (status === 401 || status === 403)
    return {
      name: 'ping',
      ok: false,
      detail: `HTTP ${status}: the receiver rejected the signature${said}`,
      fix: `Check its secret: the receiver must verify with the same whsec_ secret as endpoint "${endpoint.id}" (secrets: ${endpoint.secrets.map((s) => s.secret).join(', ')}); while rotating, either one.`,
    };
  if (status === 404)
    return {
      name: 'ping',
      ok: false,
      detail: `HTTP 404: nothing at ${endpoint.url}`,
      fix: `Check the path in the url of endpoint "${endpoint.id}".`,
    };
  if (status === 410)
    return {
      name: 'ping',
      ok: false,
      detail: 'HTTP 410 Gone: the receiver asks pophook to stop sending',
      fix: 'Real deliveries that get 410 disable the endpoint; point url at a live receiver, or remove the endpoint.',
    };
  if (status >= 300 && status < 400)
    return {
      name: 'ping',
      ok: false,
      detail: `HTTP ${status}: a redirect, which pophook never follows (Standard Webhooks)`,
      fix: `Set the url of endpoint "${endpoint.id}" to the final address (often https:// instead of http://, or a trailing slash).`,
    };
  if (status === 400 || status === 422)
    return {
      name: 'ping',
      ok: false,
      detail: `HTTP ${status}: the receiver refused the request${said}`,
      fix: 'The signature passed transport; the receiver may reject unknown event types: make it answer 2xx to webhook.test.',
    };
  if (status === 413)
    return {
      name: 'ping',
      ok: false,
      detail: 'HTTP 413: the receiver refuses even a small body',
      fix: "Raise the receiver's body size limit (mail events can be up to delivery.maxBodyBytes).",
    };
  if (status === 429)
    return {
      name: 'ping',
      ok: false,
      detail: 'HTTP 429: the receiver is rate limiting',
      fix: 'Run check again later; real deliveries honour Retry-After.',
    };
  return {
    name: 'ping',
    ok: false,
    detail: `HTTP ${status}: the receiver failed${said}`,
    fix: "Check the receiver's logs; real deliveries retry 5xx on the retry schedule.",
  };
}

function explainTransport(code: string, endpoint: EndpointConfig, snippet?: string): CheckStep {
  const text: Record<string, [string, string]> = {
    TIMEOUT: [
      `no response within ${endpoint.timeoutMs} ms`,
      `The receiver must answer within timeoutMs (${endpoint.timeoutMs}); do slow work after responding 2xx.`,
    ],
    CONNECT_TIMEOUT: [
      'the connection attempt timed out',
      'A firewall may be dropping the traffic, or the host is down.',
    ],
    CONNECTION_REFUSED: [
      'connection refused: nothing listens at that address and port',
      "Check the url's host and port, and that the receiver is running.",
    ],
    CONNECTION_RESET: [
      'the receiver closed the connection without answering',
      "Check the receiver's logs (a crash, or a proxy cutting requests).",
    ],
    DNS_FAILED: ['the host name does not resolve', 'Check the host in the url.'],
    TLS_FAILED: [`TLS failed: ${snippet ?? ''}`, "Check the receiver's certificate (see the TLS step)."],
    SSRF_BLOCKED: [snippet ?? 'blocked by the SSRF policy', 'Webhooks go only to public https addresses.'],
    UNREACHABLE: ['the host is unreachable from here', "Check this machine's network route to the receiver."],
  };
  const [detail, fix] = text[code] ?? [
    `no response (${code}${snippet ? `: ${snippet}` : ''})`,
    'Check the url and the receiver.',
  ];
  return { name: 'ping', ok: false, detail, fix };
}

/** Runs every check step for `endpoint`. Never throws for a network or receiver problem. */
export async function checkEndpoint(endpoint: EndpointConfig, deps: EndpointCheckDeps): Promise<CheckReport> {
  const steps: CheckStep[] = [];
  const done = () => report('endpoint', endpoint.id, endpoint.url, steps);
  const now = deps.now ?? Date.now;
  const where = `endpoint "${endpoint.id}"`;

  if (!endpoint.enabled)
    steps.push({
      name: 'enabled',
      ok: true,
      warning: true,
      detail: 'enabled: false: nothing is delivered to it; checked anyway',
    });

  // URL policy
  let url: URL;
  try {
    url = checkTargetUrl(endpoint.url, endpoint);
  } catch (err) {
    steps.push({ name: 'URL', ok: false, detail: (err as Error).message });
    return done();
  }
  steps.push(
    url.protocol === 'https:'
      ? { name: 'URL', ok: true, detail: `https, host ${url.hostname}` }
      : {
          name: 'URL',
          ok: true,
          warning: true,
          detail: 'http: allowed by allowHttp (local testing only): bodies and signatures travel unencrypted',
        },
  );

  // DNS and the SSRF verdict for every address
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: { address: string; family: number }[];
  if (net.isIP(host)) addresses = [{ address: host, family: net.isIP(host) }];
  else {
    try {
      addresses = await (deps.resolver ?? systemResolver)(host);
      if (addresses.length === 0) throw Object.assign(new Error('no addresses'), { code: 'ENODATA' });
    } catch (err) {
      steps.push({
        name: 'DNS',
        ok: false,
        detail: `${host} does not resolve (${errorCode(err)})`,
        fix: `Check the host in the url of ${where}.`,
      });
      return done();
    }
    steps.push({ name: 'DNS', ok: true, detail: `${host} -> ${addresses.map((a) => a.address).join(', ')}` });
  }
  const verdicts = addresses.map((a) => ({ ...a, verdict: checkAddress(a.address) }));
  const blocked = verdicts.filter((v) => !v.verdict.allowed);
  const lines = verdicts.map(
    (v) => `${v.address}  ${v.verdict.allowed ? 'public' : `non-public (${v.verdict.range})`}`,
  );
  if (blocked.length && !endpoint.allowPrivateNetwork) {
    steps.push({
      name: 'SSRF',
      ok: false,
      detail: `${host} resolves to a non-public address, so pophook will not send to it`,
      fix: `Webhooks go only to public addresses; set allowPrivateNetwork: true in ${where} only for local testing.`,
      lines,
    });
    return done();
  }
  steps.push(
    blocked.length
      ? {
          name: 'SSRF',
          ok: true,
          warning: true,
          detail: 'non-public address allowed by allowPrivateNetwork (local testing only)',
          lines,
        }
      : { name: 'SSRF', ok: true, detail: 'every address is public', lines },
  );

  // TLS, on the first vetted address, with the URL's host name for SNI and the certificate check
  if (url.protocol === 'https:') {
    const port = Number(url.port || 443);
    const first = addresses[0] as { address: string };
    let socket: net.Socket;
    try {
      socket = await tcpConnect({
        host: first.address,
        port,
        ...(deps.signal ? { signal: deps.signal } : {}),
      });
    } catch (err) {
      steps.push({
        ...explainTcpError(err, host, port, 10_000),
        fix: `Check the url of ${where} and that the receiver is running.`,
      });
      return done();
    }
    try {
      const probe = await tlsProbe({ socket, host, ...(deps.ca ? { ca: deps.ca } : {}) });
      const step = tlsStep(probe, {
        host,
        where,
        caSetting: false,
        opensslConnect: `openssl s_client -connect ${host}:${port}`,
        now: now(),
      });
      steps.push(step);
      if (!step.ok) return done();
    } catch (err) {
      steps.push({
        name: 'TLS',
        ok: false,
        detail: `TLS handshake with ${host}:${port} failed: ${(err as Error).message}`,
        fix: "Check that the url's port serves https.",
      });
      return done();
    } finally {
      socket.destroy();
    }
  }

  // Secrets
  let secrets: string[];
  try {
    secrets = await Promise.all(endpoint.secrets.map((ref) => deps.resolveSecret(ref)));
    for (const s of secrets) registerSecret(s);
    const body = testEventBody(endpoint.id, now());
    webhookHeaders({ id: 'msg_check', timestamp: Math.floor(now() / 1000), body, secrets });
  } catch (err) {
    steps.push({ name: 'secrets', ok: false, detail: (err as Error).message });
    return done();
  }
  steps.push({
    name: 'secrets',
    ok: true,
    detail: `${secrets.length} signing secret${secrets.length === 1 ? '' : 's'} (whsec_), every delivery signed with each`,
  });

  // The signed ping
  const nowMs = now();
  const body = testEventBody(endpoint.id, nowMs);
  const webhookId = `msg_check_${randomBytes(8).toString('hex')}`;
  const headers = webhookHeaders({ id: webhookId, timestamp: Math.floor(nowMs / 1000), body, secrets });
  const response = await deps.http.post({ endpoint, headers, body });
  if (response.status !== undefined) {
    const step = explainPingStatus(response.status, endpoint, response.snippet);
    steps.push(step.ok ? { ...step, detail: `${step.detail} in ${response.latencyMs} ms` } : step);
  } else steps.push(explainTransport(response.errorCode ?? 'NETWORK_ERROR', endpoint, response.snippet));
  return done();
}

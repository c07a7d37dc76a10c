/**
 * The HTTP leg of a delivery: one POST, bounded in every dimension a hostile or broken receiver could
 * stretch. One keep-alive undici Agent per endpoint (connections are reused across deliveries in a
 * warm Lambda), whose socket `lookup` is the SSRF guard (ssrf.ts). Redirects are never followed (undici
 * `request` does not follow them; 3xx is a failure per Standard Webhooks). Only the first bytes of a
 * response are read for a sanitised snippet; the rest is discarded by closing the connection, so a
 * 50 MB or endless body costs nothing. A per-endpoint semaphore caps requests in flight so one slow
 * endpoint cannot hold every slot. `post` never throws: every failure is an outcome with a stable code.
 */
import { performance } from 'node:perf_hooks';
import { Agent } from 'undici';
import type { EndpointConfig } from '../config/schema.js';
import { errorCode as codeOf } from '../errors.js';
import { sanitizeForeignText } from '../sanitize.js';
import { checkTargetUrl, guardedLookup, type Resolver, systemResolver } from './ssrf.js';

/** Response bytes kept for the attempt log: enough for a JSON error or an HTML title. */
export const RESPONSE_SNIPPET_BYTES = 4 * 1024;
/** Characters of the snippet stored after sanitising (DeliveryAttempt.response is "short"). */
export const RESPONSE_SNIPPET_CHARS = 512;
/**
 * Bytes read (and thrown away) past the snippet before we close the connection instead. Draining a
 * small body keeps the keep-alive connection reusable; anything bigger is cut off.
 */
export const RESPONSE_DRAIN_BYTES = 64 * 1024;
/** Upper bound on TCP+TLS setup, inside the endpoint's total timeout: a black-holed host fails fast. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Idle keep-alive sockets are kept this long (receivers commonly close after 5-60 s). */
export const KEEP_ALIVE_TIMEOUT_MS = 30_000;
/** Default total time for one POST (Standard Webhooks: 15-30 s), when no endpoint value is given. */
export const DEFAULT_TIMEOUT_MS = 15_000;

export type WebhookTarget = Pick<
  EndpointConfig,
  'id' | 'url' | 'allowHttp' | 'allowPrivateNetwork' | 'timeoutMs' | 'maxConcurrency'
>;

export interface WebhookRequest {
  endpoint: WebhookTarget;
  headers: Record<string, string>;
  body: string | Buffer;
}

/** The outcome of one POST. `status` is set when a response arrived; `errorCode` when none did. */
export interface WebhookResponse {
  status?: number;
  retryAfter?: string;
  /** Sanitised start of the response body, or the error message. */
  snippet?: string;
  errorCode?: string;
  /** Wall time from the request start (after the concurrency slot) to the outcome. */
  latencyMs: number;
}

export interface WebhookHttp {
  post(request: WebhookRequest): Promise<WebhookResponse>;
  /** Closes every pooled connection. */
  close(): Promise<void>;
}

export interface WebhookHttpOptions {
  /** DNS resolver for the SSRF guard (tests inject one). */
  resolver?: Resolver;
  /** Extra trusted CAs (PEM), for receivers behind a private CA and for tests. Verification stays on. */
  ca?: string | Buffer;
  userAgent?: string;
}

/** A counting semaphore; `acquire` resolves to the release function. */
export class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];
  constructor(readonly limit: number) {}

  get inFlight(): number {
    return this.active;
  }

  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      // Hand the slot straight to the next waiter, so `active` never dips and a newcomer cannot jump in.
      if (next) next();
      else this.active--;
    };
  }
}

interface Pool {
  key: string;
  agent: Agent;
  slots: Semaphore;
}

const TLS_CODES = /^(CERT_|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO_|ERR_TLS_|ERR_SSL_|HOSTNAME_MISMATCH)/;

/** Walks the cause chain for the most specific errno/undici code. */
function rootCode(err: unknown): string {
  let current: unknown = err;
  let code = codeOf(err);
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const c = codeOf(current);
    if (c !== 'UNEXPECTED' && !c.startsWith('UND_ERR_ABORT')) code = c;
    current = current.cause;
  }
  return code;
}

/** Maps transport errors to the stable codes the attempt log and metrics use. */
export function transportErrorCode(err: unknown, timedOut: boolean): string {
  if (timedOut) return 'TIMEOUT';
  const code = rootCode(err);
  if (code === 'SSRF_BLOCKED') return 'SSRF_BLOCKED';
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT') return 'CONNECT_TIMEOUT';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'TIMEOUT';
  if (code === 'ECONNREFUSED') return 'CONNECTION_REFUSED';
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED')
    return 'CONNECTION_RESET';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'ENODATA') return 'DNS_FAILED';
  if (TLS_CODES.test(code)) return 'TLS_FAILED';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'UNREACHABLE';
  return 'NETWORK_ERROR';
}

async function readSnippet(body: AsyncIterable<Buffer> & { destroy(): void }): Promise<Buffer> {
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let readBytes = 0;
  try {
    for await (const chunk of body) {
      readBytes += chunk.length;
      if (keptBytes < RESPONSE_SNIPPET_BYTES) {
        const piece = chunk.subarray(0, RESPONSE_SNIPPET_BYTES - keptBytes);
        kept.push(piece);
        keptBytes += piece.length;
      }
      // Leaving the loop destroys the body, which closes the connection instead of draining it.
      if (readBytes > RESPONSE_DRAIN_BYTES) break;
    }
  } catch {
    // A body that fails after the status line does not change the outcome: the status is the answer.
  }
  return Buffer.concat(kept);
}

/** Creates the HTTP client. One per process; pools are per endpoint and live until `close()`. */
export function createWebhookHttp(options: WebhookHttpOptions = {}): WebhookHttp {
  const resolver = options.resolver ?? systemResolver;
  const userAgent = options.userAgent ?? 'pophook-webhooks/1';
  const pools = new Map<string, Pool>();

  const poolFor = (endpoint: WebhookTarget, timeoutMs: number): Pool => {
    // Keyed on everything that shapes the connection, so a config change gets a fresh pool.
    const key = JSON.stringify([
      endpoint.url,
      endpoint.allowPrivateNetwork,
      endpoint.maxConcurrency,
      timeoutMs,
    ]);
    const existing = pools.get(endpoint.id);
    if (existing?.key === key) return existing;
    if (existing) void existing.agent.close().catch(() => {});
    const agent = new Agent({
      connect: {
        lookup: guardedLookup({ allowPrivateNetwork: endpoint.allowPrivateNetwork }, resolver),
        timeout: Math.min(CONNECT_TIMEOUT_MS, timeoutMs),
        ...(options.ca ? { ca: options.ca } : {}),
      },
      connections: endpoint.maxConcurrency,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const pool = { key, agent, slots: new Semaphore(endpoint.maxConcurrency) };
    pools.set(endpoint.id, pool);
    return pool;
  };

  const post = async ({ endpoint, headers, body }: WebhookRequest): Promise<WebhookResponse> => {
    const timeoutMs = endpoint.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let url: URL;
    try {
      url = checkTargetUrl(endpoint.url, endpoint);
    } catch (err) {
      return {
        errorCode: 'SSRF_BLOCKED',
        snippet: sanitizeForeignText((err as Error).message),
        latencyMs: 0,
      };
    }
    const pool = poolFor(endpoint, timeoutMs);
    const release = await pool.slots.acquire();
    const started = performance.now();
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    try {
      const response = await pool.agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': userAgent, ...headers },
        body,
        signal: controller.signal,
      });
      const retryAfter = response.headers['retry-after'];
      const snippet = await readSnippet(response.body);
      return {
        status: response.statusCode,
        ...(typeof retryAfter === 'string' ? { retryAfter } : {}),
        snippet: sanitizeForeignText(snippet.toString('utf8'), RESPONSE_SNIPPET_CHARS),
        latencyMs: Math.round(performance.now() - started),
      };
    } catch (err) {
      const code = transportErrorCode(err, timedOut);
      return {
        errorCode: code,
        snippet: sanitizeForeignText(
          timedOut ? `no response within ${timeoutMs} ms` : (err as Error).message,
        ),
        latencyMs: Math.round(performance.now() - started),
      };
    } finally {
      clearTimeout(timer);
      release();
    }
  };

  return {
    post,
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.agent.close().catch(() => p.agent.destroy())));
    },
  };
}

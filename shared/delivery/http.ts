/**
 * The HTTP leg of a delivery: one POST, bounded in every dimension a hostile or broken receiver could
 * stretch. One keep-alive undici Agent per endpoint (connections are reused across deliveries in a
 * warm Lambda), whose socket `lookup` is the SSRF guard (ssrf.ts); the URL's static checks run once per
 * endpoint config, not per request. Redirects are never followed (undici's dispatch does not follow
 * them; 3xx is a failure per Standard Webhooks). Only the first bytes of a response are read for a
 * sanitised snippet; the rest is discarded by closing the connection, so a 50 MB or endless body costs
 * nothing. A per-endpoint semaphore caps requests in flight so one slow endpoint cannot hold every slot.
 * `post` never throws: every failure is an outcome with a stable code.
 */

import type { IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Dispatcher, Agent as UndiciAgent } from 'undici';
// undici's Agent alone, not the package index: that also loads fetch, WebSocket, the cache stores
// (node:sqlite) and the mocks, ~250 KiB of the delivery bundle and ~40 ms of its cold start. Same
// class; undici ships no declarations for its internal paths, hence the typed alias below.
// @ts-expect-error TS7016: no declaration file for undici/lib/dispatcher/agent.js.
import UndiciAgentClass from 'undici/lib/dispatcher/agent.js';
import type { Clock } from '../clock.js';
import type { EndpointConfig } from '../config/schema.js';
import { errorCode as codeOf } from '../errors.js';
import { sanitizeForeignText } from '../sanitize.js';
import { checkTargetUrl, guardedLookup, type Resolver, systemResolver, VettedLookupCache } from './ssrf.js';

const Agent: typeof UndiciAgent = UndiciAgentClass;
type Agent = UndiciAgent;

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
  /** Clock for the vetted-DNS cache (tests inject one). */
  clock?: Clock;
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
    return this.releaser();
  }

  /** A slot now if one is free (no promise, no wait), else undefined. */
  tryAcquire(): (() => void) | undefined {
    if (this.active >= this.limit) return undefined;
    this.active++;
    return this.releaser();
  }

  private releaser(): () => void {
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
  // The config this pool was built from.
  url: string;
  allowHttp: boolean;
  allowPrivateNetwork: boolean;
  maxConcurrency: number;
  timeoutMs: number;
  /** The checked target, or why the URL is refused (the same answer for every request). */
  target: { origin: string; path: string } | { blocked: string };
  /** Absent for a refused target: nothing can be sent. */
  agent?: Agent;
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

/**
 * Reads one response through undici's dispatch API: the status, Retry-After and the first
 * RESPONSE_SNIPPET_BYTES of the body, then settles. Cheaper than `request()` (no body stream, no
 * AbortController: the dispatch controller aborts), which matters at thousands of webhooks a second.
 * A body longer than RESPONSE_DRAIN_BYTES is cut off by aborting, which closes the connection.
 */
class SnippetReader implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private status: number | undefined;
  private retryAfter: string | undefined;
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  private readBytes = 0;
  private settled = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly timeoutMs: number,
    private readonly started: number,
    private readonly release: () => void,
    private readonly done: (response: WebhookResponse) => void,
  ) {
    this.timer = setTimeout(timeoutReader, timeoutMs, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Timed out while waiting for a connection: never send it.
    if (this.settled) controller.abort(new Error('webhook request timed out'));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    if (statusCode < 200) return; // 1xx informational: the real answer follows
    this.status = statusCode;
    const retryAfter = headers['retry-after'];
    if (typeof retryAfter === 'string') this.retryAfter = retryAfter;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    this.readBytes += chunk.length;
    if (this.keptBytes < RESPONSE_SNIPPET_BYTES) {
      const piece =
        chunk.length <= RESPONSE_SNIPPET_BYTES - this.keptBytes
          ? chunk
          : chunk.subarray(0, RESPONSE_SNIPPET_BYTES - this.keptBytes);
      this.kept.push(piece);
      this.keptBytes += piece.length;
    }
    if (this.readBytes > RESPONSE_DRAIN_BYTES) {
      // Too big to drain: answer now and close the connection instead of reading on.
      this.answer();
      controller.abort(new Error('webhook response body over the drain limit'));
    }
  }

  onResponseEnd(): void {
    this.answer();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    // A body that fails after the status line does not change the outcome: the status is the answer.
    if (this.status !== undefined) this.answer();
    else this.fail(transportErrorCode(err, false), err.message);
  }

  timeout(): void {
    if (this.settled) return;
    if (this.status !== undefined) this.answer();
    else this.fail('TIMEOUT', `no response within ${this.timeoutMs} ms`);
    this.controller?.abort(new Error('webhook request timed out'));
  }

  private answer(): void {
    if (this.settled || this.status === undefined) return;
    const snippet = this.kept.length === 1 ? (this.kept[0] as Buffer) : Buffer.concat(this.kept);
    this.settle({
      status: this.status,
      ...(this.retryAfter !== undefined ? { retryAfter: this.retryAfter } : {}),
      snippet: sanitizeForeignText(snippet.toString('utf8'), RESPONSE_SNIPPET_CHARS),
      latencyMs: Math.round(performance.now() - this.started),
    });
  }

  private fail(errorCode: string, message: string): void {
    if (this.settled) return;
    this.settle({
      errorCode,
      snippet: sanitizeForeignText(message),
      latencyMs: Math.round(performance.now() - this.started),
    });
  }

  private settle(response: WebhookResponse): void {
    this.settled = true;
    clearTimeout(this.timer);
    this.release();
    this.done(response);
  }
}

const timeoutReader = (reader: SnippetReader) => reader.timeout();

/** Creates the HTTP client. One per process; pools are per endpoint and live until `close()`. */
export function createWebhookHttp(options: WebhookHttpOptions = {}): WebhookHttp {
  const resolver = options.resolver ?? systemResolver;
  const userAgent = options.userAgent ?? 'pophook-webhooks/1';
  const now = options.clock ? () => (options.clock as Clock).now() : Date.now;
  const pools = new Map<string, Pool>();

  const poolFor = (endpoint: WebhookTarget, timeoutMs: number): Pool => {
    const existing = pools.get(endpoint.id);
    // Compared field by field (this runs per request); a config change gets a fresh pool.
    if (
      existing &&
      existing.url === endpoint.url &&
      existing.allowHttp === endpoint.allowHttp &&
      existing.allowPrivateNetwork === endpoint.allowPrivateNetwork &&
      existing.maxConcurrency === endpoint.maxConcurrency &&
      existing.timeoutMs === timeoutMs
    ) {
      return existing;
    }
    if (existing?.agent) void existing.agent.close().catch(() => {});
    let target: Pool['target'];
    try {
      // Static checks (scheme, credentials, IP literals) depend only on the config: once per pool.
      // Names are vetted at connect time by the guarded lookup, on every new connection.
      const url = checkTargetUrl(endpoint.url, endpoint);
      target = { origin: url.origin, path: `${url.pathname}${url.search}` };
    } catch (err) {
      target = { blocked: sanitizeForeignText((err as Error).message) };
    }
    const agent =
      'blocked' in target
        ? undefined
        : new Agent({
            connect: {
              lookup: guardedLookup(
                { allowPrivateNetwork: endpoint.allowPrivateNetwork },
                resolver,
                new VettedLookupCache(now),
              ),
              timeout: Math.min(CONNECT_TIMEOUT_MS, timeoutMs),
              ...(options.ca ? { ca: options.ca } : {}),
            },
            connections: endpoint.maxConcurrency,
            keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
            headersTimeout: timeoutMs,
            bodyTimeout: timeoutMs,
          });
    const pool: Pool = {
      url: endpoint.url,
      allowHttp: endpoint.allowHttp,
      allowPrivateNetwork: endpoint.allowPrivateNetwork,
      maxConcurrency: endpoint.maxConcurrency,
      timeoutMs,
      target,
      ...(agent ? { agent } : {}),
      slots: new Semaphore(endpoint.maxConcurrency),
    };
    pools.set(endpoint.id, pool);
    return pool;
  };

  const send = (
    pool: Pool,
    agent: Agent,
    target: { origin: string; path: string },
    { headers, body }: WebhookRequest,
    release: () => void,
  ) =>
    new Promise<WebhookResponse>((resolve) => {
      const reader = new SnippetReader(pool.timeoutMs, performance.now(), release, resolve);
      // Errors, even ones raised while dispatching, arrive at reader.onResponseError.
      agent.dispatch(
        {
          origin: target.origin,
          path: target.path,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': userAgent, ...headers },
          body,
        },
        reader,
      );
    });

  const post = (request: WebhookRequest): Promise<WebhookResponse> => {
    const { endpoint } = request;
    const pool = poolFor(endpoint, endpoint.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const { target, agent } = pool;
    if ('blocked' in target || !agent) {
      return Promise.resolve({
        errorCode: 'SSRF_BLOCKED',
        snippet: 'blocked' in target ? target.blocked : '',
        latencyMs: 0,
      });
    }
    const release = pool.slots.tryAcquire();
    if (release) return send(pool, agent, target, request, release);
    return pool.slots.acquire().then((later) => send(pool, agent, target, request, later));
  };

  return {
    post,
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.agent?.close().catch(() => p.agent?.destroy())));
    },
  };
}

/**
 * The pophook console: a small HTTP server on the loopback interface that shows the archive, the
 * polls and the delivery log of one config, and can replay messages and re-enable endpoints. No extra
 * server to deploy: it reads the same archive and state store everything else uses (local directory,
 * or a deployed stack's bucket and table with the user's own credentials).
 *
 * Security model (see security.ts for the token, session, Host and CSRF checks):
 * - Console pages: CSP `default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors
 *   'none'; base-uri 'none'; form-action 'self'`, nosniff, no referrer, no caching (mail is private).
 * - Mail HTML never runs in the console's origin: it is sanitised (mail-html.ts) and served from its
 *   own endpoint into an iframe sandboxed without scripts, forms, same-origin or top navigation, with
 *   CSP `default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:` and a CSP `sandbox` (so
 *   opening it directly is as safe). "Load remote content" adds https: images, styles and fonts only.
 * - Downloads are `application/octet-stream` + `Content-Disposition: attachment` with a safe name.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import type { PophookConfig } from '../config/schema.js';
import { replay } from '../delivery/replay.js';
import { errorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { EmailReceivedData } from '../mail/event.js';
import { createLocalRuntime, type LocalRuntimeOptions } from '../runtime/local.js';
import { sanitizeForeignText } from '../sanitize.js';
import type { DeliveryAttempt } from '../state/store.js';
import { CONSOLE_CSS, CONSOLE_JS } from './assets.js';
import {
  attemptRows,
  type ConsoleSource,
  DELIVERY_STATUSES,
  type DeliveryStatus,
  endpointViews,
  filteredAttempts,
  MessageIndex,
  type MessageQuery,
  mailboxViews,
  messageDetail,
} from './data.js';
import { sanitizeMailHtml } from './mail-html.js';
import {
  type Chrome,
  deliveriesPage,
  endpointsPage,
  errorBody,
  layout,
  type MessageTab,
  mailboxesPage,
  messagePage,
  messagesPage,
  unauthorizedPage,
} from './render.js';
import { allowedHosts, csrfProblem, newToken, type Session, Sessions } from './security.js';
import { localConsoleSource } from './source.js';

/** Default address: loopback only. */
export const CONSOLE_DEFAULT_HOST = '127.0.0.1';
/** Largest form body accepted (a replay form lists at most a page of keys). */
const MAX_FORM_BYTES = 64 * 1024;
/** One replay click sends at most this many messages: a bigger one is almost certainly a mistake. */
export const MAX_CONSOLE_REPLAY_MESSAGES = 1000;
/** Local mode delivers due jobs after a replay for at most this long before showing the result. */
const REPLAY_DELIVER_BUDGET_MS = 60_000;
/** After a local replay, how long to wait for jobs another worker took (the result shows what it did). */
const REPLAY_SETTLE_MS = 3000;
const REPLAY_SETTLE_STEP_MS = 250;
/** Inline (cid:) images embedded as data: URLs in the mail view, each and in total. */
const MAX_INLINE_IMAGE_BYTES = 2 * 1024 * 1024;
const MAX_INLINE_IMAGES_TOTAL_BYTES = 8 * 1024 * 1024;
/** Inline images are shown only for these types (no SVG: it is a document that can carry script). */
const INLINE_IMAGE_TYPES = /^image\/(?:png|gif|jpe?g|webp|bmp|avif)$/i;
/** Message keys are hex digests (identity.ts); anything else in a path is refused before any lookup. */
const MESSAGE_KEY = /^[A-Za-z0-9_-]{1,200}$/;
/** Index refresh interval when the caller does not say: local reads are cheap, S3 and DynamoDB are not. */
const DEFAULT_MAX_AGE_MS = { local: 10_000, aws: 60_000 } as const;

const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; " +
  "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const MAIL_SANDBOX = 'sandbox allow-popups allow-popups-to-escape-sandbox';
const MAIL_CSP = `default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'; ${MAIL_SANDBOX}`;
const MAIL_CSP_REMOTE = `default-src 'none'; style-src 'unsafe-inline' https:; img-src data: cid: https:; font-src https:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'; ${MAIL_SANDBOX}`;
const DOWNLOAD_CSP = "default-src 'none'; sandbox";

const COMMON_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

export interface ConsoleOptions {
  source: ConsoleSource;
  /** @default 127.0.0.1 */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  /** Rebuild the message list when it is older than this. @default 10 s locally, 60 s on AWS */
  indexMaxAgeMs?: number;
  logger?: Logger;
  clock?: Clock;
}

export interface ConsoleHandle {
  /** `http://127.0.0.1:<port>/` (without the token). */
  url: string;
  /** The access token (32 random bytes, base64url). */
  token: string;
  /** `url` with `?token=`: what the user opens once. */
  loginUrl: string;
  port: number;
  /** The message index (tests and `pophook dev` can force a refresh). */
  index: MessageIndex;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Starts the console. Resolves once it listens. */
export async function startConsole(options: ConsoleOptions): Promise<ConsoleHandle> {
  const source = options.source;
  const logger = (options.logger ?? source.logger ?? silentLogger).child({ component: 'console' });
  const clock = options.clock ?? source.clock ?? systemClock;
  const host = options.host ?? CONSOLE_DEFAULT_HOST;
  const index = new MessageIndex(
    { ...source, clock, logger },
    { maxAgeMs: options.indexMaxAgeMs ?? DEFAULT_MAX_AGE_MS[source.mode] },
  );
  const token = newToken();
  const sockets = new Set<Socket>();
  let sessions: Sessions | undefined;
  let hosts = new Set<string>();
  let replayChain: Promise<unknown> = Promise.resolve();

  const app = new ConsoleApp({
    source,
    index,
    logger,
    clock,
    sessions: () => sessions as Sessions,
    hosts: () => hosts,
    serialize: <T>(run: () => Promise<T>): Promise<T> => {
      const next = replayChain.then(run, run);
      replayChain = next.catch(() => undefined);
      return next;
    },
  });
  const server: Server = createServer((req, res) => {
    app.handle(req, res).catch((err: unknown) => {
      logger.error('Console request failed', { errorCode: errorCode(err), err });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  sessions = new Sessions(token, port);
  hosts = allowedHosts(host, port);
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = `http://${urlHost}:${port}/`;
  logger.info('Console listening', { url });
  return {
    url,
    token,
    loginUrl: `${url}?token=${token}`,
    port,
    index,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
      await replayChain;
    },
  };
}

/**
 * The console over a config's local data directory: opens the local runtime (as `pophook poll` does)
 * and closes it with the console. What `pophook ui` and `pophook dev` call.
 */
export async function startLocalConsole(
  config: PophookConfig,
  options: Omit<ConsoleOptions, 'source'> & { runtime?: LocalRuntimeOptions } = {},
): Promise<ConsoleHandle> {
  const runtime = await createLocalRuntime(config, {
    ...options.runtime,
    ...(options.logger && !options.runtime?.logger ? { logger: options.logger } : {}),
  });
  try {
    const handle = await startConsole({ ...options, source: localConsoleSource(runtime) });
    return {
      ...handle,
      close: async () => {
        await handle.close();
        await runtime.close();
      },
    };
  } catch (err) {
    await runtime.close();
    throw err;
  }
}

interface AppDeps {
  source: ConsoleSource;
  index: MessageIndex;
  logger: Logger;
  clock: Clock;
  sessions: () => Sessions;
  hosts: () => Set<string>;
  serialize: <T>(run: () => Promise<T>) => Promise<T>;
}

function send(
  res: ServerResponse,
  status: number,
  body: string | Buffer,
  headers: Record<string, string>,
): void {
  res.writeHead(status, { ...COMMON_HEADERS, 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

function sendPage(
  res: ServerResponse,
  status: number,
  page: string,
  extra: Record<string, string> = {},
): void {
  send(res, status, page, {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': CONSOLE_CSP,
    'x-frame-options': 'DENY',
    ...extra,
  });
}

function redirect(res: ServerResponse, location: string, extra: Record<string, string> = {}): void {
  send(res, 303, '', { location, ...extra });
}

/** `name.pdf` -> `name.pdf`; anything outside a conservative ASCII set becomes `_`. */
export function safeFilename(name: string, fallback: string): string {
  const cleaned = name
    .normalize('NFKC')
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '')
    .replace(/[/\\]/g, '_')
    .replace(/^[.\s]+/, '')
    .trim();
  const ascii = cleaned.replace(/[^A-Za-z0-9._ ()-]/g, '_').slice(0, 120);
  return ascii.replace(/^[._ ]+|[. ]+$/g, '') ? ascii : fallback;
}

function contentDisposition(name: string, fallback: string): string {
  const ascii = safeFilename(name, fallback);
  const utf8 = name
    .normalize('NFC')
    .replace(/[\u0000-\u001f\u007f-\u009f/\\]/g, '_')
    .slice(0, 200);
  const encoded = encodeURIComponent(utf8).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

function downloadHeaders(name: string, fallback: string): Record<string, string> {
  return {
    ...COMMON_HEADERS,
    'content-type': 'application/octet-stream',
    'content-disposition': contentDisposition(name, fallback),
    'content-security-policy': DOWNLOAD_CSP,
  };
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new HttpError(415, 'Forms only.');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new HttpError(413, 'The form is too large.');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** A same-origin path to return to after a POST; anything else goes to `fallback`. */
function safeReturn(value: string | null, fallback: string): string {
  if (!value?.startsWith('/') || value.startsWith('//') || /[\\\u0000-\u001f]/.test(value)) return fallback;
  return value;
}

function withNotice(path: string, noticeId: string): string {
  const u = new URL(path, 'http://console.invalid');
  u.searchParams.set('notice', noticeId);
  return `${u.pathname}${u.search}`;
}

function messageQueryFrom(params: URLSearchParams): MessageQuery {
  const text = (name: string) => {
    const v = params.get(name)?.trim();
    return v ? v.slice(0, 200) : undefined;
  };
  const attachments = params.get('attachments');
  const status = params.get('status');
  const page = Number(params.get('page') ?? '1');
  return {
    ...(text('q') ? { q: text('q') } : {}),
    ...(text('mailbox') ? { mailbox: text('mailbox') } : {}),
    ...(text('from') ? { from: text('from') } : {}),
    ...(text('to') ? { to: text('to') } : {}),
    ...(text('subject') ? { subject: text('subject') } : {}),
    ...(text('since') ? { since: text('since') } : {}),
    ...(text('until') ? { until: text('until') } : {}),
    ...(attachments === 'yes' || attachments === 'no' ? { attachments } : {}),
    ...(status && (DELIVERY_STATUSES as string[]).includes(status)
      ? { status: status as DeliveryStatus }
      : {}),
    page: Number.isFinite(page) ? page : 1,
  };
}

const OUTCOMES = new Set<DeliveryAttempt['outcome']>(['delivered', 'retry', 'failed', 'disabled', 'blocked']);

class ConsoleApp {
  constructor(private readonly d: AppDeps) {}

  private chrome(title: string, active: Chrome['active'], notice?: string): Chrome {
    return {
      title,
      active,
      source: `${this.d.source.mode === 'local' ? 'local' : 'AWS'}: ${this.d.source.description}`,
      notice,
      footer: `${this.d.index.size} messages indexed in ${this.d.index.lastRefreshMs} ms${this.d.index.unreadable ? `, ${this.d.index.unreadable} unreadable events skipped` : ''}.`,
    };
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // DNS rebinding: a foreign name resolving to 127.0.0.1 still says its own name in Host.
    const host = (req.headers.host ?? '').toLowerCase();
    if (!this.d.hosts().has(host)) {
      send(res, 421, 'Unknown Host header; open the console at the address pophook printed.\n', {
        'content-type': 'text/plain; charset=utf-8',
      });
      return;
    }
    const url = new URL(req.url ?? '/', `http://${host}`);
    const path = url.pathname;

    if (req.method === 'GET' && path === '/static/console.css') {
      send(res, 200, CONSOLE_CSS, { 'content-type': 'text/css; charset=utf-8' });
      return;
    }
    if (req.method === 'GET' && path === '/static/console.js') {
      send(res, 200, CONSOLE_JS, { 'content-type': 'text/javascript; charset=utf-8' });
      return;
    }
    if (path === '/favicon.ico') {
      send(res, 204, '', {});
      return;
    }

    const sessions = this.d.sessions();
    const offered = url.searchParams.get('token');
    if (offered !== null) {
      if (req.method !== 'GET' || !sessions.checkAccessToken(offered)) {
        sendPage(res, 401, unauthorizedPage());
        return;
      }
      const session = sessions.create(this.d.clock.now());
      url.searchParams.delete('token');
      // `/.//evil.example` normalises to `//evil.example`, which a browser reads as another host.
      const local = path.startsWith('//') ? '/' : path;
      redirect(res, `${local}${url.search}`, { 'set-cookie': sessions.setCookie(session) });
      return;
    }
    const session = sessions.fromRequest(req);
    if (!session) {
      sendPage(res, 401, unauthorizedPage());
      return;
    }

    try {
      if (req.method === 'POST') await this.post(req, res, session, path, host);
      else if (req.method === 'GET' || req.method === 'HEAD')
        await this.get(res, session, path, url.searchParams);
      else throw new HttpError(405, 'Method not allowed.');
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500)
        this.d.logger.error('Console page failed', { path, errorCode: errorCode(err), err });
      const message =
        err instanceof HttpError
          ? err.message
          : `${sanitizeForeignText(err instanceof Error ? err.message : String(err), 500)} (see the terminal for details)`;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendPage(res, status, layout(this.chrome('Error', ''), errorBody(status, message)));
    }
  }

  private async get(
    res: ServerResponse,
    session: Session,
    path: string,
    params: URLSearchParams,
  ): Promise<void> {
    const notice = this.d.sessions().takeNotice(session, params.get('notice'));
    if (path === '/' || path === '') return redirect(res, '/messages');
    if (path === '/messages') return this.messages(res, session, params, notice);
    if (path === '/mailboxes') {
      await this.d.index.ensure();
      const views = await mailboxViews(this.d.source, this.d.index);
      return sendPage(res, 200, layout(this.chrome('Mailboxes', 'mailboxes', notice), mailboxesPage(views)));
    }
    if (path === '/deliveries') return this.deliveries(res, session, params, notice);
    if (path === '/endpoints') {
      await this.d.index.ensure();
      const views = await endpointViews(this.d.source, this.d.index);
      return sendPage(
        res,
        200,
        layout(this.chrome('Endpoints', 'endpoints', notice), endpointsPage(views, session.csrf)),
      );
    }
    const m = /^\/messages\/([^/]+)(?:\/(body\.html|raw|event\.json|attachments\/(\d{1,4})))?$/.exec(path);
    if (m?.[1]) {
      const key = m[1];
      if (!MESSAGE_KEY.test(key)) throw new HttpError(404, 'No such message.');
      const detail = await messageDetail(this.d.source, this.d.index, key);
      if (!detail) throw new HttpError(404, 'No such message in the archive.');
      const part = m[2];
      if (!part) return this.message(res, session, detail, params, notice);
      if (part === 'body.html') return this.mailBody(res, detail.event.data as EmailReceivedData, params);
      if (part === 'event.json')
        return send(
          res,
          200,
          `${JSON.stringify(detail.event, null, 2)}\n`,
          downloadHeaders(`${key}.json`, 'event.json'),
        );
      if (detail.event.type !== 'email.received') throw new HttpError(404, 'This message was not archived.');
      if (part === 'raw') {
        const rawKey = detail.event.data.raw.key;
        res.writeHead(200, downloadHeaders(`${key}.eml`, 'message.eml'));
        await pipeline(await this.d.source.archive.get(rawKey), res);
        return;
      }
      const n = Number(m[3]);
      const attachment = detail.event.data.attachments.find((a) => a.index === n);
      if (!attachment) throw new HttpError(404, 'No such attachment.');
      res.writeHead(200, downloadHeaders(attachment.filename ?? `attachment-${n}`, `attachment-${n}`));
      await pipeline(await this.d.source.archive.get(attachment.key), res);
      return;
    }
    throw new HttpError(404, 'No such page.');
  }

  private async messages(
    res: ServerResponse,
    session: Session,
    params: URLSearchParams,
    notice: string | undefined,
  ): Promise<void> {
    if (params.get('refresh')) await this.d.index.refresh();
    else await this.d.index.ensure();
    const query = messageQueryFrom(params);
    const page = this.d.index.query(query);
    const body = messagesPage({
      page,
      query,
      mailboxes: this.d.source.config.mailboxes.map((mb) => mb.id),
      csrf: session.csrf,
      canReplay: this.d.source.queue !== undefined,
      indexed: this.d.index.size,
    });
    sendPage(res, 200, layout(this.chrome('Messages', 'messages', notice), body));
  }

  private async deliveries(
    res: ServerResponse,
    session: Session,
    params: URLSearchParams,
    notice: string | undefined,
  ): Promise<void> {
    await this.d.index.ensure();
    const endpoint = params.get('endpoint') || undefined;
    const outcomeParam = params.get('outcome');
    const outcome =
      outcomeParam && OUTCOMES.has(outcomeParam as DeliveryAttempt['outcome'])
        ? (outcomeParam as DeliveryAttempt['outcome'])
        : undefined;
    const query = {
      ...(endpoint ? { endpoint } : {}),
      ...(outcome ? { outcome } : {}),
      page: Number(params.get('page') ?? '1') || 1,
    };
    const page = attemptRows(this.d.index, query);
    const messageCount = new Set(filteredAttempts(this.d.index, query).map((r) => r.message.messageKey)).size;
    const body = deliveriesPage({
      page,
      query,
      endpoints: this.d.source.config.endpoints.map((e) => e.id),
      csrf: session.csrf,
      canReplay: this.d.source.queue !== undefined,
      messageCount,
    });
    sendPage(res, 200, layout(this.chrome('Deliveries', 'deliveries', notice), body));
  }

  private async message(
    res: ServerResponse,
    session: Session,
    detail: NonNullable<Awaited<ReturnType<typeof messageDetail>>>,
    params: URLSearchParams,
    notice: string | undefined,
  ): Promise<void> {
    const received = detail.event.type === 'email.received' ? detail.event.data : undefined;
    const tabParam = params.get('tab');
    const tab: MessageTab =
      tabParam === 'html' || tabParam === 'text' || tabParam === 'headers' || tabParam === 'event'
        ? tabParam
        : received?.html
          ? 'html'
          : 'text';
    const remote = params.get('remote') === '1';
    const remoteBlocked =
      tab === 'html' && received?.html && !remote
        ? sanitizeMailHtml(received.html, { allowRemote: false }).remoteBlocked
        : 0;
    const body = messagePage({
      summary: detail.summary,
      event: detail.event,
      eventJson: JSON.stringify(detail.event, null, 2),
      tab,
      remote,
      remoteBlocked,
      csrf: session.csrf,
      canReplay: this.d.source.queue !== undefined,
      endpoints: this.d.source.config.endpoints.map((e) => e.id),
    });
    sendPage(
      res,
      200,
      layout(this.chrome(detail.summary.subject || '(no subject)', 'messages', notice), body),
    );
  }

  /** The sanitised mail HTML as its own document, for the sandboxed iframe. */
  private async mailBody(
    res: ServerResponse,
    data: EmailReceivedData,
    params: URLSearchParams,
  ): Promise<void> {
    const allowRemote = params.get('remote') === '1';
    const cid = new Map<string, string>();
    let budget = MAX_INLINE_IMAGES_TOTAL_BYTES;
    for (const a of data.attachments ?? []) {
      if (!a.contentId || !INLINE_IMAGE_TYPES.test(a.contentType)) continue;
      if (a.size > MAX_INLINE_IMAGE_BYTES || a.size > budget) continue;
      budget -= a.size;
      const bytes = await this.d.source.archive.getBytes(a.key);
      cid.set(
        a.contentId.replace(/^<|>$/g, '').toLowerCase(),
        `data:${a.contentType.toLowerCase()};base64,${bytes.toString('base64')}`,
      );
    }
    const clean = sanitizeMailHtml(data.html ?? '', { allowRemote, cid });
    const doc =
      '<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">' +
      '<style>body{margin:12px;font:14px/1.45 system-ui,sans-serif;color:#1d2330;overflow-wrap:anywhere}img{max-width:100%;height:auto}</style>' +
      `</head><body>${clean.html}</body></html>`;
    send(res, 200, doc, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': allowRemote ? MAIL_CSP_REMOTE : MAIL_CSP,
      'x-frame-options': 'SAMEORIGIN',
      'cross-origin-opener-policy': 'unsafe-none',
    });
  }

  private async post(
    req: IncomingMessage,
    res: ServerResponse,
    session: Session,
    path: string,
    host: string,
  ): Promise<void> {
    const form = await readForm(req);
    const problem = csrfProblem(req, session, form.get('csrf') ?? undefined, host);
    if (problem) {
      this.d.logger.warn('Console refused a state-changing request', { path, problem });
      throw new HttpError(403, `Refused: ${problem}. Use the buttons on the console's own pages.`);
    }
    const sessions = this.d.sessions();
    if (path === '/replay') {
      const returnTo = safeReturn(form.get('return'), '/messages');
      const text = await this.d.serialize(() => this.replay(form));
      return redirect(res, withNotice(returnTo, sessions.addNotice(session, text)));
    }
    const enable = /^\/endpoints\/([a-z0-9-]{1,48})\/enable$/.exec(path);
    if (enable?.[1]) {
      const id = enable[1];
      if (!this.d.source.config.endpoints.some((e) => e.id === id))
        throw new HttpError(404, 'No such endpoint.');
      await this.d.source.state.setEndpointState({ endpointId: id, disabled: false });
      this.d.logger.info('Endpoint re-enabled from the console', { endpointId: id });
      const text = `Endpoint ${id} re-enabled. Replay what it missed from Deliveries (filter: ${id}, disabled).`;
      return redirect(res, withNotice('/endpoints', sessions.addNotice(session, text)));
    }
    throw new HttpError(404, 'No such action.');
  }

  /** Replays via shared/delivery/replay.ts (original webhook-ids); local mode then delivers what is due. */
  private async replay(form: URLSearchParams): Promise<string> {
    const { source, index } = this.d;
    if (!source.queue) return 'Replay needs the delivery queue; this console is read-only.';
    await index.ensure();
    const scope = form.get('scope');
    const endpoint = form.get('endpoint') || undefined;
    if (endpoint && !source.config.endpoints.some((e) => e.id === endpoint))
      throw new HttpError(400, 'No such endpoint.');
    let keys: string[];
    if (scope === 'keys') {
      keys = form.getAll('key').filter((k) => index.get(k) !== undefined);
    } else if (scope === 'filtered') {
      keys = index.filter(messageQueryFrom(form)).map((m) => m.messageKey);
    } else if (scope === 'attempts') {
      const outcome = form.get('outcome');
      keys = [
        ...new Set(
          filteredAttempts(index, {
            ...(endpoint ? { endpoint } : {}),
            ...(outcome && OUTCOMES.has(outcome as DeliveryAttempt['outcome'])
              ? { outcome: outcome as DeliveryAttempt['outcome'] }
              : {}),
          }).map((r) => r.message.messageKey),
        ),
      ];
    } else {
      throw new HttpError(400, 'Unknown replay scope.');
    }
    if (keys.length === 0) return 'Nothing to replay: no archived message matched.';
    if (keys.length > MAX_CONSOLE_REPLAY_MESSAGES)
      return `That is ${keys.length} messages; replay at most ${MAX_CONSOLE_REPLAY_MESSAGES} at a time (narrow the filter).`;
    const startedAt = this.d.clock.now();
    const result = await replay(
      { messageKeys: keys, ...(endpoint ? { endpointIds: [endpoint] } : {}), dryRun: false },
      {
        archive: source.archive,
        queue: source.queue,
        config: source.config,
        state: source.state,
        clock: this.d.clock,
        logger: this.d.logger,
      },
    );
    this.d.logger.info('Replay from the console', { messages: keys.length, jobs: result.jobs.length });
    const queued = `Replayed ${keys.length} ${keys.length === 1 ? 'message' : 'messages'}: ${result.jobs.length} ${result.jobs.length === 1 ? 'job' : 'jobs'} queued with the original webhook-id.`;
    if (result.jobs.length === 0)
      return `${queued} No endpoint's rules match ${keys.length === 1 ? 'it' : 'them'} now.`;
    if (!source.deliverDue) {
      await index.refreshAttempts(keys);
      return `${queued} The delivery function sends them shortly.`;
    }
    await source.deliverDue(AbortSignal.timeout(REPLAY_DELIVER_BUDGET_MS));
    // Another worker on the same directory (`pophook dev`, `poll --watch`) may have taken some jobs:
    // report what the attempt log says, giving that worker a moment to finish.
    let tally = await this.tallyReplay(result.jobs, startedAt);
    for (let waited = 0; tally.queued > 0 && waited < REPLAY_SETTLE_MS; waited += REPLAY_SETTLE_STEP_MS) {
      await sleep(REPLAY_SETTLE_STEP_MS);
      tally = await this.tallyReplay(result.jobs, startedAt);
    }
    const parts = [`delivered ${tally.delivered}`];
    if (tally.retrying) parts.push(`retrying ${tally.retrying}`);
    if (tally.failed) parts.push(`failed ${tally.failed}`);
    if (tally.disabled) parts.push(`${tally.disabled} to a disabled endpoint`);
    if (tally.queued) parts.push(`${tally.queued} still queued`);
    const summary = parts.join(', ');
    return `${queued} ${summary.charAt(0).toUpperCase()}${summary.slice(1)}.`;
  }

  /** Outcome of each replayed job: its newest attempt at or after `since`, if any yet. */
  private async tallyReplay(
    jobs: readonly { messageKey: string; endpointId: string }[],
    since: number,
  ): Promise<{ delivered: number; retrying: number; failed: number; disabled: number; queued: number }> {
    await this.d.index.refreshAttempts(jobs.map((j) => j.messageKey));
    const tally = { delivered: 0, retrying: 0, failed: 0, disabled: 0, queued: 0 };
    for (const job of jobs) {
      const attempts = this.d.index.get(job.messageKey)?.attempts ?? [];
      const latest = attempts
        .filter((a) => a.endpointId === job.endpointId && Date.parse(a.at) >= since)
        .at(-1);
      if (!latest) tally.queued++;
      else if (latest.outcome === 'delivered') tally.delivered++;
      else if (latest.outcome === 'retry' || latest.outcome === 'blocked') tally.retrying++;
      else if (latest.outcome === 'disabled') tally.disabled++;
      else tally.failed++;
    }
    return tally;
  }
}

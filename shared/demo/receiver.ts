/**
 * A local webhook receiver for `pophook listen` and `pophook dev`: it checks each POST against the
 * Standard Webhooks signature (with the reference `standardwebhooks` library, so it checks pophook the
 * way a real receiver would), answers 200 when the signature holds and 401 when not, and hands each
 * delivery to a callback that prints it. Every piece of the body is foreign text: it is sanitised
 * before it reaches a terminal.
 */

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { ConfigError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { sanitizeForeignText } from '../sanitize.js';
import { listenOrExplain } from './listen.js';

/** Largest body accepted: above the 6 MiB ceiling of `delivery.maxBodyBytes`, so no real delivery is cut. */
export const MAX_RECEIVER_BODY_BYTES = 8 * 1024 * 1024;
/** Time allowed to receive one request; the sender is on this machine, so this is generous. */
const REQUEST_TIMEOUT_MS = 30_000;
/** webhook-ids remembered to flag repeats (retries, replays); older ones are forgotten first. */
const MAX_REMEMBERED_IDS = 10_000;
/** Links listed per delivery; more are counted, not printed. */
const MAX_LINKS_SHOWN = 10;
/** Attachments listed per delivery; more are counted, not printed. */
const MAX_ATTACHMENTS_SHOWN = 20;
/** Secret sizes we generate: 32 random bytes (the spec asks for 24 to 64). */
const GENERATED_SECRET_BYTES = 32;

const SECRET_PATTERN = /^whsec_[A-Za-z0-9+/]+={0,2}$/;

/** A fresh Standard Webhooks signing secret, `whsec_` + base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(GENERATED_SECRET_BYTES).toString('base64')}`;
}

/** Undefined when `secret` is a usable `whsec_...` secret; otherwise what is wrong with it. */
export function checkWebhookSecret(secret: string): string | undefined {
  if (!SECRET_PATTERN.test(secret)) return 'a signing secret looks like whsec_ followed by base64 text';
  if (Buffer.from(secret.slice('whsec_'.length), 'base64').length === 0) return 'the secret is empty';
  return undefined;
}

/** One request the receiver got, verified or not. */
export interface ReceivedDelivery {
  receivedAt: Date;
  webhookId: string | undefined;
  /** `webhook-timestamp` header, Unix seconds as sent. */
  timestamp: string | undefined;
  verified: boolean;
  /** Why verification failed, when it did. */
  failure?: string;
  /** True when this webhook-id was delivered before (a retry or a replay). */
  repeat: boolean;
  bytes: number;
  /** The JSON body, or undefined when it was not JSON. */
  body: unknown;
}

export interface WebhookReceiverOptions {
  /** Accepted signing secrets (`whsec_...`); a delivery passes when any one matches (rotation). */
  secrets: readonly string[];
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (a free port) */
  port?: number;
  /** Called for every POST, after the response status is decided. */
  onDelivery?: (delivery: ReceivedDelivery) => void;
  logger?: Logger;
}

export interface WebhookReceiver {
  /** `http://host:port/`: the URL to configure as an endpoint. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

function header(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Checks a Standard Webhooks signature against each secret in turn. The timestamp must be within the
 * library's five-minute tolerance (replay protection).
 */
export function verifyWebhook(
  secrets: readonly string[],
  body: string,
  headers: { 'webhook-id'?: string; 'webhook-timestamp'?: string; 'webhook-signature'?: string },
): { verified: true } | { verified: false; failure: string } {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signature = headers['webhook-signature'];
  if (!id || !timestamp || !signature)
    return { verified: false, failure: 'missing webhook-id, webhook-timestamp or webhook-signature header' };
  let failure = 'no secrets configured';
  for (const secret of secrets) {
    try {
      new Webhook(secret).verify(
        body,
        {
          'webhook-id': id,
          'webhook-timestamp': timestamp,
          'webhook-signature': signature,
        },
        { jsonParse: false },
      );
      return { verified: true };
    } catch (err) {
      failure = (err as Error).message;
    }
  }
  return { verified: false, failure: sanitizeForeignText(failure) };
}

/** What a person wants to see of a delivery, already sanitised. */
export interface DeliverySummary {
  type: string;
  webhookId: string;
  verified: boolean;
  failure?: string;
  repeat: boolean;
  mailbox?: string;
  from?: string;
  subject?: string;
  attachments: string[];
  moreAttachments: number;
  links: string[];
  moreLinks: number;
  /** Extra lines for event kinds without a subject (skipped messages, tests). */
  notes: string[];
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v: unknown, max?: number): string | undefined =>
  typeof v === 'string' ? sanitizeForeignText(v, max) : typeof v === 'number' ? String(v) : undefined;

function formatSize(bytes: unknown): string {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '?';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function formatAddress(v: unknown): string | undefined {
  if (!isRecord(v)) return undefined;
  const address = text(v.address, 120) ?? '';
  const name = text(v.name, 80);
  return name ? `${name} <${address}>` : address || undefined;
}

/** Keys whose contents are the message itself, not links pophook added. */
const BODY_KEYS = new Set(['text', 'html', 'headers']);

function collectLinks(value: unknown, where: string, out: string[], depth = 0): void {
  if (depth > 6) return;
  if (typeof value === 'string') {
    if (/^https?:\/\//i.test(value)) out.push(`${where}: ${sanitizeForeignText(value, 200)}`);
    return;
  }
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) collectLinks(item, `${where}[${i}]`, out, depth + 1);
    return;
  }
  if (!isRecord(value)) return;
  for (const [key, item] of Object.entries(value)) {
    if (BODY_KEYS.has(key)) continue;
    collectLinks(item, where ? `${where}.${key}` : key, out, depth + 1);
  }
}

/** Picks the fields worth printing from a delivery (Standard Webhooks body `{ type, timestamp, data }`). */
export function summarizeDelivery(delivery: ReceivedDelivery): DeliverySummary {
  const body = isRecord(delivery.body) ? delivery.body : {};
  const data = isRecord(body.data) ? body.data : {};
  const summary: DeliverySummary = {
    type: text(body.type, 60) ?? (delivery.body === undefined ? '(not JSON)' : '(no type)'),
    webhookId: delivery.webhookId ? sanitizeForeignText(delivery.webhookId, 100) : '(none)',
    verified: delivery.verified,
    repeat: delivery.repeat,
    attachments: [],
    moreAttachments: 0,
    links: [],
    moreLinks: 0,
    notes: [],
  };
  if (delivery.failure) summary.failure = delivery.failure;
  const mailbox = text(data.mailboxId, 60);
  if (mailbox) summary.mailbox = mailbox;
  const from = Array.isArray(data.from) ? data.from.map(formatAddress).filter(Boolean) : [];
  if (from.length > 0) summary.from = from.join(', ');
  if (data.subject !== undefined) summary.subject = text(data.subject, 200) ?? '(no subject)';
  if (Array.isArray(data.attachments)) {
    for (const a of data.attachments.slice(0, MAX_ATTACHMENTS_SHOWN)) {
      if (!isRecord(a)) continue;
      const name = text(a.filename, 100) ?? '(unnamed)';
      const inline = a.disposition === 'inline' ? ', inline' : '';
      summary.attachments.push(`${name} (${text(a.contentType, 60) ?? '?'}, ${formatSize(a.size)}${inline})`);
    }
    summary.moreAttachments = Math.max(0, data.attachments.length - MAX_ATTACHMENTS_SHOWN);
  }
  const links: string[] = [];
  collectLinks(body, '', links);
  summary.links = links.slice(0, MAX_LINKS_SHOWN);
  summary.moreLinks = Math.max(0, links.length - MAX_LINKS_SHOWN);
  if (summary.type === 'email.skipped')
    summary.notes.push(
      `skipped: ${text(data.reason, 40) ?? '?'} (${formatSize(data.size)}, limit ${formatSize(data.limit)})`,
    );
  if (isRecord(data.parseError))
    summary.notes.push(`parse error: ${text(data.parseError.message, 200) ?? '?'}`);
  if (isRecord(data.spam) && data.spam.flagged === true)
    summary.notes.push(`spam: flagged by the receiving server (score ${text(data.spam.score) ?? '?'})`);
  return summary;
}

/** Colour functions the printer uses; the CLI passes real ones on a TTY. */
export interface TextStyle {
  bold(s: string): string;
  dim(s: string): string;
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

const identity = (s: string) => s;
export const plainStyle: TextStyle = {
  bold: identity,
  dim: identity,
  green: identity,
  red: identity,
  yellow: identity,
  cyan: identity,
};

/** A delivery as a few aligned lines, for a terminal. */
export function formatDelivery(delivery: ReceivedDelivery, style: TextStyle = plainStyle): string {
  const s = summarizeDelivery(delivery);
  const time = delivery.receivedAt.toISOString().slice(11, 19);
  const verdict = s.verified ? style.green('verified: yes') : style.red(`verified: NO (${s.failure ?? '?'})`);
  const lines = [
    `${style.dim(time)} ${style.bold(style.cyan(s.type))}  ${verdict}${s.repeat ? style.yellow('  (repeat)') : ''}`,
  ];
  const row = (label: string, value: string): void => {
    lines.push(`  ${style.dim(label.padEnd(12))}${value}`);
  };
  row('webhook-id', s.webhookId);
  if (s.mailbox) row('mailbox', s.mailbox);
  if (s.from) row('from', s.from);
  if (s.subject !== undefined) row('subject', s.subject);
  for (const [i, a] of s.attachments.entries()) row(i === 0 ? 'attachments' : '', a);
  if (s.moreAttachments > 0) row('', `... and ${s.moreAttachments} more`);
  for (const [i, l] of s.links.entries()) row(i === 0 ? 'links' : '', l);
  if (s.moreLinks > 0) row('', `... and ${s.moreLinks} more`);
  for (const note of s.notes) row('note', style.yellow(note));
  if (delivery.body === undefined) row('body', `${delivery.bytes} bytes, not JSON`);
  return lines.join('\n');
}

function readBody(req: http.IncomingMessage): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_RECEIVER_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? 'too-large' : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function respond(res: http.ServerResponse, status: number, body: Record<string, unknown>): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

/** Starts the receiver; resolves once it is listening. */
export async function startWebhookReceiver(options: WebhookReceiverOptions): Promise<WebhookReceiver> {
  if (options.secrets.length === 0) throw new ConfigError('The webhook receiver needs at least one secret.');
  for (const secret of options.secrets) {
    const problem = checkWebhookSecret(secret);
    if (problem) throw new ConfigError(`The webhook secret is not usable: ${problem}.`);
  }
  const host = options.host ?? '127.0.0.1';
  const logger = (options.logger ?? silentLogger).child({ component: 'receiver' });
  const seen = new Set<string>();

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.method === 'GET' || req.method === 'HEAD') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('pophook webhook receiver: POST Standard Webhooks deliveries here.\n');
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'GET, HEAD, POST' });
      res.end();
      return;
    }
    if (Number(header(req.headers, 'content-length') ?? 0) > MAX_RECEIVER_BODY_BYTES) {
      res.setHeader('connection', 'close');
      respond(res, 413, { error: `body over ${MAX_RECEIVER_BODY_BYTES} bytes` });
      return;
    }
    const raw = await readBody(req);
    if (raw === 'too-large') {
      respond(res, 413, { error: `body over ${MAX_RECEIVER_BODY_BYTES} bytes` });
      return;
    }
    const bodyText = raw.toString('utf8');
    const webhookId = header(req.headers, 'webhook-id');
    const timestamp = header(req.headers, 'webhook-timestamp');
    const result = verifyWebhook(options.secrets, bodyText, {
      'webhook-id': webhookId,
      'webhook-timestamp': timestamp,
      'webhook-signature': header(req.headers, 'webhook-signature'),
    });
    let body: unknown;
    try {
      body = JSON.parse(bodyText);
    } catch {
      body = undefined;
    }
    const repeat = result.verified && webhookId !== undefined && seen.has(webhookId);
    if (result.verified && webhookId !== undefined && !repeat) {
      if (seen.size >= MAX_REMEMBERED_IDS) {
        const oldest = seen.values().next().value;
        if (oldest !== undefined) seen.delete(oldest);
      }
      seen.add(webhookId);
    }
    if (result.verified) respond(res, 200, { ok: true });
    else respond(res, 401, { error: `signature verification failed: ${result.failure}` });
    logger.debug('receiver delivery', { verified: result.verified, bytes: raw.length });
    options.onDelivery?.({
      receivedAt: new Date(),
      webhookId,
      timestamp,
      verified: result.verified,
      ...(result.verified ? {} : { failure: result.failure }),
      repeat,
      bytes: raw.length,
      body,
    });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error('receiver request failed', { error: err });
      if (!res.headersSent) respond(res, 500, { error: 'receiver error' });
      else res.destroy();
    });
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;

  await listenOrExplain(server, host, options.port, {
    code: 'RECEIVER_LISTEN_FAILED',
    what: 'webhook receiver',
  });
  server.on('error', (err) => logger.error('receiver server error', { error: err }));
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}/`,
    host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

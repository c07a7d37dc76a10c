/**
 * Runs a directory of messages through the whole pipeline and checks every one:
 *
 *   npm run corpus -- <dir> [--ext eml,txt] [--parse-timeout-ms 10000] [--json]
 *
 * The files (recursively, by extension; licence and README files skipped) are served by the embedded
 * demo POP3 server, polled by the real poller into a local archive (retention delete), parsed, queued
 * and delivered by the local delivery worker to a receiver on 127.0.0.1 that verifies every signature
 * with the reference `standardwebhooks` library. For each message:
 *   - archived once, byte-exact (SHA-256 of what the server served: CRLF line ends, unstuffed);
 *   - the event is valid JSON, valid against the event schema, and holds only characters SQS accepts;
 *   - parsed within the time limit, or reported with `parseError`;
 *   - delivered: a signed request whose webhook-id is the event id, a body the queue validator
 *     (`validateQueueBody`) accepts and that matches the webhook body schema.
 * Prints totals (archived, parsed, parse errors, delivered, slowest message) and exits 1 on any
 * problem. `runCorpus()` is the same pipeline for tests (test/hostile/mail.test.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Webhook } from 'standardwebhooks';
import { parseConfig } from '../shared/config/load.js';
import { startDemoPop3Server } from '../shared/demo/pop3-server.js';
import { Pop3WireEncoder } from '../shared/demo/wire-encoder.js';
import { messageKeyFor } from '../shared/ingest/identity.js';
import { pollMailbox } from '../shared/ingest/poll.js';
import { silentLogger } from '../shared/log.js';
import type { PophookEvent } from '../shared/mail/event.js';
import { EmailReceivedDataSchema, WebhookBodySchema } from '../shared/mail/event-schema.js';
import { ParseErrorCode } from '../shared/mail/limits.js';
import { parseMessage } from '../shared/mail/parse.js';
import { validateQueueBody } from '../shared/queue/queue.js';
import { createLocalRuntime, deliverDue, pollDeps } from '../shared/runtime/local.js';

/** Licence, notes and Git files that sit beside corpora and are not mail. */
const NOT_MAIL = /^(LICENSE|COPYING|README|SOURCES|NOTICE)|\.md$|^\./i;
/** Parsing may overrun its budget by this much (the timer fires between parser events). */
const PARSE_GRACE_MS = 2000;
/** Polls before giving up on draining the mailbox (each takes up to maxMessagesPerRun messages). */
const MAX_POLLS = 200;
const MAILBOX_ID = 'corpus';
const KNOWN_PARSE_ERRORS = new Set<string>(Object.values(ParseErrorCode));
/** SQS-legal characters (validateQueueBody's rule), checked without its size limit. */
const SQS_ILLEGAL = /[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/u;

export interface CorpusOptions {
  /** File extensions (without dot) that count as messages. @default ['eml'] */
  extensions?: string[];
  /** parse.timeoutMs for the run. @default 10000 */
  parseTimeoutMs?: number;
}

export interface CorpusItem {
  /** Path relative to the corpus directory. */
  name: string;
  /** Bytes as served (what the archive must hold). */
  size: number;
  sha256: string;
  archived: boolean;
  parseError: string | null;
  parseMs: number;
  delivered: boolean;
  /** Attachment keys the event lists (they must be safe paths). */
  attachmentKeys: string[];
  problems: string[];
}

export interface CorpusTotals {
  files: number;
  archived: number;
  parsed: number;
  parseErrors: number;
  parseErrorCodes: Record<string, number>;
  delivered: number;
  slowest: { name: string; ms: number } | undefined;
  problems: number;
  seconds: number;
}

async function listFiles(dir: string, extensions: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    const entries = await readdir(d, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (
        e.isFile() &&
        !NOT_MAIL.test(e.name) &&
        extensions.some((x) => e.name.toLowerCase().endsWith(`.${x}`))
      )
        out.push(p);
    }
  };
  await walk(dir);
  return out;
}

/** SHA-256 and size of the file as the demo server serves it (CRLF line ends, no stuffing). */
async function servedDigest(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const encoder = new Pop3WireEncoder({ dotStuff: false });
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    for (const piece of encoder.encode(chunk as Buffer)) {
      hash.update(piece);
      size += piece.length;
    }
  }
  for (const piece of encoder.end()) {
    hash.update(piece);
    size += piece.length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** The demo server's UIDL: SHA-256 of the file name, a NUL and the file's bytes. */
async function demoUidl(path: string, name: string): Promise<string> {
  const hash = createHash('sha256').update(name).update('\0');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function sqsLegal(text: string): boolean {
  return !SQS_ILLEGAL.test(text);
}

interface Received {
  headers: Record<string, string>;
  body: Buffer;
}

/** Runs every message file under `dir` through the pipeline; see the module comment. */
export async function runCorpus(
  dir: string,
  options: CorpusOptions = {},
): Promise<{ items: CorpusItem[]; totals: CorpusTotals }> {
  const started = Date.now();
  const parseTimeoutMs = options.parseTimeoutMs ?? 10_000;
  const files = await listFiles(resolve(dir), options.extensions ?? ['eml']);
  const work = await mkdtemp(join(tmpdir(), 'pophook-corpus-'));
  const serveDir = join(work, 'mail');
  await mkdir(serveDir);
  const secret = `whsec_${Buffer.alloc(32, 0x5a).toString('base64')}`;
  const requests: Received[] = [];
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      requests.push({ headers, body: Buffer.concat(chunks) });
      res.writeHead(200);
      res.end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const pop = await startDemoPop3Server({ dir: serveDir });
  const items: CorpusItem[] = [];
  const byKey = new Map<string, CorpusItem>();
  const parseMs = new Map<string, number>();
  try {
    for (const [i, path] of files.entries()) {
      const name = relative(resolve(dir), path);
      // Served names sort in corpus order and are valid `.eml` names whatever the original was.
      const served = `${String(i).padStart(6, '0')}.eml`;
      await copyFile(path, join(serveDir, served));
      const digest = await servedDigest(path);
      const uidl = await demoUidl(path, served);
      const item: CorpusItem = {
        name,
        size: digest.size,
        sha256: digest.sha256,
        archived: false,
        parseError: null,
        parseMs: 0,
        delivered: false,
        attachmentKeys: [],
        problems: [],
      };
      items.push(item);
      byKey.set(messageKeyFor(MAILBOX_ID, uidl, 0), item);
    }

    const config = parseConfig({
      version: 1,
      mailboxes: [
        {
          id: MAILBOX_ID,
          host: pop.host,
          port: pop.port,
          tls: 'none',
          allowInsecureAuth: true,
          user: pop.user,
          auth: { type: 'password', password: { secret: 'pop' }, mechanism: 'user' },
          retention: 'delete',
        },
      ],
      endpoints: [
        {
          id: 'corpus',
          url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
          secrets: [{ secret: 'hook' }],
          allowHttp: true,
          allowPrivateNetwork: true,
        },
      ],
      parse: { timeoutMs: parseTimeoutMs },
      local: { dataDir: join(work, 'data') },
    });
    const runtime = await createLocalRuntime(config, {
      env: { POPHOOK_SECRET_POP: pop.password, POPHOOK_SECRET_HOOK: secret },
      logger: silentLogger,
    });
    try {
      const deps = {
        ...pollDeps(runtime),
        // The real parser, timed per message.
        parse: async (...args: Parameters<typeof parseMessage>) => {
          const t = performance.now();
          try {
            return await parseMessage(...args);
          } finally {
            parseMs.set(args[0].messageKey, performance.now() - t);
          }
        },
      };
      for (let n = 0; n < MAX_POLLS; n++) {
        const result = await pollMailbox(MAILBOX_ID, deps);
        if (result.error) throw new Error(`poll failed: ${result.error.code}: ${result.error.message}`);
        if (result.remaining === 0 && result.deferred === 0) break;
      }
      while ((await deliverDue(runtime)).received > 0) {}
      await checkItems(runtime, byKey, parseMs, requests, secret, parseTimeoutMs);
    } finally {
      await runtime.close();
    }
  } finally {
    await pop.close();
    await new Promise<void>((r) => receiver.close(() => r()));
    await rm(work, { recursive: true, force: true });
  }

  const parseErrorCodes: Record<string, number> = {};
  for (const it of items)
    if (it.parseError) parseErrorCodes[it.parseError] = (parseErrorCodes[it.parseError] ?? 0) + 1;
  const slowest = [...items].sort((a, b) => b.parseMs - a.parseMs)[0];
  return {
    items,
    totals: {
      files: items.length,
      archived: items.filter((i) => i.archived).length,
      parsed: items.filter((i) => i.archived && i.parseError === null && i.problems.length === 0).length,
      parseErrors: items.filter((i) => i.parseError !== null).length,
      parseErrorCodes,
      delivered: items.filter((i) => i.delivered).length,
      slowest: slowest ? { name: slowest.name, ms: Math.round(slowest.parseMs) } : undefined,
      problems: items.reduce((a, i) => a + i.problems.length, 0),
      seconds: Math.round((Date.now() - started) / 100) / 10,
    },
  };
}

async function checkItems(
  runtime: Awaited<ReturnType<typeof createLocalRuntime>>,
  byKey: Map<string, CorpusItem>,
  parseMs: Map<string, number>,
  requests: Received[],
  secret: string,
  parseTimeoutMs: number,
): Promise<void> {
  const archiveRoot = join(runtime.dataDir, 'archive');
  const raws = new Map<string, string[]>();
  let cursor: string | undefined;
  do {
    const page = await runtime.archive.list('raw/', cursor ? { cursor } : {});
    for (const o of page.items) {
      const m = /\/([0-9a-f]{32})\.eml$/.exec(o.key);
      if (m?.[1]) raws.set(m[1], [...(raws.get(m[1]) ?? []), o.key]);
    }
    cursor = page.cursor;
  } while (cursor);

  const verifier = new Webhook(secret);
  const deliveries = new Map<string, Received[]>();
  for (const r of requests) {
    let key: string | undefined;
    try {
      key = (JSON.parse(r.body.toString('utf8')) as { data?: { messageKey?: string } }).data?.messageKey;
    } catch {}
    if (key) deliveries.set(key, [...(deliveries.get(key) ?? []), r]);
  }

  for (const [messageKey, item] of byKey) {
    item.parseMs = parseMs.get(messageKey) ?? 0;
    const keys = raws.get(messageKey) ?? [];
    if (keys.length !== 1) {
      item.problems.push(`archived ${keys.length} times`);
      continue;
    }
    const rawKey = keys[0] as string;
    const bytes = await readFile(join(archiveRoot, rawKey));
    if (createHash('sha256').update(bytes).digest('hex') !== item.sha256 || bytes.length !== item.size) {
      item.problems.push('archived bytes differ from what the server served');
      continue;
    }
    item.archived = true;

    let event: PophookEvent | undefined;
    const eventText = (await runtime.archive.getBytes(rawKey.replace(/\.eml$/, '.json'))).toString('utf8');
    try {
      event = JSON.parse(eventText) as PophookEvent;
    } catch {
      item.problems.push('event is not valid JSON');
    }
    if (!sqsLegal(eventText)) item.problems.push('event holds characters SQS refuses');
    if (event?.type === 'email.received') {
      const schema = EmailReceivedDataSchema.safeParse(event.data);
      if (!schema.success) item.problems.push(`event fails the schema: ${schema.error.issues[0]?.message}`);
      if (event.data.raw.sha256 !== item.sha256) item.problems.push('event names another raw SHA-256');
      item.parseError = event.data.parseError?.code ?? null;
      if (item.parseError && !KNOWN_PARSE_ERRORS.has(item.parseError))
        item.problems.push(`unknown parseError code ${item.parseError}`);
      item.attachmentKeys = event.data.attachments.map((a) => a.key);
      for (const key of item.attachmentKeys) {
        if (
          key.split('/').some((s) => s === '..' || s === '.' || s === '') ||
          /[\u0000-\u001f\u007f]/.test(key)
        )
          item.problems.push(`unsafe attachment key ${JSON.stringify(key)}`);
      }
      if (item.parseMs > parseTimeoutMs + PARSE_GRACE_MS && item.parseError !== ParseErrorCode.timeout)
        item.problems.push(`parse took ${Math.round(item.parseMs)} ms without reporting a timeout`);
    } else item.problems.push(`event type ${String(event?.type)}`);

    const sent = deliveries.get(messageKey) ?? [];
    for (const r of sent) {
      const text = r.body.toString('utf8');
      try {
        verifier.verify(r.body, {
          'webhook-id': r.headers['webhook-id'] ?? '',
          'webhook-timestamp': r.headers['webhook-timestamp'] ?? '',
          'webhook-signature': r.headers['webhook-signature'] ?? '',
        });
      } catch {
        item.problems.push('delivery signature does not verify');
        continue;
      }
      if (event && r.headers['webhook-id'] !== event.data.eventId)
        item.problems.push('webhook-id is not the event id');
      const queueProblem = validateQueueBody(text);
      if (queueProblem) item.problems.push(`delivered body refused by the queue validator: ${queueProblem}`);
      const problem = webhookBodyProblem(JSON.parse(text) as { data?: Record<string, unknown> });
      if (problem) item.problems.push(`delivered body fails the webhook schema: ${problem}`);
      item.delivered = true;
    }
    if (!item.delivered) item.problems.push('never delivered');
  }
}

/**
 * Checks a delivered body against WebhookBodySchema. The payload builder adds `data.links` and
 * `data.omitted` (and may leave out fields it lists in `omitted` to fit maxBodyBytes), which the
 * strict event schema does not describe; those are allowed here, anything else is a problem.
 */
function webhookBodyProblem(body: { data?: Record<string, unknown> }): string | undefined {
  const data = { ...body.data };
  const omitted = Array.isArray(data.omitted) ? (data.omitted as { field?: string }[]) : [];
  const dropped = new Set(omitted.map((o) => String(o.field ?? '').split(/[.[]/)[0]));
  delete data.links;
  delete data.omitted;
  const result = WebhookBodySchema.safeParse({ ...body, data });
  if (result.success) return undefined;
  const issues = result.error.issues.filter((i) => !(i.path[0] === 'data' && dropped.has(String(i.path[1]))));
  return issues.length ? JSON.stringify(issues.slice(0, 2)) : undefined;
}

/** One line of totals, the shape the report quotes. */
export function formatTotals(t: CorpusTotals): string {
  const codes = Object.entries(t.parseErrorCodes)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `corpus: files ${t.files}, archived ${t.archived}, parsed ${t.parsed}, parse errors ${t.parseErrors}${codes ? ` (${codes})` : ''}, delivered ${t.delivered}, slowest ${t.slowest ? `${t.slowest.name} ${t.slowest.ms} ms` : '-'}, problems ${t.problems}, ${t.seconds} s`;
}

async function main(): Promise<number> {
  const args = parseArgs({
    allowPositionals: true,
    options: {
      ext: { type: 'string', default: 'eml' },
      'parse-timeout-ms': { type: 'string', default: '10000' },
      json: { type: 'boolean', default: false },
    },
  });
  const dir = args.positionals[0];
  if (!dir || !(await stat(dir).catch(() => undefined))?.isDirectory()) {
    process.stderr.write(
      'usage: npm run corpus -- <dir> [--ext eml,txt] [--parse-timeout-ms 10000] [--json]\n',
    );
    return 2;
  }
  const { items, totals } = await runCorpus(dir, {
    extensions: args.values.ext.split(',').map((x) => x.trim().replace(/^\./, '')),
    parseTimeoutMs: Number(args.values['parse-timeout-ms']),
  });
  if (args.values.json) process.stdout.write(`${JSON.stringify({ totals, items }, null, 2)}\n`);
  else process.stdout.write(`${formatTotals(totals)}\n`);
  for (const it of items) for (const p of it.problems) process.stderr.write(`${it.name}: ${p}\n`);
  return totals.problems > 0 || totals.files === 0 ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`corpus run failed: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}

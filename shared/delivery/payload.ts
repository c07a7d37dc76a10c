/**
 * The JSON body a receiver gets: Standard Webhooks `{ type, timestamp, data }`, where `timestamp` is
 * when the event happened (the message was first seen) and `data` is the event, shaped per endpoint:
 *
 * - `full`: the whole event (text, html, headers, attachment metadata), plus links.
 * - `thin`: ids and metadata only (mailbox, messageKey, from, to, subject, date, sizes, attachment
 *   list) plus links; the receiver fetches content through the links, so data access stays auditable.
 *
 * `data.links.raw` and each `data.attachments[i].url` are archive links (S3 pre-signed) with an
 * `expiresAt`; local archives have none. Attachments up to `inlineAttachmentMaxBytes` are inlined as
 * base64 `content` in `full` payloads while the body stays under `maxBodyBytes`.
 *
 * The body never exceeds `maxBodyBytes`. Over it, we give up, in order: html; headers (only when even
 * an empty text would not fit, so text is kept in preference to headers); text (truncated to fit);
 * the attachment list; finally everything but identity, raw info and links. Every piece left out is
 * listed in `data.omitted: [{ field, reason }]` so a receiver can tell "absent" from "dropped".
 */
import { isUtf8 } from 'node:buffer';
import type { DeliveryConfig } from '../config/schema.js';
import type { AttachmentInfo, EmailReceivedData, PophookEvent } from '../mail/event.js';
import type { Archive } from '../storage/archive.js';
import { DATA_START, RECEIVED_PREFIX, type ScannedEvent, type Span } from './event-scan.js';

/** Text shorter than this after truncation is not worth sending; the receiver should use the link. */
export const MIN_TRUNCATED_TEXT_BYTES = 1024;

export interface Omission {
  /** JSON path in `data`, e.g. `html` or `attachments[2].content`. */
  field: string;
  reason: string;
}

export interface Link {
  url: string;
  expiresAt: string;
}

export interface PayloadOptions {
  mode: 'full' | 'thin';
  delivery: Pick<DeliveryConfig, 'maxBodyBytes' | 'inlineAttachmentMaxBytes' | 'linkExpirySeconds'>;
  archive: Pick<Archive, 'linkFor' | 'getBytes'>;
  /** Epoch ms, for `expiresAt`. */
  nowMs: number;
  /**
   * The archived JSON text `event` was parsed from, when the caller has it. A `full` payload that
   * needs no trimming, inlining or attachment links then reuses the text of `data` instead of
   * serialising the event again (the costliest step of a delivery): see `spliceFullBody`.
   */
  eventJson?: string;
  /**
   * The archived bytes `eventJson` was decoded from. With them a spliced body also comes as UTF-8
   * bytes (`encoded`), copied from the archive rather than encoded again.
   */
  eventBytes?: Buffer;
}

export interface BuiltPayload {
  /** The exact JSON sent and signed. */
  body: string;
  /** `body` as UTF-8, when the builder had it without encoding (see PayloadOptions.eventBytes). */
  encoded?: Buffer;
  bytes: number;
  omitted: Omission[];
}

type Json = Record<string, unknown>;
/** The event a `full` splice can come from. */
export type ReceivedEvent = Extract<PophookEvent, { type: 'email.received' }>;
type AttachmentOut = AttachmentInfo & Partial<Link> & { content?: string };

const byteLength = (value: unknown) => Buffer.byteLength(JSON.stringify(value), 'utf8');

async function link(
  archive: PayloadOptions['archive'],
  key: string,
  expirySeconds: number,
  nowMs: number,
): Promise<Link | undefined> {
  return linkOf(await archive.linkFor(key, expirySeconds), expirySeconds, nowMs);
}

function linkOf(url: string | undefined, expirySeconds: number, nowMs: number): Link | undefined {
  return url ? { url, expiresAt: new Date(nowMs + expirySeconds * 1000).toISOString() } : undefined;
}

/** The longest prefix of `text` whose JSON string literal fits in `budget` bytes (never splits a pair). */
export function truncateToJsonBytes(text: string, budget: number): string {
  if (byteLength(text) <= budget) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (byteLength(text.slice(0, mid)) <= budget) lo = mid;
    else hi = mid - 1;
  }
  let end = lo;
  const last = text.charCodeAt(end - 1);
  if (end > 0 && last >= 0xd800 && last <= 0xdbff) end--;
  return text.slice(0, end);
}

function thinData(data: EmailReceivedData): Json {
  return {
    version: data.version,
    eventId: data.eventId,
    messageKey: data.messageKey,
    mailboxId: data.mailboxId,
    uidl: data.uidl,
    receivedAt: data.receivedAt,
    date: data.date,
    messageId: data.messageId,
    subject: data.subject,
    from: data.from,
    to: data.to,
    cc: data.cc,
    raw: data.raw,
    attachments: data.attachments,
    parseError: data.parseError,
  };
}

/** Builds the body for one endpoint. Reads attachment bytes from the archive only when inlining. */
export async function buildPayload(event: PophookEvent, options: PayloadOptions): Promise<BuiltPayload> {
  if (event.type === 'email.skipped') {
    const omitted: Omission[] = [];
    const body = { type: event.type, timestamp: event.data.receivedAt, data: { ...event.data, omitted } };
    return finish(body, omitted, options.delivery.maxBodyBytes);
  }

  const source = event.data;
  const linked = await linkParts(source.raw.key, source.attachments, options);
  if (options.mode === 'full' && options.eventJson !== undefined) {
    const spliced = spliceFullBody(options.eventJson, source, linked, options.delivery);
    if (spliced !== undefined) {
      const encoded = spliceBytes(spliced, options.eventBytes);
      const bytes = encoded ? encoded.length : Buffer.byteLength(spliced.body, 'utf8');
      if (bytes <= options.delivery.maxBodyBytes) {
        return { body: spliced.body, ...(encoded ? { encoded } : {}), bytes, omitted: linked.omitted };
      }
    }
  }
  return generalPayload(event, linked, options);
}

/**
 * The `full` body of an archived event the scan accepted (event-scan.ts), as the bytes to sign and
 * send: the archived `data` bytes between a new head and tail, without parsing the event. Byte for
 * byte the body `buildPayload` makes from the parsed event with `eventJson` and `eventBytes` (tests
 * prove it); when the splice does not apply (attachments to inline or link, a body over
 * maxBodyBytes), `parse()` gives the event for the general path, with the links already issued.
 */
export async function buildScannedPayload(
  scanned: ScannedEvent,
  options: Omit<PayloadOptions, 'mode' | 'eventJson' | 'eventBytes'>,
  parse: () => ReceivedEvent,
): Promise<Buffer> {
  const { bytes, raw, receivedAt } = scanned;
  const { delivery } = options;
  const rawKey = scanned.rawKey ?? JSON.parse(spanText(bytes, raw)).key;
  let tail: Buffer;
  let linked: Linked | undefined;
  if (scanned.attachments.end - scanned.attachments.start === 2) {
    // No attachments (the array is `[]`): the raw link alone decides the tail. Without one (a local
    // archive) it is always the same; with one, serialised like spliceFullBody's.
    const expiry = delivery.linkExpirySeconds;
    const rawLink = linkOf(await options.archive.linkFor(rawKey, expiry), expiry, options.nowMs);
    if (rawLink) {
      linked = { links: { raw: rawLink }, attachments: [], omitted: [] };
      tail = Buffer.from(tailOf(linked), 'utf8');
    } else tail = LOCAL_TAIL;
  } else {
    const sourceAttachments: AttachmentInfo[] = JSON.parse(spanText(bytes, scanned.attachments));
    // Inlining reads and adds attachment content: the general path's work.
    if (delivery.inlineAttachmentMaxBytes > 0) return generalBytes(parse, undefined, options);
    linked = await linkParts(rawKey, sourceAttachments, options);
    if (linked.attachments.some((a) => a.url)) return generalBytes(parse, linked, options);
    tail = linked.links.raw === undefined ? LOCAL_TAIL : Buffer.from(tailOf(linked), 'utf8');
  }

  const timestamp = scanned.receivedAtEscaped
    ? Buffer.from(JSON.stringify(JSON.parse(spanText(bytes, receivedAt))), 'utf8')
    : bytes.subarray(receivedAt.start, receivedAt.end);
  const dataEnd = bytes.length - 2; // the data object's closing brace, left out: the tail closes it
  const size = HEAD_START.length + timestamp.length + HEAD_DATA.length + (dataEnd - DATA_START) + tail.length;
  if (size > delivery.maxBodyBytes) {
    // linkParts' result for no attachments: the raw link, or the local-mode omission.
    linked ??= { links: {}, attachments: [], omitted: [{ field: 'links.raw', reason: LOCAL_MODE_LINKS }] };
    return generalBytes(parse, linked, options);
  }
  const out = Buffer.allocUnsafe(size);
  let at = HEAD_START.copy(out, 0);
  at += timestamp.copy(out, at);
  at += HEAD_DATA.copy(out, at);
  at += bytes.copy(out, at, DATA_START, dataEnd);
  tail.copy(out, at);
  return out;
}

const spanText = (bytes: Buffer, span: Span) => bytes.toString('utf8', span.start, span.end);

/** buildScannedPayload's general path: the parsed event, with the links when already issued. */
async function generalBytes(
  parse: () => ReceivedEvent,
  linked: Linked | undefined,
  options: Omit<PayloadOptions, 'mode' | 'eventJson' | 'eventBytes'>,
): Promise<Buffer> {
  const event = parse();
  const parts = linked ?? (await linkParts(event.data.raw.key, event.data.attachments, options));
  const built = await generalPayload(event, parts, { ...options, mode: 'full' });
  return built.encoded ?? Buffer.from(built.body, 'utf8');
}

/** The links, attachments (with theirs) and omissions every `email.received` body carries. */
interface Linked {
  links: Json;
  attachments: AttachmentOut[];
  omitted: Omission[];
}

const LOCAL_MODE_LINKS = 'the archive issues no links (local mode)';

/** Issues the archive links for the raw message and each attachment, in that order. */
async function linkParts(
  rawKey: string,
  sourceAttachments: readonly AttachmentInfo[],
  options: Pick<PayloadOptions, 'archive' | 'delivery' | 'nowMs'>,
): Promise<Linked> {
  const { archive, nowMs } = options;
  const expiry = options.delivery.linkExpirySeconds;
  const omitted: Omission[] = [];
  const rawLink = linkOf(await archive.linkFor(rawKey, expiry), expiry, nowMs);
  const links: Json = {};
  if (rawLink) links.raw = rawLink;
  else omitted.push({ field: 'links.raw', reason: LOCAL_MODE_LINKS });

  const attachments: AttachmentOut[] =
    sourceAttachments.length === 0
      ? []
      : await Promise.all(
          sourceAttachments.map(async (a) => {
            const l = await link(archive, a.key, expiry, nowMs);
            return l ? { ...a, ...l } : { ...a };
          }),
        );
  if (rawLink && attachments.length > 0 && attachments.some((a) => !a.url)) {
    omitted.push({ field: 'attachments[].url', reason: 'the archive issued no link' });
  }
  return { links, attachments, omitted };
}

/** The body without the splice: the event's object, trimmed to maxBodyBytes, attachments inlined. */
async function generalPayload(
  event: ReceivedEvent,
  { links, attachments, omitted }: Linked,
  options: PayloadOptions,
): Promise<BuiltPayload> {
  const { delivery, archive, mode } = options;
  const max = delivery.maxBodyBytes;
  const source = event.data;
  const body: { type: string; timestamp: string; data: Json } = {
    type: event.type,
    timestamp: source.receivedAt,
    data: {},
  };
  // Serialising is the main cost of a delivery: keep the last result until something changes, so a
  // body under the cap is stringified once.
  const json = new SerialisedBody(body);

  // Same key order as the splice: the event's fields, then links, (attachments in place), omitted.
  const data: Json = mode === 'full' ? { ...source } : thinData(source);
  data.links = links;
  data.attachments = attachments;
  data.omitted = omitted;
  body.data = data;

  // 1. html goes first: text carries the same content in a fraction of the bytes.
  if (json.size() > max && data.html !== undefined && data.html !== null) {
    json.changed();
    data.html = null;
    data.htmlTruncated = true;
    omitted.push({ field: 'html', reason: 'maxBodyBytes' });
  }
  // 2. text, truncated to fit; headers go first only if even an empty text would not fit.
  if (json.size() > max && typeof data.text === 'string') {
    const text = data.text;
    json.changed();
    data.text = '';
    if (json.size() > max && Array.isArray(data.headers) && data.headers.length > 0) {
      json.changed();
      data.headers = [];
      omitted.push({ field: 'headers', reason: 'maxBodyBytes' });
    }
    // Reserve room for the omission entry we are about to add.
    omitted.push({ field: 'text', reason: 'truncated to fit maxBodyBytes' });
    json.changed();
    const budget = max - (json.size() - 2);
    json.changed();
    if (budget >= MIN_TRUNCATED_TEXT_BYTES) {
      data.text = truncateToJsonBytes(text, budget);
      data.textTruncated = true;
    } else {
      data.text = null;
      data.textTruncated = true;
      (omitted.at(-1) as Omission).reason = 'maxBodyBytes';
    }
  }
  // 3. headers (full payloads), then the attachment list.
  if (json.size() > max && Array.isArray(data.headers) && data.headers.length > 0) {
    json.changed();
    data.headers = [];
    omitted.push({ field: 'headers', reason: 'maxBodyBytes' });
  }
  if (json.size() > max && attachments.length > 0) {
    json.changed();
    data.attachments = [];
    omitted.push({ field: 'attachments', reason: 'maxBodyBytes; see links.raw' });
  }

  // 4. Inline small attachments (full only) while they fit; the rest are named in `omitted`.
  if (mode === 'full' && delivery.inlineAttachmentMaxBytes > 0 && data.attachments === attachments) {
    for (const a of attachments) {
      const field = `attachments[${a.index}].content`;
      if (a.size > delivery.inlineAttachmentMaxBytes) {
        json.changed();
        omitted.push({ field, reason: 'larger than inlineAttachmentMaxBytes' });
        continue;
      }
      const entry: Omission = { field, reason: 'would exceed maxBodyBytes' };
      // Predict before reading: base64 length plus the property, and the omission we would add instead.
      const predicted = Buffer.byteLength(',"content":""') + 4 * Math.ceil(a.size / 3);
      if (json.size() + predicted > max) {
        json.changed();
        omitted.push(entry);
        continue;
      }
      let bytes: Buffer;
      try {
        bytes = await archive.getBytes(a.key);
      } catch {
        json.changed();
        omitted.push({ field, reason: 'could not be read from the archive' });
        continue;
      }
      json.changed();
      a.content = bytes.toString('base64');
      if (json.size() > max) {
        json.changed();
        delete a.content;
        omitted.push(entry);
      }
    }
  }
  return finish(body, omitted, max, json.size() <= max ? json.text : undefined);
}

/** The body's JSON, kept until the body changes (`changed`). */
class SerialisedBody {
  text: string | undefined;
  constructor(private readonly body: unknown) {}
  changed(): void {
    this.text = undefined;
  }
  /** Bytes of the body's JSON, serialising only if it changed since the last call. */
  size(): number {
    if (this.text === undefined) this.text = JSON.stringify(this.body);
    return Buffer.byteLength(this.text, 'utf8');
  }
}

function finish(
  body: { type: string; timestamp: string; data: Json },
  omitted: Omission[],
  max: number,
  serialised?: string,
) {
  let text = serialised ?? JSON.stringify(body);
  let bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > max) {
    // Last resort: identity, raw info and links are small and bounded; the receiver fetches the rest.
    const d = body.data;
    const minimalOmitted: Omission[] = [
      { field: 'data', reason: 'maxBodyBytes; only identity and links kept' },
    ];
    const minimal = {
      type: body.type,
      timestamp: body.timestamp,
      data: {
        version: d.version,
        eventId: d.eventId,
        messageKey: d.messageKey,
        mailboxId: d.mailboxId,
        receivedAt: d.receivedAt,
        ...(d.raw ? { raw: d.raw } : {}),
        ...(d.links ? { links: d.links } : {}),
        omitted: minimalOmitted,
      },
    };
    text = JSON.stringify(minimal);
    bytes = Buffer.byteLength(text, 'utf8');
    return { body: text, bytes, omitted: minimalOmitted };
  }
  return { body: text, bytes, omitted };
}

/**
 * The `full` body built from the archived text instead of a fresh JSON.stringify of the whole event:
 * `{"type":...,"timestamp":...,"data":` + the archived `data` text without its closing brace +
 * `,"links":...,"omitted":...}}`. The general path appends `links` and `omitted` to `{ ...data }`
 * in that order, so the two are the same JSON (byte for byte when the archive holds
 * JSON.stringify output; tests prove it). Returns undefined, for the general path, unless the text
 * is exactly `{"type":"email.received","data":{...}}` (prefix checked, and the data object must end
 * just before the final brace, so nothing else hides in the text), `data` has no `links` or
 * `omitted` of its own, and no attachment changes (no links issued, nothing to inline).
 */
function spliceFullBody(
  eventJson: string,
  source: EmailReceivedData,
  { attachments, links, omitted }: Linked,
  delivery: PayloadOptions['delivery'],
): Spliced | undefined {
  if (!eventJson.startsWith(RECEIVED_PREFIX) || typeof source.receivedAt !== 'string') return undefined;
  if (Object.hasOwn(source, 'links') || Object.hasOwn(source, 'omitted')) return undefined;
  if (attachments.length > 0 && (delivery.inlineAttachmentMaxBytes > 0 || attachments.some((a) => a.url))) {
    return undefined;
  }
  const start = RECEIVED_PREFIX.length - 1;
  const end = eventJson.length - 2; // the data object's closing brace, before the root's
  if (eventJson.charCodeAt(end + 1) !== CLOSE_BRACE || objectEnd(eventJson, start) !== end) return undefined;
  const head = `{"type":"email.received","timestamp":${JSON.stringify(source.receivedAt)},"data":`;
  const tail = links.raw === undefined ? LOCAL_TAIL_TEXT : tailOf({ links, omitted });
  return { body: `${head}${eventJson.slice(start, end)}${tail}`, head, tail, start, end };
}

/** `,"links":...,"omitted":...}}`: one stringify of both, reused without its opening brace. */
const tailOf = ({ links, omitted }: Pick<Linked, 'links' | 'omitted'>) =>
  `,${JSON.stringify({ links, omitted }).slice(1)}}`;
/**
 * The tail when the archive issues no links (local mode): always the same, so made once. (Without a
 * raw link no other omission is added: see linkParts.)
 */
const LOCAL_TAIL_TEXT = tailOf({ links: {}, omitted: [{ field: 'links.raw', reason: LOCAL_MODE_LINKS }] });
const LOCAL_TAIL = Buffer.from(LOCAL_TAIL_TEXT, 'utf8');
const HEAD_START = Buffer.from('{"type":"email.received","timestamp":', 'utf8');
const HEAD_DATA = Buffer.from(',"data":', 'utf8');

interface Spliced {
  body: string;
  head: string;
  tail: string;
  /** The archived data object is eventJson[start, end] (end: its closing brace, left out). */
  start: number;
  end: number;
}

/**
 * The spliced body as bytes: head, the archived bytes of `data`, tail. Only when those bytes decode
 * to exactly the text spliced (valid UTF-8; the prefix and the closing braces are ASCII, so character
 * and byte offsets agree at both ends).
 */
function spliceBytes(spliced: Spliced, eventBytes: Buffer | undefined): Buffer | undefined {
  if (!eventBytes || !isUtf8(eventBytes)) return undefined;
  const endByte = eventBytes.length - 2;
  if (eventBytes[endByte] !== CLOSE_BRACE || eventBytes[endByte + 1] !== CLOSE_BRACE) return undefined;
  const head = Buffer.from(spliced.head, 'utf8');
  const tail = Buffer.from(spliced.tail, 'utf8');
  const data = eventBytes.subarray(spliced.start, endByte);
  return Buffer.concat([head, data, tail], head.length + data.length + tail.length);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * Index of the brace closing the object that opens at `start`, in text already known to be valid JSON
 * (it was parsed); -1 if it does not close. Strings are skipped with indexOf, so the cost is per
 * string, not per character of mail text.
 */
export function objectEnd(text: string, start: number): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let close = text.indexOf('"', i + 1);
      // A quote preceded by an odd number of backslashes is escaped, not the end of the string.
      while (close !== -1) {
        let slashes = 0;
        while (text.charCodeAt(close - 1 - slashes) === BACKSLASH) slashes++;
        if (slashes % 2 === 0) break;
        close = text.indexOf('"', close + 1);
      }
      if (close === -1) return -1;
      i = close;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
      if (depth === 0) return c === CLOSE_BRACE ? i : -1;
    }
  }
  return -1;
}

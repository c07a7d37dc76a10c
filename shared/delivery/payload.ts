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
import type { DeliveryConfig } from '../config/schema.js';
import type { AttachmentInfo, EmailReceivedData, PophookEvent } from '../mail/event.js';
import type { Archive } from '../storage/archive.js';

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
}

export interface BuiltPayload {
  /** The exact JSON sent and signed. */
  body: string;
  bytes: number;
  omitted: Omission[];
}

type Json = Record<string, unknown>;
type AttachmentOut = AttachmentInfo & Partial<Link> & { content?: string };

const byteLength = (value: unknown) => Buffer.byteLength(JSON.stringify(value), 'utf8');

async function link(
  archive: PayloadOptions['archive'],
  key: string,
  expirySeconds: number,
  nowMs: number,
): Promise<Link | undefined> {
  const url = await archive.linkFor(key, expirySeconds);
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
  const { delivery, archive, nowMs, mode } = options;
  const max = delivery.maxBodyBytes;
  const omitted: Omission[] = [];
  const body: { type: string; timestamp: string; data: Json } = {
    type: event.type,
    timestamp: event.data.receivedAt,
    data: {},
  };
  // Serialising is the main cost of a delivery: keep the last result until something changes, so a
  // body under the cap is stringified once.
  let serialised: string | undefined;
  const changed = () => {
    serialised = undefined;
  };
  const size = () => {
    if (serialised === undefined) serialised = JSON.stringify(body);
    return Buffer.byteLength(serialised, 'utf8');
  };

  if (event.type === 'email.skipped') {
    body.data = { ...event.data, omitted };
    return finish(body, omitted, max, size() <= max ? serialised : undefined);
  }

  const source = event.data;
  const data: Json = mode === 'full' ? { ...source } : thinData(source);
  body.data = data;

  const expiry = delivery.linkExpirySeconds;
  const rawLink = await link(archive, source.raw.key, expiry, nowMs);
  const links: Json = {};
  if (rawLink) links.raw = rawLink;
  else omitted.push({ field: 'links.raw', reason: 'the archive issues no links (local mode)' });
  data.links = links;

  const attachments: AttachmentOut[] = await Promise.all(
    source.attachments.map(async (a) => {
      const l = await link(archive, a.key, expiry, nowMs);
      return l ? { ...a, ...l } : { ...a };
    }),
  );
  if (attachments.some((a) => !a.url) && rawLink) {
    omitted.push({ field: 'attachments[].url', reason: 'the archive issued no link' });
  }
  data.attachments = attachments;
  data.omitted = omitted;

  // 1. html goes first: text carries the same content in a fraction of the bytes.
  if (size() > max && data.html !== undefined && data.html !== null) {
    changed();
    data.html = null;
    data.htmlTruncated = true;
    omitted.push({ field: 'html', reason: 'maxBodyBytes' });
  }
  // 2. text, truncated to fit; headers go first only if even an empty text would not fit.
  if (size() > max && typeof data.text === 'string') {
    const text = data.text;
    changed();
    data.text = '';
    if (size() > max && Array.isArray(data.headers) && data.headers.length > 0) {
      changed();
      data.headers = [];
      omitted.push({ field: 'headers', reason: 'maxBodyBytes' });
    }
    // Reserve room for the omission entry we are about to add.
    omitted.push({ field: 'text', reason: 'truncated to fit maxBodyBytes' });
    changed();
    const budget = max - (size() - 2);
    changed();
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
  if (size() > max && Array.isArray(data.headers) && data.headers.length > 0) {
    changed();
    data.headers = [];
    omitted.push({ field: 'headers', reason: 'maxBodyBytes' });
  }
  if (size() > max && attachments.length > 0) {
    changed();
    data.attachments = [];
    omitted.push({ field: 'attachments', reason: 'maxBodyBytes; see links.raw' });
  }

  // 4. Inline small attachments (full only) while they fit; the rest are named in `omitted`.
  if (mode === 'full' && delivery.inlineAttachmentMaxBytes > 0 && data.attachments === attachments) {
    for (const a of attachments) {
      const field = `attachments[${a.index}].content`;
      if (a.size > delivery.inlineAttachmentMaxBytes) {
        changed();
        omitted.push({ field, reason: 'larger than inlineAttachmentMaxBytes' });
        continue;
      }
      const entry: Omission = { field, reason: 'would exceed maxBodyBytes' };
      // Predict before reading: base64 length plus the property, and the omission we would add instead.
      const predicted = Buffer.byteLength(',"content":""') + 4 * Math.ceil(a.size / 3);
      if (size() + predicted > max) {
        changed();
        omitted.push(entry);
        continue;
      }
      let bytes: Buffer;
      try {
        bytes = await archive.getBytes(a.key);
      } catch {
        changed();
        omitted.push({ field, reason: 'could not be read from the archive' });
        continue;
      }
      changed();
      a.content = bytes.toString('base64');
      if (size() > max) {
        changed();
        delete a.content;
        omitted.push(entry);
      }
    }
  }
  return finish(body, omitted, max, size() <= max ? serialised : undefined);
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

/**
 * From raw message bytes to the `email.received` event, with bounded memory and time.
 *
 * mailparser's streaming `MailParser` does the MIME work: attachments come out as streams that go
 * straight to the archive (never buffered), text and HTML bodies are decoded into memory but only up
 * to what the event can hold. The top-level header block is read from the raw bytes on the side, so
 * the event keeps its headers when the parser gives up later.
 *
 * The raw message comes either as a stream (memory bounded whatever its size) or, when the caller
 * already holds it, as one Buffer (`bytes`): the same parse without the stream plumbing in front.
 * Both feed mailparser's splitter directly and give the same event.
 *
 * Bad mail never makes `parseMessage` throw: it returns what it could read with `parseError` set
 * (the raw message is archived and delivered either way). It throws only for infrastructure failures,
 * which are transient: `deps.writeAttachment` failing, or the source stream erroring.
 */
import type { Readable, Transform } from 'node:stream';
import { Writable } from 'node:stream';
import type { AttachmentStream, MailParserOptions, MessageText } from 'mailparser';
import { MailParser } from 'mailparser';
import type { ParseConfig } from '../config/schema.js';
import { PophookError } from '../errors.js';
import type { Logger } from '../log.js';
import { sanitizeForeignText } from '../sanitize.js';
import { parseAddressList } from './addresses.js';
import { extractAuthResults } from './auth-results.js';
import type { AttachmentInfo, EmailReceivedData, RawInfo } from './event.js';
import { EVENT_VERSION } from './event.js';
import {
  allRaw,
  CharsetWarnings,
  extractMessageIds,
  firstRaw,
  HeaderBlockCollector,
  parseDateHeader,
  parseHeaderBlock,
  toSafeString,
  truncateChars,
} from './headers.js';
import {
  ATTACHMENT_ABORT_GRACE_MS,
  MAX_FILENAME_CHARS,
  MAX_HEADER_LINES,
  MAX_PART_META_CHARS,
  ParseErrorCode,
  type ParseLimits,
  resolveParseLimits,
} from './limits.js';
import { extractSpam } from './spam.js';

export interface AttachmentMeta {
  /** The name the sender gave, sanitised of control characters; unsafe for paths (use attachmentKey). */
  filename: string | null;
  contentType: string;
  contentId: string | null;
  disposition: 'attachment' | 'inline' | null;
}

export interface ParseDeps {
  /**
   * Stores one attachment's decoded bytes, consuming `content` to the end. Called in attachment
   * order, one at a time. A rejection is treated as an infrastructure failure and rethrown.
   */
  writeAttachment(
    index: number,
    meta: AttachmentMeta,
    content: Readable,
  ): Promise<{ key: string; size: number; sha256: string }>;
  logger?: Logger;
}

/** What every parse needs besides the raw message. */
export interface ParseInputBase {
  mailboxId: string;
  messageKey: string;
  eventId: string;
  uidl: string | null;
  receivedAt: string;
  raw: RawInfo;
  /** A `ParseConfig`; missing fields take the documented defaults. */
  limits: ParseConfig;
}

/** The raw message as a stream: memory stays bounded whatever its size. */
export interface ParseInput extends ParseInputBase {
  /** The raw message. Consumed; destroyed when parsing stops early (limit, timeout, failure). */
  source: Readable;
  bytes?: undefined;
}

/**
 * The raw message already in memory (a small message just downloaded): the same parse and the same
 * event as the stream path, without the stream plumbing in front of the parser. Never modified.
 */
export interface BytesParseInput extends ParseInputBase {
  /** The whole raw message. Only for messages the caller holds anyway: it is not streamed. */
  bytes: Buffer;
  source?: undefined;
}

/** One message to parse: exactly one of `source` (a stream) or `bytes` (the whole message). */
export type ParseMessageInput = ParseInput | BytesParseInput;

/** Reading the raw message failed (archive or network). Transient: parse again later. */
export class MailSourceError extends PophookError {
  constructor(options: { cause?: unknown } = {}) {
    super(
      'PARSE_SOURCE_FAILED',
      'Reading the raw message for parsing failed; the message will be parsed again on the next attempt.',
      options,
      true,
    );
  }
}

/**
 * Parses one message. Resolves with the event (possibly with `parseError`) for any input; rejects
 * only when `writeAttachment` fails (its error, unchanged) or the source stream errors (MailSourceError).
 * `bytes` and a `source` stream with the same bytes give the same event.
 */
export async function parseMessage(input: ParseMessageInput, deps: ParseDeps): Promise<EmailReceivedData> {
  return new ParseRun(input, deps, resolveParseLimits(input.limits)).run();
}

/** The log line of every finished parse (debug), and of one that ended with `parseError` (warn). */
const PARSED_LOG = 'mail parsed';
const PARSE_INCOMPLETE_LOG = 'mail parse incomplete';

/** A limit or timeout stopped parsing. Internal: it becomes `parseError`, never escapes. */
class ParseStop extends Error {
  constructor(
    readonly code: ParseErrorCode,
    message: string,
  ) {
    super(message);
  }
}

// The parts of mailparser/mailsplit we hook into. Not in mailparser's public typings (they are marked
// internal), so parse.test.ts fails loudly if an upgrade renames them.
interface SplitterNode {
  contentType?: string | false;
  parentNode?: SplitterNode | false | null;
}
interface SplitterChunk {
  type: 'node' | 'body' | 'data';
  value?: Buffer;
  parentNode?: SplitterNode;
}
interface TreeNode {
  contentType?: string;
  charset?: string;
  isAttachment?: boolean;
  decoder?: Writable;
  headerLines?: HeaderLineRecord[];
}
interface HeaderLineRecord {
  key: string;
  line: string;
}
interface MailParserInternals {
  processChunk(data: SplitterChunk, done: (err?: Error | null) => void): void;
  createNode(node: SplitterNode): TreeNode;
  processHeaders(lines: HeaderLineRecord[] | undefined): unknown;
  getTextContent(): MessageText;
  curnode: TreeNode | false;
  splitter: Transform;
  chunkedPassthrough: Transform;
}

// Why: mailparser's own ChunkedPassthrough hands its splitter 64 KiB chunks; we feed the splitter
// directly with chunks at least that big, so a source that delivers a line at a time costs no more
// per byte, and the splitter sees the chunks it always saw.
const PARSER_CHUNK_BYTES = 64 * 1024;

const TEXT_TYPES = new Set(['text/plain', 'text/html', 'message/delivery-status']);
// Part headers whose parameters (names, charsets) are decoded with a charset label of their own.
const PART_LABEL_HEADERS = new Set(['content-type', 'content-disposition', 'content-description']);
// RFC 2231 extended parameter: filename*=charset'lang'value
const RFC2231_CHARSET = /\*(?:\d+\*)?\s*=\s*"?([\w\-_.:]+)'/g;

/** Verifies that this mailparser still has the internals we hook; throws at first use if not. */
export function assertMailParserCompatible(): void {
  const probe = new MailParser() as unknown as Partial<MailParserInternals>;
  for (const name of ['processChunk', 'createNode', 'processHeaders', 'getTextContent'] as const) {
    if (typeof probe[name] !== 'function') {
      throw new Error(`mailparser no longer has ${name}(); shared/mail/parse.ts needs updating`);
    }
  }
  if (!probe.splitter || !probe.chunkedPassthrough) {
    throw new Error('mailparser no longer has its splitter; shared/mail/parse.ts needs updating');
  }
}

class ParseRun {
  private readonly collector: HeaderBlockCollector;
  private readonly charsets = new CharsetWarnings();
  private readonly parser: MailParser;
  private readonly internals: MailParserInternals;
  private readonly attachments: AttachmentInfo[] = [];
  private readonly started = Date.now();
  private childLogger: Logger | undefined;

  private attachmentCount = 0;
  private parts = 0;
  private textResult: MessageText | undefined;
  private parseError: { code: string; message: string } | null = null;
  private sourceEnded = false;
  private sawPlainText = false;
  private readonly rawBudget: { text: number; html: number };
  private readonly rawTruncated = { text: false, html: false };
  /** The first error of an attachment's decoder: the message's bytes, not the writer, failed. */
  private decodeError: unknown;

  private inflight: Promise<void> | undefined;
  private finishing: Promise<void> | undefined;
  private currentContent: Readable | undefined;
  private stopping = false;
  private settled = false;
  private timer: NodeJS.Timeout | undefined;
  private resolve!: (event: EmailReceivedData) => void;
  private reject!: (err: unknown) => void;

  constructor(
    private readonly input: ParseMessageInput,
    private readonly deps: ParseDeps,
    private readonly limits: ParseLimits,
  ) {
    this.collector = new HeaderBlockCollector(limits.maxHeaderBytes);
    this.rawBudget = { text: limits.maxRawTextBytes, html: limits.maxRawTextBytes };
    this.parser = new MailParser(parserOptions(limits));
    this.internals = this.parser as unknown as MailParserInternals;
    this.hookParser();
  }

  /** The caller's logger with the message's ids; made only when something is logged. */
  private get logger(): Logger | undefined {
    if (!this.childLogger && this.deps.logger) {
      this.childLogger = this.deps.logger.child({
        mailboxId: this.input.mailboxId,
        messageKey: this.input.messageKey,
      });
    }
    return this.childLogger;
  }

  run(): Promise<EmailReceivedData> {
    return new Promise<EmailReceivedData>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.timer = setTimeout(() => {
        this.stop(
          new ParseStop(ParseErrorCode.timeout, `parsing took longer than ${this.limits.timeoutMs} ms`),
        );
      }, this.limits.timeoutMs);
      this.parser.on('error', (err: Error) => this.stop(err));
      this.parser.on('data', (data: AttachmentStream | MessageText) => this.onData(data));
      this.parser.on('end', () => this.finish());
      const { bytes, source } = this.input;
      if (bytes) this.feedBytes(bytes);
      else this.feedStream(source);
    });
  }

  /**
   * The whole message at once: straight into mailparser's splitter, which takes its own bounded steps
   * through it (mailparser's ChunkedPassthrough in front would only copy it).
   */
  private feedBytes(bytes: Buffer): void {
    this.collector.push(bytes);
    this.sourceEnded = true;
    if (bytes.length) this.internals.splitter.write(bytes);
    this.parser.end();
  }

  /**
   * Reads the source into the splitter in chunks of at least PARSER_CHUNK_BYTES, the ones mailparser's
   * ChunkedPassthrough would make, with backpressure; the header block is collected on the way.
   */
  private feedStream(source: Readable): void {
    const splitter = this.internals.splitter;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const take = (): Buffer => {
      const joined = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      return joined;
    };
    // These listeners stay attached for good: a stream we destroyed may still emit a late error,
    // and an 'error' without a listener would crash the process.
    source.on('error', (err) => this.failInfrastructure(new MailSourceError({ cause: err })));
    source.on('data', (data: Buffer | Uint8Array | string) => {
      if (this.stopping) return;
      const chunk = toBuffer(data);
      if (chunk.length === 0) return;
      this.collector.push(chunk);
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= PARSER_CHUNK_BYTES && !splitter.write(take())) source.pause();
    });
    splitter.on('drain', () => {
      if (!this.stopping) source.resume();
    });
    source.once('end', () => {
      this.sourceEnded = true;
      if (this.stopping) return;
      if (pendingBytes) splitter.write(take());
      this.parser.end();
    });
  }

  /** Enforces the part count, nesting depth and body budgets inside mailparser's chunk loop. */
  private hookParser(): void {
    const internals = this.internals;
    const processChunk = internals.processChunk.bind(this.parser);
    const createNode = internals.createNode.bind(this.parser);
    const processHeaders = internals.processHeaders.bind(this.parser);
    let showMeta = false;
    internals.processChunk = (data, done) => {
      // After a stop nothing more is processed; the loop simply ends and the parser is collected.
      if (this.stopping || this.settled) return;
      if (data.type === 'node') {
        this.parts += 1;
        if (this.parts > this.limits.maxParts) {
          done(new ParseStop(ParseErrorCode.parts, `more than ${this.limits.maxParts} MIME parts`));
          return;
        }
        if (nodeDepth(data) > this.limits.maxDepth) {
          done(
            new ParseStop(
              ParseErrorCode.depth,
              `MIME parts nested deeper than ${this.limits.maxDepth} levels`,
            ),
          );
          return;
        }
      } else if (data.type === 'body' && data.value) {
        const node = internals.curnode;
        if (node && !node.isAttachment && node.decoder && TEXT_TYPES.has(node.contentType ?? '')) {
          const kind = node.contentType === 'text/html' ? 'html' : 'text';
          const remaining = this.rawBudget[kind];
          if (data.value.length > remaining) {
            // Past what the event can hold: stop decoding this body (mailparser buffers bodies whole).
            this.rawTruncated[kind] = true;
            if (remaining <= 0) {
              setImmediate(done);
              return;
            }
            data.value = data.value.subarray(0, remaining);
          }
          this.rawBudget[kind] -= data.value.length;
        }
      }
      processChunk(data, done);
    };
    internals.processHeaders = (lines) => {
      // mailparser decodes every header of every part (addresses, dates, lists) into a map that only
      // its own result object reads; the event is built from the raw header block instead. What the
      // text and the attachments do read: Content-ID, and the From/To/Subject/Date block it writes
      // into the text for a message/rfc822 part.
      return processHeaders(showMeta ? lines : lines?.filter((line) => line.key === 'content-id'));
    };
    internals.createNode = (node) => {
      showMeta = isPartOfRfc822(node);
      const created = createNode(node);
      for (const line of created.headerLines ?? []) {
        if (!PART_LABEL_HEADERS.has(line.key)) continue;
        this.charsets.checkEncodedWords(line.line);
        for (const match of line.line.matchAll(RFC2231_CHARSET)) this.charsets.checkLabel(match[1]);
      }
      if (!created.isAttachment && TEXT_TYPES.has(created.contentType ?? '')) {
        if (created.contentType !== 'text/html') this.sawPlainText = true;
        this.charsets.checkLabel(created.charset);
      }
      const decoder = created.decoder;
      if (decoder) {
        // mailparser ends the decoder of the last part twice (after its body and at the end of the
        // message); the second end() only builds an ERR_STREAM_ALREADY_FINISHED nobody sees, and that
        // stack capture was a visible share of the parse.
        if (decoder.end === writableEnd) decoder.end = endOnce;
        if (created.isAttachment) {
          decoder.on('error', (err: unknown) => {
            this.decodeError ??= err;
          });
        }
      }
      return created;
    };
  }

  private onData(data: AttachmentStream | MessageText): void {
    if (this.settled || this.stopping) return;
    if (data.type === 'text') {
      this.textResult = data;
      return;
    }
    const index = this.attachmentCount++;
    const content = data.content;
    // A writer that never listens must not turn our destroy() on stop into an uncaught 'error'.
    content.on('error', () => {});
    this.currentContent = content;
    const meta = attachmentMeta(data);
    let write: Promise<{ key: string; size: number; sha256: string }>;
    try {
      write = this.deps.writeAttachment(index, meta, content);
    } catch (err) {
      write = Promise.reject(err);
    }
    this.inflight = write.then(
      (stored) => {
        this.currentContent = undefined;
        this.inflight = undefined;
        this.attachments.push({
          index,
          filename: meta.filename,
          contentType: meta.contentType,
          size: stored.size,
          sha256: stored.sha256,
          contentId: meta.contentId,
          disposition: meta.disposition,
          key: stored.key,
        });
        if (this.stopping) return;
        try {
          data.release?.();
        } catch (err) {
          this.stop(err);
        }
      },
      (err: unknown) => {
        this.currentContent = undefined;
        this.inflight = undefined;
        // We destroyed the stream (timeout, limit): the writer failing is expected, not an outage.
        if (this.stopping || this.settled) return;
        if (this.decodeError !== undefined) {
          // The message's bytes broke the decoder (it errors the content stream the writer reads),
          // not the archive: a parse failure.
          this.stop(this.decodeError);
          return;
        }
        this.failInfrastructure(err);
      },
    );
  }

  /** Stops parsing because of the message (limit, timeout, malformed); resolves with a partial event. */
  private stop(reason: unknown): void {
    if (this.settled || this.stopping) return;
    this.stopping = true;
    this.parseError ??= classifyError(reason);
    const content = this.currentContent;
    this.teardown();
    content?.destroy(new Error('parsing stopped'));
    this.finish();
  }

  private failInfrastructure(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.stopping = true;
    clearTimeout(this.timer);
    this.currentContent?.destroy(new Error('parsing stopped'));
    this.teardown();
    this.logger?.error('mail parse infrastructure failure', { err, eventId: this.input.eventId });
    this.reject(err);
  }

  private teardown(): void {
    clearTimeout(this.timer);
    const { source } = this.input;
    if (source && !this.sourceEnded) source.destroy();
    this.parser.destroy();
    this.internals.chunkedPassthrough.destroy();
    this.internals.splitter.destroy();
  }

  private finish(): void {
    // settle() handles its own failures; this catch is only a guard against a bug leaving a hang.
    this.finishing ??= this.settle().catch((err: unknown) => this.failInfrastructure(err));
  }

  private async settle(): Promise<void> {
    if (this.settled) return;
    const inflight = this.inflight;
    if (inflight) {
      // An attachment write still running: on a normal end it is nearly done; after a stop it got a
      // destroyed stream and should reject promptly. Bounded either way.
      let writeSettled = false;
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([
        inflight.then(() => {
          writeSettled = true;
        }),
        new Promise<void>((resolve) => {
          grace = setTimeout(resolve, this.stopping ? ATTACHMENT_ABORT_GRACE_MS : this.remainingMs());
        }),
      ]);
      clearTimeout(grace);
      if (!writeSettled && !this.stopping) {
        this.stop(
          new ParseStop(ParseErrorCode.timeout, `parsing took longer than ${this.limits.timeoutMs} ms`),
        );
      }
    }
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    if (!this.stopping) this.teardown();
    let event: EmailReceivedData;
    try {
      event = this.buildEvent();
    } catch (err) {
      // A bug in our own mapping must not lose the message: report it as a parse error.
      this.parseError ??= classifyError(err);
      event = this.buildMinimalEvent();
    }
    const durationMs = Date.now() - this.started;
    if (event.parseError) {
      this.logger?.warn(PARSE_INCOMPLETE_LOG, { code: event.parseError.code, durationMs });
    } else {
      this.logger?.debug(PARSED_LOG, { durationMs, attachments: event.attachments.length });
    }
    this.resolve(event);
  }

  private remainingMs(): number {
    return Math.max(0, this.limits.timeoutMs - (Date.now() - this.started));
  }

  private buildEvent(): EmailReceivedData {
    const input = this.input;
    const complete = this.collector.complete || (!this.collector.exceeded && this.sourceEnded);
    const block = parseHeaderBlock(this.collector.bytes(), complete, this.charsets);
    if (this.collector.exceeded) {
      this.parseError ??= {
        code: ParseErrorCode.headers,
        message: `header block larger than ${this.limits.maxHeaderBytes} bytes`,
      };
    } else if (block.dropped > 0) {
      this.parseError ??= {
        code: ParseErrorCode.headers,
        message: `more than ${MAX_HEADER_LINES} header fields; the rest are only in the raw message`,
      };
    }

    const text = this.collectText();
    const raw = block.raw;
    // `headers` is `raw` decoded entry by entry: the first Subject is already decoded there.
    const subjectIndex = raw.findIndex((h) => h.name === 'subject');
    const messageIds = extractMessageIds(firstRaw(raw, 'message-id'), 1);
    const inReplyTo = extractMessageIds(firstRaw(raw, 'in-reply-to'), 1);
    return {
      version: EVENT_VERSION,
      eventId: input.eventId,
      messageKey: input.messageKey,
      mailboxId: input.mailboxId,
      uidl: input.uidl,
      receivedAt: input.receivedAt,
      date: parseDateHeader(firstRaw(raw, 'date')),
      messageId: messageIds[0] ?? null,
      inReplyTo: inReplyTo[0] ?? null,
      references: extractMessageIds(allRaw(raw, 'references').join(' ')),
      subject: subjectIndex < 0 ? null : (block.headers[subjectIndex]?.value ?? null),
      // From and Reply-To may appear once (RFC 5322 §3.6); the first occurrence is the one clients show.
      from: parseAddressList(allRaw(raw, 'from').slice(0, 1)),
      to: parseAddressList(allRaw(raw, 'to')),
      cc: parseAddressList(allRaw(raw, 'cc')),
      bcc: parseAddressList(allRaw(raw, 'bcc')),
      replyTo: parseAddressList(allRaw(raw, 'reply-to').slice(0, 1)),
      text: text.text,
      textTruncated: text.textTruncated,
      html: text.html,
      htmlTruncated: text.htmlTruncated,
      headers: block.headers,
      attachments: [...this.attachments].sort((a, b) => a.index - b.index),
      raw: { ...input.raw },
      authResults: extractAuthResults(block.headers),
      spam: extractSpam(block.headers),
      charsetWarnings: this.charsets.list(),
      parseError: this.parseError,
    };
  }

  /** Text and HTML, cut at maxBodyChars. After a stop, whatever bodies were fully read. */
  private collectText(): {
    text: string | null;
    html: string | null;
    textTruncated: boolean;
    htmlTruncated: boolean;
  } {
    let result = this.textResult;
    if (!result && this.parseError && this.parseError.code !== ParseErrorCode.timeout) {
      // mailparser only emits text at the end; after a limit stop, assemble the parts read so far.
      try {
        result = this.internals.getTextContent();
      } catch {
        result = undefined;
      }
    }
    if (result?.textConversionError) {
      this.logger?.warn('mail html to text skipped', {
        reason: sanitizeForeignText(result.textConversionError.message),
      });
    }
    const max = this.limits.maxBodyChars;
    const text = result?.text;
    const html = result?.html;
    return {
      text: text === undefined ? null : toSafeString(truncateChars(text, max)),
      html: html === undefined ? null : toSafeString(truncateChars(html, max)),
      textTruncated:
        text !== undefined &&
        (text.length > max || this.rawTruncated.text || (this.rawTruncated.html && !this.sawPlainText)),
      htmlTruncated: html !== undefined && (html.length > max || this.rawTruncated.html),
    };
  }

  private buildMinimalEvent(): EmailReceivedData {
    const input = this.input;
    return {
      version: EVENT_VERSION,
      eventId: input.eventId,
      messageKey: input.messageKey,
      mailboxId: input.mailboxId,
      uidl: input.uidl,
      receivedAt: input.receivedAt,
      date: null,
      messageId: null,
      inReplyTo: null,
      references: [],
      subject: null,
      from: [],
      to: [],
      cc: [],
      bcc: [],
      replyTo: [],
      text: null,
      textTruncated: false,
      html: null,
      htmlTruncated: false,
      headers: [],
      attachments: [...this.attachments],
      raw: { ...input.raw },
      authResults: null,
      spam: null,
      charsetWarnings: this.charsets.list(),
      parseError: this.parseError,
    };
  }
}

/** A source chunk as a Buffer, as a byte-mode Writable would have taken it (object-mode sources). */
function toBuffer(data: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function parserOptions(limits: ParseLimits): MailParserOptions {
  return {
    // We want text even for HTML-only mail; html-to-text is bounded by maxHtmlLengthToParse.
    skipHtmlToText: false,
    maxHtmlLengthToParse: limits.maxHtmlToTextChars,
    skipTextToHtml: true,
    skipTextLinks: true,
    skipImageLinks: true,
    // The archive computes SHA-256 while storing; mailparser's MD5 would be wasted work.
    checksumAlgo: false,
    maxHeadSize: limits.maxHeaderBytes,
    // The splitter runs ahead of the parser (it splits whole 64 KiB chunks at once), so its own count
    // is the one that usually fires; ours in processChunk covers the nodes it has already passed on.
    maxChildNodes: limits.maxParts,
  };
}

const writableEnd = Writable.prototype.end;

/** `end()` for a part decoder: a no-op once the stream is ended, as `end()` is apart from its error. */
function endOnce(this: Writable, ...args: unknown[]): Writable {
  if (args.length === 0 && (this.writableEnded || this.destroyed)) return this;
  return (writableEnd as (...a: unknown[]) => Writable).apply(this, args);
}

/** The top node of a message/rfc822 part, whose From/To/Subject/Date mailparser writes into the text. */
function isPartOfRfc822(node: SplitterNode): boolean {
  return !!node.parentNode && node.parentNode.contentType === 'message/rfc822';
}

function nodeDepth(data: SplitterChunk): number {
  let depth = 0;
  for (let node = data.parentNode; node; node = node.parentNode || undefined) depth += 1;
  return depth;
}

function attachmentMeta(data: AttachmentStream): AttachmentMeta {
  const filename = data.filename
    ? toSafeString(data.filename, { singleLine: true, maxChars: MAX_FILENAME_CHARS }).trim()
    : '';
  const contentType = toSafeString((data.contentType || '').toLowerCase(), {
    singleLine: true,
    maxChars: MAX_PART_META_CHARS,
  }).trim();
  const contentId = data.contentId
    ? toSafeString(data.contentId, { singleLine: true, maxChars: MAX_PART_META_CHARS }).trim()
    : '';
  return {
    filename: filename || null,
    contentType: contentType || 'application/octet-stream',
    contentId: contentId || null,
    disposition: dispositionOf(data.contentDisposition),
  };
}

function dispositionOf(value: string | undefined): AttachmentMeta['disposition'] {
  if (!value) return null;
  const v = value.trim().toLowerCase();
  if (v === 'inline') return 'inline';
  // mailparser (RFC 2183 §2.8) treats an unknown disposition as attachment.
  return 'attachment';
}

function classifyError(err: unknown): { code: string; message: string } {
  if (err instanceof ParseStop) return { code: err.code, message: err.message };
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (e?.code === 'EMAXLEN') {
    if (/header/i.test(message))
      return { code: ParseErrorCode.headers, message: 'MIME part header block too large' };
    if (/child nodes/i.test(message)) return { code: ParseErrorCode.parts, message: 'too many MIME parts' };
  }
  return { code: ParseErrorCode.malformed, message: sanitizeForeignText(message) };
}

/**
 * Every bound the mail parser enforces, in one place. The ones a deployment may tune come from
 * `ParseConfig` (the `parse` section of the config file); the rest are fixed here because they only
 * keep the event small and the work bounded, and no legitimate message comes near them.
 */
import { ParseConfig } from '../config/schema.js';

/** The `ParseConfig` defaults, so callers and tests without a config file get the documented limits. */
export const DEFAULT_PARSE_LIMITS: ParseConfig = ParseConfig.parse({});

/** Stable `parseError.code` values. Receivers may switch on them; never rename one. */
export const ParseErrorCode = {
  /** The wall-clock budget (`parse.timeoutMs`) ran out; fields parsed so far are kept. */
  timeout: 'PARSE_TIMEOUT',
  /** More MIME parts than `parse.maxParts`. */
  parts: 'PARSE_LIMIT_PARTS',
  /** MIME parts (multipart or message/rfc822) nested deeper than `parse.maxDepth`. */
  depth: 'PARSE_LIMIT_DEPTH',
  /** A header block larger than `parse.maxHeaderBytes`. */
  headers: 'PARSE_LIMIT_HEADERS',
  /** The MIME parser gave up on the message for any other reason. */
  malformed: 'PARSE_MALFORMED',
} as const;
export type ParseErrorCode = (typeof ParseErrorCode)[keyof typeof ParseErrorCode];

// Why: RFC 5322 puts no cap on header count, but real mail carries 20-150 (long Received chains
// included); thousands only come from abuse, and every one of them is copied into the event.
export const MAX_HEADER_LINES = 1000;

// Why: RFC 5322 lines are at most 998 octets; folded DKIM-Signature, ARC and References headers reach a
// few KiB. Past this a single header is abuse and would dominate the event size.
export const MAX_HEADER_VALUE_CHARS = 16 * 1024;

// Why: a mailing list's To/Cc can list a few hundred recipients; a longer list is carried whole
// in `headers` anyway, and unbounded lists make events huge.
export const MAX_ADDRESSES_PER_FIELD = 500;

// Why: long threads carry 20-50 References ids (clients trim them, RFC 5322 §3.6.4 suggests it).
export const MAX_REFERENCES = 200;

// Why: only a handful of distinct charsets can appear in one honest message; a list is enough to alert.
export const MAX_CHARSET_WARNINGS = 20;

// Why: a charset label is a short token (the longest IANA name is 45 chars); longer text is garbage.
export const MAX_CHARSET_LABEL_CHARS = 64;

// Why: file systems cap names at 255 bytes; anything longer is an attack on whoever displays it.
export const MAX_FILENAME_CHARS = 1024;

// Why: Content-Type and Content-ID values are short tokens; bound what one part can put in the event.
export const MAX_PART_META_CHARS = 1024;

// Why: the worst common body encoding, quoted-printable of 3-byte UTF-8 (CJK), spends ~9.3 encoded
// bytes per decoded character. Decoding this many raw bytes per `maxBodyChars` character is always
// enough to fill the event, and bounds the memory text and HTML bodies take (mailparser buffers
// them whole, unlike attachments).
export const RAW_BYTES_PER_BODY_CHAR = 10;

// Why: on timeout or a parse failure an attachment upload still in flight gets this long to notice its
// destroyed stream and abort cleanly before parseMessage returns, so the caller never races a writer.
export const ATTACHMENT_ABORT_GRACE_MS = 2000;

/** The effective limits for one parse. */
export interface ParseLimits extends ParseConfig {
  /** Encoded bytes of text/plain (and of text/html) parts decoded, across all parts of the message. */
  maxRawTextBytes: number;
  /**
   * Longest HTML handed to html-to-text when a message has no plain text part. It is synchronous
   * and costs ~1 s per MB of markup, so it is bounded by what the event can hold anyway.
   */
  maxHtmlToTextChars: number;
}

/** Fills defaults into a (possibly partial, e.g. hand-written in tests) `ParseConfig`. */
export function resolveParseLimits(config: Partial<ParseConfig> | undefined): ParseLimits {
  // Field by field: runs once per message, and spreading zod's output objects then adding fields
  // costs microseconds. A new ParseConfig field fails to compile here until it is added.
  const c = config ?? {};
  const d = DEFAULT_PARSE_LIMITS;
  const maxBodyChars = c.maxBodyChars ?? d.maxBodyChars;
  const maxRawTextBytes = maxBodyChars * RAW_BYTES_PER_BODY_CHAR;
  return {
    maxBodyChars,
    maxParts: c.maxParts ?? d.maxParts,
    maxDepth: c.maxDepth ?? d.maxDepth,
    maxHeaderBytes: c.maxHeaderBytes ?? d.maxHeaderBytes,
    timeoutMs: c.timeoutMs ?? d.timeoutMs,
    maxRawTextBytes,
    maxHtmlToTextChars: maxRawTextBytes,
  };
}

/**
 * The top-level header block of a message, read straight from the raw bytes (not from the MIME
 * parser), so the event keeps its headers even when the parser gives up later in the message or on
 * the header block itself. Also the string hygiene every text field of the event goes through.
 */
import libmime from 'libmime';
import type { HeaderLine } from './event.js';
import {
  MAX_CHARSET_LABEL_CHARS,
  MAX_CHARSET_WARNINGS,
  MAX_HEADER_LINES,
  MAX_HEADER_VALUE_CHARS,
  MAX_REFERENCES,
} from './limits.js';

// Characters that are not valid in an SQS message or that JSON consumers choke on: C0 controls except
// TAB/LF/CR, DEL and C1 controls, the noncharacters U+FFFE/U+FFFF, and unpaired surrogates.
const UNSAFE_CHARS =
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const LINE_BREAKS_AND_TABS = /[\t\r\n]+/g;

export interface SafeStringOptions {
  /** Also turn TAB, CR and LF into a space (header values, names, filenames). */
  singleLine?: boolean;
  /** Cut to this many UTF-16 code units, never inside a surrogate pair. */
  maxChars?: number;
}

/**
 * Makes foreign text safe for JSON, SQS and logs: lone surrogates, NUL and other control characters
 * (TAB, LF and CR excepted unless `singleLine`) become U+FFFD.
 */
export function toSafeString(input: string, options: SafeStringOptions = {}): string {
  let text = options.maxChars === undefined ? input : truncateChars(input, options.maxChars);
  if (options.singleLine) text = text.replace(LINE_BREAKS_AND_TABS, ' ');
  return text.replace(UNSAFE_CHARS, '\ufffd');
}

/** Cuts `text` to at most `maxChars` UTF-16 code units without leaving half a surrogate pair. */
export function truncateChars(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  let end = Math.max(0, maxChars);
  const last = text.charCodeAt(end - 1);
  if (end > 0 && last >= 0xd800 && last <= 0xdbff) end -= 1;
  return text.slice(0, end);
}

/**
 * Charset labels that the decoder did not know (the text was decoded as UTF-8 instead) or refused
 * (UTF-7, which can smuggle markup), plus `unknown-8bit` for raw non-UTF-8 bytes in headers.
 */
export class CharsetWarnings {
  private readonly seen = new Map<string, boolean>();
  private readonly warnings = new Set<string>();

  /** Records `label` when libmime (mailparser's decoder) cannot decode it. */
  checkLabel(label: string | false | null | undefined): void {
    if (!label) return;
    const key = toSafeString(label.trim().toLowerCase(), {
      singleLine: true,
      maxChars: MAX_CHARSET_LABEL_CHARS,
    });
    if (!key) return;
    let supported = this.seen.get(key);
    if (supported === undefined) {
      supported = isDecodableCharset(key);
      // A per-message cache: labels are attacker-chosen, so this map must not outlive the parse.
      if (this.seen.size < MAX_CHARSET_WARNINGS * 10) this.seen.set(key, supported);
    }
    if (!supported) this.add(key);
  }

  /** Checks the charset of every RFC 2047 encoded word in a raw header value. */
  checkEncodedWords(raw: string): void {
    if (!raw.includes('=?')) return;
    for (const match of raw.matchAll(ENCODED_WORD_CHARSET)) {
      // RFC 2231 §5 allows a language suffix: =?utf-8*en?Q?...?=
      this.checkLabel(match[1]?.split('*')[0]);
      if (this.warnings.size >= MAX_CHARSET_WARNINGS) return;
    }
  }

  add(label: string): void {
    if (this.warnings.size < MAX_CHARSET_WARNINGS) this.warnings.add(label);
  }

  list(): string[] {
    return [...this.warnings];
  }
}

// The same token libmime's decodeWords accepts as an encoded-word charset.
const ENCODED_WORD_CHARSET = /=\?([\w_\-*]+)\?[QqBb]\?/g;
// mailparser passes these straight through as UTF-8 without asking libmime.
const UTF8_PASSTHROUGH = new Set(['ascii', 'usascii', 'utf8']);

function isDecodableCharset(label: string): boolean {
  if (UTF8_PASSTHROUGH.has(label.replace(/[^a-z0-9]+/g, ''))) return true;
  try {
    // `supported` is false for a charset libmime falls back to UTF-8 for, exactly mailparser's view.
    const stream = libmime.createDecodeStream(label);
    const supported = stream.supported;
    stream.destroy();
    return supported;
  } catch {
    return false;
  }
}

/**
 * Collects the bytes of the top-level header block as the message streams past, up to `maxBytes`.
 * The block ends at the first empty line.
 */
export class HeaderBlockCollector {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private tail = Buffer.alloc(0);
  /** True once the empty line ending the block was seen. */
  complete = false;
  /** True when the block was longer than `maxBytes` (what was kept ends mid-block). */
  exceeded = false;

  constructor(private readonly maxBytes: number) {}

  get done(): boolean {
    return this.complete || this.exceeded;
  }

  push(chunk: Buffer): void {
    if (this.done || chunk.length === 0) return;
    if (
      this.length === 0 &&
      this.tail.length === 0 &&
      (chunk[0] === 0x0a || (chunk[0] === 0x0d && chunk[1] === 0x0a))
    ) {
      // The message starts with an empty line: it has no header block at all.
      this.complete = true;
      return;
    }
    // Search the previous chunk's last bytes too, so an empty line split across chunks is found.
    const window = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    const end = findHeaderEnd(window);
    let take = end >= 0 ? end - this.tail.length : chunk.length;
    if (end >= 0) this.complete = true;
    if (this.length + take > this.maxBytes) {
      take = this.maxBytes - this.length;
      this.complete = false;
      this.exceeded = true;
    }
    if (take > 0) {
      this.chunks.push(Buffer.from(chunk.subarray(0, take)));
      this.length += take;
    }
    this.tail = Buffer.from(window.subarray(Math.max(0, window.length - 2)));
  }

  /** The header block collected so far (without the empty line that ends it). */
  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

/** Offset just after the LF that ends the last header line, or -1 when no empty line is in `buf`. */
function findHeaderEnd(buf: Buffer): number {
  const a = buf.indexOf('\n\n');
  const b = buf.indexOf('\n\r\n');
  if (a < 0 && b < 0) return -1;
  if (a < 0) return b + 1;
  if (b < 0) return a + 1;
  return Math.min(a, b) + 1;
}

/** One header as it appeared: name lower-cased, value unfolded but not RFC 2047 decoded. */
export interface RawHeader {
  name: string;
  raw: string;
}

export interface ParsedHeaderBlock {
  raw: RawHeader[];
  headers: HeaderLine[];
  /** Header fields past `MAX_HEADER_LINES` that were left out. */
  dropped: number;
}

// Stateless when used without `stream`, so one instance serves every message.
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

// RFC 5322 §3.6.8 ftext: printable ASCII except the colon.
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

/**
 * Splits a raw header block into fields (unfolding continuation lines) and decodes each value.
 * `complete` false means the block was cut, so its last, possibly partial, line is dropped.
 */
export function parseHeaderBlock(
  block: Buffer,
  complete: boolean,
  charsets: CharsetWarnings,
): ParsedHeaderBlock {
  let text: string;
  try {
    text = STRICT_UTF8.decode(block);
  } catch {
    // Raw 8-bit header bytes in some legacy charset: nothing says which, so decode as UTF-8 and say so.
    text = block.toString('utf8');
    charsets.add('unknown-8bit');
  }
  if (!complete) {
    const lastBreak = text.lastIndexOf('\n');
    text = lastBreak >= 0 ? text.slice(0, lastBreak) : '';
  }
  const raw: RawHeader[] = [];
  let dropped = 0;
  let current: { name: string; parts: string[] } | undefined;
  const flush = () => {
    if (!current) return;
    if (raw.length < MAX_HEADER_LINES) raw.push({ name: current.name, raw: current.parts.join('').trim() });
    else dropped += 1;
    current = undefined;
  };
  for (const line of text.split('\n')) {
    const clean = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (clean.startsWith(' ') || clean.startsWith('\t')) {
      // Unfolding (RFC 5322 §2.2.3) removes the line break and keeps the whitespace.
      if (current && current.parts.length < MAX_HEADER_VALUE_CHARS) current.parts.push(clean);
      continue;
    }
    flush();
    const colon = clean.indexOf(':');
    if (colon <= 0) continue; // an mbox "From " line or garbage: not a field
    const name = clean.slice(0, colon).trimEnd().toLowerCase();
    if (!FIELD_NAME.test(name)) continue;
    current = { name, parts: [clean.slice(colon + 1)] };
  }
  flush();
  const headers = raw.map((h) => {
    charsets.checkEncodedWords(h.raw);
    return { name: h.name, value: decodeHeaderValue(h.raw) };
  });
  return { raw, headers, dropped };
}

/** RFC 2047-decodes an unfolded value and makes it a safe single line of bounded length. */
export function decodeHeaderValue(raw: string): string {
  // Decoding never makes a value longer than its encoded form plus replacement characters, so cutting
  // the input first bounds the work on an abusive header.
  const input = truncateChars(raw, MAX_HEADER_VALUE_CHARS * 2);
  return toSafeString(decodeWords(input), { singleLine: true, maxChars: MAX_HEADER_VALUE_CHARS }).trim();
}

/**
 * libmime's `decodeWords`, or `value` unchanged when that cannot change it: with no `=?` there is no
 * encoded word, and with no NUL no join marker for it to strip (most header values: five regex passes
 * saved each).
 */
export function decodeWords(value: string): string {
  if (!value.includes('=?') && !value.includes('\0')) return value;
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}

/** The first raw value of header `name` (lower-case), if present. */
export function firstRaw(headers: readonly RawHeader[], name: string): string | undefined {
  return headers.find((h) => h.name === name)?.raw;
}

/** Every raw value of header `name` (lower-case), in order. */
export function allRaw(headers: readonly RawHeader[], name: string): string[] {
  return headers.filter((h) => h.name === name).map((h) => h.raw);
}

// A msg-id (RFC 5322 §3.6.4) is `<id-left@id-right>`; senders get the inside wrong often enough that
// anything between angle brackets counts, up to the RFC line length.
const MSG_ID = /<[^<>]{1,998}>/g;

/** Message ids in a Message-ID / In-Reply-To / References value, angle brackets kept. */
export function extractMessageIds(raw: string | undefined, max = MAX_REFERENCES): string[] {
  if (!raw) return [];
  let value = decodeWords(raw);
  value = stripComments(value);
  const ids: string[] = [];
  for (const match of value.matchAll(MSG_ID)) {
    const id = toSafeString(match[0].replace(/\s+/g, ''), { singleLine: true });
    if (id.length > 2) ids.push(id);
    if (ids.length >= max) return ids;
  }
  if (ids.length) return ids;
  // No brackets at all: take whitespace-separated tokens and bracket them, as mailparser does.
  for (const token of value.split(/\s+/)) {
    if (!token || token.length > 998) continue;
    ids.push(toSafeString(`<${token.replace(/^<|>$/g, '')}>`, { singleLine: true }));
    if (ids.length >= max) break;
  }
  return ids;
}

/** Removes RFC 5322 comments `( ... )` (nested, with quoted-pairs), leaving quoted strings alone. */
export function stripComments(value: string): string {
  if (!value.includes('(')) return value;
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && (quoted || depth > 0)) {
      if (depth === 0) out += value.slice(i, i + 2);
      i += 1;
      continue;
    }
    if (depth === 0 && c === '"') quoted = !quoted;
    if (!quoted && c === '(') {
      depth += 1;
      continue;
    }
    if (!quoted && c === ')' && depth > 0) {
      depth -= 1;
      if (depth === 0) out += ' ';
      continue;
    }
    if (depth === 0) out += c;
  }
  return out;
}

/** The `Date:` header as ISO 8601 UTC, or null when missing, unparseable or outside years 1-9999. */
export function parseDateHeader(raw: string | undefined): string | null {
  if (!raw) return null;
  const value = stripComments(raw).trim();
  if (!value || value.length > 200) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return null;
  const iso = date.toISOString();
  return /^\d{4}-/.test(iso) && !iso.startsWith('0000') ? iso : null;
}

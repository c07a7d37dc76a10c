/**
 * A validating scan of an archived `email.received` event, for the `full` payload's fast path.
 *
 * A `full` body is the archived `data` text spliced between a new head and tail (payload.ts), so the
 * delivery needs only four small members of the event (eventId, receivedAt, raw, attachments), yet
 * `JSON.parse` builds the whole object graph: at thousands of webhooks a second that is the largest
 * cost of a delivery after the HTTP leg. This scan reads the archived bytes once instead: it checks the
 * complete JSON grammar (so a body spliced from these bytes is JSON exactly when `JSON.parse` would have
 * accepted them) and records where those members are; they are then parsed on their own.
 *
 * Only what ingest writes (`JSON.stringify({ type, data })`: no whitespace, no raw control characters)
 * is scanned. Anything else (whitespace, an escaped member name in `data`, deep nesting, invalid UTF-8,
 * `data` with its own `links` or `omitted`, a member of the wrong type) gives undefined, and the caller
 * takes the general path, `JSON.parse` included, which reports what is wrong. The scan is sound, not
 * complete: it may refuse valid JSON, never accept invalid JSON (property tests compare it with
 * JSON.parse).
 */
import { isUtf8 } from 'node:buffer';

/** How ingest's `JSON.stringify({ type: 'email.received', data })` begins. */
export const RECEIVED_PREFIX = '{"type":"email.received","data":{';
/** Offset of `data`'s opening brace. */
export const DATA_START = RECEIVED_PREFIX.length - 1;
/** Deeper nesting than this is not an event ingest wrote (its deepest member is 3 levels down). */
export const MAX_SCAN_DEPTH = 32;

/** Byte offsets in the archived event, `end` exclusive. */
export interface Span {
  start: number;
  end: number;
}

/** An archived event the fast path can splice: valid JSON, `data` at [DATA_START, length - 1). */
export interface ScannedEvent {
  bytes: Buffer;
  /** The string literal of `data.receivedAt` (quotes included). */
  receivedAt: Span;
  /** Whether that literal holds an escape (then it is re-serialised, else copied). */
  receivedAtEscaped: boolean;
  /** The `data.raw` object. */
  raw: Span;
  /** `data.raw.key` when the scan could read it (a string without escapes); else parse `raw`. */
  rawKey?: string;
  /** The `data.attachments` array. */
  attachments: Span;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const PREFIX_BYTES = Buffer.from(RECEIVED_PREFIX, 'latin1');

// The data members the scan looks for.
const OTHER = 0;
const EVENT_ID = 1;
const RECEIVED_AT = 2;
const RAW = 3;
const ATTACHMENTS = 4;

/**
 * Whether any byte is below 0x20. Sixteen bytes a round, as four int32 words: `(x - 0x20202020) & ~x`
 * has a byte's top bit set when that byte of x is below 0x20 (the "hasless" bit trick; exact as a
 * yes/no: a borrow only starts at a byte that is below 0x20). No branch per word or byte, so the
 * optimised code meets no path it has not seen.
 */
export function hasControlByte(bytes: Uint8Array): boolean {
  const n = bytes.length;
  const head = Math.min(n, (4 - (bytes.byteOffset % 4)) % 4);
  const words = (n - head) >>> 2;
  let low = lowBytes(bytes, 0, head) | lowBytes(bytes, head + words * 4, n);
  if (words > 0) {
    const view = new Int32Array(bytes.buffer, bytes.byteOffset + head, words);
    let seen = 0;
    let also = 0;
    let k = 0;
    for (; k + 3 < words; k += 4) {
      const w = view[k] as number;
      const x = view[k + 1] as number;
      const y = view[k + 2] as number;
      const z = view[k + 3] as number;
      seen |= (((w - 0x20202020) | 0) & ~w) | (((x - 0x20202020) | 0) & ~x);
      also |= (((y - 0x20202020) | 0) & ~y) | (((z - 0x20202020) | 0) & ~z);
    }
    for (; k < words; k++) {
      const x = view[k] as number;
      seen |= ((x - 0x20202020) | 0) & ~x;
    }
    low |= (seen | also) & HIGH_BITS;
  }
  return low !== 0;
}
const HIGH_BITS = 0x80808080 | 0;

/** Non-zero when a byte in [from, to) is below 0x20 (its `b - 0x20` is negative: the sign bit). */
function lowBytes(bytes: Uint8Array, from: number, to: number): number {
  let acc = 0;
  for (let i = from; i < to; i++) acc |= (bytes[i] as number) - 0x20;
  return acc & SIGN_BIT;
}
const SIGN_BIT = 0x80000000 | 0;

/** Nesting kinds, reused across calls (the scan is synchronous). */
const stack = new Uint8Array(MAX_SCAN_DEPTH + 1);
const IN_OBJECT = 1;
const IN_ARRAY = 2;

/**
 * Scans `bytes` as an archived `email.received` event. Returns the spans the fast path needs, or
 * undefined when the event is not one it can splice (see the module comment).
 */
export function scanReceivedEvent(bytes: Buffer): ScannedEvent | undefined {
  const n = bytes.length;
  if (n < PREFIX_BYTES.length + 2 || bytes[n - 1] !== CLOSE_BRACE) return undefined;
  for (let i = 0; i < PREFIX_BYTES.length; i++) if (bytes[i] !== PREFIX_BYTES[i]) return undefined;
  // Raw control bytes are whitespace or invalid JSON; ingest writes neither. With none anywhere, string
  // contents need only their escapes checked, and every other byte must belong to a token.
  if (hasControlByte(bytes) || !isUtf8(bytes)) return undefined;
  // Latin-1: one character per byte, so offsets are byte offsets. UTF-8 sequences are bytes >= 0x80
  // and can only sit inside strings, which the grammar below checks by position.
  const s = bytes.toString('latin1', 0, n);
  return new Scan(s).run(bytes);
}

class Scan {
  /** The next backslash at or after the scan position (s.length when none). */
  private backslash: number;
  /** Whether the string stringEnd last read holds an escape. */
  private escaped = false;
  constructor(private readonly s: string) {
    const b = s.indexOf('\\', DATA_START);
    this.backslash = b === -1 ? s.length : b;
  }

  run(bytes: Buffer): ScannedEvent | undefined {
    const s = this.s;
    let i = DATA_START;
    let depth = 0;
    let expectKey = false;
    let member: number | undefined = OTHER;
    let valueStart = 0;
    let eventId: Span | undefined;
    let receivedAt: Span | undefined;
    let receivedAtEscaped = false;
    let raw: Span | undefined;
    let attachments: Span | undefined;
    // raw.key of the last raw member, read here so it needs no parse of its own: the next value is it;
    // its literal, unless an escape or a non-string leaves it to JSON.parse (`rawKeyPlain` false).
    let rawKeyNext = false;
    let rawKey: Span | undefined;
    let rawKeyPlain = true;

    for (;;) {
      if (expectKey) {
        if (s.charCodeAt(i) !== QUOTE) return undefined;
        const close = this.stringEnd(i);
        if (close < 0 || s.charCodeAt(close + 1) !== COLON) return undefined;
        if (depth === 1) {
          // A member name of `data` with an escape could spell one we look for: not ingest's output.
          if (this.escaped) return undefined;
          member = memberOf(s, i + 1, close);
          if (member === undefined) return undefined; // links / omitted: the splice appends its own
          valueStart = close + 2;
          if (member === RAW) {
            rawKey = undefined;
            rawKeyPlain = true;
          }
        } else if (depth === 2 && member === RAW) {
          // A name of raw's with an escape could spell "key": leave raw.key to JSON.parse.
          if (this.escaped) rawKeyPlain = false;
          else rawKeyNext = close - i === 4 && s.startsWith('key', i + 1);
        }
        i = close + 2;
        expectKey = false;
        continue;
      }

      // A value starts at i.
      const c = s.charCodeAt(i);
      const isRawKey = rawKeyNext;
      if (isRawKey) {
        rawKeyNext = false;
        if (c !== QUOTE) rawKeyPlain = false;
      }
      if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (s.charCodeAt(i + 1) !== (c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) {
          if (depth === MAX_SCAN_DEPTH) return undefined;
          stack[++depth] = c === OPEN_BRACE ? IN_OBJECT : IN_ARRAY;
          i++;
          expectKey = c === OPEN_BRACE;
          continue;
        }
        i += 2; // empty object or array
      } else if (c === QUOTE) {
        const close = this.stringEnd(i);
        if (close < 0) return undefined;
        if (depth === 1 && member === RECEIVED_AT) receivedAtEscaped = this.escaped;
        else if (isRawKey) {
          rawKey = { start: i + 1, end: close };
          if (this.escaped) rawKeyPlain = false;
        }
        i = close + 1;
      } else if (c === MINUS || (c >= ZERO && c <= NINE)) {
        i = numberEnd(s, i);
        if (i < 0) return undefined;
      } else if (c === 0x74 /* t */ && s.startsWith('true', i)) i += 4;
      else if (c === 0x66 /* f */ && s.startsWith('false', i)) i += 5;
      else if (c === 0x6e /* n */ && s.startsWith('null', i)) i += 4;
      else return undefined;

      // After a value: record a data member, then a comma, or close containers.
      for (;;) {
        if (depth === 0) {
          // `data` closed at i - 1: only the root's closing brace (checked by the caller) may follow.
          if (i !== s.length - 1) return undefined;
          if (!eventId || s.charCodeAt(eventId.start) !== QUOTE) return undefined;
          if (!receivedAt || s.charCodeAt(receivedAt.start) !== QUOTE) return undefined;
          if (!raw || s.charCodeAt(raw.start) !== OPEN_BRACE) return undefined;
          if (!attachments || s.charCodeAt(attachments.start) !== OPEN_BRACKET) return undefined;
          const event: ScannedEvent = { bytes, receivedAt, receivedAtEscaped, raw, attachments };
          // Without escapes, a literal's bytes are its string's UTF-8.
          if (rawKeyPlain && rawKey) event.rawKey = bytes.toString('utf8', rawKey.start, rawKey.end);
          return event;
        }
        if (depth === 1 && member !== OTHER) {
          // Duplicate names: the last one wins, as in JSON.parse.
          const span = { start: valueStart, end: i };
          if (member === EVENT_ID) eventId = span;
          else if (member === RECEIVED_AT) receivedAt = span;
          else if (member === RAW) raw = span;
          else attachments = span;
          member = OTHER;
        }
        const d = s.charCodeAt(i);
        if (d === COMMA) {
          i++;
          expectKey = stack[depth] === IN_OBJECT;
          break;
        }
        if (d !== (stack[depth] === IN_OBJECT ? CLOSE_BRACE : CLOSE_BRACKET)) return undefined;
        depth--;
        i++;
      }
    }
  }

  /**
   * Index of the quote closing the string that opens at `open`, or -1 if it does not close or holds an
   * invalid escape; sets `escaped`. Quotes and backslashes are found with indexOf (a native search), so
   * plain text costs next to nothing and mail text (an escape per line) one search per escape. Where
   * escapes come thick (HTML: one per attribute quote), the rest of the string is matched by
   * ESCAPED_REST instead, compiled to native code. Control characters need no check here: the caller
   * refused any.
   */
  private stringEnd(open: number): number {
    const s = this.s;
    let quote = s.indexOf('"', open + 1);
    if (quote < 0) return -1;
    let at = this.backslash;
    if (at > quote) {
      this.escaped = false;
      return quote;
    }
    this.escaped = true;
    for (let dense = 0; ; ) {
      // An escape at `at`, before the quote: check it and step over it.
      const next = escapeEnd(s, at);
      if (next < 0) return -1;
      const b = s.indexOf('\\', next);
      at = b === -1 ? s.length : b;
      if (quote < next) quote = s.indexOf('"', next); // that quote was escaped
      if (quote < 0) return -1;
      if (at > quote) break;
      dense = at - next < DENSE_ESCAPE_GAP ? dense + 1 : 0;
      if (dense === DENSE_ESCAPE_RUN) {
        ESCAPED_REST.lastIndex = at;
        if (!ESCAPED_REST.test(s)) return -1;
        quote = ESCAPED_REST.lastIndex - 1;
        const after = s.indexOf('\\', quote + 1);
        at = after === -1 ? s.length : after;
        break;
      }
    }
    this.backslash = at;
    return quote;
  }
}

/** Index after the escape at `at` (RFC 8259: one of `"\/bfnrt`, or u and four hex digits), or -1. */
function escapeEnd(s: string, at: number): number {
  const e = s.charCodeAt(at + 1);
  if (e === 0x75 /* u */) {
    const ok =
      isHex(s.charCodeAt(at + 2)) &&
      isHex(s.charCodeAt(at + 3)) &&
      isHex(s.charCodeAt(at + 4)) &&
      isHex(s.charCodeAt(at + 5));
    return ok ? at + 6 : -1;
  }
  const simple =
    e === QUOTE ||
    e === BACKSLASH ||
    e === 0x2f /* / */ ||
    e === 0x62 /* b */ ||
    e === 0x66 /* f */ ||
    e === 0x6e /* n */ ||
    e === 0x72 /* r */ ||
    e === 0x74; /* t */
  return simple ? at + 2 : -1;
}

function isHex(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Escapes closer than this many characters apart are "thick"... */
const DENSE_ESCAPE_GAP = 24;
/** ...and after this many in a row, the regex takes over for the rest of the string. */
const DENSE_ESCAPE_RUN = 4;

/**
 * The rest of a JSON string from an escape on, closing quote included: escapes (RFC 8259) and runs of
 * anything but a quote or backslash. Sticky, so it matches exactly at lastIndex.
 */
const ESCAPED_REST = /(?:\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4})[^"\\]*)+"/y;

const isDigit = (c: number) => c >= ZERO && c <= NINE;

function digitsEnd(s: string, start: number): number {
  let i = start;
  while (isDigit(s.charCodeAt(i))) i++;
  return i;
}

/** End of the JSON number at `i` (RFC 8259 grammar), or -1. */
function numberEnd(s: string, start: number): number {
  let i = start;
  if (s.charCodeAt(i) === MINUS) i++;
  const first = s.charCodeAt(i);
  if (first === ZERO) i++;
  else if (first > ZERO && first <= NINE) i = digitsEnd(s, i + 1);
  else return -1;
  if (s.charCodeAt(i) === DOT) {
    if (!isDigit(s.charCodeAt(i + 1))) return -1;
    i = digitsEnd(s, i + 2);
  }
  const e = s.charCodeAt(i);
  if (e === 0x65 || e === 0x45) {
    let k = i + 1;
    const sign = s.charCodeAt(k);
    if (sign === 0x2b || sign === MINUS) k++;
    if (!isDigit(s.charCodeAt(k))) return -1;
    i = digitsEnd(s, k + 1);
  }
  return i;
}

/** Which member the name at [start, end) is; undefined for `links` and `omitted`. */
function memberOf(s: string, start: number, end: number): number | undefined {
  const len = end - start;
  if (len === 7 && s.startsWith('eventId', start)) return EVENT_ID;
  if (len === 10 && s.startsWith('receivedAt', start)) return RECEIVED_AT;
  if (len === 3 && s.startsWith('raw', start)) return RAW;
  if (len === 11 && s.startsWith('attachments', start)) return ATTACHMENTS;
  if ((len === 5 && s.startsWith('links', start)) || (len === 7 && s.startsWith('omitted', start))) {
    return undefined;
  }
  return OTHER;
}

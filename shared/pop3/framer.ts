/**
 * A pure, incremental POP3 reply framer: bytes in, replies out, no sockets. Fed arbitrary chunks (a
 * reply may be split at any byte, several replies may share one chunk), it emits status lines and,
 * for multi-line replies, the body as unstuffed byte chunks followed by an end marker.
 *
 * POP3 replies are not self-describing (`+OK` may or may not start a body), so the caller registers
 * what it expects for each command it sends, in order (`expect`). Bytes that arrive while nothing is
 * expected are reported as unsolicited: a protocol violation (or, after STLS, an injection attempt).
 *
 * Bodies are streamed: a byte is emitted as soon as it is known not to be a stuffing dot or part of
 * the terminator, so a 500 MB message needs no more memory than one chunk. Only a line-initial `.`
 * (and a following CR) is held back. The terminator is recognised only as CRLF "." CRLF; exactly one
 * leading dot is removed from other lines; NUL, bare CR, bare LF and 8-bit bytes pass through as is.
 * Scanning uses `Buffer.indexOf` for `CRLF "."`, so ordinary lines cost nothing per line.
 */
import { Pop3Error } from './errors.js';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const PLUS = 0x2b;
const MINUS = 0x2d;
const SPACE = 0x20;
/** ORed into an ASCII letter to lower-case it (case-insensitive `+OK`/`-ERR`). */
const LOWER = 0x20;

const CRLF = Buffer.from('\r\n', 'latin1');
const CRLF_DOT = Buffer.from('\r\n.', 'latin1');
const CR_ONLY = Buffer.from('\r', 'latin1');

/** `ok` = `+OK`, `err` = `-ERR`, `cont` = a SASL continuation (`+ ` or a bare `+`). */
export type StatusKind = 'ok' | 'err' | 'cont';

/** What the caller expects as the reply to one command it sent. */
export interface FrameExpectation {
  /** A `+OK` starts a body ending in CRLF.CRLF (RETR, TOP, CAPA, LIST/UIDL without argument). */
  readonly multiline: boolean;
  /** Largest body (unstuffed bytes) accepted for this reply; more is POP3_MESSAGE_TOO_LARGE. */
  readonly maxBytes: number;
}

/**
 * Receives the framer's output, synchronously, in wire order. Buffers passed in are views into the
 * chunk being framed: copy them to keep them past a later `push` only if the input is reused
 * (socket buffers are not).
 */
export interface FramerEvents<E extends FrameExpectation> {
  /** A status line without its line end. A `cont` leaves the expectation in place (AUTH goes on). */
  status(exp: E, kind: StatusKind, line: Buffer): void;
  /** Unstuffed body bytes of the current multi-line reply (never empty). */
  body(exp: E, chunk: Buffer): void;
  /** The multi-line reply `exp` is complete. */
  end(exp: E): void;
  /** Bytes arrived while no reply was expected. The framer stops; the caller must drop the session. */
  unsolicited(bytes: Buffer): void;
}

export interface FramerLimits {
  /** Longest status line, line end included. */
  maxStatusLineBytes: number;
  /** Longest body line (wire bytes, line end excluded). */
  maxDataLineBytes: number;
}

// Framer states. Body states say what the framer knows about the bytes at the current position.
const STATUS = 0; // reading a status line
const LINE_START = 1; // in a body, right after CRLF (or the status line)
const MID_LINE = 2; // in a body, inside a line
const DOT_SEEN = 3; // in a body, a line-initial "." was read (and not emitted)
const DOT_CR = 4; // in a body, a line-initial ".\r" was read (neither emitted)

/** Classifies a status line without decoding it. RFC 1939 wants upper case; we accept any case. */
export function statusKind(line: Buffer): StatusKind | undefined {
  const n = line.length;
  if (n === 0) return undefined;
  const first = line[0];
  if (first === PLUS) {
    if (n >= 3 && ((line[1] ?? 0) | LOWER) === 0x6f && ((line[2] ?? 0) | LOWER) === 0x6b) {
      if (n === 3 || (line[3] ?? 0) <= SPACE) return 'ok';
    }
    if (n === 1 || line[1] === SPACE) return 'cont';
    return undefined;
  }
  if (
    first === MINUS &&
    n >= 4 &&
    ((line[1] ?? 0) | LOWER) === 0x65 &&
    ((line[2] ?? 0) | LOWER) === 0x72 &&
    ((line[3] ?? 0) | LOWER) === 0x72 &&
    (n === 4 || (line[4] ?? 0) <= SPACE)
  ) {
    return 'err';
  }
  return undefined;
}

/** Incremental POP3 reply framer. See the module comment. */
export class Pop3Framer<E extends FrameExpectation> {
  private readonly fifo: E[] = [];
  private state = STATUS;
  private failed = false;
  /** Partial status line carried over from earlier chunks (copies, bounded by maxStatusLineBytes). */
  private statusParts: Buffer[] = [];
  private statusLength = 0;
  /** The multi-line reply whose body is being read. */
  private current: E | undefined;
  private bodyBytes = 0;
  /** Wire bytes of the current body line so far (exact at chunk ends). */
  private lineLength = 0;
  /** MID_LINE only: the previous chunk ended with a CR that may pair with an LF here. */
  private prevCR = false;

  constructor(
    private readonly events: FramerEvents<E>,
    private readonly limits: FramerLimits,
  ) {}

  /** Registers the expected reply to the next command sent. Call before writing the command. */
  expect(exp: E): void {
    this.fifo.push(exp);
  }

  /** Replies expected and not yet complete (the one being read included). */
  get pending(): number {
    return this.fifo.length + (this.current === undefined ? 0 : 1);
  }

  /** The reply being read or next to be read, if any. */
  get head(): E | undefined {
    return this.current ?? this.fifo[0];
  }

  /** The multi-line reply whose body is being read, if any. */
  get inBody(): E | undefined {
    return this.current;
  }

  /** Removes and returns every incomplete expectation (the current body first), e.g. to fail them. */
  takeAll(): E[] {
    const out = this.current === undefined ? [] : [this.current];
    out.push(...this.fifo.splice(0));
    this.current = undefined;
    this.state = STATUS;
    return out;
  }

  /**
   * Frames one chunk. Throws a Pop3Error (POP3_PROTOCOL, POP3_LINE_TOO_LONG, POP3_MESSAGE_TOO_LARGE)
   * when the input breaks the protocol or a limit; the framer is then unusable, as is the session.
   */
  push(chunk: Buffer): void {
    if (this.failed) return;
    try {
      let pos = 0;
      const len = chunk.length;
      while (pos < len) {
        if (this.state !== STATUS) {
          pos = this.readBody(chunk, pos);
        } else if (this.fifo.length === 0) {
          this.failed = true;
          this.events.unsolicited(chunk.subarray(pos));
          return;
        } else {
          pos = this.readStatus(chunk, pos);
        }
      }
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  private readStatus(chunk: Buffer, pos: number): number {
    const max = this.limits.maxStatusLineBytes;
    const nl = chunk.indexOf(LF, pos);
    if (nl < 0) {
      const add = chunk.length - pos;
      if (this.statusLength + add >= max) throw statusTooLong(max);
      // Copied: a partial line is rare and small, and a view would pin the whole chunk.
      this.statusParts.push(Buffer.from(chunk.subarray(pos)));
      this.statusLength += add;
      return chunk.length;
    }
    if (this.statusLength + (nl + 1 - pos) > max) throw statusTooLong(max);
    let line: Buffer;
    if (this.statusLength === 0) {
      line = chunk.subarray(pos, nl);
    } else {
      this.statusParts.push(chunk.subarray(pos, nl));
      line = Buffer.concat(this.statusParts, this.statusLength + nl - pos);
      this.statusParts = [];
      this.statusLength = 0;
    }
    // CRLF is the rule; a bare LF ending a status line is tolerated (no ambiguity there).
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    const kind = statusKind(line);
    if (kind === undefined) {
      // The line is attached raw and hidden: the connection scrubs credentials from it (a hostile
      // server may echo them) before it becomes the error's sanitised `response`.
      const err = new Pop3Error('POP3_PROTOCOL', 'The server sent a reply that is not +OK or -ERR.');
      Object.defineProperty(err, 'rawLine', { value: Buffer.from(line), enumerable: false });
      throw err;
    }
    const exp = this.fifo[0] as E;
    if (kind !== 'cont') {
      this.fifo.shift();
      if (kind === 'ok' && exp.multiline) {
        this.state = LINE_START;
        this.current = exp;
        this.bodyBytes = 0;
        this.lineLength = 0;
      }
    }
    this.events.status(exp, kind, line);
    return nl + 1;
  }

  /** Frames body bytes from `pos`; returns where it stopped (chunk end, or just after the terminator). */
  private readBody(chunk: Buffer, pos: number): number {
    const len = chunk.length;
    let seg = pos; // first byte not yet emitted
    while (pos < len) {
      const state = this.state;
      if (state === MID_LINE) {
        if (this.prevCR) {
          this.prevCR = false;
          if (chunk[pos] === LF) {
            pos++;
            this.state = LINE_START;
            this.lineLength = 0;
            continue;
          }
        }
        const i = chunk.indexOf(CRLF_DOT, pos);
        if (i >= 0) {
          this.checkLines(chunk, pos, i + 2);
          this.emit(chunk, seg, i + 2);
          pos = i + 3;
          seg = pos;
          this.state = DOT_SEEN;
          continue;
        }
        this.checkLines(chunk, pos, len);
        if (len - pos >= 2 && chunk[len - 2] === CR && chunk[len - 1] === LF) {
          this.state = LINE_START;
        } else {
          this.prevCR = chunk[len - 1] === CR;
        }
        pos = len;
      } else if (state === LINE_START) {
        if (chunk[pos] === DOT) {
          this.emit(chunk, seg, pos);
          pos++;
          seg = pos;
          this.state = DOT_SEEN;
        } else {
          this.state = MID_LINE;
          this.lineLength = 0;
          this.prevCR = false;
        }
      } else if (state === DOT_SEEN) {
        if (chunk[pos] === CR) {
          // Hold the CR (seg still points at it): ".\r\n" ends the reply, ".\r<x>" is a stuffed line.
          pos++;
          this.state = DOT_CR;
        } else {
          // A stuffing dot, already skipped.
          this.state = MID_LINE;
          this.lineLength = 1;
          this.prevCR = false;
        }
      } else {
        // DOT_CR
        if (chunk[pos] === LF) {
          // The terminator. The CR held back is not data; bytes before the dot were emitted already.
          this.state = STATUS;
          const exp = this.current as E;
          this.current = undefined;
          this.events.end(exp);
          return pos + 1;
        }
        if (seg === pos) {
          // The held CR arrived in an earlier chunk; it turned out to be data.
          this.emit(CR_ONLY, 0, 1);
        }
        this.state = MID_LINE;
        this.lineLength = 2;
        this.prevCR = true; // the CR is data; chunk[pos] is known not to be LF
      }
    }
    // Chunk exhausted. A CR held in DOT_CR stays unemitted until the next byte decides its fate.
    const end = this.state === DOT_CR && seg < len ? len - 1 : len;
    this.emit(chunk, seg, end);
    return len;
  }

  private emit(chunk: Buffer, from: number, to: number): void {
    if (to <= from) return;
    const exp = this.current as E;
    this.bodyBytes += to - from;
    if (this.bodyBytes > exp.maxBytes) {
      throw new Pop3Error(
        'POP3_MESSAGE_TOO_LARGE',
        `The server's reply exceeded the ${exp.maxBytes}-byte limit; the connection was dropped. Raise the limit or skip the message.`,
        { details: { maxBytes: exp.maxBytes } },
      );
    }
    this.events.body(exp, chunk.subarray(from, to));
  }

  /**
   * Enforces maxDataLineBytes over body bytes [from, to), which hold no line-initial dot. Cheap when
   * no line can be over the limit (one lastIndexOf per chunk); scans line by line only when one might.
   */
  private checkLines(chunk: Buffer, from: number, to: number): void {
    // A CR ending the chunk is probably half of a CRLF: not counted until the next byte says otherwise.
    const max = this.limits.maxDataLineBytes;
    const slack = chunk[to - 1] === CR ? 1 : 0;
    if (this.lineLength + (to - from) <= max + slack) {
      const k = to - from >= 2 ? chunk.lastIndexOf(CRLF, to - 2) : -1;
      this.lineLength = k >= from ? to - (k + 2) : this.lineLength + (to - from);
      return;
    }
    let cur = from;
    for (;;) {
      const f = chunk.indexOf(CRLF, cur);
      if (f < 0 || f + 2 > to) break;
      if (this.lineLength + (f - cur) > max) throw dataLineTooLong(max);
      this.lineLength = 0;
      cur = f + 2;
    }
    this.lineLength += to - cur;
    if (this.lineLength - slack > max) throw dataLineTooLong(max);
  }
}

function statusTooLong(max: number): Pop3Error {
  return new Pop3Error(
    'POP3_LINE_TOO_LONG',
    `The server sent a status line longer than ${max} bytes; the connection was dropped.`,
    { details: { maxStatusLineBytes: max } },
  );
}

function dataLineTooLong(max: number): Pop3Error {
  return new Pop3Error(
    'POP3_LINE_TOO_LONG',
    `The server sent a line longer than ${max} bytes inside a reply; the connection was dropped. Raise maxDataLineBytes if the mail is genuine.`,
    { details: { maxDataLineBytes: max } },
  );
}

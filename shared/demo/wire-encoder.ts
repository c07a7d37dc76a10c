/**
 * Turns a message file, chunk by chunk, into the bytes a POP3 server sends inside a multi-line reply
 * (RFC 1939 §3): every line ends in CRLF (files on disk often use bare LF), lines starting with `.` are
 * dot-stuffed, and a message that does not end in a line break gets one before the terminating `.`.
 * The same class, with stuffing off, measures the size LIST and STAT report, so the advertised size
 * always equals the bytes a client keeps after unstuffing.
 *
 * Memory stays flat: output is slices of the input plus a few shared constants.
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const DOT_BUF = Buffer.from('.');
const LF_BUF = Buffer.from('\n');
const CRLF_BUF = Buffer.from('\r\n');

export interface WireEncoderOptions {
  /** Double a leading `.` on each line (on for the wire, off when measuring). */
  dotStuff: boolean;
  /**
   * TOP: stop after the header, the blank line and this many body lines. Undefined sends everything.
   */
  bodyLines?: number;
}

export class Pop3WireEncoder {
  private readonly dotStuff: boolean;
  private readonly bodyLines: number | undefined;
  private atLineStart = true;
  /** The last byte written was a CR (it may pair with a LF at the start of the next chunk). */
  private prevCR = false;
  /** Bytes in the current line so far, including a trailing CR. */
  private lineBytes = 0;
  private inHeader = true;
  private bodyLinesSent = 0;
  private bytesOut = 0;
  private dotsAdded = 0;
  private endedWithLineBreak = false;
  private done = false;

  constructor(options: WireEncoderOptions) {
    this.dotStuff = options.dotStuff;
    this.bodyLines = options.bodyLines;
  }

  /** True once a TOP limit is reached: further input is ignored and the reader can stop. */
  get finished(): boolean {
    return this.done;
  }

  /** Encodes one chunk; the returned buffers are written in order. */
  encode(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < chunk.length && !this.done) {
      if (this.atLineStart) {
        if (this.dotStuff && chunk[pos] === DOT) {
          this.emit(out, DOT_BUF);
          this.dotsAdded++;
        }
        this.atLineStart = false;
      }
      const lf = chunk.indexOf(LF, pos);
      if (lf === -1) {
        const rest = chunk.subarray(pos);
        this.emit(out, rest);
        this.lineBytes += rest.length;
        this.prevCR = rest[rest.length - 1] === CR;
        this.endedWithLineBreak = false;
        break;
      }
      const segment = chunk.subarray(pos, lf);
      const crBefore = segment.length > 0 ? segment[segment.length - 1] === CR : this.prevCR;
      if (segment.length > 0) this.emit(out, segment);
      this.emit(out, crBefore ? LF_BUF : CRLF_BUF);
      const contentBytes = this.lineBytes + segment.length - (crBefore ? 1 : 0);
      this.lineBytes = 0;
      this.prevCR = false;
      this.atLineStart = true;
      this.endedWithLineBreak = true;
      this.lineEnded(contentBytes === 0);
      pos = lf + 1;
    }
    return out;
  }

  /** Call after the last chunk: closes an unterminated last line. */
  end(): Buffer[] {
    if (this.done || this.bytesOut === 0 || this.endedWithLineBreak) return [];
    // A trailing bare CR becomes CRLF, as it would have with a LF after it.
    const tail = this.prevCR ? LF_BUF : CRLF_BUF;
    this.bytesOut += tail.length;
    this.endedWithLineBreak = true;
    return [tail];
  }

  /** Bytes produced so far (stuffing dots included when `dotStuff` is on). */
  get size(): number {
    return this.bytesOut;
  }

  /** Bytes of message produced so far: what a client holds after unstuffing. */
  get messageSize(): number {
    return this.bytesOut - this.dotsAdded;
  }

  private emit(out: Buffer[], piece: Buffer): void {
    out.push(piece);
    this.bytesOut += piece.length;
  }

  private lineEnded(empty: boolean): void {
    if (this.bodyLines === undefined) return;
    if (this.inHeader) {
      if (empty) this.inHeader = false;
    } else {
      this.bodyLinesSent++;
    }
    this.checkTopDone();
  }

  private checkTopDone(): void {
    if (this.bodyLines !== undefined && !this.inHeader && this.bodyLinesSent >= this.bodyLines)
      this.done = true;
  }
}

/** Encodes a whole buffer at once (tests, small messages). */
export function encodeForWire(message: Buffer, options: WireEncoderOptions): Buffer {
  const encoder = new Pop3WireEncoder(options);
  return Buffer.concat([...encoder.encode(message), ...encoder.end()]);
}

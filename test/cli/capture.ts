/** In-memory stdout/stderr for calling the CLI in-process. */
export interface Capture {
  write(chunk: string | Uint8Array): boolean;
  isTTY: boolean;
  columns: number;
  /** Everything written, decoded as UTF-8. */
  readonly text: string;
  /** Everything written, byte-exact. */
  readonly bytes: Buffer;
}

export function capture(isTTY = false): Capture {
  const chunks: Buffer[] = [];
  return {
    write(chunk: string | Uint8Array) {
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk));
      return true;
    },
    isTTY,
    columns: 120,
    get text() {
      return Buffer.concat(chunks).toString('utf8');
    },
    get bytes() {
      return Buffer.concat(chunks);
    },
  };
}

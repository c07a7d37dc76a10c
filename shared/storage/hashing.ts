/**
 * Counting and hashing bytes as they stream past, so the archive can verify what it stored without
 * ever holding a whole message in memory.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * A pass-through Transform that counts bytes and computes their SHA-256. `bytes` is live; `sha256` is
 * available once the stream has finished (after 'end' on the readable side or 'finish' on the
 * writable side), and throws before that so nobody records the hash of a prefix by mistake.
 */
export class HashingTransform extends Transform {
  readonly #hash = createHash('sha256');
  #bytes = 0;
  #digest: string | undefined;

  /** Bytes seen so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Hex SHA-256 of every byte that passed through. Only after the source ended. */
  get sha256(): string {
    if (this.#digest === undefined) throw new Error('HashingTransform: sha256 read before the stream ended');
    return this.#digest;
  }

  /** True once the whole stream has been hashed. */
  get finished(): boolean {
    return this.#digest !== undefined;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#digest = this.#hash.digest('hex');
    callback();
  }
}

/** Hex SHA-256 of a buffer or UTF-8 string. */
export function sha256Hex(data: Buffer | Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Reads `source` to the end (flat memory) and returns its size and hex SHA-256. */
export async function hashStream(
  source: Readable | AsyncIterable<Uint8Array>,
): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    hash.update(bytes);
    size += bytes.length;
  }
  return { size, sha256: hash.digest('hex') };
}

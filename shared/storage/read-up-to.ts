/**
 * Most objects are small (a mail's attachments, events): read whole, they are written in one call (on
 * the local writer thread, or as one S3 PUT) and can be hashed before they are stored.
 */
import { Readable } from 'node:stream';

/**
 * Reads `stream` whole if it ends within `max` bytes. Otherwise returns a stream of the same bytes
 * (those read so far, then the rest), so the caller streams it instead; memory stays under `max`.
 * Rejects with the stream's error.
 */
export async function readUpTo(stream: Readable, max: number): Promise<Buffer | Readable> {
  const chunks: Buffer[] = [];
  let size = 0;
  const it = stream[Symbol.asyncIterator]();
  for (;;) {
    const next = await it.next();
    if (next.done) return Buffer.concat(chunks, size);
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as string);
    chunks.push(chunk);
    size += chunk.length;
    if (size > max) break;
  }
  return Readable.from(
    (async function* () {
      yield* chunks;
      for (;;) {
        const next = await it.next();
        if (next.done) return;
        yield next.value as Buffer;
      }
    })(),
  );
}

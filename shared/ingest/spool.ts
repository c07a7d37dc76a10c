/**
 * Spools a message to a private temp file while hashing it, with flat memory. Used when identity
 * depends on content (a suspected UIDL reset, or a server without UIDL): we must know the SHA-256
 * before deciding whether the archive needs a new object.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface Spooled {
  size: number;
  sha256: string;
  open(): Readable;
  dispose(): Promise<void>;
}

export async function spool(source: Readable, dir?: string): Promise<Spooled> {
  const base = await mkdtemp(join(dir ?? tmpdir(), 'pophook-spool-'));
  const path = join(base, `${randomUUID()}.eml`);
  const hash = createHash('sha256');
  let size = 0;
  try {
    await pipeline(
      source,
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(path, { mode: 0o600 }),
    );
  } catch (err) {
    await rm(base, { recursive: true, force: true });
    throw err;
  }
  return {
    size,
    sha256: hash.digest('hex'),
    open: () => createReadStream(path),
    dispose: () => rm(base, { recursive: true, force: true }),
  };
}

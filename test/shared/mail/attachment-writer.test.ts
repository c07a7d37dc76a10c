import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  ATTACHMENT_BYTES_IN_FLIGHT,
  BACKGROUND_ATTACHMENT_MAX_BYTES,
  createArchiveAttachmentWriter,
} from '../../../shared/mail/attachment-writer.js';
import type { StoredObject } from '../../../shared/storage/archive.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** An archive whose puts finish only when the test says so. */
function slowArchive() {
  const stored = new Map<string, Buffer>();
  const waiting: (() => void)[] = [];
  let inFlight = 0;
  let peak = 0;
  return {
    stored,
    waiting,
    peak: () => peak,
    archive: {
      async put(key: string, body: Buffer | string | Readable): Promise<StoredObject> {
        const chunks: Buffer[] = [];
        if (body instanceof Readable) for await (const c of body) chunks.push(c as Buffer);
        else chunks.push(Buffer.from(body));
        const bytes = Buffer.concat(chunks);
        inFlight += bytes.length;
        peak = Math.max(peak, inFlight);
        await new Promise<void>((r) => waiting.push(r));
        inFlight -= bytes.length;
        stored.set(key, bytes);
        return { key, size: bytes.length, sha256: sha(bytes) };
      },
    },
  };
}

const releaseAll = async (w: (() => void)[]) => {
  while (w.length) w.shift()?.();
  await new Promise((r) => setImmediate(r));
};

describe('createArchiveAttachmentWriter', () => {
  it('answers for a small attachment at once and stores it in the background; settle() waits for it', async () => {
    const a = slowArchive();
    const write = createArchiveAttachmentWriter(a.archive, 'inbox', 'msg-1');
    const content = Buffer.from('attachment body');
    const meta = await write(0, { filename: 'a.txt' } as never, Readable.from([content]));
    expect(meta).toEqual({
      key: 'attachments/inbox/msg-1/0-a.txt',
      size: content.length,
      sha256: sha(content),
    });
    expect(a.stored.size).toBe(0);
    let settled = false;
    const done = write.settle().then(() => {
      settled = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    await releaseAll(a.waiting);
    await done;
    expect(a.stored.get(meta.key)?.equals(content)).toBe(true);
  });

  it('streams an attachment over the in-memory size and waits for it', async () => {
    const a = slowArchive();
    const write = createArchiveAttachmentWriter(a.archive, 'inbox', 'msg-1');
    const big = Buffer.alloc(BACKGROUND_ATTACHMENT_MAX_BYTES + 10, 7);
    const pending = write(
      0,
      { filename: 'big.bin' } as never,
      Readable.from([big.subarray(0, 1000), big.subarray(1000)]),
    );
    await new Promise((r) => setTimeout(r, 20));
    await releaseAll(a.waiting);
    const meta = await pending;
    expect(meta).toMatchObject({ size: big.length, sha256: sha(big) });
    expect(a.stored.get(meta.key)?.equals(big)).toBe(true);
  });

  it('keeps at most ATTACHMENT_BYTES_IN_FLIGHT in background writes, holding the parser back', async () => {
    const a = slowArchive();
    const write = createArchiveAttachmentWriter(a.archive, 'inbox', 'msg-1');
    const each = Buffer.alloc(BACKGROUND_ATTACHMENT_MAX_BYTES, 1);
    const n = Math.ceil(ATTACHMENT_BYTES_IN_FLIGHT / each.length) + 4;
    let answered = 0;
    const writes = Array.from({ length: n }, async (_, i) => {
      const r = await write(i, { filename: `f${i}` } as never, Readable.from([each]));
      answered++;
      return r;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBeLessThan(n);
    expect(a.peak()).toBeLessThanOrEqual(ATTACHMENT_BYTES_IN_FLIGHT);
    while (answered < n || a.waiting.length) await releaseAll(a.waiting);
    await Promise.all(writes);
    await write.settle();
    expect(a.stored.size).toBe(n);
    expect(a.peak()).toBeLessThanOrEqual(ATTACHMENT_BYTES_IN_FLIGHT);
  });

  it('a failed background write fails settle() and the next attachment', async () => {
    const write = createArchiveAttachmentWriter(
      {
        async put() {
          throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
        },
      },
      'inbox',
      'msg-1',
    );
    await write(0, { filename: 'a' } as never, Readable.from([Buffer.from('x')]));
    await expect(write.settle()).rejects.toThrow('disk full');
    await expect(write(1, { filename: 'b' } as never, Readable.from([Buffer.from('y')]))).rejects.toThrow(
      'disk full',
    );
  });
});

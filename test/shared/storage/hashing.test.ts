import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { HashingTransform, hashStream, sha256Hex } from '../../../shared/storage/hashing.js';

const expected = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('HashingTransform', () => {
  it('passes bytes through unchanged while counting and hashing them', async () => {
    const chunks = [randomBytes(10), randomBytes(70_000), Buffer.alloc(0), randomBytes(3)];
    const all = Buffer.concat(chunks);
    const hasher = new HashingTransform();
    const out: Buffer[] = [];
    await pipeline(Readable.from(chunks), hasher, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) out.push(chunk);
    });
    expect(Buffer.concat(out).equals(all)).toBe(true);
    expect(hasher.bytes).toBe(all.length);
    expect(hasher.finished).toBe(true);
    expect(hasher.sha256).toBe(expected(all));
  });

  it('refuses to report a hash before the stream ended', () => {
    const hasher = new HashingTransform();
    hasher.write(Buffer.from('partial'));
    expect(hasher.bytes).toBe(7);
    expect(hasher.finished).toBe(false);
    expect(() => hasher.sha256).toThrow(/before the stream ended/);
    hasher.destroy();
  });

  it('hashes an empty stream', async () => {
    const hasher = new HashingTransform();
    await pipeline(Readable.from([]), hasher, async (source: AsyncIterable<Buffer>) => {
      for await (const _ of source) {
        // drain
      }
    });
    expect(hasher.bytes).toBe(0);
    expect(hasher.sha256).toBe(expected(Buffer.alloc(0)));
  });

  it('accepts string chunks as UTF-8 bytes', async () => {
    const hasher = new HashingTransform();
    const text = 'Grüße ✉';
    const out: Buffer[] = [];
    await pipeline(
      Readable.from([text], { objectMode: false }),
      hasher,
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) out.push(chunk);
      },
    );
    expect(hasher.bytes).toBe(Buffer.byteLength(text));
    expect(hasher.sha256).toBe(expected(Buffer.from(text)));
  });
});

describe('sha256Hex and hashStream', () => {
  it('agree with node:crypto', async () => {
    const data = randomBytes(200_000);
    expect(sha256Hex(data)).toBe(expected(data));
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const parts = [data.subarray(0, 1000), data.subarray(1000)];
    expect(await hashStream(Readable.from(parts))).toEqual({ size: data.length, sha256: expected(data) });
  });
});

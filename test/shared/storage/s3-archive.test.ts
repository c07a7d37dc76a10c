/**
 * S3Archive against a real s3rver: multipart streaming with flat memory, abort on a failing source,
 * pagination, pre-signed links, prefixes. The create-only (412/409) paths are in
 * s3-archive-conditional.test.ts, because s3rver ignores If-None-Match.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { ListMultipartUploadsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArchiveError } from '../../../shared/errors.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { hashStream, sha256Hex } from '../../../shared/storage/hashing.js';
import {
  createS3Client,
  MAX_LINK_EXPIRY_SECONDS,
  MIN_PART_SIZE_BYTES,
  S3Archive,
} from '../../../shared/storage/s3-archive.js';
import { type S3rverFixture, startS3rver } from '../../fixtures/s3rver.js';

const MiB = 1024 * 1024;

/** A deterministic-size body produced on demand (never held in memory), hashed as it is produced. */
function generatedBody(totalBytes: number, options: { failAfterBytes?: number } = {}) {
  const hash = createHash('sha256');
  const block = randomBytes(64 * 1024);
  let produced = 0;
  const stream = new Readable({
    read() {
      if (options.failAfterBytes !== undefined && produced >= options.failAfterBytes) {
        this.destroy(new Error('source connection reset'));
        return;
      }
      if (produced >= totalBytes) {
        this.push(null);
        return;
      }
      const n = Math.min(block.length, totalBytes - produced);
      const chunk = Buffer.allocUnsafe(n);
      block.copy(chunk, 0, 0, n);
      chunk.writeUInt32BE(produced >>> 16, 0); // parts differ, so a misordered part changes the hash
      hash.update(chunk);
      produced += n;
      this.push(chunk);
    },
  });
  let digest: string | undefined;
  return { stream, sha256: () => (digest ??= hash.digest('hex')), produced: () => produced };
}

/** Records the command names the client sends. */
function recordCommands(client: S3Client): string[] {
  const names: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      names.push(context.commandName ?? '?');
      return next(args);
    },
    { step: 'initialize', name: 'recordCommands' },
  );
  return names;
}

describe('S3Archive on s3rver', () => {
  let s3: S3rverFixture;
  let client: S3Client;
  let archive: S3Archive;

  beforeAll(async () => {
    s3 = await startS3rver();
    client = new S3Client(s3.clientConfig);
    archive = new S3Archive({ client, bucket: s3.bucket });
  });
  afterAll(async () => {
    client?.destroy();
    await s3?.stop();
  });

  const uploadsInProgress = async () =>
    (await client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket }))).Uploads ?? [];

  it('createS3Client talks to s3rver and keeps streamed bodies byte-exact', async () => {
    const own = createS3Client({
      region: 'us-east-1',
      endpoint: s3.endpoint,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    try {
      expect(await own.config.forcePathStyle).toBe(true);
      expect(await own.config.requestChecksumCalculation()).toBe('WHEN_REQUIRED');
      expect(await own.config.responseChecksumValidation()).toBe('WHEN_REQUIRED');
      // A streamed PutObject body: with the SDK's default checksums s3rver would store aws-chunked framing.
      const body = Buffer.from('x'.repeat(100_000));
      await own.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: 'client/streamed',
          Body: Readable.from([body]),
          ContentLength: body.length,
        }),
      );
      const other = new S3Archive({ client: own, bucket: s3.bucket });
      expect((await other.getBytes('client/streamed')).equals(body)).toBe(true);
    } finally {
      own.destroy();
    }
  });

  it('writes, reads and describes small objects with their SHA-256 in metadata', async () => {
    const stored = await archive.put('raw/mb/2024/01/02/a.json', '{"a":1}', {
      contentType: 'application/json',
    });
    expect(stored).toEqual({ key: 'raw/mb/2024/01/02/a.json', size: 7, sha256: sha256Hex('{"a":1}') });
    expect((await archive.getBytes('raw/mb/2024/01/02/a.json')).toString()).toBe('{"a":1}');
    expect((await hashStream(await archive.get('raw/mb/2024/01/02/a.json'))).sha256).toBe(stored.sha256);
    const head = await archive.head('raw/mb/2024/01/02/a.json');
    expect(head).toMatchObject({ key: 'raw/mb/2024/01/02/a.json', size: 7, sha256: stored.sha256 });
    expect(head?.lastModified).toBeInstanceOf(Date);

    // put replaces
    await archive.put('raw/mb/2024/01/02/a.json', Buffer.from('{"a":2}'));
    expect((await archive.getBytes('raw/mb/2024/01/02/a.json')).toString()).toBe('{"a":2}');

    expect(await archive.head('raw/mb/nothing-here.eml')).toBeUndefined();
    await expect(archive.get('raw/mb/nothing-here.eml')).rejects.toMatchObject({
      code: 'ARCHIVE_NOT_FOUND',
      transient: false,
    });
    await expect(archive.getBytes('raw/mb/nothing-here.eml')).rejects.toBeInstanceOf(ArchiveError);
    expect(archive.description).toBe(`s3://${s3.bucket}/`);
  });

  it('stores a small message create-only in one PUT with its hash in metadata', async () => {
    const commands = recordCommands(client);
    const body = Buffer.from('From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n');
    const result = await archive.putStreamCreateOnly('raw/mb/2024/01/02/small.eml', Readable.from([body]));
    expect(result).toEqual({
      key: 'raw/mb/2024/01/02/small.eml',
      size: body.length,
      sha256: sha256Hex(body),
      created: true,
    });
    expect(commands.filter((c) => c === 'PutObjectCommand')).toHaveLength(1);
    expect(commands).not.toContain('CreateMultipartUploadCommand');
    expect(commands).not.toContain('PutObjectTaggingCommand');
    const head = await archive.head('raw/mb/2024/01/02/small.eml');
    expect(head?.sha256).toBe(sha256Hex(body));
    client.middlewareStack.remove('recordCommands');
  });

  it('streams a 50 MB message via multipart with flat memory and a verifiable hash', async () => {
    // Warm up the multipart code path first, so one-time costs (SDK modules, JIT, sockets) are not
    // counted as growth with message size.
    await archive.put('warmup/multipart.bin', generatedBody(9 * MiB).stream);
    const commands = recordCommands(client);
    const body = generatedBody(50 * MiB);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 5);
    let result: Awaited<ReturnType<S3Archive['putStreamCreateOnly']>>;
    const started = performance.now();
    try {
      result = await archive.putStreamCreateOnly('raw/mb/2024/01/02/big.eml', body.stream);
    } finally {
      clearInterval(sampler);
    }
    const elapsedMs = performance.now() - started;
    const growthMiB = (peak - baseline) / MiB;
    console.info(
      `50 MiB multipart upload: ${elapsedMs.toFixed(0)} ms, RSS growth ${growthMiB.toFixed(1)} MiB`,
    );

    expect(result).toEqual({
      key: 'raw/mb/2024/01/02/big.eml',
      size: 50 * MiB,
      sha256: body.sha256(),
      created: true,
    });
    // Default 8 MiB parts, 2 held at once: 16 MiB of reused part buffers plus garbage not yet collected.
    expect(growthMiB).toBeLessThan(40);
    expect(commands.filter((c) => c === 'UploadPartCommand')).toHaveLength(7);
    expect(commands).toContain('CompleteMultipartUploadCommand');
    expect(commands).toContain('PutObjectTaggingCommand');
    client.middlewareStack.remove('recordCommands');

    const downloaded = await hashStream(await archive.get('raw/mb/2024/01/02/big.eml'));
    expect(downloaded).toEqual({ size: 50 * MiB, sha256: body.sha256() });
    // The hash of a multipart object lives in a tag (metadata is fixed before the hash is known).
    expect(await archive.head('raw/mb/2024/01/02/big.eml')).toMatchObject({
      size: 50 * MiB,
      sha256: body.sha256(),
    });
    expect(await uploadsInProgress()).toEqual([]);
  });

  it('aborts the multipart upload when the source fails mid-stream, leaving nothing behind', async () => {
    const commands = recordCommands(client);
    const body = generatedBody(50 * MiB, { failAfterBytes: 20 * MiB });
    const error = await archive.putStreamCreateOnly('raw/mb/2024/01/02/broken.eml', body.stream).then(
      () => undefined,
      (err: unknown) => err,
    );
    client.middlewareStack.remove('recordCommands');

    expect(error).toBeInstanceOf(ArchiveError);
    expect(error).toMatchObject({ code: 'ARCHIVE_WRITE_FAILED', transient: true });
    expect(((error as ArchiveError).cause as Error).message).toBe('source connection reset');
    expect(body.produced()).toBe(20 * MiB);
    expect(body.stream.destroyed).toBe(true);
    // Parts were uploaded before the failure, so there was an upload to abort.
    expect(commands.filter((c) => c === 'UploadPartCommand').length).toBeGreaterThanOrEqual(1);
    expect(commands).toContain('AbortMultipartUploadCommand');
    expect(commands).not.toContain('CompleteMultipartUploadCommand');
    expect(await archive.head('raw/mb/2024/01/02/broken.eml')).toBeUndefined();
    expect(await uploadsInProgress()).toEqual([]);
  });

  it('fails cleanly when the source fails before the first part is full', async () => {
    const body = generatedBody(4 * MiB, { failAfterBytes: 1 * MiB });
    await expect(
      archive.putStreamCreateOnly('raw/mb/2024/01/02/early.eml', body.stream),
    ).rejects.toMatchObject({
      code: 'ARCHIVE_WRITE_FAILED',
    });
    expect(await archive.head('raw/mb/2024/01/02/early.eml')).toBeUndefined();
    expect(await uploadsInProgress()).toEqual([]);
  });

  it('puts a streamed body larger than a part (create-or-replace)', async () => {
    const small = new S3Archive({
      client,
      bucket: s3.bucket,
      partSizeBytes: MIN_PART_SIZE_BYTES,
      queueSize: 1,
    });
    const first = generatedBody(6 * MiB);
    const stored = await small.put('attachments/mb/k/0-big.bin', first.stream);
    expect(stored).toEqual({ key: 'attachments/mb/k/0-big.bin', size: 6 * MiB, sha256: first.sha256() });
    const second = generatedBody(1 * MiB);
    await small.put('attachments/mb/k/0-big.bin', second.stream);
    expect(await hashStream(await small.get('attachments/mb/k/0-big.bin'))).toEqual({
      size: 1 * MiB,
      sha256: second.sha256(),
    });
  });

  it('pages through 2,500 keys under a prefix in key order', async () => {
    const keys = Array.from(
      { length: 2500 },
      (_, i) => `raw/pager/2024/01/02/${String(i).padStart(5, '0')}.eml`,
    );
    await s3.seedObjects(keys.map((key) => ({ key, body: 'x' })));
    // Neighbours that must not show up.
    await archive.put('raw/pager-other/x.eml', 'no');
    await archive.put('raw/pagen.eml', 'no');

    const seen: string[] = [];
    const cursors: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await archive.list('raw/pager/', { cursor, limit: 1000 });
      expect(page.items.length).toBeLessThanOrEqual(1000);
      for (const item of page.items) expect(item.size).toBe(1);
      seen.push(...page.items.map((i) => i.key));
      cursor = page.cursor;
      if (cursor) cursors.push(cursor);
    } while (cursor);
    expect(seen).toEqual(keys);
    expect(cursors).toEqual([keys[999], keys[1999]]);

    // The cursor is the last key: resumable from anywhere, with any page size.
    const page = await archive.list('raw/pager/', { cursor: keys[2494], limit: 3 });
    expect(page.items.map((i) => i.key)).toEqual(keys.slice(2495, 2498));
    expect(page.cursor).toBe(keys[2497]);
    const tail = await archive.list('raw/pager/', { cursor: keys[2497], limit: 3 });
    expect(tail.items.map((i) => i.key)).toEqual(keys.slice(2498));
    expect(tail.cursor).toBeUndefined();
  });

  it('gives a pre-signed link a plain fetch can download, capped at 7 days', async () => {
    await archive.put('raw/mb/2024/01/02/linked.eml', 'Subject: link\r\n\r\nbody\r\n');
    const url = await archive.linkFor('raw/mb/2024/01/02/linked.eml', 300);
    expect(url).toBeDefined();
    const response = await fetch(url as string);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('Subject: link\r\n\r\nbody\r\n');
    expect(new URL(url as string).searchParams.get('X-Amz-Expires')).toBe('300');

    const long = await archive.linkFor('raw/mb/2024/01/02/linked.eml', 30 * 24 * 3600);
    expect(new URL(long as string).searchParams.get('X-Amz-Expires')).toBe(String(MAX_LINK_EXPIRY_SECONDS));
  });

  it('keeps every key under its prefix and returns keys without it', async () => {
    const logger = createMemoryLogger();
    const tenant = new S3Archive({ client, bucket: s3.bucket, prefix: 'tenant-a', logger });
    expect(tenant.description).toBe(`s3://${s3.bucket}/tenant-a/`);
    const r = await tenant.putStreamCreateOnly('raw/m/2024/01/02/p.eml', Readable.from([Buffer.from('abc')]));
    expect(r.key).toBe('raw/m/2024/01/02/p.eml');
    expect((await archive.getBytes('tenant-a/raw/m/2024/01/02/p.eml')).toString()).toBe('abc');
    expect(await tenant.list('raw/')).toEqual({
      items: [expect.objectContaining({ key: 'raw/m/2024/01/02/p.eml', size: 3 })],
    });
  });

  it('rejects unsafe keys before touching S3', async () => {
    for (const key of [
      '',
      '/abs',
      'a/../b',
      'a//b',
      'a\\b',
      'nul\u0000x',
      '.tmp/x',
      'a/./b',
      'x'.repeat(1025),
    ]) {
      await expect(archive.putStreamCreateOnly(key, Readable.from(['x']))).rejects.toMatchObject({
        code: 'ARCHIVE_BAD_KEY',
        transient: false,
      });
      await expect(archive.head(key)).rejects.toMatchObject({ code: 'ARCHIVE_BAD_KEY' });
    }
    await expect(archive.list('../')).rejects.toMatchObject({ code: 'ARCHIVE_BAD_KEY' });
    expect(() => new S3Archive({ client, bucket: s3.bucket, partSizeBytes: 1024 })).toThrow(RangeError);
  });

  it('reports a missing bucket as a permanent write error that says what to check', async () => {
    const wrong = new S3Archive({ client, bucket: 'no-such-bucket' });
    const error = await wrong.putStreamCreateOnly('raw/x.eml', Readable.from(['x'])).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ARCHIVE_WRITE_FAILED', transient: false });
    expect((error as Error).message).toMatch(/bucket name/);
  });
});

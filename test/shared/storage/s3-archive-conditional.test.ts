/**
 * S3Archive's create-only paths. s3rver ignores `If-None-Match: *`, so the client gets a test double
 * in front of the real s3rver: a middleware below the SDK's deserializer that answers conditional
 * PutObject / CompleteMultipartUpload the way S3 does (412 PreconditionFailed when the key exists,
 * 409 ConditionalRequestConflict when told to, checks and writes serialised like S3's), and can inject
 * other faults. Everything else reaches s3rver, so uploads, aborts and reads are real.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ArchiveError } from '../../../shared/errors.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { hashStream, sha256Hex } from '../../../shared/storage/hashing.js';
import { MAX_CONFLICT_RETRIES, MIN_PART_SIZE_BYTES, S3Archive } from '../../../shared/storage/s3-archive.js';
import { type S3rverFixture, startS3rver } from '../../fixtures/s3rver.js';

const MiB = 1024 * 1024;

type Operation = 'PutObject' | 'CompleteMultipartUpload' | 'UploadPart' | 'HeadObject' | 'Other';

interface RawRequest {
  method: string;
  path: string;
  query: Record<string, string | string[] | null>;
  headers: Record<string, string>;
}

interface RawResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: unknown;
}

interface Double {
  /** Conditional requests to answer with 409 before behaving normally, per operation. */
  conflicts: { PutObject: number; CompleteMultipartUpload: number };
  /** Every request the double saw, as `Operation conditional?`. */
  calls: string[];
  /** Injected fault: return a response to short-circuit, or undefined to pass through. */
  fault?: (op: Operation, request: RawRequest) => RawResponse | undefined;
  /** Rewrites a real response (after s3rver answered). */
  tamper?: (op: Operation, response: RawResponse) => void;
}

function s3Error(statusCode: number, code: string, message: string): RawResponse {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>double</RequestId></Error>`;
  return {
    statusCode,
    headers: { 'content-type': 'application/xml', 'x-amz-request-id': 'double' },
    body: Readable.from([Buffer.from(xml)]),
  };
}

function operationOf(request: RawRequest): Operation {
  const hasUploadId = request.query.uploadId !== undefined;
  if (request.method === 'PUT' && !hasUploadId && request.query.tagging === undefined) return 'PutObject';
  if (request.method === 'PUT' && hasUploadId) return 'UploadPart';
  if (request.method === 'POST' && hasUploadId) return 'CompleteMultipartUpload';
  if (request.method === 'HEAD') return 'HeadObject';
  return 'Other';
}

/** Installs S3's conditional-write behaviour on `client`; `probe` is a plain client for existence checks. */
function installS3ConditionalWrites(client: S3Client, probe: S3Client, bucket: string): Double {
  const double: Double = { conflicts: { PutObject: 0, CompleteMultipartUpload: 0 }, calls: [] };
  let serial: Promise<unknown> = Promise.resolve();
  const exists = async (key: string) =>
    probe.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
      () => true,
      (err: { $metadata?: { httpStatusCode?: number } }) => {
        if (err.$metadata?.httpStatusCode === 404) return false;
        throw err;
      },
    );
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as RawRequest;
      const op = operationOf(request);
      const conditional = request.headers['if-none-match'] === '*';
      double.calls.push(`${op}${conditional ? ' conditional' : ''}`);
      const injected = double.fault?.(op, request);
      if (injected) return { response: injected, output: undefined as never };
      if (conditional && (op === 'PutObject' || op === 'CompleteMultipartUpload')) {
        const key = request.path
          .split('/')
          .slice(2)
          .map((s) => decodeURIComponent(s))
          .join('/');
        // S3 decides conditional writes on a key one at a time.
        const run = serial.then(async () => {
          if (double.conflicts[op] > 0) {
            double.conflicts[op]--;
            return {
              response: s3Error(
                409,
                'ConditionalRequestConflict',
                'A conflicting conditional operation is currently in progress against this resource. Please try again.',
              ),
            };
          }
          if (await exists(key)) {
            return {
              response: s3Error(
                412,
                'PreconditionFailed',
                'At least one of the pre-conditions you specified did not hold',
              ),
            };
          }
          return next(args);
        });
        serial = run.catch(() => undefined);
        return (await run) as Awaited<ReturnType<typeof next>>;
      }
      const result = await next(args);
      double.tamper?.(op, result.response as RawResponse);
      return result;
    },
    // Below the deserializer: our answers are parsed exactly like S3's.
    { step: 'deserialize', priority: 'low', name: 's3ConditionalWrites' },
  );
  return double;
}

function body(bytes: Buffer): Readable {
  return Readable.from([bytes]);
}

/** A body produced on demand, hashed as produced. */
function generatedBody(totalBytes: number) {
  const hash = createHash('sha256');
  const block = randomBytes(64 * 1024);
  let produced = 0;
  const stream = new Readable({
    read() {
      if (produced >= totalBytes) {
        this.push(null);
        return;
      }
      const chunk = Buffer.from(block.subarray(0, Math.min(block.length, totalBytes - produced)));
      chunk.writeUInt32BE(produced >>> 16, 0);
      hash.update(chunk);
      produced += chunk.length;
      this.push(chunk);
    },
  });
  let digest: string | undefined;
  return { stream, sha256: () => (digest ??= hash.digest('hex')) };
}

describe('S3Archive create-only against S3 conditional-write semantics', () => {
  let s3: S3rverFixture;
  let client: S3Client;
  let probe: S3Client;
  let double: Double;
  let logger: ReturnType<typeof createMemoryLogger>;
  let archive: S3Archive;
  let multipart: S3Archive;
  let n = 0;
  let key: string;

  beforeAll(async () => {
    s3 = await startS3rver();
    client = new S3Client(s3.clientConfig);
    probe = new S3Client(s3.clientConfig);
    double = installS3ConditionalWrites(client, probe, s3.bucket);
  });
  afterAll(async () => {
    client?.destroy();
    probe?.destroy();
    await s3?.stop();
  });
  beforeEach(() => {
    double.conflicts = { PutObject: 0, CompleteMultipartUpload: 0 };
    double.calls = [];
    double.fault = undefined;
    double.tamper = undefined;
    logger = createMemoryLogger();
    archive = new S3Archive({ client, bucket: s3.bucket, logger });
    multipart = new S3Archive({ client, bucket: s3.bucket, logger, partSizeBytes: MIN_PART_SIZE_BYTES });
    key = `raw/mb/2024/03/04/m${++n}.eml`;
  });

  const uploadsInProgress = async () =>
    (await probe.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket }))).Uploads ?? [];
  const stored = async (k: string) => hashStream(await archive.get(k));
  // createMemoryLogger's `records` is a snapshot taken at creation (Object.assign copies the getter's
  // value), so parse the live `lines`.
  const logged = () => logger.lines.map((l) => JSON.parse(l) as Record<string, unknown>);

  it('a second write of the same key returns the existing object, untouched', async () => {
    const first = Buffer.from('From: a@example.com\r\n\r\nfirst\r\n');
    const again = Buffer.from('From: a@example.com\r\n\r\nsecond, different\r\n');
    expect(await archive.putStreamCreateOnly(key, body(first))).toMatchObject({ created: true });
    const second = await archive.putStreamCreateOnly(key, body(again));
    expect(second).toEqual({ key, size: first.length, sha256: sha256Hex(first), created: false });
    expect(await stored(key)).toEqual({ size: first.length, sha256: sha256Hex(first) });
    expect(double.calls.filter((c) => c === 'PutObject conditional')).toHaveLength(2);
    // Same key, different bytes: worth a warning (the server changed the message, or the key is wrong).
    expect(logged().some((r) => r.message === 'Archived object differs from the bytes fetched again')).toBe(
      true,
    );
  });

  it('a re-fetch with identical bytes is quiet', async () => {
    const bytes = Buffer.from('Subject: same\r\n\r\nsame\r\n');
    await archive.putStreamCreateOnly(key, body(bytes));
    expect(await archive.putStreamCreateOnly(key, body(bytes))).toMatchObject({
      created: false,
      sha256: sha256Hex(bytes),
    });
    expect(logged().filter((r) => r.level === 'warn')).toEqual([]);
  });

  it('a multipart write refused at completion aborts its upload and leaves the original', async () => {
    const original = generatedBody(6 * MiB);
    expect(await multipart.putStreamCreateOnly(key, original.stream)).toMatchObject({
      created: true,
      size: 6 * MiB,
    });
    const again = generatedBody(6 * MiB);
    const result = await multipart.putStreamCreateOnly(key, again.stream);
    expect(result).toEqual({ key, size: 6 * MiB, sha256: original.sha256(), created: false });
    expect(double.calls.filter((c) => c === 'CompleteMultipartUpload conditional')).toHaveLength(2);
    expect(double.calls.filter((c) => c === 'Other').length).toBeGreaterThan(0);
    expect(await uploadsInProgress()).toEqual([]);
    expect(await stored(key)).toEqual({ size: 6 * MiB, sha256: original.sha256() });
  });

  it('retries a PUT answered 409 ConditionalRequestConflict, then succeeds', async () => {
    double.conflicts.PutObject = 2;
    const bytes = Buffer.from('Subject: conflict\r\n\r\nx\r\n');
    expect(await archive.putStreamCreateOnly(key, body(bytes))).toEqual({
      key,
      size: bytes.length,
      sha256: sha256Hex(bytes),
      created: true,
    });
    expect(double.calls.filter((c) => c === 'PutObject conditional')).toHaveLength(3);
  });

  it('a conflict that resolves to "exists" returns the winner', async () => {
    const winner = Buffer.from('winner');
    await probe.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: winner }));
    double.conflicts.PutObject = 1;
    const result = await archive.putStreamCreateOnly(key, body(Buffer.from('loser')));
    expect(result).toMatchObject({ created: false, size: winner.length, sha256: sha256Hex(winner) });
  });

  it('gives up after a bounded number of conflicts with a transient error and no object', async () => {
    double.conflicts.PutObject = 1000;
    const error = await archive.putStreamCreateOnly(key, body(Buffer.from('x'))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ArchiveError);
    expect(error).toMatchObject({ code: 'ARCHIVE_WRITE_CONFLICT', transient: true });
    expect(double.calls.filter((c) => c === 'PutObject conditional')).toHaveLength(1 + MAX_CONFLICT_RETRIES);
    expect(await archive.head(key)).toBeUndefined();
  });

  it('a multipart completion answered 409 aborts, and fails transiently when nobody else wrote the key', async () => {
    double.conflicts.CompleteMultipartUpload = 1;
    const error = await multipart
      .putStreamCreateOnly(key, generatedBody(6 * MiB).stream)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ARCHIVE_WRITE_CONFLICT', transient: true });
    expect(await archive.head(key)).toBeUndefined();
    expect(await uploadsInProgress()).toEqual([]);
  });

  it('a multipart completion answered 409 returns the rival object when it exists', async () => {
    await probe.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: 'rival' }));
    double.conflicts.CompleteMultipartUpload = 1;
    const result = await multipart.putStreamCreateOnly(key, generatedBody(6 * MiB).stream);
    expect(result).toMatchObject({ created: false, size: 5, sha256: sha256Hex('rival') });
    expect(await uploadsInProgress()).toEqual([]);
  });

  it('computes (and then tags) the hash of an existing object written without one', async () => {
    await probe.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: 'legacy bytes' }));
    expect((await archive.head(key))?.sha256).toBeUndefined();
    const result = await archive.putStreamCreateOnly(key, body(Buffer.from('legacy bytes')));
    expect(result).toEqual({ key, size: 12, sha256: sha256Hex('legacy bytes'), created: false });
    expect((await archive.head(key))?.sha256).toBe(sha256Hex('legacy bytes'));
  });

  it('five concurrent writers of one key: exactly one creates it, all agree on its content', async () => {
    const bodies = Array.from({ length: 5 }, (_, i) =>
      Buffer.from(`Subject: writer ${i}\r\n\r\n${'x'.repeat(1000 * i)}\r\n`),
    );
    const results = await Promise.all(bodies.map((b) => archive.putStreamCreateOnly(key, body(b))));
    const created = results.filter((r) => r.created);
    expect(created).toHaveLength(1);
    const winner = created[0] as (typeof results)[number];
    for (const r of results)
      expect({ size: r.size, sha256: r.sha256 }).toEqual({ size: winner.size, sha256: winner.sha256 });
    expect(await stored(key)).toEqual({ size: winner.size, sha256: winner.sha256 });
    expect(bodies.some((b) => sha256Hex(b) === winner.sha256)).toBe(true);
  });

  it('a failing part aborts the upload, stops reading the source, and says what to check', async () => {
    double.fault = (op, request) =>
      op === 'UploadPart' && request.query.partNumber === '2'
        ? s3Error(403, 'AccessDenied', 'Access Denied')
        : undefined;
    const source = generatedBody(40 * MiB);
    const error = await multipart.putStreamCreateOnly(key, source.stream).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ARCHIVE_WRITE_FAILED', transient: false });
    expect((error as Error).message).toMatch(/permissions|credentials|role/);
    expect(source.stream.destroyed).toBe(true);
    // Stopped early: far fewer than the 8 parts a 40 MiB body needs.
    expect(double.calls.filter((c) => c === 'UploadPart').length).toBeLessThanOrEqual(4);
    expect(await uploadsInProgress()).toEqual([]);
    expect(await archive.head(key)).toBeUndefined();
  });

  it('removes an object whose stored size does not match what was sent', async () => {
    double.tamper = (op, response) => {
      if (op === 'HeadObject' && response.statusCode === 200) response.headers['content-length'] = '1';
    };
    const error = await archive
      .putStreamCreateOnly(key, body(Buffer.from('twelve bytes')))
      .catch((e: unknown) => e);
    double.tamper = undefined;
    expect(error).toMatchObject({
      code: 'ARCHIVE_VERIFY_FAILED',
      transient: true,
      details: { sent: 12, stored: 1 },
    });
    expect(await archive.head(key)).toBeUndefined();
  });
});

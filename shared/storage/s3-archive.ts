/**
 * The archive on S3. Raw mail is written create-only (`If-None-Match: *`), streamed in bounded parts,
 * and verified before we report it stored.
 *
 * Why we drive the multipart upload ourselves instead of `@aws-sdk/lib-storage`'s `Upload`:
 * - A body that fits one part (almost all mail) is sent as one PutObject whose buffer we still hold,
 *   so a `409 ConditionalRequestConflict` can be retried, and the SHA-256 (known by then) goes into
 *   object metadata at create time. `Upload` fixes the params up front and discards the buffer.
 * - On a failed part we stop reading the source at once; `Upload` keeps uploading the rest of the
 *   body first, and if its abort then fails, it throws the abort error instead of the real cause.
 * - Memory is bounded and flat: at most queueSize part buffers, reused for the whole upload.
 *
 * Integrity: every request body is a Buffer, so SigV4 signs its SHA-256 (`x-amz-content-sha256`) and
 * S3 rejects a body that does not match. We do not ask S3 for a SHA256 checksum: on a multipart
 * object S3's SHA256 is a checksum of part checksums, not the object's hash, so it cannot be the
 * message's `sha256`. We compute that ourselves while streaming and store it in metadata (single
 * PUT) or, for multipart objects (where it is only known at the end and metadata is fixed at
 * create time), as the object tag `sha256` via PutObjectTagging (needs s3:PutObjectTagging and
 * s3:GetObjectTagging). The `Tagging` header is not used: s3rver ignores it.
 */
import { pipeline, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ArchiveError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import type { Archive, ObjectInfo, PutRawResult, StoredObject } from './archive.js';
import { HashingTransform, hashStream, sha256Hex } from './hashing.js';
import { validateArchiveKey, validateArchivePrefix } from './local-archive.js';

/**
 * Part size for multipart uploads. S3's minimum is 5 MiB; 8 MiB keeps nearly all mail in a single PUT
 * (so its hash lands in metadata), allows objects up to ~78 GiB within S3's 10,000 parts, and keeps
 * memory at queueSize × 8 MiB per upload.
 */
export const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;
/**
 * Parts held at once (uploading, or being filled from the source). Two lets one part upload while the
 * next is read from the mail server, which is almost always the slower side; memory 2 × 8 MiB.
 */
export const DEFAULT_QUEUE_SIZE = 2;
/** S3 rejects smaller parts (except the last). */
export const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
/** S3's limit on parts per upload. */
const MAX_PARTS = 10_000;
/**
 * Retries of a create-only PUT answered `409 ConditionalRequestConflict` (another writer of the same
 * key was mid-flight). One or two rounds settle it: the retry then gets 412 or succeeds.
 */
export const MAX_CONFLICT_RETRIES = 3;
/** First conflict backoff; doubles per retry, plus up to 100% jitter so rivals spread out. */
const CONFLICT_RETRY_BASE_MS = 50;
/** SigV4 pre-signed URLs cannot be valid for longer than 7 days. */
export const MAX_LINK_EXPIRY_SECONDS = 7 * 24 * 60 * 60;
/** ListObjectsV2 returns at most 1,000 keys per page. */
const MAX_LIST_LIMIT = 1000;
/** Tries to abort a failed multipart upload; past that the bucket's AbortIncompleteMultipartUpload rule cleans up. */
const ABORT_ATTEMPTS = 3;
/** Metadata and tag name holding the hex SHA-256 we computed. */
const SHA256_FIELD = 'sha256';
/** Metadata name holding the byte count we counted. */
const SIZE_FIELD = 'size';
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** S3 error names that no retry will fix: the bucket or the credentials are wrong. */
const PERMANENT_S3_ERRORS = new Set([
  'AccessDenied',
  'NoSuchBucket',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidBucketName',
  'AllAccessDisabled',
]);

export interface S3ClientOptions {
  region?: string;
  /** S3-compatible endpoint (s3rver, MinIO, LocalStack). Unset for AWS. */
  endpoint?: string;
  /** Defaults to true when `endpoint` is set (emulators rarely do virtual-hosted buckets). */
  forcePathStyle?: boolean;
  credentials?: S3ClientConfig['credentials'];
}

/**
 * An S3Client configured for the archive. Checksums are `WHEN_REQUIRED`: with the default
 * (`WHEN_SUPPORTED`) the SDK sends streamed bodies with aws-chunked framing and a CRC trailer, which
 * s3rver and some S3-compatible stores save verbatim, corrupting the object. Our bodies are Buffers
 * whose SHA-256 SigV4 already signs, so S3 still verifies every byte.
 */
export function createS3Client(options: S3ClientOptions = {}): S3Client {
  return new S3Client({
    region: options.region,
    endpoint: options.endpoint,
    forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
    credentials: options.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export interface S3ArchiveOptions {
  client: S3Client;
  bucket: string;
  /** Prepended to every key (e.g. `pophook/`); keys in results are given without it. */
  prefix?: string;
  logger?: Logger;
  /** At least 5 MiB (S3's minimum part). */
  partSizeBytes?: number;
  /** Parts held at once (uploading or being filled); memory ≈ queueSize × partSizeBytes. */
  queueSize?: number;
}

/**
 * Below this a body is gathered as the chunks that arrived and joined once, so small mail (nearly all
 * of it) never costs a whole part buffer. Above it bytes go into a reused part buffer.
 */
const INLINE_BODY_BYTES = 1024 * 1024;

interface Part {
  data: Buffer;
  /** The reusable buffer `data` lives in, if any; returned to the pool once the part is uploaded. */
  buffer?: Buffer;
  /** True when the source ended with this part. */
  last: boolean;
}

/**
 * Part buffers reused within one upload. With backpressure at most queueSize exist, so memory is
 * flat however large the message; allocating a fresh 8 MiB buffer per part would leave garbage that
 * the GC reclaims late, and RSS would grow with the message.
 */
class PartPool {
  readonly #free: Buffer[] = [];
  constructor(readonly size: number) {}
  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }
  give(buffer: Buffer | undefined): void {
    if (buffer) this.#free.push(buffer);
  }
}

/** Reads a stream in parts of a fixed size, knowing whether each part is the last. */
class PartReader {
  readonly #iterator: AsyncIterator<Buffer>;
  readonly #pool: PartPool;
  #leftover: Buffer | undefined;
  #ended = false;

  constructor(source: Readable, pool: PartPool) {
    this.#iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    this.#pool = pool;
  }

  /** The next part: `pool.size` bytes, fewer only at the end. */
  async read(): Promise<Part> {
    const size = this.#pool.size;
    let chunks: Buffer[] = [];
    let target: Buffer | undefined;
    let filled = 0;
    const take = (chunk: Buffer) => {
      const room = size - filled;
      const used = chunk.length > room ? chunk.subarray(0, room) : chunk;
      if (chunk.length > room) this.#leftover = chunk.subarray(room);
      if (!target && filled + used.length > INLINE_BODY_BYTES) {
        target = this.#pool.take();
        let at = 0;
        for (const c of chunks) at += c.copy(target, at);
        chunks = [];
      }
      if (target) used.copy(target, filled);
      else chunks.push(used);
      filled += used.length;
    };
    if (this.#leftover) {
      const chunk = this.#leftover;
      this.#leftover = undefined;
      take(chunk);
    }
    while (filled < size && !this.#ended) {
      const next = await this.#iterator.next();
      if (next.done) this.#ended = true;
      else take(next.value);
    }
    // A full part is the last only if nothing follows: peek one chunk so a body of exactly one part
    // still goes out as a single PUT.
    if (!this.#ended && !this.#leftover) {
      const next = await this.#iterator.next();
      if (next.done) this.#ended = true;
      else this.#leftover = next.value;
    }
    const last = this.#ended && !this.#leftover;
    if (target) return { data: target.subarray(0, filled), buffer: target, last };
    return { data: Buffer.concat(chunks, filled), last };
  }
}

/** Result of the upload engine before the created/existing decision. */
type UploadOutcome =
  | { kind: 'created'; size: number; sha256: string }
  | { kind: 'exists'; size: number; sha256: string };

export class S3Archive implements Archive {
  readonly description: string;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #logger: Logger;
  readonly #partSize: number;
  readonly #queueSize: number;

  constructor(options: S3ArchiveOptions) {
    const partSize = options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
    if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE_BYTES) {
      throw new RangeError(
        `partSizeBytes must be an integer of at least ${MIN_PART_SIZE_BYTES} (S3's minimum part)`,
      );
    }
    const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(queueSize) || queueSize < 1)
      throw new RangeError('queueSize must be a positive integer');
    const prefix = (options.prefix ?? '').replace(/^\/+/, '');
    if (prefix) validateArchivePrefix(prefix);
    this.#client = options.client;
    this.#bucket = options.bucket;
    this.#prefix = prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix;
    this.#logger = options.logger ?? silentLogger;
    this.#partSize = partSize;
    this.#queueSize = queueSize;
    this.description = `s3://${this.#bucket}/${this.#prefix}`;
  }

  async putStreamCreateOnly(
    key: string,
    body: Readable | Buffer,
    options: { contentType?: string } = {},
  ): Promise<PutRawResult> {
    validateArchiveKey(key);
    const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
    const outcome = await this.#upload(key, source, options.contentType ?? 'message/rfc822', true);
    if (outcome.kind === 'created') return { key, size: outcome.size, sha256: outcome.sha256, created: true };
    return this.#existing(key, outcome);
  }

  async put(
    key: string,
    body: Buffer | string | Readable,
    options: { contentType?: string } = {},
  ): Promise<StoredObject> {
    validateArchiveKey(key);
    const contentType = options.contentType ?? 'application/octet-stream';
    if (body instanceof Readable) {
      const outcome = await this.#upload(key, body, contentType, false);
      return { key, size: outcome.size, sha256: outcome.sha256 };
    }
    const data = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const sha256 = sha256Hex(data);
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: this.#fullKey(key),
          Body: data,
          ContentLength: data.length,
          ContentType: contentType,
          Metadata: { [SHA256_FIELD]: sha256, [SIZE_FIELD]: String(data.length) },
        }),
      );
    } catch (err) {
      throw writeFailed(key, err);
    }
    return { key, size: data.length, sha256 };
  }

  async get(key: string): Promise<Readable> {
    validateArchiveKey(key);
    try {
      const out = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.#fullKey(key) }),
      );
      if (out.Body instanceof Readable) return out.Body;
      throw new Error('GetObject returned a body that is not a Node stream');
    } catch (err) {
      throw readFailed(key, err);
    }
  }

  async getBytes(key: string): Promise<Buffer> {
    validateArchiveKey(key);
    try {
      const out = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.#fullKey(key) }),
      );
      if (!out.Body) throw new Error('GetObject returned no body');
      const bytes = await out.Body.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      throw readFailed(key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    validateArchiveKey(key);
    let out: HeadObjectCommandOutput;
    try {
      out = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#fullKey(key) }));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw readFailed(key, err);
    }
    const info: ObjectInfo = { key, size: out.ContentLength ?? 0 };
    if (out.LastModified) info.lastModified = out.LastModified;
    const sha256 = validSha(out.Metadata?.[SHA256_FIELD]) ?? (await this.#shaFromTags(key));
    if (sha256) info.sha256 = sha256;
    return info;
  }

  async list(
    prefix: string,
    options: { cursor?: string; limit?: number } = {},
  ): Promise<{ items: ObjectInfo[]; cursor?: string }> {
    if (prefix) validateArchivePrefix(prefix);
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? MAX_LIST_LIMIT), 1), MAX_LIST_LIMIT);
    let out: ListObjectsV2CommandOutput;
    try {
      // The cursor is the last key returned (StartAfter), not S3's opaque continuation token: the same
      // cursor then works for the local archive, and survives across clients and restarts.
      out = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: this.#fullKey(prefix),
          StartAfter: options.cursor ? this.#fullKey(options.cursor) : undefined,
          MaxKeys: limit,
        }),
      );
    } catch (err) {
      throw readFailed(prefix, err);
    }
    const items: ObjectInfo[] = [];
    for (const object of out.Contents ?? []) {
      if (!object.Key) continue;
      const item: ObjectInfo = { key: object.Key.slice(this.#prefix.length), size: object.Size ?? 0 };
      if (object.LastModified) item.lastModified = object.LastModified;
      items.push(item);
    }
    const last = items.at(-1);
    return out.IsTruncated && last ? { items, cursor: last.key } : { items };
  }

  /**
   * A pre-signed GET URL, valid for at most 7 days (SigV4's limit). With temporary credentials (a
   * Lambda role) the URL also stops working when those credentials expire, which can be sooner.
   */
  async linkFor(key: string, expiresInSeconds: number): Promise<string | undefined> {
    validateArchiveKey(key);
    const expiresIn = Math.min(Math.max(Math.trunc(expiresInSeconds), 1), MAX_LINK_EXPIRY_SECONDS);
    try {
      return await getSignedUrl(
        this.#client,
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.#fullKey(key) }),
        { expiresIn },
      );
    } catch (err) {
      throw readFailed(key, err);
    }
  }

  #fullKey(key: string): string {
    return this.#prefix + key;
  }

  /**
   * Streams `body` to `key` in parts. Create-only when `createOnly`; then an existing object ends the
   * upload with `kind: 'exists'` (our counted size and hash, for comparison).
   */
  async #upload(
    key: string,
    body: Readable,
    contentType: string,
    createOnly: boolean,
  ): Promise<UploadOutcome> {
    const hasher = new HashingTransform();
    // A failing source fails the hasher (so reading throws); destroying the hasher destroys the source.
    pipeline(body, hasher, () => {});
    const pool = new PartPool(this.#partSize);
    const reader = new PartReader(hasher, pool);
    let first: Part;
    try {
      first = await reader.read();
    } catch (err) {
      hasher.destroy();
      throw writeFailed(key, err);
    }
    if (first.last) return this.#putSingle(key, first.data, hasher.sha256, contentType, createOnly);
    return this.#putMultipart(key, first, reader, pool, hasher, contentType, createOnly);
  }

  async #putSingle(
    key: string,
    data: Buffer,
    sha256: string,
    contentType: string,
    createOnly: boolean,
  ): Promise<UploadOutcome> {
    const size = data.length;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#client.send(
          new PutObjectCommand({
            Bucket: this.#bucket,
            Key: this.#fullKey(key),
            Body: data,
            ContentLength: size,
            ContentType: contentType,
            Metadata: { [SHA256_FIELD]: sha256, [SIZE_FIELD]: String(size) },
            IfNoneMatch: createOnly ? '*' : undefined,
          }),
        );
        break;
      } catch (err) {
        if (createOnly && isPreconditionFailed(err)) return { kind: 'exists', size, sha256 };
        if (createOnly && isConditionalConflict(err)) {
          if (attempt < MAX_CONFLICT_RETRIES) {
            this.#logger.info('Archive write conflict; retrying', { key, attempt: attempt + 1 });
            await sleep(conflictDelayMs(attempt));
            continue;
          }
          throw conflictError(key, err);
        }
        throw writeFailed(key, err);
      }
    }
    if (createOnly) await this.#verifySize(key, size);
    return { kind: 'created', size, sha256 };
  }

  async #putMultipart(
    key: string,
    first: Part,
    reader: PartReader,
    pool: PartPool,
    hasher: HashingTransform,
    contentType: string,
    createOnly: boolean,
  ): Promise<UploadOutcome> {
    const fullKey = this.#fullKey(key);
    let uploadId: string;
    try {
      const created = await this.#client.send(
        new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: fullKey, ContentType: contentType }),
      );
      if (!created.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
      uploadId = created.UploadId;
    } catch (err) {
      hasher.destroy();
      throw writeFailed(key, err);
    }

    const parts: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    const controller = new AbortController();
    let failure: { error: unknown } | undefined;
    const fail = (error: unknown) => {
      failure ??= { error };
      controller.abort();
    };

    try {
      let part = first;
      for (let partNumber = 1; ; partNumber++) {
        if (partNumber > MAX_PARTS) {
          throw new Error(`message exceeds ${MAX_PARTS} parts of ${this.#partSize} bytes`);
        }
        const current = part;
        const task = this.#uploadPart(fullKey, uploadId, partNumber, current.data, controller.signal).then(
          (etag) => {
            parts.push({ PartNumber: partNumber, ETag: etag });
            // Only after success: a failed or aborted request may still be writing from the buffer.
            pool.give(current.buffer);
          },
          fail,
        );
        inFlight.add(task);
        void task.then(() => inFlight.delete(task));
        if (part.last) break;
        // Backpressure: read the next part only when a slot is free, so memory stays bounded.
        while (inFlight.size >= this.#queueSize && !failure) await Promise.race(inFlight);
        if (failure) break;
        part = await reader.read();
      }
      await Promise.all(inFlight);
      if (failure) throw failure.error;
    } catch (err) {
      controller.abort();
      hasher.destroy();
      await Promise.allSettled(inFlight);
      await this.#abortUpload(key, uploadId);
      throw writeFailed(key, err);
    }

    const size = hasher.bytes;
    const sha256 = hasher.sha256;
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    try {
      await this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#bucket,
          Key: fullKey,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
          IfNoneMatch: createOnly ? '*' : undefined,
        }),
      );
    } catch (err) {
      // After a refused completion the upload is still open on S3; its parts cost money until aborted.
      await this.#abortUpload(key, uploadId);
      if (createOnly && isPreconditionFailed(err)) return { kind: 'exists', size, sha256 };
      if (createOnly && isConditionalConflict(err)) {
        // S3 says to re-upload every part, but the source is a one-shot stream. If the rival won, the
        // object is there now; otherwise the caller fetches the message again.
        if (await this.head(key)) return { kind: 'exists', size, sha256 };
        throw conflictError(key, err);
      }
      throw writeFailed(key, err);
    }
    await this.#verifySize(key, size);
    try {
      await this.#client.send(
        new PutObjectTaggingCommand({
          Bucket: this.#bucket,
          Key: fullKey,
          Tagging: { TagSet: [{ Key: SHA256_FIELD, Value: sha256 }] },
        }),
      );
    } catch (err) {
      // The object is stored and its size verified; a missing tag only means head() cannot report
      // the hash, and a later re-fetch recomputes it from the bytes.
      this.#logger.warn('Archive could not tag object with its SHA-256', { key, error: err });
    }
    return { kind: 'created', size, sha256 };
  }

  async #uploadPart(
    fullKey: string,
    uploadId: string,
    partNumber: number,
    data: Buffer,
    abortSignal: AbortSignal,
  ): Promise<string> {
    const out = await this.#client.send(
      new UploadPartCommand({
        Bucket: this.#bucket,
        Key: fullKey,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: data,
        ContentLength: data.length,
      }),
      { abortSignal },
    );
    if (!out.ETag) throw new Error(`UploadPart ${partNumber} returned no ETag`);
    return out.ETag;
  }

  async #abortUpload(key: string, uploadId: string): Promise<void> {
    for (let attempt = 1; attempt <= ABORT_ATTEMPTS; attempt++) {
      try {
        await this.#client.send(
          new AbortMultipartUploadCommand({
            Bucket: this.#bucket,
            Key: this.#fullKey(key),
            UploadId: uploadId,
          }),
        );
        return;
      } catch (err) {
        if (isNotFound(err)) return;
        if (attempt === ABORT_ATTEMPTS) {
          this.#logger.error('Archive could not abort multipart upload', { key, uploadId, error: err });
        }
      }
    }
  }

  /** HeadObject must report the byte count we streamed; otherwise the object is removed and we fail. */
  async #verifySize(key: string, size: number): Promise<void> {
    let stored: number | undefined;
    try {
      const out = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#fullKey(key) }),
      );
      stored = out.ContentLength;
    } catch (err) {
      throw new ArchiveError(
        'ARCHIVE_VERIFY_FAILED',
        'Could not verify the archived object; it will be written again.',
        {
          cause: err,
          transient: true,
          details: { key },
        },
      );
    }
    if (stored === size) return;
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#fullKey(key) }));
    } catch (err) {
      this.#logger.error('Archive could not remove object that failed verification', { key, error: err });
    }
    throw new ArchiveError(
      'ARCHIVE_VERIFY_FAILED',
      'The archive stored a different number of bytes than were sent; the object was removed and the message will be fetched again.',
      { transient: true, details: { key, sent: size, stored } },
    );
  }

  /** The object already at `key`: its size and hash (from metadata or tag, else computed from its bytes). */
  async #existing(key: string, ours: { size: number; sha256: string }): Promise<PutRawResult> {
    const info = await this.head(key);
    if (!info) {
      throw new ArchiveError(
        'ARCHIVE_WRITE_CONFLICT',
        'The archive reported the object as existing, but it is gone; the message will be fetched again.',
        { transient: true, details: { key } },
      );
    }
    let sha256 = info.sha256;
    if (!sha256) {
      const computed = await hashStream(await this.get(key));
      sha256 = computed.sha256;
      await this.#client
        .send(
          new PutObjectTaggingCommand({
            Bucket: this.#bucket,
            Key: this.#fullKey(key),
            Tagging: { TagSet: [{ Key: SHA256_FIELD, Value: sha256 }] },
          }),
        )
        .catch((err: unknown) =>
          this.#logger.warn('Archive could not tag object with its SHA-256', { key, error: err }),
        );
    }
    if (info.size !== ours.size || sha256 !== ours.sha256) {
      this.#logger.warn('Archived object differs from the bytes fetched again', {
        key,
        storedSize: info.size,
        fetchedSize: ours.size,
        storedSha256: sha256,
        fetchedSha256: ours.sha256,
      });
    }
    return { key, size: info.size, sha256, created: false };
  }

  async #shaFromTags(key: string): Promise<string | undefined> {
    try {
      const out = await this.#client.send(
        new GetObjectTaggingCommand({ Bucket: this.#bucket, Key: this.#fullKey(key) }),
      );
      return validSha(out.TagSet?.find((t) => t.Key === SHA256_FIELD)?.Value);
    } catch (err) {
      this.#logger.debug('Archive could not read object tags', { key, error: err });
      return undefined;
    }
  }
}

function validSha(value: string | undefined): string | undefined {
  return value && SHA256_HEX.test(value) ? value : undefined;
}

function conflictDelayMs(attempt: number): number {
  const base = CONFLICT_RETRY_BASE_MS * 2 ** attempt;
  return base + Math.floor(Math.random() * base);
}

interface SdkErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function s3ErrorName(err: unknown): string | undefined {
  if (!err || typeof err !== 'object') return undefined;
  const e = err as SdkErrorShape;
  return e.Code ?? e.name;
}

function httpStatus(err: unknown): number | undefined {
  if (!err || typeof err !== 'object') return undefined;
  return (err as SdkErrorShape).$metadata?.httpStatusCode;
}

function isPreconditionFailed(err: unknown): boolean {
  return s3ErrorName(err) === 'PreconditionFailed' || httpStatus(err) === 412;
}

function isConditionalConflict(err: unknown): boolean {
  return s3ErrorName(err) === 'ConditionalRequestConflict' || httpStatus(err) === 409;
}

function isNotFound(err: unknown): boolean {
  const name = s3ErrorName(err);
  return name === 'NotFound' || name === 'NoSuchKey' || name === 'NoSuchUpload' || httpStatus(err) === 404;
}

function isPermanent(err: unknown): boolean {
  return PERMANENT_S3_ERRORS.has(s3ErrorName(err) ?? '');
}

function writeFailed(key: string, err: unknown): ArchiveError {
  if (err instanceof ArchiveError) return err;
  const permanent = isPermanent(err);
  return new ArchiveError(
    'ARCHIVE_WRITE_FAILED',
    permanent
      ? 'Could not write to the archive bucket: check the bucket name and the role or credentials allowed to write to it.'
      : 'Could not write the object to the archive; nothing was stored and it will be written again.',
    { cause: err, transient: !permanent, details: { key, s3Error: s3ErrorName(err) } },
  );
}

function readFailed(key: string, err: unknown): ArchiveError {
  if (err instanceof ArchiveError) return err;
  if (isNotFound(err)) {
    return new ArchiveError('ARCHIVE_NOT_FOUND', 'The archive has no object at this key.', {
      cause: err,
      transient: false,
      details: { key },
    });
  }
  const permanent = isPermanent(err);
  return new ArchiveError(
    'ARCHIVE_READ_FAILED',
    permanent
      ? 'Could not read from the archive bucket: check the bucket name and the role or credentials allowed to read it.'
      : 'Could not read from the archive; try again.',
    { cause: err, transient: !permanent, details: { key, s3Error: s3ErrorName(err) } },
  );
}

function conflictError(key: string, err: unknown): ArchiveError {
  return new ArchiveError(
    'ARCHIVE_WRITE_CONFLICT',
    'Another writer was creating the same archive object at the same time; the message will be fetched again.',
    { cause: err, transient: true, details: { key } },
  );
}

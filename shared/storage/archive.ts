/**
 * The archive port: where raw mail, parsed events and attachments live. Two implementations with the
 * same key layout: S3 (`s3-archive.ts`) and a local directory (`local-archive.ts`).
 *
 * Layout (browsable by a person):
 *   raw/<mailbox>/<yyyy>/<mm>/<dd>/<messageKey>.eml
 *   raw/<mailbox>/<yyyy>/<mm>/<dd>/<messageKey>.json          (the parsed event)
 *   attachments/<mailbox>/<messageKey>/<n>-<safe filename>
 */
import type { Readable } from 'node:stream';

export interface StoredObject {
  key: string;
  size: number;
  /** Hex SHA-256 of the stored bytes. */
  sha256: string;
}

export interface PutRawResult extends StoredObject {
  /** False when an object already existed at the key (a re-fetch); it was left untouched. */
  created: boolean;
}

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified?: Date;
  /** From object metadata when we wrote it. */
  sha256?: string;
}

export interface Archive {
  /** Human-readable description for logs and `pophook check`: `s3://bucket` or a path. */
  readonly description: string;
  /**
   * Streams `body` to `key`, create-only (a Buffer is a message already read off the wire). Computes size and SHA-256 while streaming and verifies them
   * against what was stored before resolving. If `key` already exists the upload is abandoned
   * (S3: `If-None-Match: *` answered 412) and the existing object's info is returned with
   * `created: false`. On any failure nothing is left behind (S3: multipart upload aborted; local:
   * temp file removed) and the error is an ArchiveError.
   */
  putStreamCreateOnly(
    key: string,
    body: Readable | Buffer,
    options?: { contentType?: string },
  ): Promise<PutRawResult>;
  /** Writes a small object (event JSON, attachment) create-or-replace. Atomic: readers never see half. */
  put(
    key: string,
    body: Buffer | string | Readable,
    options?: { contentType?: string },
  ): Promise<StoredObject>;
  get(key: string): Promise<Readable>;
  getBytes(key: string): Promise<Buffer>;
  /** Undefined when absent. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Keys under `prefix`, in key order, a page at a time. */
  list(
    prefix: string,
    options?: { cursor?: string; limit?: number },
  ): Promise<{ items: ObjectInfo[]; cursor?: string }>;
  /** A URL a webhook receiver can GET for `expiresInSeconds` (S3: pre-signed; local: undefined). */
  linkFor(key: string, expiresInSeconds: number): Promise<string | undefined>;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Keeps mailbox ids and names safe as key segments (ids are already validated; this is belt and braces). */
export function safeSegment(text: string, maxLength = 100): string {
  const cleaned = text
    .normalize('NFKC')
    // Control and invisible format characters (bidi overrides such as U+202E make `gnp.exe` read as
    // `exe.png`) never belong in a key a person reads.
    .replace(/[\u0000-\u001f\u007f\p{Cf}]/gu, '')
    .replace(/[/\\:*?"<>|]/g, '_')
    .replace(/^\.+/, '_')
    .replace(/\s+/g, ' ')
    .trim();
  let out = (cleaned || 'unnamed').slice(0, maxLength);
  // Filesystems cap a name at 255 bytes, not characters; leave room for the `<n>-` prefix.
  while (Buffer.byteLength(out) > MAX_SEGMENT_BYTES) out = out.slice(0, -1);
  return out;
}

/** Longest key segment in UTF-8 bytes (255-byte filesystem names, minus room for an index prefix). */
export const MAX_SEGMENT_BYTES = 200;

export function rawKey(mailboxId: string, messageKey: string, firstSeenAt: Date): string {
  const d = firstSeenAt;
  return `raw/${safeSegment(mailboxId)}/${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/${messageKey}.eml`;
}

export function eventKey(rawObjectKey: string): string {
  return rawObjectKey.replace(/\.eml$/, '.json');
}

export function attachmentKey(
  mailboxId: string,
  messageKey: string,
  index: number,
  filename: string | undefined,
): string {
  return `attachments/${safeSegment(mailboxId)}/${messageKey}/${index}-${safeSegment(filename ?? 'attachment', 120)}`;
}

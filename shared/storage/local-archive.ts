/**
 * The archive in a local directory, with the same key layout as S3 (`raw/<mailbox>/<yyyy>/...`), so a
 * person can browse it and tools can move between the two.
 *
 * Durability and create-only, without locks: a message is streamed (and hashed) into a private temp
 * file under `<dir>/.tmp/` (same filesystem), fsynced, then hard-linked to its key. link(2) fails with
 * EEXIST when the key exists, so exactly one of any number of racing writers creates it, and readers
 * only ever see a complete file. The key's directory is then fsynced so the new name survives a crash
 * (one fsync shared by every write that lands in that directory meanwhile: group commit).
 * A crash leaves at most a temp file, which `cleanupTemp()` removes.
 *
 * SHA-256 in head(): not stored. A sidecar file would double the inodes and clutter the browsable
 * layout, and Node has no xattr API. head() reports size and mtime; when a hash is needed for an
 * existing object (a re-fetch hitting create-only) it is computed by streaming the file, which is
 * rare and cheap at mail sizes.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, type Dirent } from 'node:fs';
import {
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
} from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Clock, systemClock } from '../clock.js';
import { coalescingDirSync } from '../dir-sync.js';
import { type DurableWriter, sharedDurableWriter } from '../durable-writer.js';
import { ArchiveError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { sanitizeForeignText } from '../sanitize.js';
import type { Archive, ObjectInfo, PutRawResult, StoredObject } from './archive.js';
import { HashingTransform, hashStream } from './hashing.js';
import { readUpTo } from './read-up-to.js';

/** S3's key limit; enforced for both archives so a key valid in one is valid in the other. */
export const MAX_KEY_BYTES = 1024;
/** Most filesystems' limit on one path segment (NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;
/** Directory under the archive root for in-progress writes; reserved, never a key. */
export const TEMP_DIR_NAME = '.tmp';
/** Same page cap as S3's ListObjectsV2, so callers page the same way on both. */
const MAX_LIST_LIMIT = 1000;
/** Mail is private: files only for the owner. */
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/**
 * Objects up to this size given as streams (attachments) are read into memory and written whole on the
 * writer thread; bigger ones are streamed. Small: the parser writes at most a few at once.
 */
export const WHOLE_WRITE_MAX_BYTES = 1024 * 1024;
/** Directories remembered as existing; attachments get one per message, so the memory is bounded. */
const MAX_KNOWN_DIRS = 4096;
/** Filesystems that cannot fsync a directory answer these; the rename/link is still done. */
const DIR_SYNC_UNSUPPORTED = new Set(['EINVAL', 'EISDIR', 'ENOTSUP', 'EPERM']);

function badKey(what: string, key: string, reason: string): ArchiveError {
  return new ArchiveError('ARCHIVE_BAD_KEY', `Refused archive ${what}: ${reason}.`, {
    transient: false,
    details: { key: sanitizeForeignText(key) },
  });
}

/**
 * Throws ArchiveError `ARCHIVE_BAD_KEY` unless `key` is a relative, normalised path of `/`-separated
 * segments: no leading `/`, no empty, `.` or `..` segment, no backslash or control character (NUL
 * included), not under the reserved `.tmp/`, at most 1,024 UTF-8 bytes.
 */
export function validateArchiveKey(key: string): void {
  checkPath('key', key, false);
}

/** Like validateArchiveKey for a list prefix, which may be empty or end with `/`. */
export function validateArchivePrefix(prefix: string): void {
  if (prefix === '') return;
  checkPath('prefix', prefix, true);
}

function checkPath(what: string, key: string, isPrefix: boolean): void {
  if (typeof key !== 'string' || key.length === 0) throw badKey(what, String(key), 'it is empty');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES)
    throw badKey(what, key, `it is over ${MAX_KEY_BYTES} bytes`);
  if (/[\u0000-\u001f\u007f]/.test(key)) throw badKey(what, key, 'it contains a control character');
  if (key.includes('\\')) throw badKey(what, key, 'it contains a backslash');
  if (key.startsWith('/')) throw badKey(what, key, 'it is absolute');
  const segments = key.split('/');
  if (isPrefix && segments.at(-1) === '') segments.pop();
  for (const segment of segments) {
    if (segment === '') throw badKey(what, key, 'it has an empty segment');
    if (segment === '.' || segment === '..') throw badKey(what, key, 'it has a "." or ".." segment');
  }
  if (segments[0] === TEMP_DIR_NAME) throw badKey(what, key, `"${TEMP_DIR_NAME}/" is reserved`);
}

/** The fsync steps, injectable so tests can observe them or make them fail. */
export interface Durability {
  /** Flush a written file's data and metadata to stable storage. */
  syncFile(handle: FileHandle, path: string): Promise<void>;
  /** Flush a directory, so names just linked into it survive a crash. */
  syncDir(path: string): Promise<void>;
}

export const fsDurability: Durability = {
  async syncFile(handle) {
    await handle.sync();
  },
  async syncDir(path) {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } catch (err) {
      if (!DIR_SYNC_UNSUPPORTED.has(errno(err) ?? '')) throw err;
    } finally {
      await handle.close();
    }
  },
};

export interface LocalArchiveOptions {
  dir: string;
  logger?: Logger;
  clock?: Clock;
  durability?: Durability;
  /**
   * Writes whole objects (Buffers: most mail, every event) on worker threads in batches. Default: the
   * process-wide writer, unless `durability` is given (tests observing the fsync steps), then none.
   */
  writer?: DurableWriter;
}

interface TempFile {
  path: string;
  size: number;
  sha256: string;
}

export class LocalArchive implements Archive {
  readonly description: string;
  readonly #root: string;
  readonly #tempDir: string;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #durability: Durability;
  readonly #writer: DurableWriter | undefined;
  /** Directory fsyncs, shared by concurrent writers into one directory (group commit). */
  readonly #syncDir: (dir: string) => Promise<void>;
  /** Directories known to exist durably: dir -> the promise that made them so. */
  readonly #dirs = new Map<string, Promise<void>>();
  #tempReady: Promise<void> | undefined;

  constructor(options: LocalArchiveOptions) {
    this.#root = resolve(options.dir);
    this.#tempDir = join(this.#root, TEMP_DIR_NAME);
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#durability = options.durability ?? fsDurability;
    this.#writer = options.writer ?? (options.durability ? undefined : sharedDurableWriter());
    const durability = this.#durability;
    this.#syncDir = coalescingDirSync((dir) => durability.syncDir(dir));
    this.description = this.#root;
  }

  async putStreamCreateOnly(
    key: string,
    body: Readable | Buffer,
    _options: { contentType?: string } = {},
  ): Promise<PutRawResult> {
    validateArchiveKey(key);
    const target = this.#path(key);
    if (Buffer.isBuffer(body) && this.#writer) {
      const ours = await this.#writeWhole(key, target, body, 'create');
      return ours.created
        ? { key, size: ours.size, sha256: ours.sha256, created: true }
        : await this.#existing(key, target, ours);
    }
    await this.#makeParent(key, target);
    const temp = await this.#writeTemp(key, body);
    try {
      try {
        await link(temp.path, target);
      } catch (err) {
        if (errno(err) === 'EEXIST') return await this.#existing(key, target, temp);
        throw err;
      }
      await this.#syncDir(dirname(target));
      return { key, size: temp.size, sha256: temp.sha256, created: true };
    } catch (err) {
      this.#forgetDir(target);
      throw writeFailed(key, err);
    } finally {
      await rm(temp.path, { force: true });
    }
  }

  async put(
    key: string,
    body: Buffer | string | Readable,
    _options: { contentType?: string } = {},
  ): Promise<StoredObject> {
    validateArchiveKey(key);
    const target = this.#path(key);
    let whole = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    if (this.#writer) {
      // Attachments arrive as streams; most are small enough to write whole.
      if (!Buffer.isBuffer(whole)) {
        try {
          whole = await readUpTo(whole, WHOLE_WRITE_MAX_BYTES);
        } catch (err) {
          throw writeFailed(key, err);
        }
      }
      if (Buffer.isBuffer(whole)) {
        const { size, sha256 } = await this.#writeWhole(key, target, whole, 'replace');
        return { key, size, sha256 };
      }
    }
    await this.#makeParent(key, target);
    const temp = await this.#writeTemp(key, whole);
    try {
      // rename(2) replaces atomically: readers see the old file or the new one, never half.
      await rename(temp.path, target);
      await this.#syncDir(dirname(target));
      return { key, size: temp.size, sha256: temp.sha256 };
    } catch (err) {
      this.#forgetDir(target);
      await rm(temp.path, { force: true });
      throw writeFailed(key, err);
    }
  }

  async get(key: string): Promise<Readable> {
    validateArchiveKey(key);
    let handle: FileHandle | undefined;
    try {
      handle = await open(this.#path(key), 'r');
      if (!(await handle.stat()).isFile()) throw Object.assign(new Error('not a file'), { code: 'EISDIR' });
      return handle.createReadStream();
    } catch (err) {
      await handle?.close().catch(() => {});
      throw readFailed(key, err);
    }
  }

  async getBytes(key: string): Promise<Buffer> {
    validateArchiveKey(key);
    try {
      return await readFile(this.#path(key));
    } catch (err) {
      throw readFailed(key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    validateArchiveKey(key);
    try {
      const info = await stat(this.#path(key));
      if (!info.isFile()) return undefined;
      return { key, size: info.size, lastModified: info.mtime };
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw readFailed(key, err);
    }
  }

  async list(
    prefix: string,
    options: { cursor?: string; limit?: number } = {},
  ): Promise<{ items: ObjectInfo[]; cursor?: string }> {
    validateArchivePrefix(prefix);
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? MAX_LIST_LIMIT), 1), MAX_LIST_LIMIT);
    const items: ObjectInfo[] = [];
    let more = false;
    try {
      for await (const item of this.#walk('', prefix, options.cursor)) {
        if (items.length === limit) {
          more = true;
          break;
        }
        items.push(item);
      }
    } catch (err) {
      throw readFailed(prefix, err);
    }
    const last = items.at(-1);
    return more && last ? { items, cursor: last.key } : { items };
  }

  /** A local directory has no URL a receiver could fetch. */
  async linkFor(key: string, _expiresInSeconds: number): Promise<string | undefined> {
    validateArchiveKey(key);
    return undefined;
  }

  /**
   * Removes temp files older than `olderThanMs` (left by a crash mid-write; a live write is younger
   * than any sensible threshold). Returns how many were removed.
   */
  async cleanupTemp(olderThanMs: number): Promise<number> {
    const cutoff = this.#clock.now() - olderThanMs;
    let removed = 0;
    for (const path of await this.pendingTempFiles()) {
      try {
        const info = await lstat(path);
        if (info.mtimeMs <= cutoff) {
          await rm(path, { force: true });
          removed++;
        }
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw writeFailed(path, err);
      }
    }
    if (removed > 0) this.#logger.info('Removed stale archive temp files', { removed });
    return removed;
  }

  /** Paths of temp files present now (in-progress writes or crash leftovers). */
  async pendingTempFiles(): Promise<string[]> {
    try {
      const names = await readdir(this.#tempDir);
      return names.sort().map((name) => join(this.#tempDir, name));
    } catch (err) {
      if (errno(err) === 'ENOENT') return [];
      throw readFailed(TEMP_DIR_NAME, err);
    }
  }

  #path(key: string): string {
    return join(this.#root, ...key.split('/'));
  }

  /**
   * Makes the key's directory exist durably: created, and every directory that gained a name fsynced,
   * before any file is linked into it. Cached per directory (concurrent writers share the promise), so
   * a burst into one day's directory costs one mkdir, not one per message.
   */
  async #makeParent(key: string, target: string): Promise<void> {
    const dir = dirname(target);
    let ready = this.#dirs.get(dir);
    if (!ready) {
      ready = (async () => {
        const created = await mkdir(dir, { recursive: true, mode: DIR_MODE });
        if (!created) return;
        // The parent of each new directory must record its name: from the new leaf's parent upwards.
        const stop = dirname(created);
        for (let d = dir; d !== stop && d.startsWith(this.#root) && d !== this.#root; ) {
          d = dirname(d);
          await this.#syncDir(d);
        }
      })();
      this.#knowDir(dir, ready);
    }
    try {
      await ready;
    } catch (err) {
      this.#dirs.delete(dir);
      throw writeFailed(key, err);
    }
  }

  #knowDir(dir: string, ready: Promise<void>): void {
    if (this.#dirs.size >= MAX_KNOWN_DIRS) this.#dirs.clear();
    this.#dirs.set(dir, ready);
  }

  /** After a failed write, check the directory again next time (someone may have removed it). */
  #forgetDir(target: string): void {
    this.#dirs.delete(dirname(target));
    this.#tempReady = undefined;
  }

  /** A whole object through the worker writer: temp, fsync, link or rename, directory fsync. */
  async #writeWhole(
    key: string,
    target: string,
    body: Buffer,
    mode: 'create' | 'replace',
  ): Promise<{ size: number; sha256: string; created: boolean }> {
    const writer = this.#writer as DurableWriter;
    const sha256 = createHash('sha256').update(body).digest('hex');
    const dir = dirname(target);
    try {
      this.#tempReady ??= mkdir(this.#tempDir, { recursive: true, mode: DIR_MODE }).then(() => {});
      await this.#tempReady;
      const temp = join(this.#tempDir, `${this.#clock.now()}-${randomUUID()}.part`);
      const known = this.#dirs.has(dir);
      const { created } = await writer.write({
        temp,
        target,
        bytes: body,
        mode,
        fileMode: FILE_MODE,
        ...(known ? {} : { parents: { root: this.#root, dirMode: DIR_MODE } }),
      });
      if (!known) this.#knowDir(dir, Promise.resolve());
      return { size: body.length, sha256, created };
    } catch (err) {
      this.#forgetDir(target);
      if (errno(err) === 'ESIZE') {
        throw new ArchiveError(
          'ARCHIVE_VERIFY_FAILED',
          'The archive file has a different size than the bytes written.',
          { cause: err, transient: true, details: { key } },
        );
      }
      throw writeFailed(key, err);
    }
  }

  /** Writes `body` into a fresh temp file, hashing it; fsynced. Removed again on any failure. */
  async #writeTemp(key: string, body: Readable | Buffer): Promise<TempFile> {
    let handle: FileHandle | undefined;
    let path: string | undefined;
    try {
      this.#tempReady ??= mkdir(this.#tempDir, { recursive: true, mode: DIR_MODE }).then(() => {});
      await this.#tempReady;
      path = join(this.#tempDir, `${this.#clock.now()}-${randomUUID()}.part`);
      handle = await open(path, 'wx', FILE_MODE);
      const file = handle;
      let size: number;
      let sha256: string;
      if (Buffer.isBuffer(body)) {
        // Whole small objects (most mail, every event): one write, no stream machinery.
        for (let at = 0; at < body.length; )
          at += (await file.write(body, at, body.length - at)).bytesWritten;
        size = body.length;
        sha256 = createHash('sha256').update(body).digest('hex');
      } else {
        const hasher = new HashingTransform();
        // Plain writes rather than handle.createWriteStream(): a stream keeps a reference on the handle
        // until it closes, so close() after fsync would wait for it.
        await pipeline(body, hasher, async (chunks: AsyncIterable<Buffer>) => {
          for await (const chunk of chunks) {
            for (let at = 0; at < chunk.length; )
              at += (await file.write(chunk, at, chunk.length - at)).bytesWritten;
          }
        });
        size = hasher.bytes;
        sha256 = hasher.sha256;
      }
      const written = (await handle.stat()).size;
      if (written !== size) {
        throw new ArchiveError(
          'ARCHIVE_VERIFY_FAILED',
          'The archive file has a different size than the bytes written.',
          {
            transient: true,
            details: { key, sent: size, stored: written },
          },
        );
      }
      await this.#durability.syncFile(handle, path);
      await handle.close();
      handle = undefined;
      return { path, size, sha256 };
    } catch (err) {
      if (!Buffer.isBuffer(body) && !body.destroyed) body.destroy();
      this.#tempReady = undefined;
      await handle?.close().catch(() => {});
      if (path) await rm(path, { force: true });
      throw writeFailed(key, err);
    }
  }

  async #existing(
    key: string,
    target: string,
    ours: { size: number; sha256: string },
  ): Promise<PutRawResult> {
    const info = await stat(target);
    if (!info.isFile()) {
      throw new ArchiveError(
        'ARCHIVE_WRITE_FAILED',
        'A directory exists where the archive object should be.',
        {
          transient: false,
          details: { key },
        },
      );
    }
    const existing = await hashStream(createReadStream(target));
    if (existing.size !== ours.size || existing.sha256 !== ours.sha256) {
      this.#logger.warn('Archived object differs from the bytes fetched again', {
        key,
        storedSize: existing.size,
        fetchedSize: ours.size,
        storedSha256: existing.sha256,
        fetchedSha256: ours.sha256,
      });
    }
    return { key, size: existing.size, sha256: existing.sha256, created: false };
  }

  /** Keys under `dirKey` (`''` or ending in `/`) matching `prefix` and after `cursor`, in key order. */
  async *#walk(dirKey: string, prefix: string, cursor: string | undefined): AsyncGenerator<ObjectInfo> {
    let entries: Dirent[];
    try {
      entries = await readdir(join(this.#root, ...dirKey.split('/').filter(Boolean)), {
        withFileTypes: true,
      });
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw err;
    }
    // A directory sorts as its name plus '/', which is where its keys fall among S3's byte-ordered keys.
    const candidates = entries
      .filter((e) => (e.isFile() || e.isDirectory()) && !(dirKey === '' && e.name === TEMP_DIR_NAME))
      .map((e) => ({ key: `${dirKey}${e.name}${e.isDirectory() ? '/' : ''}`, isDir: e.isDirectory() }))
      .sort((a, b) => compareKeys(a.key, b.key));
    for (const candidate of candidates) {
      if (candidate.isDir) {
        if (!candidate.key.startsWith(prefix) && !prefix.startsWith(candidate.key)) continue;
        // Every key below sorts before the cursor: skip the whole subtree.
        if (
          cursor !== undefined &&
          !cursor.startsWith(candidate.key) &&
          compareKeys(candidate.key, cursor) < 0
        ) {
          continue;
        }
        yield* this.#walk(candidate.key, prefix, cursor);
        continue;
      }
      if (!candidate.key.startsWith(prefix)) continue;
      if (cursor !== undefined && compareKeys(candidate.key, cursor) <= 0) continue;
      try {
        const info = await stat(this.#path(candidate.key));
        yield { key: candidate.key, size: info.size, lastModified: info.mtime };
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err;
      }
    }
  }
}

/** S3 orders keys by their UTF-8 bytes. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function errno(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/** Errors a person must fix (permissions, read-only or full-of-names filesystem). */
const PERMANENT_FS_ERRORS = new Set(['EACCES', 'EPERM', 'EROFS', 'ENAMETOOLONG', 'ENOTDIR', 'EISDIR']);

function writeFailed(key: string, err: unknown): ArchiveError {
  if (err instanceof ArchiveError) return err;
  const code = errno(err);
  if (code === 'ENAMETOOLONG') {
    return new ArchiveError(
      'ARCHIVE_BAD_KEY',
      'Refused archive key: a segment is too long for this filesystem.',
      {
        cause: err,
        transient: false,
        details: { key: sanitizeForeignText(key) },
      },
    );
  }
  const permanent = PERMANENT_FS_ERRORS.has(code ?? '');
  return new ArchiveError(
    'ARCHIVE_WRITE_FAILED',
    permanent
      ? 'Could not write to the archive directory: check that it exists, is writable by this user and is on a local filesystem.'
      : 'Could not write the object to the archive; nothing was stored and it will be written again.',
    { cause: err, transient: !permanent, details: { key: sanitizeForeignText(key), errno: code } },
  );
}

function readFailed(key: string, err: unknown): ArchiveError {
  if (err instanceof ArchiveError) return err;
  const code = errno(err);
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
    return new ArchiveError('ARCHIVE_NOT_FOUND', 'The archive has no object at this key.', {
      cause: err,
      transient: false,
      details: { key: sanitizeForeignText(key) },
    });
  }
  return new ArchiveError('ARCHIVE_READ_FAILED', 'Could not read from the archive directory; try again.', {
    cause: err,
    transient: true,
    details: { key: sanitizeForeignText(key), errno: code },
  });
}

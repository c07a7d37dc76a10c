import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArchiveError } from '../../../shared/errors.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { hashStream, sha256Hex } from '../../../shared/storage/hashing.js';
import { type Durability, fsDurability, LocalArchive } from '../../../shared/storage/local-archive.js';

const MiB = 1024 * 1024;

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

const body = (text: string | Buffer) => Readable.from([Buffer.from(text)]);

describe('LocalArchive', () => {
  let dir: string;
  let archive: LocalArchive;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pophook-local-archive-'));
    archive = new LocalArchive({ dir });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stores raw mail create-only at the key path, private to the owner', async () => {
    const key = 'raw/mb/2024/01/02/m1.eml';
    const bytes = Buffer.from('From: a@example.com\r\n\r\nhello\r\n');
    const result = await archive.putStreamCreateOnly(key, body(bytes));
    expect(result).toEqual({ key, size: bytes.length, sha256: sha256Hex(bytes), created: true });
    const path = join(dir, 'raw/mb/2024/01/02/m1.eml');
    expect((await readFile(path)).equals(bytes)).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'raw/mb/2024'))).mode & 0o777).toBe(0o700);
    expect(await archive.pendingTempFiles()).toEqual([]);
    expect(archive.description).toBe(dir);
  });

  it('a second write of the key returns the existing file untouched (created: false)', async () => {
    const key = 'raw/mb/2024/01/02/m1.eml';
    const logger = createMemoryLogger();
    archive = new LocalArchive({ dir, logger });
    await archive.putStreamCreateOnly(key, body('first'));
    const path = join(dir, key);
    const before = await stat(path);
    const second = await archive.putStreamCreateOnly(key, body('second, longer'));
    expect(second).toEqual({ key, size: 5, sha256: sha256Hex('first'), created: false });
    const after = await stat(path);
    expect((await readFile(path)).toString()).toBe('first');
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(await archive.pendingTempFiles()).toEqual([]);
    expect(logger.lines.some((l) => l.includes('Archived object differs from the bytes fetched again'))).toBe(
      true,
    );
  });

  it('five concurrent writers of one key: exactly one creates it, all see the same content', async () => {
    const key = 'raw/mb/2024/01/02/race.eml';
    const bodies = Array.from({ length: 5 }, (_, i) => Buffer.from(`writer ${i} ${'x'.repeat(50_000 * i)}`));
    const results = await Promise.all(bodies.map((b) => archive.putStreamCreateOnly(key, body(b))));
    const created = results.filter((r) => r.created);
    expect(created).toHaveLength(1);
    const winner = created[0] as (typeof results)[number];
    for (const r of results) expect([r.size, r.sha256]).toEqual([winner.size, winner.sha256]);
    expect(sha256Hex(await readFile(join(dir, key)))).toBe(winner.sha256);
    expect(await archive.pendingTempFiles()).toEqual([]);
  });

  it('streams a large message with a verified hash, leaving no temp file', async () => {
    const source = generatedBody(20 * MiB);
    const result = await archive.putStreamCreateOnly('raw/mb/2024/01/02/big.eml', source.stream);
    expect(result).toMatchObject({ size: 20 * MiB, sha256: source.sha256(), created: true });
    expect(await hashStream(await archive.get('raw/mb/2024/01/02/big.eml'))).toEqual({
      size: 20 * MiB,
      sha256: source.sha256(),
    });
    expect(await archive.pendingTempFiles()).toEqual([]);
  });

  it('a source failing mid-stream leaves neither the object nor a temp file', async () => {
    const source = generatedBody(10 * MiB, { failAfterBytes: 3 * MiB });
    const error = await archive
      .putStreamCreateOnly('raw/mb/2024/01/02/broken.eml', source.stream)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ArchiveError);
    expect(error).toMatchObject({ code: 'ARCHIVE_WRITE_FAILED', transient: true });
    expect(((error as Error).cause as Error).message).toBe('source connection reset');
    expect(await archive.head('raw/mb/2024/01/02/broken.eml')).toBeUndefined();
    expect(await archive.pendingTempFiles()).toEqual([]);
  });

  it('makes new directories durable first, fsyncs the temp file before linking it, then the directory', async () => {
    const events: string[] = [];
    const key = 'raw/mb/2024/01/02/synced.eml';
    let target = join(dir, key);
    const durability: Durability = {
      async syncFile(handle, path) {
        events.push(
          `file ${path.startsWith(join(dir, '.tmp')) ? 'temp' : path} target-exists=${existsSync(target)}`,
        );
        await fsDurability.syncFile(handle, path);
      },
      async syncDir(path) {
        events.push(`dir ${path.slice(dir.length) || '/'} target-exists=${existsSync(target)}`);
        await fsDurability.syncDir(path);
      },
    };
    archive = new LocalArchive({ dir, durability });
    await archive.putStreamCreateOnly(key, body('durable'));
    expect(events).toEqual([
      'dir /raw/mb/2024/01 target-exists=false',
      'dir /raw/mb/2024 target-exists=false',
      'dir /raw/mb target-exists=false',
      'dir /raw target-exists=false',
      'dir / target-exists=false',
      'file temp target-exists=false',
      'dir /raw/mb/2024/01/02 target-exists=true',
    ]);
    // A second key in an existing directory only syncs that directory.
    events.length = 0;
    target = join(dir, 'raw/mb/2024/01/02/second.eml');
    await archive.putStreamCreateOnly('raw/mb/2024/01/02/second.eml', body('x'));
    expect(events).toEqual(['file temp target-exists=false', 'dir /raw/mb/2024/01/02 target-exists=true']);
  });

  it('a burst into one directory shares directory fsyncs, each after its own link; a Buffer is stored as given', async () => {
    const linked = new Set<string>();
    let dirSyncs = 0;
    const durability: Durability = {
      syncFile: fsDurability.syncFile,
      async syncDir(path) {
        dirSyncs++;
        // Every name that exists when a sync starts is covered by it; the delay lets writers pile up.
        for (const name of readdirSync(path)) linked.add(name);
        await new Promise((r) => setTimeout(r, 5));
        await fsDurability.syncDir(path);
      },
    };
    archive = new LocalArchive({ dir, durability });
    await archive.put('raw/mb/2024/01/02/warm.json', '{}');
    dirSyncs = 0;
    const keys = Array.from({ length: 40 }, (_, i) => `raw/mb/2024/01/02/m${i}.eml`);
    const results = await Promise.all(
      keys.map((k, i) => archive.putStreamCreateOnly(k, Buffer.from(`message ${i}\r\n`))),
    );
    for (const [i, r] of results.entries()) {
      expect(r).toMatchObject({ created: true, size: Buffer.byteLength(`message ${i}\r\n`) });
      expect(r.sha256).toBe(createHash('sha256').update(`message ${i}\r\n`).digest('hex'));
      expect(linked.has(`m${i}.eml`)).toBe(true);
    }
    expect(dirSyncs).toBeGreaterThan(0);
    expect(dirSyncs).toBeLessThan(keys.length / 2);
    expect(await archive.pendingTempFiles()).toEqual([]);
  });

  it('a failed fsync fails the write and leaves nothing behind', async () => {
    archive = new LocalArchive({
      dir,
      durability: {
        async syncFile() {
          throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
        },
        syncDir: fsDurability.syncDir,
      },
    });
    const error = await archive.putStreamCreateOnly('raw/mb/x.eml', body('x')).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ARCHIVE_WRITE_FAILED', transient: true, details: { errno: 'EIO' } });
    expect(await archive.head('raw/mb/x.eml')).toBeUndefined();
    expect(await archive.pendingTempFiles()).toEqual([]);
  });

  it('cleans up temp files left by a crash, but not fresh ones', async () => {
    const now = 1_750_000_000_000;
    archive = new LocalArchive({ dir, clock: { now: () => now } });
    const temp = join(dir, '.tmp');
    await mkdir(temp, { recursive: true });
    await writeFile(join(temp, 'old-1.part'), 'crash leftover');
    await writeFile(join(temp, 'old-2.part'), 'crash leftover');
    await writeFile(join(temp, 'fresh.part'), 'in progress');
    const oneHourAgo = new Date(now - 3_600_000);
    await utimes(join(temp, 'old-1.part'), oneHourAgo, oneHourAgo);
    await utimes(join(temp, 'old-2.part'), oneHourAgo, oneHourAgo);
    const tenSecondsAgo = new Date(now - 10_000);
    await utimes(join(temp, 'fresh.part'), tenSecondsAgo, tenSecondsAgo);

    expect(await archive.pendingTempFiles()).toEqual(
      ['fresh.part', 'old-1.part', 'old-2.part'].map((f) => join(temp, f)),
    );
    expect(await archive.cleanupTemp(15 * 60_000)).toBe(2);
    expect(await archive.pendingTempFiles()).toEqual([join(temp, 'fresh.part')]);
    // Temp files never show up as keys.
    expect((await archive.list('')).items).toEqual([]);
  });

  it('put replaces atomically and reports size and hash; get/getBytes/head read back', async () => {
    const key = 'raw/mb/2024/01/02/m1.json';
    expect(await archive.put(key, '{"v":1}')).toEqual({ key, size: 7, sha256: sha256Hex('{"v":1}') });
    expect(await archive.put(key, Buffer.from('{"v":22}'))).toEqual({
      key,
      size: 8,
      sha256: sha256Hex('{"v":22}'),
    });
    expect((await archive.getBytes(key)).toString()).toBe('{"v":22}');
    const streamed = generatedBody(MiB + 17);
    expect(await archive.put('attachments/mb/k/0-a.bin', streamed.stream)).toMatchObject({
      size: MiB + 17,
      sha256: streamed.sha256(),
    });
    const head = await archive.head(key);
    expect(head).toMatchObject({ key, size: 8 });
    expect(head?.lastModified).toBeInstanceOf(Date);
    expect(head?.sha256).toBeUndefined(); // not stored; see local-archive.ts
    expect(await archive.head('raw/missing.eml')).toBeUndefined();
    expect(await archive.head('raw/mb')).toBeUndefined(); // a directory is not an object
    await expect(archive.get('raw/missing.eml')).rejects.toMatchObject({
      code: 'ARCHIVE_NOT_FOUND',
      transient: false,
    });
    await expect(archive.getBytes('raw/missing.eml')).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
    await expect(archive.get('raw/mb')).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
    expect(await archive.linkFor(key, 60)).toBeUndefined();
    expect(await archive.pendingTempFiles()).toEqual([]);
  });

  it('rejects unsafe keys and never writes outside the archive', async () => {
    const outside = join(dir, '..', `escape-${Date.now()}`);
    const bad = [
      '',
      '/etc/passwd',
      '../escape',
      'raw/../../escape',
      'raw/./x',
      'raw//x',
      'raw/x/',
      'raw\\..\\x',
      'nul\u0000byte',
      'line\nbreak',
      '.tmp/abc.part',
      'x'.repeat(1025),
    ];
    for (const key of bad) {
      for (const attempt of [
        () => archive.putStreamCreateOnly(key, body('x')),
        () => archive.put(key, 'x'),
        () => archive.get(key),
        () => archive.head(key),
        () => archive.linkFor(key, 60),
      ]) {
        await expect(attempt()).rejects.toMatchObject({ code: 'ARCHIVE_BAD_KEY', transient: false });
      }
    }
    await expect(archive.list('../')).rejects.toMatchObject({ code: 'ARCHIVE_BAD_KEY' });
    expect(existsSync(outside)).toBe(false);
    expect(await readdir(dir)).toEqual([]);
    // A segment longer than the filesystem allows is a bad key, not a transient failure.
    await expect(archive.put(`raw/${'y'.repeat(300)}`, 'x')).rejects.toMatchObject({
      code: 'ARCHIVE_BAD_KEY',
    });
  });

  it('lists keys in S3 byte order with prefix and cursor paging', async () => {
    // '-' (0x2d) < '/' (0x2f) < '0' (0x30): a naive directory walk would put a/b before a-b.
    // 'z' (0x7a) < 'é' (0xc3 0xa9 in UTF-8).
    const keys = ['a-b', 'a/b', 'a/c/d', 'a0', 'b', 'raw/z', 'raw/é'];
    for (const key of keys) await archive.put(key, key);
    const all = await archive.list('');
    expect(all.items.map((i) => i.key)).toEqual(keys);
    expect(all.cursor).toBeUndefined();
    expect(all.items[1]).toMatchObject({ key: 'a/b', size: 3 });

    expect((await archive.list('a/')).items.map((i) => i.key)).toEqual(['a/b', 'a/c/d']);
    expect((await archive.list('a')).items.map((i) => i.key)).toEqual(['a-b', 'a/b', 'a/c/d', 'a0']);
    expect((await archive.list('raw/')).items.map((i) => i.key)).toEqual(['raw/z', 'raw/é']);
    expect((await archive.list('nothing/')).items).toEqual([]);

    const pages: string[][] = [];
    let cursor: string | undefined;
    do {
      const page = await archive.list('', { cursor, limit: 2 });
      pages.push(page.items.map((i) => i.key));
      cursor = page.cursor;
    } while (cursor);
    expect(pages).toEqual([['a-b', 'a/b'], ['a/c/d', 'a0'], ['b', 'raw/z'], ['raw/é']]);
  });

  it('pages through many keys across directories under a prefix', async () => {
    const keys = Array.from(
      { length: 250 },
      (_, i) => `raw/pager/2024/01/${String(i % 28).padStart(2, '0')}/${String(i).padStart(5, '0')}.eml`,
    );
    // Written directly (put() fsyncs twice per key); list() is what is under test.
    for (const d of new Set(keys.map((k) => join(dir, k, '..')))) await mkdir(d, { recursive: true });
    let next = 0;
    const writer = async () => {
      for (let k = keys[next++]; k; k = keys[next++]) await writeFile(join(dir, k), 'x');
    };
    await Promise.all(Array.from({ length: 32 }, writer));
    await archive.put('raw/pager-other/x.eml', 'no');
    await archive.put('raw/pagen.eml', 'no');
    const expected = [...keys].sort();
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await archive.list('raw/pager/', { cursor, limit: 100 });
      seen.push(...page.items.map((i) => i.key));
      cursor = page.cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(expected);
  });
});

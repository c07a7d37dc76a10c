import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DurableWriter } from '../../shared/durable-writer.js';

let dir: string;
let writer: DurableWriter | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pophook-writer-'));
  await mkdir(join(dir, 'tmp'));
});

afterEach(async () => {
  await writer?.close();
  writer = undefined;
  await rm(dir, { recursive: true, force: true });
});

const rel = (line: string) => line.replace(dir, '');

describe('DurableWriter', () => {
  it('fsyncs the temp file before linking it, then each directory that gained a name', async () => {
    writer = new DurableWriter({ threads: 1, trace: true });
    const target = join(dir, 'raw/mb/2024/a.eml');
    const result = await writer.write({
      temp: join(dir, 'tmp/1.part'),
      target,
      bytes: Buffer.from('hello'),
      mode: 'create',
      fileMode: 0o600,
      parents: { root: dir, dirMode: 0o700 },
    });
    expect(result).toEqual({ created: true });
    expect(readFileSync(target, 'utf8')).toBe('hello');
    expect(statSync(target).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'raw')).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
    expect(writer.traces.flat().map(rel)).toEqual([
      'open /tmp/1.part',
      'write /tmp/1.part',
      'fsync /tmp/1.part',
      'mkdir /raw/mb/2024',
      'link /raw/mb/2024/a.eml',
      'unlink /tmp/1.part',
      // Each new directory's name in its parent, up to the root, and the target's own directory.
      'fsyncdir /raw/mb',
      'fsyncdir /raw',
      'fsyncdir ',
      'fsyncdir /raw/mb/2024',
    ]);
  });

  it('create never replaces: an existing target stands and the temp file is removed', async () => {
    writer = new DurableWriter({ threads: 1 });
    const target = join(dir, 'a.eml');
    writeFileSync(target, 'first');
    const result = await writer.write({
      temp: join(dir, 'tmp/2.part'),
      target,
      bytes: Buffer.from('second'),
      mode: 'create',
      fileMode: 0o600,
    });
    expect(result).toEqual({ created: false });
    expect(readFileSync(target, 'utf8')).toBe('first');
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  it('replace renames over the old file', async () => {
    writer = new DurableWriter({ threads: 1 });
    const target = join(dir, 'a.json');
    writeFileSync(target, 'old');
    await writer.write({
      temp: join(dir, 'tmp/3'),
      target,
      bytes: Buffer.from('new'),
      mode: 'replace',
      fileMode: 0o600,
    });
    expect(readFileSync(target, 'utf8')).toBe('new');
  });

  it('writes only the bytes of a view, not the rest of its buffer', async () => {
    writer = new DurableWriter({ threads: 1 });
    const big = Buffer.from('xxxxHELLOyyyy');
    const target = join(dir, 'v');
    await writer.write({
      temp: join(dir, 'tmp/v'),
      target,
      bytes: big.subarray(4, 9),
      mode: 'create',
      fileMode: 0o600,
    });
    expect(readFileSync(target, 'utf8')).toBe('HELLO');
    expect(big.toString()).toBe('xxxxHELLOyyyy');
  });

  it('a burst shares batches and fsyncs its directory once per batch', async () => {
    writer = new DurableWriter({ threads: 1, trace: true });
    const w = writer;
    await mkdir(join(dir, 'out'));
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        w.write({
          temp: join(dir, `tmp/${i}`),
          target: join(dir, `out/${i}`),
          bytes: Buffer.from(`message ${i}`),
          mode: 'create',
          fileMode: 0o600,
        }),
      ),
    );
    expect(results.every((r) => r.created)).toBe(true);
    for (let i = 0; i < 60; i++) expect(readFileSync(join(dir, `out/${i}`), 'utf8')).toBe(`message ${i}`);
    expect(w.batches).toBeLessThan(60 / 4);
    for (const trace of w.traces) {
      const syncs = trace.filter((l) => l.startsWith('fsyncdir'));
      expect(syncs).toEqual([`fsyncdir ${join(dir, 'out')}`]);
      // Every link of the batch comes before the directory's fsync.
      expect(trace.findLastIndex((l) => l.startsWith('link'))).toBeLessThan(
        trace.indexOf(syncs[0] as string),
      );
    }
  });

  it('a failed fsync fails that write only, leaving no file; the rest of the batch lands', async () => {
    writer = new DurableWriter({
      threads: 1,
      faults: [{ syscall: 'fsync', errno: 'EIO', pathIncludes: 'bad' }],
    });
    const w = writer;
    const [bad, good] = await Promise.allSettled([
      w.write({
        temp: join(dir, 'tmp/bad'),
        target: join(dir, 'bad.eml'),
        bytes: Buffer.from('x'),
        mode: 'create',
        fileMode: 0o600,
      }),
      w.write({
        temp: join(dir, 'tmp/good'),
        target: join(dir, 'good.eml'),
        bytes: Buffer.from('y'),
        mode: 'create',
        fileMode: 0o600,
      }),
    ]);
    expect(bad.status).toBe('rejected');
    expect((bad as PromiseRejectedResult).reason).toMatchObject({ code: 'EIO', syscall: 'fsync' });
    expect(good).toMatchObject({ status: 'fulfilled', value: { created: true } });
    expect(existsSync(join(dir, 'bad.eml'))).toBe(false);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  it('a failed directory fsync fails the writes that linked into it', async () => {
    writer = new DurableWriter({
      threads: 1,
      faults: [{ syscall: 'fsyncdir', errno: 'EIO', pathIncludes: 'out' }],
    });
    await mkdir(join(dir, 'out'));
    const error = await writer
      .write({
        temp: join(dir, 'tmp/d'),
        target: join(dir, 'out/d'),
        bytes: Buffer.from('x'),
        mode: 'create',
        fileMode: 0o600,
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'EIO', syscall: 'fsyncdir' });
  });

  it('a missing directory without `parents` is the system error, with no temp file left', async () => {
    writer = new DurableWriter({ threads: 2 });
    const error = await writer
      .write({
        temp: join(dir, 'tmp/n'),
        target: join(dir, 'no/such/x'),
        bytes: Buffer.from('x'),
        mode: 'replace',
        fileMode: 0o600,
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ENOENT', syscall: 'rename' });
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  it('append creates the journal, fdatasyncs and reads back from where the caller was', async () => {
    writer = new DurableWriter({ threads: 1, trace: true });
    const path = join(dir, 'j.jsonl');
    const first = await writer.append({
      path,
      bytes: Buffer.from('a\n'),
      readFrom: 0,
      ino: -1,
      fileMode: 0o600,
    });
    expect(first).toMatchObject({ from: 0 });
    expect(first.tail.toString()).toBe('a\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // A new journal's name is made durable in its directory.
    expect(writer.traces.flat().map(rel)).toContain('fsyncdir ');
    const second = await writer.append({
      path,
      bytes: Buffer.from('b\n'),
      readFrom: 2,
      ino: first.ino,
      fileMode: 0o600,
    });
    expect(second.from).toBe(2);
    expect(second.tail.toString()).toBe('b\n');
  });

  it('append cuts a torn last line before writing, and starts over when the file was replaced', async () => {
    writer = new DurableWriter({ threads: 1 });
    const path = join(dir, 'j.jsonl');
    writeFileSync(path, 'one\ntwo\nhalf-writ');
    const ino = statSync(path).ino;
    const r = await writer.append({ path, bytes: Buffer.from('three\n'), readFrom: 4, ino, fileMode: 0o600 });
    expect(readFileSync(path, 'utf8')).toBe('one\ntwo\nthree\n');
    expect(r.from).toBe(4);
    expect(r.tail.toString()).toBe('two\nthree\n');
    // Replaced (compacted by someone else): the caller's offset means nothing in the new file.
    writeFileSync(`${path}.new`, 'x\n');
    await rm(path);
    const { renameSync } = await import('node:fs');
    renameSync(`${path}.new`, path);
    const again = await writer.append({
      path,
      bytes: Buffer.from('y\n'),
      readFrom: 14,
      ino,
      fileMode: 0o600,
    });
    expect(again.from).toBe(0);
    expect(again.tail.toString()).toBe('x\ny\n');
  });

  it('does not keep a process alive once its writes are answered', async () => {
    const script = join(dir, 'child.mts');
    const module = fileURLToPath(new URL('../../shared/durable-writer.ts', import.meta.url));
    writeFileSync(
      script,
      `import { DurableWriter } from ${JSON.stringify(module)};
       const w = new DurableWriter();
       const r = await w.write({ temp: ${JSON.stringify(join(dir, 'tmp/c'))}, target: ${JSON.stringify(join(dir, 'c'))}, bytes: Buffer.from('c'), mode: 'create', fileMode: 0o600 });
       console.log(JSON.stringify(r));`,
    );
    const started = Date.now();
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--import', 'tsx', script], { timeout: 20_000 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      ),
    );
    expect(JSON.parse(out)).toEqual({ created: true });
    expect(readFileSync(join(dir, 'c'), 'utf8')).toBe('c');
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

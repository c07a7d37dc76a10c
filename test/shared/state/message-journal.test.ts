import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coalescingDirSync } from '../../../shared/dir-sync.js';
import { DurableWriter } from '../../../shared/durable-writer.js';
import { MessageJournal } from '../../../shared/state/message-journal.js';
import type { MessageRecord } from '../../../shared/state/store.js';

let tmp: string;
const fsw = new DurableWriter();
// Racing creators on separate writer threads, as two processes would be.
const otherFsw = new DurableWriter({ threads: 1 });
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'pophook-journal-'));
});
afterAll(async () => {
  await Promise.all([fsw.close(), otherFsw.close()]);
  await rm(tmp, { recursive: true, force: true });
});

const noSync = async () => {};
function record(uidl: string, status: MessageRecord['status'] = 'seen', occurrence = 0): MessageRecord {
  return {
    mailboxId: 'm',
    uidl,
    occurrence,
    messageKey: `key-${uidl}-${occurrence}`,
    status,
    firstSeenAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
  };
}

describe('MessageJournal', () => {
  it('commits concurrent writes in a few shared flushes, each durable when it resolves', async () => {
    const path = join(tmp, 'group', 'm.jsonl');
    const journal = new MessageJournal(path, noSync, fsw);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => journal.write(record(`u${i}`), true)),
    );
    expect(results.every((r) => r === true)).toBe(true);
    expect(journal.flushes).toBeGreaterThanOrEqual(1);
    expect(journal.flushes).toBeLessThan(20);
    const reread = new MessageJournal(path, noSync, fsw);
    expect(await reread.all()).toHaveLength(200);
  });

  it('lets the last write win and refuses a second create, across instances on one file', async () => {
    const path = join(tmp, 'lww', 'm.jsonl');
    const a = new MessageJournal(path, noSync, fsw);
    const b = new MessageJournal(path, noSync, fsw);
    expect(await a.write(record('x'), true)).toBe(true);
    expect(await b.write(record('x', 'archived'), true)).toBe(false);
    await b.write(record('x', 'enqueued'), false);
    expect((await a.get('x', 0))?.status).toBe('enqueued');
    expect(await a.get('x', 1)).toBeUndefined();
  });

  it('gives a racing create to exactly one of two instances', async () => {
    for (let round = 0; round < 10; round++) {
      const path = join(tmp, 'race', `${round}.jsonl`);
      const a = new MessageJournal(path, noSync, fsw);
      const b = new MessageJournal(path, noSync, otherFsw);
      const won = await Promise.all([a.write(record('same'), true), b.write(record('same'), true)]);
      expect(won.filter(Boolean)).toHaveLength(1);
    }
  });

  it('drops a torn last line (a write that never returned) and keeps appending cleanly', async () => {
    const path = join(tmp, 'torn', 'm.jsonl');
    const first = new MessageJournal(path, noSync, fsw);
    await first.write(record('kept'), true);
    await appendFile(path, '{"w":"dead.1","c":1,"r":{"mailboxId":"m","uidl":"tor');
    const second = new MessageJournal(path, noSync, fsw);
    expect((await second.all()).map((r) => r.uidl)).toEqual(['kept']);
    expect(await second.write(record('after'), true)).toBe(true);
    const text = await readFile(path, 'utf8');
    expect(text).not.toContain('tor"');
    expect(text.trimEnd().split('\n')).toHaveLength(2);
    expect((await new MessageJournal(path, noSync, fsw).all()).map((r) => r.uidl).sort()).toEqual([
      'after',
      'kept',
    ]);
  });

  it('stops with STATE_CORRUPT naming the file when a complete line is damaged', async () => {
    const path = join(tmp, 'corrupt', 'm.jsonl');
    await new MessageJournal(path, noSync, fsw).write(record('a'), true);
    await appendFile(path, 'not json\n');
    await expect(new MessageJournal(path, noSync, fsw).all()).rejects.toMatchObject({
      code: 'STATE_CORRUPT',
      transient: false,
      message: expect.stringContaining(path),
    });
  });

  it('compacts history to one line per record and readers follow the replaced file', async () => {
    const path = join(tmp, 'compact', 'm.jsonl');
    const writer = new MessageJournal(path, noSync, fsw, { compactMinLines: 10 });
    const reader = new MessageJournal(path, noSync, fsw);
    for (const status of ['seen', 'archived', 'enqueued', 'deleted'] as const)
      await Promise.all(['a', 'b', 'c'].map((u) => writer.write(record(u, status), status === 'seen')));
    // Mostly history now: 3 records, 4 + 8 lines each.
    for (let i = 0; i < 8; i++)
      await Promise.all(['a', 'b', 'c'].map((u) => writer.write(record(u, 'deleted'), false)));
    expect(await reader.all()).toHaveLength(3);
    expect(await writer.compactIfWorthIt()).toBe(true);
    expect((await readFile(path, 'utf8')).trimEnd().split('\n')).toHaveLength(3);
    await writer.write(record('d'), true);
    const seen = await reader.all();
    expect(seen.map((r) => `${r.uidl}:${r.status}`).sort()).toEqual([
      'a:deleted',
      'b:deleted',
      'c:deleted',
      'd:seen',
    ]);
    expect(await writer.compactIfWorthIt()).toBe(false);
  });

  it('starts empty when the file does not exist and creates it with its directory', async () => {
    const path = join(tmp, 'fresh', 'deep', 'm.jsonl');
    const journal = new MessageJournal(path, noSync, fsw);
    expect(await journal.all()).toEqual([]);
    await journal.write(record('z'), false);
    expect(await readFile(path, 'utf8')).toContain('"uidl":"z"');
  });
});

describe('coalescingDirSync', () => {
  it('shares syncs between concurrent callers, and each caller gets a sync that started after its call', async () => {
    const started: number[] = [];
    let release: (() => void) | undefined;
    const syncOnce = (_dir: string) =>
      new Promise<void>((resolve) => {
        started.push(Date.now());
        release = resolve;
      });
    const sync = coalescingDirSync(syncOnce);
    const first = sync('/d');
    // Arrive while the first sync runs: all share one follow-up sync.
    const later = [sync('/d'), sync('/d'), sync('/d')];
    expect(started).toHaveLength(1);
    release?.();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(started).toHaveLength(2);
    release?.();
    await Promise.all(later);
    expect(started).toHaveLength(2);
  });

  it('passes a failure to the callers of that sync only', async () => {
    let fail = true;
    const sync = coalescingDirSync(async () => {
      if (fail) {
        fail = false;
        throw new Error('EIO');
      }
    });
    await expect(sync('/d')).rejects.toThrow('EIO');
    await expect(sync('/d')).resolves.toBeUndefined();
  });
});

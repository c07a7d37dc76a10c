/**
 * One mailbox's message records as an append-only journal file (`messages/<mailboxId>.jsonl`), with
 * group commit: every write call that arrives while a flush is on the disk joins the next flush, so a
 * burst of 16 concurrent record updates costs one write(2) and one fdatasync(2), not 16 files with 16
 * fsyncs and 16 renames. This is what lets the local pipeline keep pace with the network.
 *
 * Each line is `{"w": writeToken, "c": 1 if create, "r": MessageRecord}`. Reading folds the lines in
 * file order: the last line for a (uidl, occurrence) wins, except that a create line for a record
 * that already exists is ignored. Appends are O_APPEND writes of whole lines, so the file order is the
 * order the kernel applied them; a create learns whether it won by reading the file back after its own
 * flush and checking that the record's creator is its token (exactly one of racing creators wins, as
 * with link(2) before). Writers of one mailbox are the lease holder only, so races are rare anyway.
 *
 * Crash safety: a write call resolves only after its line is fdatasynced. A crash mid-write can leave a
 * torn last line without a newline; nobody was told it succeeded, so the next writer truncates it away
 * before appending. A complete line that does not parse is damage from outside and stops with
 * STATE_CORRUPT. The journal is compacted (rewritten with one line per record, fsynced, renamed over)
 * by the lease holder when it holds mostly superseded lines.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { SyncDir } from '../dir-sync.js';
import type { DurableAppendResult, DurableWriter } from '../durable-writer.js';
import { StateError } from '../errors.js';
import type { MessageRecord } from './store.js';

/** Compact when the journal has this many lines per live record or more (each message writes 3-4). */
export const COMPACT_LINES_PER_RECORD = 8;
/** Below this many lines compaction is not worth a rewrite. */
export const COMPACT_MIN_LINES = 20_000;
/** The journal holds mail metadata: owner only. */
const JOURNAL_FILE_MODE = 0o600;
/** Bytes read per call when catching up with a journal (large enough for thousands of lines). */
const READ_CHUNK_BYTES = 1024 * 1024;

interface JournalLine {
  w?: string;
  c?: 1;
  r: MessageRecord;
}

interface PendingWrite {
  line: string;
  key: string;
  token: string;
  create: boolean;
  resolve: (created: boolean) => void;
  reject: (err: unknown) => void;
}

const recordKey = (uidl: string, occurrence: number) => `${occurrence}\u0000${uidl}`;

export class MessageJournal {
  private readonly records = new Map<string, MessageRecord>();
  private readonly creators = new Map<string, string>();
  /** Bytes of the file folded so far (always at a line boundary) and the inode they came from. */
  private offset = 0;
  private ino = -1;
  private lines = 0;
  private pending: PendingWrite[] = [];
  private flushing: Promise<void> | undefined;
  private refreshing: Promise<void> | undefined;
  private seq = 0;
  private readonly writerId = randomUUID().slice(0, 8);
  private readonly compactMinLines: number;
  /** Flushes done (each one write and one fdatasync), for tests and diagnostics. */
  flushes = 0;

  /**
   * `writer` makes each flush (torn-tail repair, append, fdatasync, read-back) one round trip to a
   * writer thread instead of a dozen thread-pool calls.
   */
  constructor(
    readonly path: string,
    private readonly syncDir: SyncDir,
    private readonly writer: DurableWriter,
    options: { compactMinLines?: number } = {},
  ) {
    this.compactMinLines = options.compactMinLines ?? COMPACT_MIN_LINES;
  }

  /** Catches up with the file (other processes may have appended) and returns the live records. */
  async all(): Promise<MessageRecord[]> {
    await this.refresh();
    return [...this.records.values()];
  }

  async get(uidl: string, occurrence: number): Promise<MessageRecord | undefined> {
    await this.refresh();
    return this.records.get(recordKey(uidl, occurrence));
  }

  /** The records that match `predicate`, after catching up with the file. */
  async find(predicate: (r: MessageRecord) => boolean): Promise<MessageRecord[]> {
    await this.refresh();
    const out: MessageRecord[] = [];
    for (const r of this.records.values()) if (predicate(r)) out.push(r);
    return out;
  }

  /** Durably writes `record`; with `create`, only if no record exists yet: true if this call created it. */
  write(record: MessageRecord, create: boolean): Promise<boolean> {
    const key = recordKey(record.uidl, record.occurrence);
    const token = `${this.writerId}.${++this.seq}`;
    const body: JournalLine = create ? { w: token, c: 1, r: record } : { w: token, r: record };
    return new Promise<boolean>((resolve, reject) => {
      this.pending.push({ line: `${JSON.stringify(body)}\n`, key, token, create, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Rewrites the journal with one line per record when it is mostly history. Only for the lease holder. */
  async compactIfWorthIt(): Promise<boolean> {
    await this.flushing;
    await this.refresh();
    if (this.lines < this.compactMinLines || this.lines < COMPACT_LINES_PER_RECORD * this.records.size)
      return false;
    const tmp = `${this.path}.compact-${process.pid}-${randomUUID()}`;
    const handle = await open(tmp, 'wx', 0o600);
    try {
      const parts: string[] = [];
      for (const r of this.records.values())
        parts.push(`${JSON.stringify({ c: 1, r } satisfies JournalLine)}\n`);
      await handle.writeFile(parts.join(''), 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(tmp, this.path);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await this.syncDir(dirname(this.path));
    this.reset();
    await this.refresh();
    return true;
  }

  private reset(): void {
    this.records.clear();
    this.creators.clear();
    this.offset = 0;
    this.lines = 0;
    this.ino = -1;
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.pending.length) {
        const batch = this.pending;
        this.pending = [];
        try {
          await this.flush(batch);
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /** One round trip to the writer thread: torn-tail repair, append, fdatasync, read-back. */
  private async flush(batch: PendingWrite[]): Promise<void> {
    if (this.ino === -1) await mkdir(dirname(this.path), { recursive: true });
    const appended = await this.writer.append({
      path: this.path,
      bytes: Buffer.from(batch.map((p) => p.line).join(''), 'utf8'),
      readFrom: this.offset,
      ino: this.ino,
      fileMode: JOURNAL_FILE_MODE,
    });
    this.flushes++;
    await this.refresh(appended);
    for (const p of batch) p.resolve(p.create ? this.creators.get(p.key) === p.token : true);
  }

  /**
   * Folds whatever was appended since the last look; starts over if the file was replaced. Passes run
   * one after another and each starts after the call, so a caller always sees its own finished writes.
   * `known`: bytes the writer thread read back after an append, folded instead of reading the file when
   * they still continue this view of it.
   */
  private refresh(known?: DurableAppendResult): Promise<void> {
    const pass = () => (known ? this.foldKnown(known) : this.refreshOnce());
    const next = (this.refreshing ?? Promise.resolve()).then(pass, pass);
    this.refreshing = next;
    return next.finally(() => {
      if (this.refreshing === next) this.refreshing = undefined;
    });
  }

  private async foldKnown(known: DurableAppendResult): Promise<void> {
    if (known.from === 0 && known.ino !== this.ino) {
      this.reset();
      this.ino = known.ino;
    }
    const skip = this.offset - known.from;
    if (known.ino !== this.ino || skip < 0 || skip > known.tail.length) return this.refreshOnce();
    const data = known.tail.subarray(skip);
    const end = data.lastIndexOf(0x0a);
    if (end >= 0) {
      this.foldText(data.toString('utf8', 0, end));
      this.offset += end + 1;
    }
  }

  private async refreshOnce(): Promise<void> {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.reset();
      return;
    }
    if (info.ino !== this.ino || info.size < this.offset) {
      this.reset();
      this.ino = Number(info.ino);
    }
    if (info.size === this.offset) {
      return;
    }
    const handle = await open(this.path, 'r');
    try {
      let carry = Buffer.alloc(0);
      let at = this.offset;
      for (;;) {
        const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, at);
        if (bytesRead === 0) break;
        at += bytesRead;
        const data = carry.length
          ? Buffer.concat([carry, chunk.subarray(0, bytesRead)])
          : chunk.subarray(0, bytesRead);
        const end = data.lastIndexOf(0x0a);
        if (end === -1) {
          carry = Buffer.from(data);
          continue;
        }
        this.foldText(data.toString('utf8', 0, end));
        this.offset += end + 1;
        carry = Buffer.from(data.subarray(end + 1));
      }
    } finally {
      await handle.close();
    }
  }

  private foldText(text: string): void {
    for (const raw of text.split('\n')) {
      this.lines++;
      if (raw === '') continue;
      let line: JournalLine;
      try {
        line = JSON.parse(raw) as JournalLine;
      } catch (cause) {
        throw new StateError(
          'STATE_CORRUPT',
          `State journal ${this.path} has a damaged line (${this.lines}). Move the file aside and poll again; mail still on the server is fetched again.`,
          { cause, transient: false },
        );
      }
      const r = line.r;
      const key = recordKey(r.uidl, r.occurrence);
      if (line.c === 1) {
        if (this.records.has(key)) continue;
        if (line.w) this.creators.set(key, line.w);
      }
      this.records.set(key, r);
    }
  }
}

/**
 * File-based implementation of the state port for local mode: plain files under `dir`, durable across
 * restarts and safe when several `pophook` processes share the directory.
 *
 * Layout (ids are checked to be safe path segments; UIDLs and message keys are hashed, never used raw):
 *
 *   leases/<mailboxId>/<generation, 12 digits>.json      {owner, expiresAt, released?}
 *   messages/<mailboxId>.jsonl                           MessageRecord journal (message-journal.ts)
 *   polls/<mailboxId>/last.json                          PollRecord
 *   polls/<mailboxId>/history-<YYYY-MM-DD>.jsonl         one PollRecord per line, pruned after 30 days
 *   deliveries/<sha256(messageKey)>/<endpointId>.<atMs>.<attempt>.json   DeliveryAttempt
 *   endpoints/<endpointId>.json                          EndpointState
 *
 * Cross-process guarantees:
 * - Message records are lines in a per-mailbox journal with group commit: a write returns once its
 *   line is fdatasynced, and concurrent writes share one flush (the poller updates up to 16 records at
 *   once). createMessage is insert-only: of racing creators exactly one wins (see message-journal.ts).
 * - Every other file becomes visible complete: it is written to a temp file, fsynced, then renamed
 *   (replace) or hard-linked (insert-only: link(2) fails with EEXIST, so exactly one creator wins).
 *   Leases, polls and attempts do not fsync their directory (after a power loss a lease is moot, and
 *   a lost attempt line costs at worst a duplicate webhook, never mail).
 * - Leases are a log of generations. The current lease is the highest generation. Acquiring, renewing
 *   and releasing all create generation N+1 with link(2) after reading generation N, so of any number
 *   of processes racing from the same N exactly one succeeds; a process that read a stale N fails with
 *   EEXIST. A winner then confirms that no higher generation exists (old generations are pruned, and a
 *   very slow process could otherwise re-create a pruned one). Owners must be unique per run.
 * - Concurrent writers of one mailbox's records are excluded by the mailbox lease, not by this store;
 *   the lease holder also compacts that mailbox's journal when it is mostly history.
 * - findByMessageKey reads every mailbox's journal (cached in memory, read incrementally): local mode
 *   holds thousands of messages, not millions.
 * Not provided: expiry of delivery attempts (the DynamoDB store TTLs them after 90 days).
 */

import { createHash, randomUUID } from 'node:crypto';
import { appendFile, link, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Clock, systemClock } from '../clock.js';
import { mapLimit } from '../concurrency.js';
import { coalescingDirSync, fsyncDir, type SyncDir } from '../dir-sync.js';
import { type DurableWriter, sharedDurableWriter } from '../durable-writer.js';
import { StateError } from '../errors.js';
import { readJsonFile } from '../json-file.js';
import { MessageJournal } from './message-journal.js';
import type {
  DeliveryAttempt,
  DeliveryLog,
  EndpointState,
  Lease,
  MessageRecord,
  PollRecord,
  StateStore,
} from './store.js';

/** Local poll history is for diagnosing recent trouble, as in DynamoDB. */
const POLL_HISTORY_DAYS = 30;
/** Lease generation file names: fixed width so they sort, wide enough for a renewal every second for 30,000 years. */
const GENERATION_DIGITS = 12;
/** Attempts to read the current lease when a prune races the read (each retry re-lists the directory). */
const LEASE_READ_RETRIES = 5;
/** Reads of many small files run this many at a time (bounded file descriptors). */
const READ_CONCURRENCY = 32;
/** Ids become path segments: no separators, no dot-dot, no surprises. */
const SAFE_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const GENERATION_FILE = /^(\d{12})\.json$/;
const JOURNAL_FILE = /^(.+)\.jsonl$/;

interface LeaseFile {
  owner: string;
  expiresAt: number;
  released?: boolean;
}

export interface LocalStateStoreOptions {
  /** The state directory, e.g. `<dataDir>/state`. Created on first write. */
  dir: string;
  clock?: Clock;
  /** Journal flushes on worker threads; default the process-wide writer. */
  writer?: DurableWriter;
}

/** StateStore and DeliveryLog on the local filesystem. See the module comment for the guarantees. */
export class LocalStateStore implements StateStore, DeliveryLog {
  private readonly dir: string;
  private readonly clock: Clock;
  private readonly journals = new Map<string, MessageJournal>();
  private readonly syncDir: SyncDir = coalescingDirSync(fsyncDir);
  private readonly writer: DurableWriter;

  constructor(options: LocalStateStoreOptions) {
    this.dir = options.dir;
    this.clock = options.clock ?? systemClock;
    this.writer = options.writer ?? sharedDurableWriter();
  }

  // ---- leases ----

  async acquireLease(mailboxId: string, owner: string, ttlMs: number): Promise<Lease | undefined> {
    return this.io('acquireLease', async () => {
      const leaseDir = this.path('leases', segment(mailboxId, 'mailbox id'));
      const current = await this.currentLease(leaseDir);
      const now = this.clock.now();
      if (current.lease && !current.lease.released && current.lease.expiresAt >= now) return undefined;
      const expiresAt = now + ttlMs;
      const won = await this.nextGeneration(leaseDir, current.generation, { owner, expiresAt });
      if (!won) return undefined;
      // Only the lease holder may rewrite the journal (nobody else appends to it meanwhile). A failed
      // compaction leaves the journal as it was, which is still correct: never fail the lease for it.
      await this.journal(mailboxId)
        .compactIfWorthIt()
        .catch(() => false);
      return { mailboxId, owner, expiresAt };
    });
  }

  /**
   * Extends the lease if `lease.owner` still holds it (an expired lease nobody took is still ours).
   * On success `lease.expiresAt` is updated in place.
   */
  async renewLease(lease: Lease, ttlMs: number): Promise<boolean> {
    return this.io('renewLease', async () => {
      const leaseDir = this.path('leases', segment(lease.mailboxId, 'mailbox id'));
      const current = await this.currentLease(leaseDir);
      if (!current.lease || current.lease.released || current.lease.owner !== lease.owner) return false;
      const expiresAt = this.clock.now() + ttlMs;
      const won = await this.nextGeneration(leaseDir, current.generation, { owner: lease.owner, expiresAt });
      if (won) lease.expiresAt = expiresAt;
      return won;
    });
  }

  /** Releases the lease if we still hold it; a lease someone else now holds is left alone. */
  async releaseLease(lease: Lease): Promise<void> {
    await this.io('releaseLease', async () => {
      const leaseDir = this.path('leases', segment(lease.mailboxId, 'mailbox id'));
      const current = await this.currentLease(leaseDir);
      if (!current.lease || current.lease.released || current.lease.owner !== lease.owner) return;
      await this.nextGeneration(leaseDir, current.generation, {
        owner: lease.owner,
        expiresAt: 0,
        released: true,
      });
    });
  }

  /**
   * The lease of `mailboxId` as it stands, if held (not released). Lets local tools find the lease of a
   * `pophook` process that died (SIGKILL, power loss) and release it instead of waiting for the TTL.
   */
  async peekLease(mailboxId: string): Promise<Lease | undefined> {
    return this.io('peekLease', async () => {
      const current = await this.currentLease(this.path('leases', segment(mailboxId, 'mailbox id')));
      if (!current.lease || current.lease.released) return undefined;
      return { mailboxId, owner: current.lease.owner, expiresAt: current.lease.expiresAt };
    });
  }

  private async currentLease(leaseDir: string): Promise<{ generation: number; lease?: LeaseFile }> {
    for (let i = 0; i < LEASE_READ_RETRIES; i++) {
      const generation = await maxGeneration(leaseDir);
      if (generation === 0) return { generation };
      const lease = await readLease(join(leaseDir, generationName(generation)));
      if (lease) return { generation, lease };
      // Pruned between listing and reading: a newer generation exists; look again.
    }
    throw new StateError('STATE_LEASE_UNREADABLE', `Lease directory ${leaseDir} keeps changing; try again.`);
  }

  /** Creates generation `after + 1`; true if this call created it and it is the newest. */
  private async nextGeneration(leaseDir: string, after: number, lease: LeaseFile): Promise<boolean> {
    const next = after + 1;
    if (!(await createExclusive(join(leaseDir, generationName(next)), JSON.stringify(lease)))) return false;
    if ((await maxGeneration(leaseDir)) !== next) return false;
    // Keep the previous generation: a reader that listed before our link may still be reading it.
    const names = await readdir(leaseDir);
    for (const name of names) {
      const m = GENERATION_FILE.exec(name);
      if (m?.[1] && Number(m[1]) < after) await unlinkQuiet(join(leaseDir, name));
    }
    return true;
  }

  // ---- message records ----

  /** All records of a mailbox, in no particular order. */
  async listMessages(mailboxId: string): Promise<MessageRecord[]> {
    return this.io('listMessages', () => this.journal(mailboxId).all());
  }

  async getMessage(mailboxId: string, uidl: string, occurrence: number): Promise<MessageRecord | undefined> {
    return this.io('getMessage', () => this.journal(mailboxId).get(uidl, occurrence));
  }

  async createMessage(record: MessageRecord): Promise<boolean> {
    // Durable before it returns: the record fixes firstSeenAt, hence the archive key.
    return this.io('createMessage', () => this.journal(record.mailboxId).write(record, true));
  }

  async putMessage(record: MessageRecord): Promise<void> {
    await this.io('putMessage', () => this.journal(record.mailboxId).write(record, false));
  }

  async findBySha256(mailboxId: string, sha256: string): Promise<MessageRecord[]> {
    return this.io('findBySha256', async () => {
      return this.journal(mailboxId).find((r) => r.sha256 === sha256);
    });
  }

  async findByMessageKey(messageKey: string): Promise<MessageRecord | undefined> {
    return this.io('findByMessageKey', async () => {
      for (const name of await readdirQuiet(this.path('messages'))) {
        const m = JOURNAL_FILE.exec(name);
        if (!m?.[1] || !SAFE_SEGMENT.test(m[1])) continue;
        const found = (await this.journal(m[1]).find((r) => r.messageKey === messageKey))[0];
        if (found) return found;
      }
      return undefined;
    });
  }

  private journal(mailboxId: string): MessageJournal {
    const id = segment(mailboxId, 'mailbox id');
    let journal = this.journals.get(id);
    if (!journal) {
      journal = new MessageJournal(this.path('messages', `${id}.jsonl`), this.syncDir, this.writer);
      this.journals.set(id, journal);
    }
    return journal;
  }

  // ---- polls ----

  async recordPoll(poll: PollRecord): Promise<void> {
    await this.io('recordPoll', async () => {
      const dir = this.path('polls', segment(poll.mailboxId, 'mailbox id'));
      await writeAtomic(join(dir, 'last.json'), toJson(poll));
      const now = this.clock.now();
      const day = new Date(now).toISOString().slice(0, 10);
      // O_APPEND writes of one short line do not interleave between processes on a local filesystem.
      await appendFile(join(dir, `history-${day}.jsonl`), `${JSON.stringify(poll)}\n`);
      const oldest = new Date(now - POLL_HISTORY_DAYS * 86_400_000).toISOString().slice(0, 10);
      for (const name of await readdirQuiet(dir)) {
        const m = /^history-(\d{4}-\d{2}-\d{2})\.jsonl$/.exec(name);
        if (m?.[1] && m[1] < oldest) await unlinkQuiet(join(dir, name));
      }
    });
  }

  async lastPoll(mailboxId: string): Promise<PollRecord | undefined> {
    return this.io('lastPoll', () =>
      readJson<PollRecord>(this.path('polls', segment(mailboxId, 'mailbox id'), 'last.json')),
    );
  }

  // ---- delivery log ----

  async recordAttempt(attempt: DeliveryAttempt): Promise<void> {
    await this.io('recordAttempt', async () => {
      const at = Date.parse(attempt.at);
      const name = `${segment(attempt.endpointId, 'endpoint id')}.${Number.isNaN(at) ? 0 : at}.${attempt.attempt}.json`;
      await writeAtomic(this.path('deliveries', sha256Hex(attempt.messageKey), name), toJson(attempt));
    });
  }

  /** Oldest first (by `at`, then endpoint id, then attempt number). */
  async listAttempts(messageKey: string): Promise<DeliveryAttempt[]> {
    return this.io('listAttempts', async () => {
      const dir = this.path('deliveries', sha256Hex(messageKey));
      const names = (await readdirQuiet(dir)).filter((n) => n.endsWith('.json') && !n.startsWith('.'));
      const all = await mapLimit(names, READ_CONCURRENCY, (n) => readJson<DeliveryAttempt>(join(dir, n)));
      return all.filter((a): a is DeliveryAttempt => a !== undefined).sort(compareAttempts);
    });
  }

  async getEndpointState(endpointId: string): Promise<EndpointState | undefined> {
    return this.io('getEndpointState', () =>
      readJson<EndpointState>(this.path('endpoints', `${segment(endpointId, 'endpoint id')}.json`)),
    );
  }

  async setEndpointState(state: EndpointState): Promise<void> {
    await this.io('setEndpointState', () =>
      writeAtomic(this.path('endpoints', `${segment(state.endpointId, 'endpoint id')}.json`), toJson(state)),
    );
  }

  // ---- internals ----

  private path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  private async io<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof StateError) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new StateError(
        'STATE_IO',
        `Local state in ${this.dir} failed a ${op} (${code}). Check the directory exists, is writable and has free space.`,
        { cause: err, details: { op, dir: this.dir, errno: code } },
      );
    }
  }
}

function segment(value: string, what: string): string {
  if (!SAFE_SEGMENT.test(value) || value.includes('..'))
    throw new StateError(
      'STATE_INVALID_ID',
      `The ${what} "${value.slice(0, 64)}" cannot be used as a file name.`,
      {
        transient: false,
      },
    );
  return value;
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

const generationName = (generation: number) => `${String(generation).padStart(GENERATION_DIGITS, '0')}.json`;
const toJson = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

/** Oldest first (by `at`, then endpoint id, then attempt number), the same order as DynamoStateStore. */
function compareAttempts(a: DeliveryAttempt, b: DeliveryAttempt): number {
  if (a.at !== b.at) return Date.parse(a.at) - Date.parse(b.at) || (a.at < b.at ? -1 : 1);
  if (a.endpointId !== b.endpointId) return a.endpointId < b.endpointId ? -1 : 1;
  return a.attempt - b.attempt;
}

async function maxGeneration(leaseDir: string): Promise<number> {
  let max = 0;
  for (const name of await readdirQuiet(leaseDir)) {
    const m = GENERATION_FILE.exec(name);
    if (m?.[1]) max = Math.max(max, Number(m[1]));
  }
  return max;
}

/**
 * A lease file that does not parse can only come from a power loss before its data reached the disk
 * (files appear via link(2) after fsync otherwise). Every holder died with the power: it is free.
 */
async function readLease(path: string): Promise<LeaseFile | undefined> {
  try {
    return await readJson<LeaseFile>(path);
  } catch (err) {
    if (err instanceof StateError && err.code === 'STATE_CORRUPT')
      return { owner: '', expiresAt: 0, released: true };
    throw err;
  }
}

async function readdirQuiet(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

function readJson<T>(path: string): Promise<T | undefined> {
  return readJsonFile<T>(
    path,
    (cause) =>
      new StateError('STATE_CORRUPT', `State file ${path} is not valid JSON. Move it aside and poll again.`, {
        cause,
        transient: false,
      }),
  );
}

async function unlinkQuiet(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Writes a fsynced temp file beside `path` and returns its name. */
async function writeTemp(path: string, data: string): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.tmp-${process.pid}-${randomUUID()}`);
  const handle = await open(tmp, 'wx');
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  return tmp;
}

/**
 * Replaces `path` with `data` so that readers see the old or the new file, never a mix. The data is
 * always fsynced; `durableName` also fsyncs the directory, so a new name survives power loss.
 */
async function writeAtomic(path: string, data: string, durableName = false): Promise<void> {
  const tmp = await writeTemp(path, data);
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlinkQuiet(tmp);
    throw err;
  }
  if (durableName) await fsyncDir(dirname(path));
}

/** Creates `path` with `data` only if it does not exist; false if it does. Never leaves a partial file. */
async function createExclusive(path: string, data: string, durableName = false): Promise<boolean> {
  const tmp = await writeTemp(path, data);
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlinkQuiet(tmp);
  }
  if (durableName) await fsyncDir(dirname(path));
  return true;
}

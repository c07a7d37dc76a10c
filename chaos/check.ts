/**
 * The chaos run's invariant checker.
 *
 * Deletion-before-archive, exactly: Dovecot deletes POP3 messages only in the UPDATE state, i.e. after
 * a QUIT. The fault proxy holds every QUIT before it reaches Dovecot and calls `holdQuit()`, which
 * (under one lock, so QUIT windows never overlap):
 *   1. scans the Maildir and attributes anything that vanished since the last scan to the previous
 *      QUIT window (nothing else can delete);
 *   2. takes a snapshot S of the archive: the SHA-256 of every raw `.eml` object present now;
 *   3. lets the QUIT through, waits until Dovecot has closed the connection (it expunges before it
 *      replies and closes), and scans the Maildir again.
 * Every message that vanished in that window was deleted by that QUIT, and must be in S, which was
 * taken before the QUIT reached the server. So "archived before deleted" is checked against the archive
 * as it was at the moment of the deletion command, not some time after it. The final scan covers the
 * last window. A message whose bytes are not in S is a violation.
 *
 * The archive index hashes each `.eml` once (objects are create-only, never rewritten).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface GeneratedRecord {
  /** Maildir unique name (the file name up to `,S=` / `:`), as delivered. */
  name: string;
  sha256: string;
  size: number;
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Raw `.eml` objects under `<archiveDir>/raw`, hashed once each. */
export class ArchiveIndex {
  private readonly byPath = new Map<string, string>();

  constructor(private readonly archiveDir: string) {}

  private async walk(dir: string, out: string[]): Promise<void> {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await this.walk(p, out);
      else if (e.isFile() && e.name.endsWith('.eml')) out.push(p);
    }
  }

  /** Path -> SHA-256 of every raw object now. */
  async refresh(): Promise<ReadonlyMap<string, string>> {
    const paths: string[] = [];
    await this.walk(join(this.archiveDir, 'raw'), paths);
    for (const p of paths) if (!this.byPath.has(p)) this.byPath.set(p, await hashFile(p));
    return this.byPath;
  }

  async shas(): Promise<Set<string>> {
    return new Set((await this.refresh()).values());
  }
}

/** The Maildir unique part of a file name: `1700000000.M1P2.host,S=..,W=..:2,S` -> `1700000000.M1P2.host`. */
export function maildirUnique(fileName: string): string {
  return fileName.split(':')[0]?.split(',')[0] ?? fileName;
}

async function maildirNames(maildir: string): Promise<Set<string>> {
  const names = new Set<string>();
  for (const sub of ['new', 'cur']) {
    for (const n of await readdir(join(maildir, sub)).catch(() => [] as string[]))
      names.add(maildirUnique(n));
  }
  return names;
}

export interface DeletionViolation {
  name: string;
  sha256: string;
  /** Which QUIT window deleted it (0: before any QUIT, which should be impossible). */
  window: number;
}

/** Waits at most this long for Dovecot to close after a QUIT before scanning anyway. */
const QUIT_CLOSE_WAIT_MS = 10_000;

export class DeletionWatch {
  /** Maildir names known to be present (delivered and not yet seen gone). */
  private readonly present = new Map<string, GeneratedRecord>();
  private readonly deleted = new Set<string>();
  private lock: Promise<void> = Promise.resolve();
  private snapshot = new Set<string>();
  private window = 0;
  readonly violations: DeletionViolation[] = [];
  /** Deletions checked, and QUIT windows whose close wait timed out (attribution then less strict). */
  checked = 0;
  quits = 0;
  slowCloses = 0;

  constructor(
    private readonly maildir: string,
    private readonly archive: ArchiveIndex,
  ) {}

  /** Called by the generator once a message is in new/ (after the rename). */
  delivered(record: GeneratedRecord): void {
    this.present.set(record.name, record);
  }

  /** Attributes every message gone from the Maildir to the current window's snapshot. */
  private async scan(): Promise<void> {
    const known = [...this.present.values()];
    let names = await maildirNames(this.maildir);
    let gone = known.filter((r) => !names.has(r.name));
    if (gone.length) {
      // A rename new/ -> cur/ during the two readdirs can hide a file once; look again before judging.
      names = await maildirNames(this.maildir);
      gone = gone.filter((r) => !names.has(r.name));
    }
    for (const r of gone) {
      this.present.delete(r.name);
      this.deleted.add(r.name);
      this.checked++;
      if (!this.snapshot.has(r.sha256))
        this.violations.push({ name: r.name, sha256: r.sha256, window: this.window });
    }
  }

  /** Serialises QUIT windows and Maildir deliveries. */
  private async acquire(): Promise<() => void> {
    let release!: () => void;
    const previous = this.lock;
    this.lock = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    return release;
  }

  /**
   * Runs a delivery into the Maildir (and its registration) outside any QUIT window, so a message can
   * never be deleted before the watch knows it is there.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** The proxy's QUIT hook: see the module comment. */
  async holdQuit(upstreamClosed: Promise<void>): Promise<() => Promise<void>> {
    const release = await this.acquire();
    try {
      await this.scan();
      this.snapshot = await this.archive.shas();
      this.window++;
      this.quits++;
    } catch (err) {
      release();
      throw err;
    }
    return async () => {
      try {
        const timedOut = await Promise.race([
          upstreamClosed.then(() => false),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(true), QUIT_CLOSE_WAIT_MS).unref()),
        ]);
        if (timedOut) this.slowCloses++;
        await this.scan();
      } finally {
        release();
      }
    };
  }

  /** The last window (and anything after it). */
  async finish(): Promise<void> {
    await this.exclusive(() => this.scan());
  }

  get deletedCount(): number {
    return this.deleted.size;
  }
}

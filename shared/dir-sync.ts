/**
 * Directory fsync with group commit. Making a new name durable needs an fsync of its directory after
 * the link or rename; when many files land in one directory at once (a burst of messages), one sync
 * that starts after all of them covers them all. A caller always gets a sync that starts after its
 * call: joining one already running would not cover a name created after that sync began.
 */
import { open } from 'node:fs/promises';

export type SyncDir = (dir: string) => Promise<void>;

/** fsync(2) of a directory: makes the names just linked or renamed into it survive power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

interface Slot {
  running?: Promise<void>;
  queued?: Promise<void>;
}

/** Wraps `syncOnce` so that concurrent calls for one directory share syncs (at most one queued). */
export function coalescingDirSync(syncOnce: SyncDir): SyncDir {
  const slots = new Map<string, Slot>();
  const start = (dir: string, slot: Slot): Promise<void> => {
    const run: Promise<void> = syncOnce(dir).finally(() => {
      if (slot.running === run) slot.running = undefined;
      if (!slot.running && !slot.queued) slots.delete(dir);
    });
    slot.running = run;
    return run;
  };
  return (dir) => {
    let slot = slots.get(dir);
    if (!slot) {
      slot = {};
      slots.set(dir, slot);
    }
    if (slot.queued) return slot.queued;
    if (!slot.running) return start(dir, slot);
    const s = slot;
    const queued = slot.running
      .then(
        () => {},
        () => {},
      )
      .then(() => {
        s.queued = undefined;
        return start(dir, s);
      });
    s.queued = queued;
    return queued;
  };
}

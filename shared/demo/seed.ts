/**
 * The sample messages that ship with pophook, and seeding them into a demo inbox. Seeded copies get a
 * timestamp prefix: the demo server's UIDL covers the file name, so a re-seed yields new messages
 * rather than copies of ones pophook already fetched (and would rightly skip).
 */
import { copyFile, readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMessageFileName } from './pop3-server.js';

/** Absolute path of the bundled `.eml` samples. */
export const DEMO_SAMPLES_DIR = fileURLToPath(new URL('./samples/', import.meta.url));

/** File names of the bundled samples, sorted. */
export async function listDemoSamples(): Promise<string[]> {
  return (await readdir(DEMO_SAMPLES_DIR)).filter(isMessageFileName).sort();
}

/** True when `dir` holds no message files (or does not exist). */
export async function hasNoMessages(dir: string): Promise<boolean> {
  try {
    return !(await readdir(dir)).some(isMessageFileName);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);

/**
 * Copies every sample into `inbox` (which must exist) as `<yyyymmdd-hhmmss>-<name>`, each through a
 * hidden temp file and a rename, so a concurrent login never sees half a file. Returns the new names.
 */
export async function seedDemoInbox(inbox: string, now: Date = new Date()): Promise<string[]> {
  const written: string[] = [];
  for (const name of await listDemoSamples()) {
    const target = `${stamp(now)}-${name}`;
    const temp = path.join(inbox, `.${target}.tmp`);
    try {
      await copyFile(path.join(DEMO_SAMPLES_DIR, name), temp);
      await rename(temp, path.join(inbox, target));
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
    written.push(target);
  }
  return written;
}

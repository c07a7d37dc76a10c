/**
 * Reads a JSON file written by one of our local stores. A missing file is `undefined` (not written
 * yet, or removed by a concurrent rename); a file that is not JSON is corruption, reported through
 * `corrupt` so each store can say what to do in its own words.
 */
import { readFile } from 'node:fs/promises';

export async function readJsonFile<T>(
  path: string,
  corrupt: (cause: unknown) => Error,
): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw corrupt(err);
  }
}

/**
 * Writes the JSON Schemas generated from the zod sources into docs/. Run after changing a schema:
 * `npx tsx scripts/gen-schemas.ts` (a test fails while a committed file is out of date).
 * `--check` only compares, exiting 1 when a file would change.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderConfigJsonSchema } from '../shared/config/json-schema.js';
import { renderEventJsonSchema } from '../shared/mail/event-schema.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Each generated file and the function that renders it. Add new schemas here. */
const outputs: { file: string; render: () => string }[] = [
  { file: 'docs/event.schema.json', render: renderEventJsonSchema },
  { file: 'docs/config.schema.json', render: renderConfigJsonSchema },
];

const check = process.argv.includes('--check');
let stale = 0;
for (const { file, render } of outputs) {
  const path = join(root, file);
  const next = render();
  let current: string | undefined;
  try {
    current = readFileSync(path, 'utf8');
  } catch {
    current = undefined;
  }
  if (current === next) continue;
  if (check) {
    stale += 1;
    process.stderr.write(`${file} is out of date; run: npx tsx scripts/gen-schemas.ts\n`);
  } else {
    writeFileSync(path, next);
    process.stdout.write(`wrote ${file}\n`);
  }
}
process.exitCode = stale ? 1 : 0;

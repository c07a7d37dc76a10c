/**
 * Hostile mail through the whole pipeline: every message of mail-generator.ts is served by the
 * embedded demo POP3 server, polled by the real poller, archived, parsed, queued and delivered to a
 * local receiver (scripts/corpus.ts `runCorpus`, the same harness as `npm run corpus`). Each must be
 * archived byte-exact, parsed within the time limit or reported with `parseError` (the limit codes
 * where a limit is the point), produce an event that is valid JSON with only SQS-legal characters,
 * and be delivered with a verified signature in a body the queue validator accepts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CorpusItem, type CorpusTotals, runCorpus } from '../../scripts/corpus.js';
import { hostileMessages } from './mail-generator.js';

/** The run's parse budget; every message must finish within it (plus the timer's grace). */
const PARSE_TIMEOUT_MS = 5000;

describe('hostile mail through the whole pipeline', () => {
  const messages = hostileMessages();
  let dir: string;
  let items: CorpusItem[];
  let totals: CorpusTotals;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pophook-hostile-mail-'));
    for (const m of messages) await writeFile(join(dir, `${m.name}.eml`), m.bytes);
    ({ items, totals } = await runCorpus(dir, { parseTimeoutMs: PARSE_TIMEOUT_MS }));
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs every message through: archived, delivered, no problem anywhere', () => {
    expect(totals.files).toBe(messages.length);
    expect(items.filter((i) => i.problems.length).map((i) => `${i.name}: ${i.problems.join('; ')}`)).toEqual(
      [],
    );
    expect(totals.archived).toBe(messages.length);
    expect(totals.delivered).toBe(messages.length);
    expect(totals.slowest?.ms ?? 0).toBeLessThan(PARSE_TIMEOUT_MS + 2000);
  });

  for (const m of messages) {
    it(`${m.name}: ${m.expectParseError ?? 'parsed or reported'}`, () => {
      const item = items.find((i) => i.name === `${m.name}.eml`);
      expect(item).toBeDefined();
      expect(item?.archived).toBe(true);
      expect(item?.delivered).toBe(true);
      if (m.expectParseError) expect(item?.parseError).toBe(m.expectParseError);
      else expect([null, 'PARSE_MALFORMED', 'PARSE_TIMEOUT']).toContain(item?.parseError);
    });
  }

  it('attachment names never become paths: no traversal, no control characters', () => {
    const evil = items.find((i) => i.name === 'evil-attachment-names.eml');
    expect(evil?.attachmentKeys.length).toBe(9);
    for (const key of evil?.attachmentKeys ?? []) {
      expect(key).toMatch(/^attachments\/corpus\/[0-9a-f]{32}\/\d+-[^/]+$/);
      expect(key).not.toMatch(/[\u0000-\u001f\u007f\\]/);
    }
  });
});

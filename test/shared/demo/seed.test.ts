import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DEMO_SAMPLES_DIR,
  hasNoMessages,
  listDemoSamples,
  seedDemoInbox,
} from '../../../shared/demo/seed.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pophook-seed-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('demo samples', () => {
  it('cover the cases the demo promises and parse cleanly', async () => {
    const names = await listDemoSamples();
    expect(names.length).toBeGreaterThanOrEqual(4);
    expect(names.length).toBeLessThanOrEqual(6);
    const parsed = await Promise.all(
      names.map(async (n) => simpleParser(await readFile(path.join(DEMO_SAMPLES_DIR, n)))),
    );
    const all = parsed.map((m) => ({
      subject: m.subject ?? '',
      text: m.text ?? '',
      html: typeof m.html === 'string' ? m.html : '',
      attachments: m.attachments,
      headers: m.headers,
      inReplyTo: m.inReplyTo,
    }));
    expect(all.some((m) => m.html === '' && m.attachments.length === 0 && m.text.includes('\n.'))).toBe(true);
    expect(
      all.some(
        (m) =>
          m.html.includes('<img') &&
          m.attachments.some((a) => a.contentDisposition === 'inline' && a.contentId !== undefined),
      ),
    ).toBe(true);
    expect(
      all.some((m) =>
        m.attachments.some(
          (a) =>
            a.contentType === 'application/pdf' &&
            Buffer.from(a.content).subarray(0, 5).toString('latin1') === '%PDF-',
        ),
      ),
    ).toBe(true);
    expect(
      all.some((m) => m.subject.includes('Grüße') && m.text.includes('東京') && m.text.includes('résumé')),
    ).toBe(true);
    expect(
      all.some(
        (m) => m.inReplyTo && m.headers.has('authentication-results') && m.headers.has('x-spam-status'),
      ),
    ).toBe(true);
  });

  it('seed copies every sample under a timestamped name, leaving no temp files', async () => {
    expect(await hasNoMessages(dir)).toBe(true);
    expect(await hasNoMessages(path.join(dir, 'missing'))).toBe(true);
    const written = await seedDemoInbox(dir, new Date('2025-03-03T09:15:00Z'));
    expect(written[0]).toMatch(/^20250303-091500-01-/);
    expect((await readdir(dir)).sort()).toEqual(written.sort());
    expect(await hasNoMessages(dir)).toBe(false);
  });
});

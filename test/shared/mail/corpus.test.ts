/**
 * Every message of the committed corpus (test/fixtures/mail, real-world and malformed mail from
 * Dovecot, MimeKit and mailparser's suites) parses or reports parseError, never throws, stays within
 * its time budget, and yields an event that is valid JSON for SQS and valid against the schema.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { EmailReceivedData } from '../../../shared/mail/event.js';
import { EmailReceivedDataSchema, WebhookBodySchema } from '../../../shared/mail/event-schema.js';
import { parseMessage } from '../../../shared/mail/parse.js';
import {
  CORPUS_DIR,
  corpusFiles,
  makeInput,
  REPO_ROOT,
  recordingDeps,
  unsafeStrings,
  validateJsonSchema,
} from './helpers.js';

// Generous against CI noise (2 shared cores); unloaded, the slowest file takes ~0.5 s.
const PER_FILE_TIMEOUT_MS = 10_000;
const jsonSchema = JSON.parse(readFileSync(join(REPO_ROOT, 'docs', 'event.schema.json'), 'utf8')) as Record<
  string,
  unknown
>;
const timings: [string, number][] = [];
const events = new Map<string, EmailReceivedData>();

async function parseFile(path: string): Promise<EmailReceivedData> {
  const started = Date.now();
  const event = await parseMessage(
    makeInput(createReadStream(path), { timeoutMs: PER_FILE_TIMEOUT_MS }),
    recordingDeps(),
  );
  timings.push([relative(CORPUS_DIR, path), Date.now() - started]);
  events.set(relative(CORPUS_DIR, path), event);
  return event;
}

describe('corpus', () => {
  const files = corpusFiles();

  it('has the committed corpus with its licence files', () => {
    expect(files.length).toBeGreaterThanOrEqual(80);
    for (const licence of [
      'dovecot-malformed/COPYING',
      'dovecot-thirdparty/COPYING',
      'mimekit/LICENSE',
      'mailparser/LICENSE',
    ]) {
      expect(readFileSync(join(CORPUS_DIR, licence), 'utf8').length).toBeGreaterThan(50);
    }
  });

  for (const path of files) {
    const name = relative(CORPUS_DIR, path);
    it(`parses ${name}`, async () => {
      const started = Date.now();
      const event = await parseFile(path);
      expect(Date.now() - started).toBeLessThan(PER_FILE_TIMEOUT_MS);
      expect(event.parseError?.code).not.toBe('PARSE_TIMEOUT');
      const json = JSON.stringify(event);
      expect(JSON.parse(json)).toEqual(event);
      expect(unsafeStrings(event)).toEqual([]);
      expect(EmailReceivedDataSchema.safeParse(event).success).toBe(true);
      const body = { type: 'email.received', timestamp: '2024-05-01T12:00:01.000Z', data: event };
      expect(validateJsonSchema(jsonSchema, body)).toEqual([]);
      expect(WebhookBodySchema.safeParse(body).success).toBe(true);
    });
  }

  it('reads what the corpus says it holds', () => {
    const get = (name: string) => {
      const event = events.get(name);
      if (!event) throw new Error(`${name} was not parsed`);
      return event;
    };
    expect(get('mimekit/japanese.txt').subject).toContain('日本語メールテスト');
    expect(get('dovecot-thirdparty/010.eml').subject).toBe('こんにちは');
    expect(get('mailparser/nodemailer.eml').authResults).toEqual({
      authservId: 'mx.google.com',
      dkim: 'pass',
      spf: 'pass',
      dmarc: 'fail',
    });
    // Exchange Online writes no authserv-id; the results are still read.
    expect(get('mimekit/bounce.txt').authResults).toEqual({ spf: 'none', dkim: 'none', dmarc: 'fail' });
    expect(get('mailparser/delivery-status.eml').text).toContain('An error occurred while trying to deliver');
    // message/delivery-status is part of the text (mailparser's keepDeliveryStatus: false).
    expect(get('mailparser/delivery-status.eml').text).toContain('Action: failed');
    for (const dos of [
      'mailparser/outofmemory.eml',
      'mailparser/large_text.eml',
      'mailparser/htmllargecallstack.eml',
    ]) {
      expect(get(dos).textTruncated).toBe(true);
    }
  });

  afterAll(() => {
    const slowest = [...timings].sort((a, b) => b[1] - a[1]).slice(0, 3);
    console.info(
      `corpus: ${timings.length} files; slowest ${slowest.map(([n, ms]) => `${n} ${ms} ms`).join(', ')}`,
    );
  });
});

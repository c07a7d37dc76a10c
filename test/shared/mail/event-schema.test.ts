import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EmailSkippedData } from '../../../shared/mail/event.js';
import { renderEventJsonSchema, WebhookBodySchema } from '../../../shared/mail/event-schema.js';
import { parseMessage } from '../../../shared/mail/parse.js';
import { makeInput, REPO_ROOT, recordingDeps, validateJsonSchema } from './helpers.js';

const schemaPath = join(REPO_ROOT, 'docs', 'event.schema.json');
const committed = readFileSync(schemaPath, 'utf8');
const schema = JSON.parse(committed) as Record<string, unknown>;

const MESSAGE = [
  'From: "A" <a@example.com>',
  'To: b@example.com',
  'Subject: schema',
  'Date: Tue, 2 Jan 2024 03:04:05 +0000',
  'Authentication-Results: mx.example.org; spf=pass; dkim=fail',
  'X-Spam-Score: 1.5',
  'Content-Type: multipart/mixed; boundary=b',
  '',
  '--b',
  'Content-Type: text/plain',
  '',
  'hello',
  '--b',
  'Content-Type: application/octet-stream; name=a.bin',
  '',
  'data',
  '--b--',
  '',
].join('\r\n');

describe('docs/event.schema.json', () => {
  it('is up to date with shared/mail/event-schema.ts (regenerate: npx tsx scripts/gen-schemas.ts)', () => {
    expect(committed).toBe(renderEventJsonSchema());
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
  });

  it('accepts a real parsed event, with and without parseError', async () => {
    const data = await parseMessage(makeInput(MESSAGE), recordingDeps());
    expect(data.attachments).toHaveLength(1);
    expect(data.authResults).not.toBeNull();
    expect(data.spam?.score).toBe(1.5);
    const body = { type: 'email.received', timestamp: '2024-05-01T12:00:01.000Z', data };
    expect(validateJsonSchema(schema, body)).toEqual([]);
    expect(WebhookBodySchema.parse(body)).toEqual(body);

    const limited = await parseMessage(makeInput(MESSAGE, { maxParts: 1 }), recordingDeps());
    expect(limited.parseError?.code).toBe('PARSE_LIMIT_PARTS');
    expect(validateJsonSchema(schema, { ...body, data: limited })).toEqual([]);
  });

  it('accepts an email.skipped body', () => {
    const data: EmailSkippedData = {
      version: 1,
      eventId: 'evt_2',
      messageKey: 'k2',
      mailboxId: 'inbox-1',
      uidl: null,
      receivedAt: '2024-05-01T12:00:00.000Z',
      size: 80_000_000,
      reason: 'too-large',
      limit: 52_428_800,
    };
    const body = { type: 'email.skipped', timestamp: '2024-05-01T12:00:01Z', data };
    expect(validateJsonSchema(schema, body)).toEqual([]);
    expect(WebhookBodySchema.safeParse(body).success).toBe(true);
  });

  it('accepts what delivery sends: links, inlined content, omissions, thin payloads', async () => {
    const data = await parseMessage(makeInput(MESSAGE), recordingDeps());
    const links = {
      raw: {
        url: 'https://bucket.s3.amazonaws.com/raw?X-Amz-Signature=x',
        expiresAt: '2024-05-01T18:00:01.000Z',
      },
    };
    const full = {
      type: 'email.received',
      timestamp: '2024-05-01T12:00:01.000Z',
      data: { ...data, links, omitted: [{ field: 'html', reason: 'maxBodyBytes' }] },
    };
    const { text, html, headers, ...thinData } = data;
    void [text, html, headers];
    const thin = {
      ...full,
      data: { ...thinData, links, omitted: [{ field: 'text', reason: 'thin payload' }] },
    };
    for (const body of [full, thin]) {
      const plain = JSON.parse(JSON.stringify(body)) as unknown;
      expect(validateJsonSchema(schema, plain)).toEqual([]);
      expect(WebhookBodySchema.safeParse(plain).success).toBe(true);
    }
  });

  it('rejects bodies that break the contract', async () => {
    const data = await parseMessage(makeInput(MESSAGE), recordingDeps());
    const good = { type: 'email.received', timestamp: '2024-05-01T12:00:01.000Z', data };
    const bad: [string, unknown][] = [
      ['unknown type', { ...good, type: 'email.deleted' }],
      ['missing identity field', { ...good, data: { ...data, eventId: undefined } }],
      ['bad link', { ...good, data: { ...data, links: { raw: { url: 'u' } } } }],
      ['extra field', { ...good, data: { ...data, surprise: true } }],
      ['wrong version', { ...good, data: { ...data, version: 2 } }],
      ['bad date', { ...good, data: { ...data, date: 'yesterday' } }],
      ['bad sha', { ...good, data: { ...data, raw: { key: 'k', size: 1, sha256: 'xyz' } } }],
      [
        'bad disposition',
        { ...good, data: { ...data, attachments: [{ ...data.attachments[0], disposition: 'x' }] } },
      ],
      ['skipped data under received', { ...good, data: { ...data, reason: 'too-large' } }],
    ];
    for (const [label, body] of bad) {
      const plain = JSON.parse(JSON.stringify(body)) as unknown;
      expect(validateJsonSchema(schema, plain), label).not.toEqual([]);
      expect(WebhookBodySchema.safeParse(plain).success, label).toBe(false);
    }
  });
});

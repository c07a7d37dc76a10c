import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildPayload, truncateToJsonBytes } from '../../../shared/delivery/payload.js';
import type { AttachmentInfo } from '../../../shared/mail/event.js';
import { defaultDelivery, MemoryArchive, receivedEvent } from './helpers.js';

const NOW = Date.parse('2025-03-04T06:00:00Z');
const s3 = () => new MemoryArchive('https://bucket.s3.example');

function attachment(index: number, size: number, key = `attachments/inbox/k/${index}-a.bin`): AttachmentInfo {
  return {
    index,
    filename: `a${index}.bin`,
    contentType: 'application/octet-stream',
    size,
    sha256: 'b'.repeat(64),
    contentId: null,
    disposition: 'attachment',
    key,
  };
}

describe('buildPayload', () => {
  it('full: the whole event, with expiring links, and nothing omitted', async () => {
    const event = receivedEvent({ attachments: [attachment(0, 10)] });
    const out = await buildPayload(event, {
      mode: 'full',
      delivery: defaultDelivery(),
      archive: s3(),
      nowMs: NOW,
    });
    const body = JSON.parse(out.body);
    expect(body.type).toBe('email.received');
    expect(body.timestamp).toBe(event.data.receivedAt);
    expect(body.data.text).toBe('Hello there');
    expect(body.data.html).toBe('<p>Hello there</p>');
    expect(body.data.links.raw.url).toContain(event.data.raw.key);
    expect(body.data.links.raw.expiresAt).toBe(new Date(NOW + 6 * 3600 * 1000).toISOString());
    expect(body.data.attachments[0].url).toContain('attachments/inbox/k/0-a.bin');
    expect(body.data.omitted).toEqual([]);
    expect(out.bytes).toBe(Buffer.byteLength(out.body));
  });

  it('thin: ids, metadata, attachment list and links only', async () => {
    const event = receivedEvent({ attachments: [attachment(0, 10)] });
    const out = await buildPayload(event, {
      mode: 'thin',
      delivery: defaultDelivery(),
      archive: s3(),
      nowMs: NOW,
    });
    const data = JSON.parse(out.body).data;
    expect(data).not.toHaveProperty('text');
    expect(data).not.toHaveProperty('html');
    expect(data).not.toHaveProperty('headers');
    expect(data).toMatchObject({
      messageKey: event.data.messageKey,
      mailboxId: 'inbox',
      subject: 'Invoice 42',
      from: event.data.from,
      to: event.data.to,
      raw: { size: 1234 },
    });
    expect(data.attachments[0]).toMatchObject({
      size: 10,
      url: expect.any(String),
      expiresAt: expect.any(String),
    });
  });

  it('says so when the archive issues no links (local mode)', async () => {
    const out = await buildPayload(receivedEvent(), {
      mode: 'thin',
      delivery: defaultDelivery(),
      archive: new MemoryArchive(),
      nowMs: NOW,
    });
    expect(JSON.parse(out.body).data.omitted).toEqual([{ field: 'links.raw', reason: expect.any(String) }]);
  });

  it('drops html, then truncates text, to stay under maxBodyBytes', async () => {
    const event = receivedEvent({ html: `<p>${'h'.repeat(100_000)}</p>`, text: 'é'.repeat(100_000) });
    const delivery = defaultDelivery({ maxBodyBytes: 16 * 1024 });
    const out = await buildPayload(event, { mode: 'full', delivery, archive: s3(), nowMs: NOW });
    const data = JSON.parse(out.body).data;
    expect(out.bytes).toBeLessThanOrEqual(16 * 1024);
    expect(data.html).toBeNull();
    expect(data.text.length).toBeGreaterThan(1000);
    expect(data.textTruncated).toBe(true);
    expect(data.headers).toHaveLength(2);
    expect(out.omitted.map((o) => o.field)).toEqual(['html', 'text']);
  });

  it('drops huge headers before giving up the text', async () => {
    const headers = Array.from({ length: 200 }, (_, i) => ({ name: `x-h${i}`, value: 'v'.repeat(500) }));
    const event = receivedEvent({ headers, text: 't'.repeat(5000), html: null });
    const delivery = defaultDelivery({ maxBodyBytes: 16 * 1024 });
    const out = await buildPayload(event, { mode: 'full', delivery, archive: s3(), nowMs: NOW });
    const data = JSON.parse(out.body).data;
    expect(out.bytes).toBeLessThanOrEqual(16 * 1024);
    expect(data.headers).toEqual([]);
    expect(data.text).toBe('t'.repeat(5000));
    expect(out.omitted.map((o) => o.field)).toContain('headers');
  });

  it('falls back to identity and links when even that is not enough', async () => {
    const event = receivedEvent({ subject: 's'.repeat(200_000) });
    const delivery = defaultDelivery({ maxBodyBytes: 16 * 1024 });
    for (const mode of ['full', 'thin'] as const) {
      const out = await buildPayload(event, { mode, delivery, archive: s3(), nowMs: NOW });
      const data = JSON.parse(out.body).data;
      expect(out.bytes).toBeLessThanOrEqual(16 * 1024);
      expect(data).toMatchObject({ eventId: event.data.eventId, messageKey: event.data.messageKey });
      expect(data.links.raw.url).toBeTruthy();
      expect(data.omitted).toEqual([{ field: 'data', reason: expect.any(String) }]);
    }
  });

  it('inlines small attachments as base64 while they fit, listing the rest', async () => {
    const archive = s3();
    const small = Buffer.from('hello attachment');
    const medium = Buffer.alloc(12 * 1024, 1);
    await archive.put('attachments/inbox/k/0-a.bin', small);
    await archive.put('attachments/inbox/k/1-a.bin', Buffer.alloc(9000, 2));
    await archive.put('attachments/inbox/k/2-a.bin', medium);
    const event = receivedEvent({
      attachments: [attachment(0, small.length), attachment(1, 9000), attachment(2, medium.length)],
    });
    const delivery = defaultDelivery({ maxBodyBytes: 20 * 1024, inlineAttachmentMaxBytes: 10_000 });
    const out = await buildPayload(event, { mode: 'full', delivery, archive, nowMs: NOW });
    const data = JSON.parse(out.body).data;
    expect(out.bytes).toBeLessThanOrEqual(20 * 1024);
    expect(Buffer.from(data.attachments[0].content, 'base64').equals(small)).toBe(true);
    expect(Buffer.from(data.attachments[1].content, 'base64')).toHaveLength(9000);
    expect(data.attachments[2].content).toBeUndefined();
    expect(data.omitted).toEqual([
      { field: 'attachments[2].content', reason: 'larger than inlineAttachmentMaxBytes' },
    ]);

    const tight = defaultDelivery({ maxBodyBytes: 16 * 1024, inlineAttachmentMaxBytes: 100_000 });
    const out2 = await buildPayload(event, { mode: 'full', delivery: tight, archive, nowMs: NOW });
    const data2 = JSON.parse(out2.body).data;
    expect(out2.bytes).toBeLessThanOrEqual(16 * 1024);
    expect(data2.attachments[0].content).toBeDefined();
    expect(data2.omitted).toContainEqual({
      field: 'attachments[2].content',
      reason: 'would exceed maxBodyBytes',
    });
  });

  it('never exceeds maxBodyBytes, whatever the sizes (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 60_000 }),
        fc.integer({ min: 0, max: 60_000 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 30_000 }),
        fc.constantFrom('full' as const, 'thin' as const),
        fc.constantFrom('a', 'é', '😀', '"', '\u0001'),
        async (textLen, htmlLen, headerCount, subjectLen, mode, ch) => {
          const event = receivedEvent({
            text: ch.repeat(textLen),
            html: ch.repeat(htmlLen),
            subject: ch.repeat(subjectLen),
            headers: Array.from({ length: headerCount }, (_, i) => ({
              name: `h${i}`,
              value: ch.repeat(300),
            })),
            attachments: Array.from({ length: headerCount }, (_, i) => attachment(i, 10)),
          });
          const delivery = defaultDelivery({ maxBodyBytes: 16 * 1024 });
          const out = await buildPayload(event, { mode, delivery, archive: s3(), nowMs: NOW });
          expect(out.bytes).toBeLessThanOrEqual(16 * 1024);
          expect(() => JSON.parse(out.body)).not.toThrow();
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('truncateToJsonBytes', () => {
  it('never splits a surrogate pair and fits the budget', () => {
    const text = '😀'.repeat(100);
    const cut = truncateToJsonBytes(text, 41);
    expect(Buffer.byteLength(JSON.stringify(cut))).toBeLessThanOrEqual(41);
    expect(cut).toBe('😀'.repeat(9));
  });
});

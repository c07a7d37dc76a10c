import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { scanReceivedEvent } from '../../../shared/delivery/event-scan.js';
import {
  buildPayload,
  buildScannedPayload,
  objectEnd,
  type ReceivedEvent,
  truncateToJsonBytes,
} from '../../../shared/delivery/payload.js';
import type { AttachmentInfo, PophookEvent } from '../../../shared/mail/event.js';
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

describe('buildPayload from the archived text (full payloads without a second JSON.stringify)', () => {
  /** The general path's body and the spliced one, for the same event as ingest archives it. */
  async function both(
    event: PophookEvent,
    options: { archive: MemoryArchive; delivery: ReturnType<typeof defaultDelivery> },
  ) {
    const eventJson = JSON.stringify(event);
    const common = { mode: 'full' as const, nowMs: NOW, ...options };
    const general = await buildPayload(JSON.parse(eventJson), common);
    const eventBytes = Buffer.from(eventJson, 'utf8');
    const spliced = await buildPayload(JSON.parse(eventJson), { ...common, eventJson, eventBytes });
    return { general, spliced };
  }

  it('is byte for byte the general body, whatever the event (property)', async () => {
    const text = fc.string({ unit: 'binary', maxLength: 300 });
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          text,
          html: fc.option(text, { nil: null }),
          subject: text,
          headers: fc.array(fc.record({ name: fc.string({ maxLength: 20 }), value: text }), { maxLength: 5 }),
          attachmentCount: fc.integer({ min: 0, max: 3 }),
        }),
        fc.boolean(),
        fc.constantFrom(0, 100),
        fc.constantFrom(16 * 1024, 256 * 1024),
        async (fields, links, inline, maxBodyBytes) => {
          const { attachmentCount, ...rest } = fields;
          const event = receivedEvent({
            ...rest,
            attachments: Array.from({ length: attachmentCount }, (_, i) => attachment(i, 10)),
          });
          const archive = links ? s3() : new MemoryArchive();
          const delivery = defaultDelivery({ maxBodyBytes, inlineAttachmentMaxBytes: inline });
          const { general, spliced } = await both(event, { archive, delivery });
          expect(spliced.body).toBe(general.body);
          expect(spliced.bytes).toBe(general.bytes);
          expect(spliced.omitted).toEqual(general.omitted);
          // When the archived bytes were spliced too, they are exactly the body's UTF-8.
          if (spliced.encoded) expect(spliced.encoded.equals(Buffer.from(general.body, 'utf8'))).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('splices the archived text as it is (proof that the fast path ran)', async () => {
    const event = receivedEvent({ text: 'A' });
    // Same JSON value, written with an escape JSON.stringify would not produce.
    const eventJson = JSON.stringify(event).replace('"text":"A"', '"text":"\\u0041"');
    const out = await buildPayload(JSON.parse(eventJson), {
      mode: 'full',
      delivery: defaultDelivery(),
      archive: s3(),
      nowMs: NOW,
      eventJson,
    });
    expect(out.body).toContain('"text":"\\u0041"');
    expect(JSON.parse(out.body).data.text).toBe('A');
    expect(JSON.parse(out.body).data.links.raw.url).toContain(event.data.raw.key);
  });

  it('copies the archived bytes only when they are valid UTF-8', async () => {
    const event = receivedEvent({ text: 'é ok' });
    const eventJson = JSON.stringify(event);
    const options = {
      mode: 'full' as const,
      delivery: defaultDelivery(),
      archive: s3(),
      nowMs: NOW,
      eventJson,
    };
    const good = await buildPayload(JSON.parse(eventJson), {
      ...options,
      eventBytes: Buffer.from(eventJson),
    });
    expect(good.encoded?.equals(Buffer.from(good.body))).toBe(true);
    expect(good.bytes).toBe(good.encoded?.length);
    // Bytes whose decoding is lossy (an invalid sequence became U+FFFD): the text is spliced, not the bytes.
    const lossy = Buffer.concat([
      Buffer.from(eventJson.slice(0, 40)),
      Buffer.from([0xff]),
      Buffer.from(eventJson.slice(40)),
    ]);
    const text = lossy.toString('utf8');
    const out = await buildPayload(JSON.parse(text), { ...options, eventJson: text, eventBytes: lossy });
    expect(out.encoded).toBeUndefined();
    expect(out.bytes).toBe(Buffer.byteLength(out.body));
  });

  it('takes the general path for anything but the exact archived shape', async () => {
    const event = receivedEvent({ text: 'A' });
    const plain = JSON.stringify(event);
    const odd = plain.replace('"text":"A"', '"text":"\\u0041"'); // marks a spliced body
    const variants = [
      odd.replace('{"type":', '{ "type":'), // whitespace
      `${odd.slice(0, -1)},"extra":1}`, // another top-level key
      `${odd.slice(0, -1)},"data":${JSON.stringify({ ...event.data, text: 'B' })}}`, // a duplicate key
      odd.replace('"data":{', '"data":{"links":{"raw":"x"},'), // data with links of its own
    ];
    for (const eventJson of variants) {
      const parsed = JSON.parse(eventJson);
      const out = await buildPayload(parsed, {
        mode: 'full',
        delivery: defaultDelivery(),
        archive: s3(),
        nowMs: NOW,
        eventJson,
      });
      expect(out.body).not.toContain('\\u0041');
      const general = await buildPayload(parsed, {
        mode: 'full',
        delivery: defaultDelivery(),
        archive: s3(),
        nowMs: NOW,
      });
      expect(out.body).toBe(general.body);
    }
  });

  it('thin payloads and bodies over the cap ignore the archived text', async () => {
    const event = receivedEvent({ text: 'é'.repeat(40_000) });
    const eventJson = JSON.stringify(event);
    const delivery = defaultDelivery({ maxBodyBytes: 16 * 1024 });
    for (const mode of ['thin', 'full'] as const) {
      const general = await buildPayload(JSON.parse(eventJson), {
        mode,
        delivery,
        archive: s3(),
        nowMs: NOW,
      });
      const withText = await buildPayload(JSON.parse(eventJson), {
        mode,
        delivery,
        archive: s3(),
        nowMs: NOW,
        eventJson,
      });
      expect(withText.body).toBe(general.body);
      expect(withText.bytes).toBeLessThanOrEqual(16 * 1024);
    }
  });
});

describe('buildScannedPayload (full payloads from the scanned archive bytes, without JSON.parse)', () => {
  it('is byte for byte the general body, whatever the event (property)', async () => {
    const text = fc.string({ unit: 'binary', maxLength: 300 });
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          text,
          html: fc.option(text, { nil: null }),
          subject: text,
          receivedAt: fc.oneof(fc.constant('2025-03-04T05:06:07.000Z'), text),
          headers: fc.array(fc.record({ name: fc.string({ maxLength: 20 }), value: text }), { maxLength: 5 }),
          attachmentCount: fc.integer({ min: 0, max: 3 }),
          rawKey: fc.oneof(fc.constant('raw/inbox/k.eml'), text),
        }),
        fc.boolean(),
        fc.constantFrom(0, 100),
        fc.constantFrom(16 * 1024, 256 * 1024),
        fc.boolean(),
        async (fields, links, inline, maxBodyBytes, big) => {
          const { attachmentCount, rawKey, ...rest } = fields;
          const event = receivedEvent({
            ...rest,
            // Sometimes over the smaller cap: the splice cannot apply, the general path trims.
            ...(big ? { text: `${fields.text}${'x'.repeat(20_000)}` } : {}),
            attachments: Array.from({ length: attachmentCount }, (_, i) => attachment(i, 10)),
          });
          event.data.raw = { ...event.data.raw, key: rawKey };
          const archive = links ? s3() : new MemoryArchive();
          archive.objects.set('attachments/inbox/k/0-a.bin', Buffer.from('0123456789'));
          const delivery = defaultDelivery({ maxBodyBytes, inlineAttachmentMaxBytes: inline });
          const eventBytes = Buffer.from(JSON.stringify(event), 'utf8');
          const scanned = scanReceivedEvent(eventBytes);
          expect(scanned).toBeDefined();
          let parses = 0;
          const parse = () => {
            parses++;
            return JSON.parse(eventBytes.toString('utf8')) as ReceivedEvent;
          };
          const options = { delivery, archive, nowMs: NOW };
          const fast = await buildScannedPayload(scanned as NonNullable<typeof scanned>, options, parse);
          const general = await buildPayload(JSON.parse(eventBytes.toString('utf8')), {
            ...options,
            mode: 'full',
          });
          expect(fast.toString('utf8')).toBe(general.body);
          expect(fast.equals(Buffer.from(general.body, 'utf8'))).toBe(true);
          // The event is parsed only when the splice does not apply.
          const spliceable =
            Buffer.byteLength(general.body) <= maxBodyBytes &&
            (attachmentCount === 0 || (inline === 0 && !links)) &&
            !general.body.includes('"omitted":[{"field":"data"');
          if (spliceable && !big) expect(parses).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('issues each link once, also when it falls back to the general path', async () => {
    const event = receivedEvent({ text: 'y'.repeat(20_000), attachments: [attachment(0, 10)] });
    const eventBytes = Buffer.from(JSON.stringify(event), 'utf8');
    const archive = s3();
    const asked: string[] = [];
    const linkFor = archive.linkFor.bind(archive);
    archive.linkFor = async (key, seconds) => {
      asked.push(key);
      return linkFor(key, seconds);
    };
    const delivery = defaultDelivery({ maxBodyBytes: 16 * 1024 });
    const scanned = scanReceivedEvent(eventBytes);
    const out = await buildScannedPayload(
      scanned as NonNullable<typeof scanned>,
      { delivery, archive, nowMs: NOW },
      () => JSON.parse(eventBytes.toString('utf8')),
    );
    expect(asked).toEqual([event.data.raw.key, 'attachments/inbox/k/0-a.bin']);
    expect(out.length).toBeLessThanOrEqual(16 * 1024);
    expect(JSON.parse(out.toString('utf8')).data.textTruncated).toBe(true);
  });
});

describe('objectEnd', () => {
  it('finds the brace closing an object, skipping strings with escaped quotes and backslashes', () => {
    const inner = JSON.stringify({ a: 'x"}y', b: ['\\', '\\"', '{['], c: { d: '\\\\"}' } });
    const text = `{"k":${inner},"z":1}`;
    expect(objectEnd(text, 5)).toBe(5 + inner.length - 1);
    expect(objectEnd(text, 0)).toBe(text.length - 1);
    expect(objectEnd('{"a":"unterminated}', 0)).toBe(-1);
    expect(objectEnd('{"a":[1,2}', 0)).toBe(-1);
  });

  it('agrees with JSON.stringify on arbitrary values (property)', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue()),
        fc.dictionary(fc.string(), fc.jsonValue()),
        (a, b) => {
          const first = JSON.stringify(a);
          const text = `{"x":${first},"y":${JSON.stringify(b)}}`;
          expect(objectEnd(text, 5)).toBe(5 + first.length - 1);
          expect(objectEnd(text, 0)).toBe(text.length - 1);
        },
      ),
      { numRuns: 300 },
    );
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DATA_START,
  hasControlByte,
  MAX_SCAN_DEPTH,
  type ScannedEvent,
  type Span,
  scanReceivedEvent,
} from '../../../shared/delivery/event-scan.js';
import { objectEnd } from '../../../shared/delivery/payload.js';
import { receivedEvent } from './helpers.js';

const archived = (data: unknown) => Buffer.from(JSON.stringify({ type: 'email.received', data }), 'utf8');
const slice = (bytes: Buffer, span: Span) => bytes.toString('utf8', span.start, span.end);

/**
 * What the fast path relies on when the scan accepts `bytes`: JSON.parse accepts them too, they are
 * `{"type":"email.received","data":{...}}` with data ending just before the root's closing brace,
 * and every span and value the scan reports is what JSON.parse finds.
 */
function expectSound(bytes: Buffer, scanned: ScannedEvent): void {
  const text = bytes.toString('utf8');
  const parsed = JSON.parse(text); // throws, failing the test, if the scan accepted invalid JSON
  expect(parsed.type).toBe('email.received');
  expect(objectEnd(text, DATA_START)).toBe(text.length - 2);
  const data = parsed.data;
  expect(typeof data.eventId).toBe('string');
  expect(Object.hasOwn(data, 'links')).toBe(false);
  expect(Object.hasOwn(data, 'omitted')).toBe(false);
  const receivedAt = slice(bytes, scanned.receivedAt);
  expect(JSON.parse(receivedAt)).toBe(data.receivedAt);
  expect(typeof data.receivedAt).toBe('string');
  expect(scanned.receivedAtEscaped).toBe(receivedAt.includes('\\'));
  expect(JSON.parse(slice(bytes, scanned.raw))).toEqual(data.raw);
  if (scanned.rawKey !== undefined) expect(scanned.rawKey).toBe(data.raw.key);
  expect(JSON.parse(slice(bytes, scanned.attachments))).toEqual(data.attachments);
  expect(Array.isArray(data.attachments)).toBe(true);
}

function scanSound(bytes: Buffer): ScannedEvent | undefined {
  const scanned = scanReceivedEvent(bytes);
  if (scanned) expectSound(bytes, scanned);
  return scanned;
}

/** Any text, control characters, quotes, backslashes, lone surrogates and astral characters included. */
const anyText = fc.string({ unit: 'binary', maxLength: 80 });
const json = fc.jsonValue({ maxDepth: 4 });

/** An email.received `data` as ingest could write it, with extra members of any JSON. */
const dataArb = fc
  .record({
    text: fc.option(anyText, { nil: null }),
    subject: anyText,
    receivedAt: anyText,
    headers: fc.array(fc.record({ name: anyText, value: anyText }), { maxLength: 4 }),
    rawKey: anyText,
    attachments: fc.array(fc.record({ index: fc.nat(), key: anyText, size: fc.nat() }), { maxLength: 2 }),
    extra: fc.dictionary(
      // Member names as ingest writes them (no escapes); links and omitted are the splice's own.
      fc.stringMatching(/^[A-Za-z0-9_]{0,8}$/).filter((k) => k !== 'links' && k !== 'omitted'),
      json,
      { maxKeys: 3 },
    ),
  })
  .map(({ extra, rawKey, ...fields }) => {
    const event = receivedEvent();
    return { ...extra, ...event.data, ...fields, raw: { key: rawKey, size: 1, sha256: 'a' } };
  });

describe('scanReceivedEvent', () => {
  it('accepts what ingest writes, and finds what JSON.parse finds (property)', () => {
    fc.assert(
      fc.property(dataArb, (data) => {
        const bytes = archived(data);
        expect(scanSound(bytes)).toBeDefined();
      }),
      { numRuns: 300 },
    );
  });

  it('never accepts what JSON.parse refuses or reads differently: mutated events (property)', () => {
    const alphabet = [...'{}[]",:\\/0123456789-+.eEuabfnrtl ', '\n', '\t', '\u0000', '\u001f']
      .map((c) => c.charCodeAt(0))
      .concat([0x80, 0xc3, 0xa9, 0xe2, 0xff]);
    const mutation = fc.record({
      at: fc.nat(),
      kind: fc.constantFrom('replace', 'insert', 'delete'),
      byte: fc.constantFrom(...alphabet),
    });
    let accepted = 0;
    fc.assert(
      fc.property(dataArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (data, mutations) => {
        let bytes = archived(data);
        for (const { at, kind, byte } of mutations) {
          // Mutations after the prefix: a broken prefix is refused before anything else runs.
          const pos = DATA_START + (at % (bytes.length - DATA_START));
          const before = bytes.subarray(0, pos);
          const after = bytes.subarray(kind === 'insert' ? pos : pos + 1);
          const middle = kind === 'delete' ? Buffer.alloc(0) : Buffer.from([byte]);
          bytes = Buffer.concat([before, middle, after]);
        }
        if (scanSound(bytes)) accepted++;
      }),
      { numRuns: 3000 },
    );
    // Many mutations keep the JSON valid (a digit for a digit, a letter in a string): both kinds ran.
    expect(accepted).toBeGreaterThan(100);
  });

  it('reads strings with every kind of escape', () => {
    const data = receivedEvent({ subject: '"\\/\b\f\n\r\t\u0001\u2028\ud800 é 😀' }).data;
    const bytes = archived(data);
    expect(scanSound(bytes)).toBeDefined();
    // Escapes JSON.stringify never writes are valid JSON all the same.
    const written = bytes.toString('utf8').replace('"subject":"', '"subject":"\\/\\u00e9\\uD83D\\uDE00');
    expect(scanSound(Buffer.from(written))).toBeDefined();
  });

  it('the last of duplicate members wins, as in JSON.parse', () => {
    const data = receivedEvent().data;
    const text = JSON.stringify({ type: 'email.received', data }).replace(
      '"data":{',
      '"data":{"receivedAt":"first","raw":{"key":"old","key":"older"},',
    );
    const scanned = scanSound(Buffer.from(text));
    expect(scanned?.rawKey).toBe(data.raw.key);
    const twice = text.replace('"raw":{"key":', '"raw":{"key":"a","key":');
    expect(scanSound(Buffer.from(twice))?.rawKey).toBe(data.raw.key);
  });

  it('leaves raw.key to JSON.parse when it is escaped, missing or not a string', () => {
    const base = receivedEvent().data;
    for (const raw of [
      { key: 'a"b', size: 1 },
      { size: 1 },
      { key: 5 },
      { key: { key: 'nested' } },
      { key: null, other: 'key' },
    ]) {
      const scanned = scanSound(archived({ ...base, raw }));
      expect(scanned).toBeDefined();
      expect(scanned?.rawKey).toBeUndefined();
    }
    const escapedName = JSON.stringify({ type: 'email.received', data: base }).replace(
      '"raw":{"key":',
      '"raw":{"k\\u0065y":"x","key":',
    );
    expect(scanSound(Buffer.from(escapedName))?.rawKey).toBeUndefined();
    expect(scanSound(archived({ ...base, raw: { key: 'raw/é/😀.eml' } }))?.rawKey).toBe('raw/é/😀.eml');
  });

  it('refuses anything but the exact shape ingest writes', () => {
    const data = receivedEvent().data;
    const text = JSON.stringify({ type: 'email.received', data });
    const refused = [
      text.replace('{"type":', '{ "type":'), // whitespace before data
      text.replace('"subject":', '"subject" :'), // whitespace inside
      `${text}\n`, // trailing newline
      `${text.slice(0, -1)},"extra":1}`, // another root member
      `${text.slice(0, -1)},"data":${JSON.stringify(data)}}`, // a duplicate root key
      JSON.stringify({ type: 'email.skipped', data }),
      JSON.stringify({ data, type: 'email.received' }),
      text.replace('"data":{', '"data":{"links":{},'),
      text.replace('"data":{', '"data":{"omitted":[],'),
      text.replace('"data":{', '"data":{"\\u006cinks":1,'), // an escaped member name
      text.replace('"subject":"', '"subject":"\\x'), // invalid escape
      text.replace('"subject":"', '"subject":"\\u12g4'),
      text.replace('"subject":"', '"subject":"\u0001'), // raw control character
      text.replace('"version":1', '"version":01'),
      text.replace('"version":1', '"version":1.'),
      text.replace('"version":1', '"version":-'),
      text.replace('"version":1', '"version":tru'),
      text.replace('"cc":[]', '"cc":[,]'),
      text.replace('"cc":[]', '"cc":[1,]'),
      text.replace('"cc":[]', '"cc":{]'),
      text.slice(0, -2),
      JSON.stringify({ type: 'email.received', data: { ...data, eventId: 5 } }),
      JSON.stringify({ type: 'email.received', data: { ...data, receivedAt: null } }),
      JSON.stringify({ type: 'email.received', data: { ...data, raw: 'raw/x' } }),
      JSON.stringify({ type: 'email.received', data: { ...data, attachments: {} } }),
      JSON.stringify({ type: 'email.received', data: { ...data, eventId: undefined } }),
    ];
    for (const t of refused) expect(scanReceivedEvent(Buffer.from(t)), t.slice(0, 120)).toBeUndefined();
    // Invalid UTF-8 (decoding would change the bytes).
    const bad = Buffer.from(text.replace('Invoice', 'Inv\u00e9ice'));
    bad[bad.indexOf(0xc3)] = 0xff;
    expect(scanReceivedEvent(bad)).toBeUndefined();
    // Nesting beyond MAX_SCAN_DEPTH (data is level 1).
    let deep: unknown = 1;
    for (let i = 0; i < MAX_SCAN_DEPTH; i++) deep = [deep];
    expect(scanReceivedEvent(archived({ ...data, deep }))).toBeUndefined();
    deep = 1;
    for (let i = 0; i < MAX_SCAN_DEPTH - 1; i++) deep = [deep];
    expect(scanSound(archived({ ...data, deep }))).toBeDefined();
  });
});

describe('hasControlByte', () => {
  it('agrees with a byte-by-byte check at any alignment (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.nat({ max: 7 }),
        fc.option(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 0x1f }) }), { nil: undefined }),
        (content, offset, control) => {
          const backing = new Uint8Array(content.length + offset);
          const bytes = backing.subarray(offset);
          // Mostly bytes >= 0x20, so a single control byte anywhere is what decides.
          for (let i = 0; i < content.length; i++) bytes[i] = 0x20 + ((content[i] as number) % 0xe0);
          if (control && bytes.length > 0) bytes[control.at % bytes.length] = control.byte;
          const naive = bytes.some((b) => b < 0x20);
          expect(hasControlByte(bytes)).toBe(naive);
        },
      ),
      { numRuns: 2000 },
    );
    for (let b = 0; b < 256; b++) {
      const word = Buffer.alloc(16, 0x41);
      word[9] = b;
      expect(hasControlByte(word)).toBe(b < 0x20);
    }
  });
});

import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PARSE_LIMITS, MAX_HEADER_LINES, resolveParseLimits } from '../../../shared/mail/limits.js';
import { parseMessage } from '../../../shared/mail/parse.js';
import { lazyStream, makeInput, recordingDeps, unsafeStrings } from './helpers.js';

const CRLF = '\r\n';
const HEAD = [
  'From: a@example.com',
  'To: b@example.com',
  'Subject: limits',
  'Message-ID: <limits@example.com>',
];

function* manyParts(count: number): Generator<string> {
  yield [...HEAD, 'Content-Type: multipart/mixed; boundary=p', '', ''].join(CRLF);
  for (let i = 0; i < count; i++) yield `--p${CRLF}Content-Type: text/plain${CRLF}${CRLF}part ${i}${CRLF}`;
  yield `--p--${CRLF}`;
}

function* deepNesting(levels: number, kind: 'multipart' | 'rfc822'): Generator<string> {
  yield [...HEAD, ''].join(CRLF);
  for (let i = 0; i < levels; i++) {
    yield kind === 'multipart'
      ? `Content-Type: multipart/mixed; boundary=b${i}${CRLF}${CRLF}--b${i}${CRLF}`
      : `Content-Type: message/rfc822${CRLF}Content-Disposition: inline${CRLF}${CRLF}Subject: level ${i}${CRLF}`;
  }
  yield `Content-Type: text/plain${CRLF}${CRLF}the bottom${CRLF}`;
  if (kind === 'multipart') for (let i = levels - 1; i >= 0; i--) yield `--b${i}--${CRLF}`;
}

describe('parse limits', () => {
  it('resolves defaults from ParseConfig and lets config override them', () => {
    expect(resolveParseLimits(undefined)).toMatchObject(DEFAULT_PARSE_LIMITS);
    const limits = resolveParseLimits({ maxParts: 5, maxBodyChars: 2000 } as never);
    expect(limits.maxParts).toBe(5);
    expect(limits.maxDepth).toBe(DEFAULT_PARSE_LIMITS.maxDepth);
    expect(limits.maxRawTextBytes).toBe(20_000);
  });

  it('stops at the part limit with PARSE_LIMIT_PARTS and still returns headers', async () => {
    const started = Date.now();
    const event = await parseMessage(makeInput(lazyStream(manyParts(10_000))), recordingDeps());
    expect(event.parseError?.code).toBe('PARSE_LIMIT_PARTS');
    expect(event.subject).toBe('limits');
    expect(event.messageId).toBe('<limits@example.com>');
    expect(event.from).toEqual([{ address: 'a@example.com', name: '' }]);
    expect(unsafeStrings(event)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('honours a configured maxParts', async () => {
    const event = await parseMessage(makeInput(lazyStream(manyParts(10)), { maxParts: 5 }), recordingDeps());
    expect(event.parseError?.code).toBe('PARSE_LIMIT_PARTS');
    // The root multipart counts as a part too.
    const ok = await parseMessage(makeInput(lazyStream(manyParts(10)), { maxParts: 11 }), recordingDeps());
    expect(ok.parseError).toBeNull();
    expect(ok.text).toContain('part 9');
  });

  it('bounds 200 levels of nested multiparts with PARSE_LIMIT_DEPTH', async () => {
    const started = Date.now();
    const event = await parseMessage(makeInput(lazyStream(deepNesting(200, 'multipart'))), recordingDeps());
    expect(event.parseError?.code).toBe('PARSE_LIMIT_DEPTH');
    expect(event.subject).toBe('limits');
    expect(Date.now() - started).toBeLessThan(5_000);
    // Within the limit the same shape parses completely.
    const shallow = await parseMessage(makeInput(lazyStream(deepNesting(15, 'multipart'))), recordingDeps());
    expect(shallow.parseError).toBeNull();
    expect(shallow.text).toContain('the bottom');
  });

  it('bounds 200 levels of inline message/rfc822 nesting', async () => {
    const event = await parseMessage(makeInput(lazyStream(deepNesting(200, 'rfc822'))), recordingDeps());
    expect(event.parseError?.code).toBe('PARSE_LIMIT_DEPTH');
    expect(event.subject).toBe('limits');
  });

  it('stops a 10 MB header block with PARSE_LIMIT_HEADERS and keeps the first headers', async () => {
    function* hugeHeaders(): Generator<string> {
      yield [...HEAD, ''].join(CRLF);
      const line = `X-Filler: ${'f'.repeat(990)}${CRLF}`;
      for (let i = 0; i < 10_000; i++) yield line;
      yield `${CRLF}body${CRLF}`;
    }
    const started = Date.now();
    const event = await parseMessage(makeInput(lazyStream(hugeHeaders())), recordingDeps());
    expect(event.parseError?.code).toBe('PARSE_LIMIT_HEADERS');
    expect(event.subject).toBe('limits');
    expect(event.headers.length).toBeGreaterThan(4);
    expect(event.headers.length).toBeLessThanOrEqual(MAX_HEADER_LINES);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('stops a single 10 MB header line with PARSE_LIMIT_HEADERS', async () => {
    function* oneHugeLine(): Generator<string> {
      yield `${HEAD.join(CRLF)}${CRLF}X-Huge: `;
      for (let i = 0; i < 10_000; i++) yield 'y'.repeat(1024);
      yield `${CRLF}${CRLF}body`;
    }
    const event = await parseMessage(makeInput(lazyStream(oneHugeLine())), recordingDeps());
    expect(event.parseError?.code).toBe('PARSE_LIMIT_HEADERS');
    expect(event.subject).toBe('limits');
    expect(event.headers.find((h) => h.name === 'x-huge')).toBeUndefined();
  });

  it('keeps at most MAX_HEADER_LINES header fields and says so', async () => {
    const headers = Array.from({ length: 3000 }, (_, i) => `X-N: ${i}`);
    const event = await parseMessage(
      makeInput([...HEAD, ...headers, '', 'body'].join(CRLF)),
      recordingDeps(),
    );
    expect(event.headers).toHaveLength(MAX_HEADER_LINES);
    expect(event.parseError?.code).toBe('PARSE_LIMIT_HEADERS');
    expect(event.text?.trim()).toBe('body');
  });

  it('cuts text and html at maxBodyChars with flags, without splitting a surrogate pair', async () => {
    const text = '😀'.repeat(3000); // 6000 UTF-16 code units
    const html = `<p>${'x'.repeat(5000)}</p>`;
    const msg = [
      ...HEAD,
      'Content-Type: multipart/alternative; boundary=a',
      '',
      '--a',
      'Content-Type: text/plain; charset=utf-8',
      '',
      text,
      '--a',
      'Content-Type: text/html; charset=utf-8',
      '',
      html,
      '--a--',
      '',
    ].join(CRLF);
    const event = await parseMessage(makeInput(msg, { maxBodyChars: 1025 }), recordingDeps());
    expect(event.parseError).toBeNull();
    expect(event.textTruncated).toBe(true);
    expect(event.htmlTruncated).toBe(true);
    expect(event.text).toBe('😀'.repeat(512));
    expect(event.html).toHaveLength(1025);
    expect(unsafeStrings(event)).toEqual([]);
    const small = await parseMessage(makeInput(msg, { maxBodyChars: 1_000_000 }), recordingDeps());
    expect(small.textTruncated).toBe(false);
    expect(small.htmlTruncated).toBe(false);
  });

  it('decodes only what the event can hold of a huge text body, and sets textTruncated', async () => {
    function* hugeText(): Generator<string> {
      yield [...HEAD, 'Content-Type: text/plain; charset=utf-8', '', ''].join(CRLF);
      const line = `${'z'.repeat(998)}${CRLF}`;
      for (let i = 0; i < 20_000; i++) yield line; // 20 MB
    }
    const started = Date.now();
    const event = await parseMessage(makeInput(lazyStream(hugeText())), recordingDeps());
    expect(event.parseError).toBeNull();
    expect(event.textTruncated).toBe(true);
    expect(event.text).toHaveLength(DEFAULT_PARSE_LIMITS.maxBodyChars);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('derives text from HTML-only mail, and marks it truncated when the HTML was cut', async () => {
    const msg = [
      ...HEAD,
      'Content-Type: text/html; charset=utf-8',
      '',
      `<html><body><p>Hello <b>there</b></p>${'<div>row</div>'.repeat(2000)}</body></html>`,
    ].join(CRLF);
    const event = await parseMessage(makeInput(msg, { maxBodyChars: 1024 }), recordingDeps());
    expect(event.text?.startsWith('Hello there')).toBe(true);
    expect(event.htmlTruncated).toBe(true);
    expect(event.textTruncated).toBe(true);
  });

  it('survives a 100k-entry address list without quadratic blow-up', async () => {
    const to = Array.from({ length: 100_000 }, (_, i) => `u${i}@example.com`).join(', ');
    const started = Date.now();
    const event = await parseMessage(
      makeInput(`From: a@example.com${CRLF}To: ${to}${CRLF}${CRLF}x`, { maxHeaderBytes: 4 * 1024 * 1024 }),
      recordingDeps(),
    );
    expect(event.to.length).toBe(500);
    expect(event.to[0]).toEqual({ address: 'u0@example.com', name: '' });
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe('parse timeout', () => {
  it('returns PARSE_TIMEOUT promptly for a source that stalls, and destroys it', async () => {
    const source = new Readable({ read() {} });
    source.push([...HEAD, 'Content-Type: text/plain', '', 'the start of a body that never ends'].join(CRLF));
    const started = Date.now();
    const event = await parseMessage(makeInput(source, { timeoutMs: 100 }), recordingDeps());
    const elapsed = Date.now() - started;
    expect(event.parseError?.code).toBe('PARSE_TIMEOUT');
    expect(event.subject).toBe('limits');
    expect(elapsed).toBeGreaterThanOrEqual(90);
    expect(elapsed).toBeLessThan(1_000);
    expect(source.destroyed).toBe(true);
  });

  it('returns PARSE_TIMEOUT for a header block that never ends, dropping the partial line', async () => {
    const source = new Readable({ read() {} });
    source.push(`Subject: ok${CRLF}X-Partial: never fini`);
    const event = await parseMessage(makeInput(source, { timeoutMs: 100 }), recordingDeps());
    expect(event.parseError?.code).toBe('PARSE_TIMEOUT');
    expect(event.headers).toEqual([{ name: 'subject', value: 'ok' }]);
  });

  it('aborts an attachment write in flight on timeout without throwing', async () => {
    const source = new Readable({ read() {} });
    // More than the 64 KiB the parser buffers before it starts, then nothing more.
    source.push(
      [
        ...HEAD,
        'Content-Type: multipart/mixed; boundary=b',
        '',
        '--b',
        'Content-Type: application/zip',
        '',
        '',
      ].join(CRLF),
    );
    source.push(`${'QUFB'.repeat(19)}${CRLF}`.repeat(2000));
    let writerSettled: 'resolved' | 'rejected' | undefined;
    let content: Readable | undefined;
    const started = Date.now();
    const event = await parseMessage(makeInput(source, { timeoutMs: 150 }), {
      async writeAttachment(_index, _meta, stream) {
        content = stream;
        try {
          await pipeline(
            stream,
            new Writable({
              write(_chunk, _encoding, callback) {
                callback();
              },
            }),
          );
          writerSettled = 'resolved';
        } catch (err) {
          writerSettled = 'rejected';
          throw err;
        }
        return { key: 'k', size: 0, sha256: 'a'.repeat(64) };
      },
    });
    expect(event.parseError?.code).toBe('PARSE_TIMEOUT');
    expect(event.attachments).toEqual([]);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(writerSettled).toBe('rejected');
    expect(content?.destroyed).toBe(true);
    expect(source.destroyed).toBe(true);
  });

  it('does not wait for a writer that ignores its destroyed stream longer than the grace period', async () => {
    const source = new Readable({ read() {} });
    source.push([...HEAD, 'Content-Type: application/zip', '', ''].join(CRLF));
    source.push(`${'QUFB'.repeat(19)}${CRLF}`.repeat(2000));
    let called = false;
    const started = Date.now();
    const event = await parseMessage(makeInput(source, { timeoutMs: 100 }), {
      writeAttachment: () => {
        called = true;
        return new Promise(() => {}); // hangs forever
      },
    });
    expect(called).toBe(true);
    expect(event.parseError?.code).toBe('PARSE_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

import { describe, expect, it } from 'vitest';
import {
  CharsetWarnings,
  extractMessageIds,
  HeaderBlockCollector,
  parseDateHeader,
  parseHeaderBlock,
  stripComments,
  toSafeString,
  truncateChars,
} from '../../../shared/mail/headers.js';
import { MAX_HEADER_VALUE_CHARS } from '../../../shared/mail/limits.js';

describe('toSafeString', () => {
  it('replaces lone surrogates, NUL, C0/C1 controls and U+FFFE/U+FFFF, keeping TAB/LF/CR', () => {
    expect(toSafeString('a\u0000b\u0008c\u001bd\u007fe\u0085f\ufffeg\uffffh')).toBe(
      'a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf\ufffdg\ufffdh',
    );
    expect(toSafeString('x\ud800y\udc00z')).toBe('x\ufffdy\ufffdz');
    expect(toSafeString('pair 😀 ok\t\r\n')).toBe('pair 😀 ok\t\r\n');
  });

  it('makes single lines and cuts without splitting surrogate pairs', () => {
    expect(toSafeString('a\tb\r\nc', { singleLine: true })).toBe('a b c');
    expect(toSafeString('ab😀', { maxChars: 3 })).toBe('ab');
    expect(truncateChars('ab😀', 4)).toBe('ab😀');
    expect(truncateChars('abc', 0)).toBe('');
  });
});

describe('HeaderBlockCollector', () => {
  const collect = (chunks: string[], max = 1024) => {
    const c = new HeaderBlockCollector(max);
    for (const chunk of chunks) c.push(Buffer.from(chunk));
    return c;
  };

  it('stops at the first empty line, whichever way the chunks split it', () => {
    const message = 'A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore';
    for (let split = 0; split <= message.length; split++) {
      const c = collect([message.slice(0, split), message.slice(split)]);
      expect(c.complete).toBe(true);
      expect(c.bytes().toString()).toMatch(/^A: 1\r\nB: 2\r?\n?\r?$/);
      const block = parseHeaderBlock(c.bytes(), true, new CharsetWarnings());
      expect(block.headers).toEqual([
        { name: 'a', value: '1' },
        { name: 'b', value: '2' },
      ]);
    }
  });

  it('handles LF-only messages and messages without headers', () => {
    expect(collect(['A: 1\nB: 2\n\nbody']).bytes().toString()).toBe('A: 1\nB: 2\n');
    const none = collect(['\r\nbody']);
    expect(none.complete).toBe(true);
    expect(none.bytes().length).toBe(0);
  });

  it('keeps at most maxBytes and says it was exceeded', () => {
    const c = collect(['A: 1\r\n', `B: ${'x'.repeat(5000)}\r\n\r\n`], 100);
    expect(c.exceeded).toBe(true);
    expect(c.bytes().length).toBe(100);
    const block = parseHeaderBlock(c.bytes(), false, new CharsetWarnings());
    expect(block.headers).toEqual([{ name: 'a', value: '1' }]);
  });
});

describe('parseHeaderBlock', () => {
  it('unfolds, lower-cases, decodes, and skips non-fields', () => {
    const raw = [
      'From mbox-line Mon Jan  1 00:00:00 2024',
      'Subject: =?utf-8?Q?caf=C3=A9?=',
      '  =?utf-8?B?IGF1IGxhaXQ=?=',
      'X-Folded: one',
      '\ttwo',
      'Bad Name: x',
      'X-Empty:',
      ': no name',
      '',
    ].join('\r\n');
    const block = parseHeaderBlock(Buffer.from(raw), true, new CharsetWarnings());
    expect(block.headers).toEqual([
      { name: 'subject', value: 'café au lait' },
      { name: 'x-folded', value: 'one two' },
      { name: 'x-empty', value: '' },
    ]);
    expect(block.raw[1]).toEqual({ name: 'x-folded', raw: 'one\ttwo' });
  });

  it('caps a single value at MAX_HEADER_VALUE_CHARS', () => {
    const block = parseHeaderBlock(
      Buffer.from(`X-Long: ${'a'.repeat(100_000)}\r\n`),
      true,
      new CharsetWarnings(),
    );
    expect(block.headers[0]?.value).toHaveLength(MAX_HEADER_VALUE_CHARS);
  });

  it('warns about unknown encoded-word charsets and raw 8-bit headers', () => {
    const warnings = new CharsetWarnings();
    parseHeaderBlock(
      Buffer.concat([
        Buffer.from('Subject: =?x-nope?Q?a?= =?utf-8*en?Q?b?=\r\nX-Raw: '),
        Buffer.from([0xe9, 0x0d, 0x0a]),
      ]),
      true,
      warnings,
    );
    expect(warnings.list()).toEqual(['unknown-8bit', 'x-nope']);
  });
});

describe('CharsetWarnings', () => {
  it('knows what mailparser decodes and bounds what it reports', () => {
    const w = new CharsetWarnings();
    for (const ok of [
      'utf-8',
      'UTF8',
      'us-ascii',
      'iso-8859-1',
      'windows-1251',
      'gb2312',
      'big5',
      'euc-kr',
      'iso-2022-jp',
    ]) {
      w.checkLabel(ok);
    }
    expect(w.list()).toEqual([]);
    w.checkLabel('utf-7');
    w.checkLabel(' X-Unknown ');
    w.checkLabel('__proto__');
    expect(w.list()).toEqual(['utf-7', 'x-unknown', '__proto__']);
    for (let i = 0; i < 100; i++) w.checkLabel(`bogus-${i}`);
    expect(w.list()).toHaveLength(20);
  });
});

describe('message ids, comments and dates', () => {
  it('extracts msg-ids, bracketing bare ones', () => {
    expect(extractMessageIds('<a@b> (comment <c@d>) <e@f>')).toEqual(['<a@b>', '<e@f>']);
    expect(extractMessageIds('bare@id other@id')).toEqual(['<bare@id>', '<other@id>']);
    expect(extractMessageIds(Array.from({ length: 500 }, (_, i) => `<${i}@x>`).join(' '))).toHaveLength(200);
    expect(extractMessageIds(undefined)).toEqual([]);
    expect(extractMessageIds('<a@b>', 1)).toEqual(['<a@b>']);
  });

  it('strips nested comments but not quoted text', () => {
    expect(stripComments('a (b (c) d) e "f (g)" h')).toBe('a   e "f (g)" h');
    expect(stripComments('a (b \\) c) d "q\\"(" e')).toBe('a   d "q\\"(" e');
    // Outside quotes a backslash is not an escape, and an unclosed comment runs to the end.
    expect(stripComments('x\\(y')).toBe('x\\');
  });

  it('parses RFC 5322 dates to ISO and rejects nonsense', () => {
    expect(parseDateHeader('Mon, 1 Jan 2024 10:00:00 +0100 (CET)')).toBe('2024-01-01T09:00:00.000Z');
    expect(parseDateHeader('1 Jan 2024 10:00:00 GMT')).toBe('2024-01-01T10:00:00.000Z');
    expect(parseDateHeader('Tue, 31 Dec 99999 00:00:00 +0000')).toBeNull();
    expect(parseDateHeader('not a date')).toBeNull();
    expect(parseDateHeader('')).toBeNull();
    expect(parseDateHeader(undefined)).toBeNull();
  });
});

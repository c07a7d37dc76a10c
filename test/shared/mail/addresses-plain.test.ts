/**
 * The shortcut for plain address headers (`plainMailboxes`) answers exactly what mailparser's
 * `parseAddressHeader` answers whenever it answers at all, over generated plain lists, near-misses
 * that must fall back, and the address headers of the corpus; and it stays linear on hostile input.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parseAddressHeader } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { plainMailboxes } from '../../../shared/mail/addresses.js';
import { CharsetWarnings, parseHeaderBlock } from '../../../shared/mail/headers.js';
import { corpusFiles } from './helpers.js';

const reference = (raw: string) =>
  parseAddressHeader(raw, { flatten: true }).value.map((a) => ({
    address: a.address ?? '',
    name: a.name ?? '',
  }));

const chars = (alphabet: string, min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...alphabet), minLength: min, maxLength: max });
const word = chars("abcXYZ019_'.-", 1, 8);
const name = fc.array(word, { minLength: 1, maxLength: 4 }).map((w) => w.join(' '));
const atom = chars('abcXYZ019_+-', 1, 8);
const address = fc
  .tuple(
    fc.array(atom, { minLength: 1, maxLength: 3 }),
    fc.array(chars('abcXYZ019-', 1, 8), { minLength: 2, maxLength: 4 }),
  )
  .map(([local, domain]) => `${local.join('.')}@${domain.join('.')}`);
const blank = chars(' \t', 0, 3);
const mailbox = fc.oneof(
  address,
  address.map((a) => `<${a}>`),
  fc.tuple(name, blank, address).map(([n, b, a]) => `"${n}"${b}<${a}>`),
  fc.tuple(name, blank, address).map(([n, b, a]) => `${n}${b}<${a}>`),
);
const plainList = fc
  .array(fc.tuple(blank, mailbox, blank), { minLength: 1, maxLength: 4 })
  .map((parts) => parts.map(([before, m, after]) => `${before}${m}${after}`).join(','));

describe('plainMailboxes', () => {
  it('takes generated plain lists and gives parseAddressHeader’s answer', () => {
    fc.assert(
      fc.property(plainList, (raw) => {
        expect(plainMailboxes(raw)).toEqual(reference(raw));
      }),
      { numRuns: 2000 },
    );
  });

  it('gives parseAddressHeader’s answer or none for near-misses', () => {
    // Plain lists with one character of address syntax spliced in: comments, groups, quotes,
    // encoded words, routes, punycode, doubled blanks, controls.
    const noise = fc.constantFrom(
      '(',
      ')',
      '"',
      '\\',
      ':',
      ';',
      '@',
      '<',
      '>',
      '=?',
      '?=',
      'xn--',
      '  ',
      '\t\t',
      '\r\n ',
      '\u0000',
      '[',
      ']',
      ',',
      'é',
      '.',
      '..',
    );
    fc.assert(
      fc.property(plainList, noise, fc.nat(), (raw, extra, at) => {
        const spliced = `${raw.slice(0, at % (raw.length + 1))}${extra}${raw.slice(at % (raw.length + 1))}`;
        const plain = plainMailboxes(spliced);
        if (plain !== undefined) expect(plain).toEqual(reference(spliced));
      }),
      { numRuns: 5000 },
    );
  });

  it('agrees with parseAddressHeader on every address header of the corpus', () => {
    let taken = 0;
    for (const path of corpusFiles()) {
      const head = readFileSync(path);
      const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') : head.indexOf('\n\n');
      const block = parseHeaderBlock(
        head.subarray(0, end < 0 ? head.length : end + 1),
        true,
        new CharsetWarnings(),
      );
      for (const header of block.raw) {
        if (!['from', 'to', 'cc', 'bcc', 'reply-to'].includes(header.name)) continue;
        const plain = plainMailboxes(header.raw);
        if (plain === undefined) continue;
        taken += 1;
        expect(plain, header.raw).toEqual(reference(header.raw));
      }
    }
    expect(taken).toBeGreaterThan(20);
  });

  it('stays linear on long runs of blanks, words and separators', () => {
    for (const hostile of [
      ' \t'.repeat(100_000),
      `${' \t'.repeat(100_000)}x`,
      'a '.repeat(100_000),
      `${'a '.repeat(100_000)}<a@b`,
      'a.'.repeat(100_000),
      `"${'a '.repeat(100_000)}`,
      'a@b.c,'.repeat(100_000),
    ]) {
      const started = Date.now();
      plainMailboxes(hostile);
      // Linear is a few ms to ~100 ms (100k mailboxes) even on a busy machine; quadratic is minutes.
      expect(Date.now() - started).toBeLessThan(2_000);
    }
  });
});

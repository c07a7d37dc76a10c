import { describe, expect, it } from 'vitest';
import { isPlausibleAddress, parseAddressList } from '../../../shared/mail/addresses.js';

describe('parseAddressList', () => {
  it('flattens groups, decodes names and joins repeated headers in order', () => {
    expect(
      parseAddressList([
        '=?utf-8?Q?J=C3=B5geva?= <info@example.com>, Team: a@example.com, "B, Jr." <b@example.com>;',
        'c@example.com',
      ]),
    ).toEqual([
      { address: 'info@example.com', name: 'Jõgeva' },
      { address: 'a@example.com', name: '' },
      { address: 'b@example.com', name: 'B, Jr.' },
      { address: 'c@example.com', name: '' },
    ]);
  });

  it('drops empty groups and keeps invalid entries as names', () => {
    expect(parseAddressList(['undisclosed-recipients:;'])).toEqual([]);
    expect(parseAddressList(['just words'])).toEqual([{ address: '', name: 'just words' }]);
    expect(parseAddressList(['@@@'])).toEqual([{ address: '', name: '@@@' }]);
    expect(parseAddressList(['<>'])).toEqual([]);
  });

  it('reads the domain an SMTP server would use for known misrouting payloads', () => {
    expect(parseAddressList(['"a@b.com x"@internal.domain'])).toEqual([
      { address: '"a@b.com x"@internal.domain', name: '' },
    ]);
    expect(parseAddressList(['user@good.com(x)evil.com'])[0]?.address).toBe('user@good.com');
  });

  it('survives deeply nested groups', () => {
    const nested = `${'g:'.repeat(5000)}a@example.com${';'.repeat(5000)}`;
    const started = Date.now();
    const list = parseAddressList([nested]);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(list.some((a) => a.address === 'a@example.com')).toBe(true);
  });

  it('caps the list and sanitises names', () => {
    expect(parseAddressList([Array.from({ length: 2000 }, (_, i) => `u${i}@x.org`).join(',')])).toHaveLength(
      500,
    );
    const [entry] = parseAddressList(['"a\u0007b\u0085c\td" <a@x.org>']);
    expect(entry?.address).toBe('a@x.org');
    // addressparser itself drops C0 controls; we replace what is left (C1) and flatten tabs.
    expect(entry?.name).toBe('ab\ufffdc d');
  });
});

describe('isPlausibleAddress', () => {
  it.each([
    ['a@b.c', true],
    ['"quoted local"@example.com', true],
    ['a@[192.0.2.1]', true],
    ['a@b', true],
    ['a', false],
    ['@b.c', false],
    ['a@', false],
    ['a b@c.d', false],
    ['a@b c.d', false],
    ['a@.b', false],
    [`${'a'.repeat(400)}@b.c`, false],
  ])('%s -> %s', (address, expected) => {
    expect(isPlausibleAddress(address)).toBe(expected);
  });
});

import { describe, expect, it } from 'vitest';
import { extractSpam } from '../../../shared/mail/spam.js';

const h = (pairs: [string, string][]) => pairs.map(([name, value]) => ({ name, value }));

describe('extractSpam', () => {
  it('reads SpamAssassin headers', () => {
    expect(
      extractSpam(
        h([
          ['x-spam-checker-version', 'SpamAssassin 3.4.6 (2021-04-09) on mail.example.org'],
          ['x-spam-flag', 'YES'],
          ['x-spam-level', '******'],
          [
            'x-spam-status',
            'Yes, score=6.9 required=5.0 tests=BAYES_99,HTML_MESSAGE autolearn=no version=3.4.6',
          ],
        ]),
      ),
    ).toEqual({
      flagged: true,
      score: 6.9,
      headers: {
        'x-spam-checker-version': 'SpamAssassin 3.4.6 (2021-04-09) on mail.example.org',
        'x-spam-flag': 'YES',
        'x-spam-level': '******',
        'x-spam-status': 'Yes, score=6.9 required=5.0 tests=BAYES_99,HTML_MESSAGE autolearn=no version=3.4.6',
      },
    });
  });

  it('takes the verdict from X-Spam-Status when there is no flag, and negative scores', () => {
    expect(extractSpam(h([['x-spam-status', 'No, score=-1.2 required=5.0']]))).toMatchObject({
      flagged: false,
      score: -1.2,
    });
  });

  it('falls back to X-Spam-Score, then to the X-Spam-Level stars', () => {
    expect(extractSpam(h([['x-spam-score', '3.5 (+++)']]))?.score).toBe(3.5);
    expect(extractSpam(h([['x-spam-score', '7.2/5.0']]))?.score).toBe(7.2);
    expect(extractSpam(h([['x-spam-level', '****']]))?.score).toBe(4);
    expect(extractSpam(h([['x-spam-level', '*'.repeat(500)]]))?.score).toBeUndefined();
  });

  it('keeps the topmost occurrence of each header only', () => {
    const info = extractSpam(
      h([
        ['x-spam-flag', 'NO'],
        ['x-spam-flag', 'YES'],
      ]),
    );
    expect(info).toEqual({ flagged: false, headers: { 'x-spam-flag': 'NO' } });
  });

  it('ignores garbage scores and flags, and bounds what it keeps', () => {
    const info = extractSpam(
      h([
        ['x-spam-flag', 'maybe'],
        ['x-spam-status', 'Yes, score=1e999 required=5'],
        ['x-spam-score', 'NaN'],
        ...Array.from({ length: 50 }, (_, i): [string, string] => [`x-spam-extra-${i}`, 'v'.repeat(5000)]),
      ]),
    );
    expect(info?.flagged).toBe(true);
    expect(info?.score).toBeUndefined();
    expect(Object.keys(info?.headers ?? {})).toHaveLength(20);
    expect(Object.values(info?.headers ?? {}).every((v) => v.length <= 2048)).toBe(true);
  });

  it('returns null without X-Spam headers', () => {
    expect(extractSpam(h([['x-spamd-result', 'default: False [1.0 / 15.0]']]))).toBeNull();
  });
});

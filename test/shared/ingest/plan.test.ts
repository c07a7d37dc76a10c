import { describe, expect, it } from 'vitest';
import { listMessages, messageKeyFor, recordId } from '../../../shared/ingest/identity.js';
import { planPoll, retentionAllowsDelete } from '../../../shared/ingest/plan.js';
import type { MessageRecord } from '../../../shared/state/store.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');

function record(
  uidl: string,
  status: MessageRecord['status'],
  extra: Partial<MessageRecord> = {},
): MessageRecord {
  return {
    mailboxId: 'm',
    uidl,
    occurrence: 0,
    messageKey: messageKeyFor('m', uidl, 0),
    status,
    firstSeenAt: '2026-11-28T11:00:00Z',
    updatedAt: '2026-11-28T11:00:00Z',
    ...extra,
  };
}

describe('listMessages', () => {
  it('numbers duplicate UIDLs in listing order and keeps them distinct', () => {
    const listed = listMessages(
      [
        { n: 2, uidl: 'a' },
        { n: 1, uidl: 'a' },
        { n: 3, uidl: 'b c/../x' },
      ],
      [
        { n: 1, size: 10 },
        { n: 2, size: 20 },
        { n: 3, size: 30 },
      ],
    );
    expect(listed).toEqual([
      { n: 1, uidl: 'a', occurrence: 0, size: 10 },
      { n: 2, uidl: 'a', occurrence: 1, size: 20 },
      { n: 3, uidl: 'b c/../x', occurrence: 0, size: 30 },
    ]);
    expect(messageKeyFor('m', 'a', 0)).not.toBe(messageKeyFor('m', 'a', 1));
  });

  it('derives keys and record ids from hashes, never from the raw UIDL', () => {
    const hostile = '../../etc/passwd';
    expect(messageKeyFor('m', hostile, 0)).toMatch(/^[0-9a-f]{32}$/);
    expect(recordId(hostile, 3)).toMatch(/^[0-9a-f]{64}#3$/);
    expect(messageKeyFor('m', 'x', 0)).toBe(messageKeyFor('m', 'x', 0));
    expect(messageKeyFor('m', 'x', 0)).not.toBe(messageKeyFor('n', 'x', 0));
  });
});

describe('planPoll', () => {
  const listed = listMessages(
    ['new', 'seen', 'archived', 'enqueued', 'deleted', 'skipped', 'big'].map((uidl, i) => ({
      n: i + 1,
      uidl,
    })),
    [1, 2, 3, 4, 5, 6, 7].map((n) => ({ n, size: n === 7 || n === 6 ? 5000 : 100 })),
  );
  const records = [
    record('seen', 'seen'),
    record('archived', 'archived'),
    record('enqueued', 'enqueued'),
    record('deleted', 'deleted'),
    record('skipped', 'skipped'),
  ];

  it('fetches new and unfinished messages, deletes safe ones, skips oversize once (delete mode)', () => {
    const plan = planPoll({ listed, records, retention: 'delete', maxMessageBytes: 1000, now: NOW });
    expect(plan.actions.map((a) => [a.message.uidl, a.kind])).toEqual([
      ['new', 'fetch'],
      ['seen', 'fetch'],
      ['archived', 'fetch'],
      ['enqueued', 'delete'],
      ['deleted', 'delete'],
      ['skipped', 'none'],
      ['big', 'skip'],
    ]);
    expect(plan.uidlResetSuspected).toBe(false);
  });

  it('never deletes in keep mode', () => {
    const plan = planPoll({ listed, records, retention: 'keep', maxMessageBytes: 1000, now: NOW });
    expect(plan.actions.filter((a) => a.kind === 'delete')).toEqual([]);
  });

  it('fetches a previously skipped message once the limit allows it', () => {
    const plan = planPoll({ listed, records, retention: 'keep', maxMessageBytes: 10_000, now: NOW });
    expect(plan.actions.find((a) => a.message.uidl === 'skipped')?.kind).toBe('fetch');
  });

  it('deletes after N days only when the message is old enough', () => {
    const r = record('x', 'enqueued', { firstSeenAt: '2026-11-20T12:00:00Z' });
    expect(retentionAllowsDelete({ deleteAfterDays: 7 }, r, NOW)).toBe(true);
    expect(retentionAllowsDelete({ deleteAfterDays: 9 }, r, NOW)).toBe(false);
  });

  it('detects a wholesale UIDL reset', () => {
    const old = Array.from({ length: 20 }, (_, i) => record(`old-${i}`, 'enqueued'));
    const renumbered = listMessages(
      Array.from({ length: 20 }, (_, i) => ({ n: i + 1, uidl: `new-${i}` })),
      Array.from({ length: 20 }, (_, i) => ({ n: i + 1, size: 10 })),
    );
    expect(
      planPoll({ listed: renumbered, records: old, retention: 'keep', maxMessageBytes: 1e9, now: NOW })
        .uidlResetSuspected,
    ).toBe(true);
    // Ordinary churn: most old ones still listed.
    const churn = listMessages(
      Array.from({ length: 20 }, (_, i) => ({ n: i + 1, uidl: i < 15 ? `old-${i}` : `new-${i}` })),
      Array.from({ length: 20 }, (_, i) => ({ n: i + 1, size: 10 })),
    );
    expect(
      planPoll({ listed: churn, records: old, retention: 'keep', maxMessageBytes: 1e9, now: NOW })
        .uidlResetSuspected,
    ).toBe(false);
  });
});

/**
 * One behavioural suite for both state stores: DynamoStateStore against a real dynalite, and
 * LocalStateStore on a real temp directory. Whatever the poller and delivery worker rely on is here.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStateTable, DynamoStateStore } from '../../../shared/state/dynamo-state.js';
import { LocalStateStore } from '../../../shared/state/local-state.js';
import type { DeliveryAttempt, DeliveryLog, MessageRecord, StateStore } from '../../../shared/state/store.js';
import { type DynaliteFixture, startDynalite } from '../../fixtures/dynalite.js';

type Store = StateStore & DeliveryLog;

interface Harness {
  /** A store on shared backing storage whose clock reads `clock.t`. */
  store(clock: { now(): number }): Store;
}

class TestClock {
  t = Date.parse('2025-03-01T12:00:00Z');
  now = () => this.t;
}

function record(mailboxId: string, uidl: string, overrides: Partial<MessageRecord> = {}): MessageRecord {
  return {
    mailboxId,
    uidl,
    occurrence: 0,
    messageKey: `${mailboxId}/2025/03/01/${randomUUID()}`,
    status: 'seen',
    firstSeenAt: '2025-03-01T12:00:00.000Z',
    updatedAt: '2025-03-01T12:00:00.000Z',
    ...overrides,
  };
}

function attempt(messageKey: string, endpointId: string, n: number, at: string): DeliveryAttempt {
  return {
    messageKey,
    endpointId,
    webhookId: 'msg_abc',
    attempt: n,
    at,
    outcome: n < 3 ? 'retry' : 'delivered',
    status: n < 3 ? 503 : 200,
    latencyMs: 12,
  };
}

const mbx = () => `mbx-${randomUUID().slice(0, 8)}`;

let dyn: DynaliteFixture;
let tmp: string;

const harnesses: Array<[string, () => Harness]> = [
  [
    'DynamoStateStore (dynalite)',
    () => ({
      store: (clock) => new DynamoStateStore({ client: dyn.client, tableName: 'pophook-state', clock }),
    }),
  ],
  [
    'LocalStateStore (files)',
    () => ({ store: (clock) => new LocalStateStore({ dir: join(tmp, 'state'), clock }) }),
  ],
];

beforeAll(async () => {
  dyn = await startDynalite();
  await createStateTable(dyn.client, 'pophook-state');
  tmp = await mkdtemp(join(tmpdir(), 'pophook-state-contract-'));
});

afterAll(async () => {
  await dyn?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe.each(harnesses)('%s', (_name, makeHarness) => {
  let harness: Harness;
  beforeAll(() => {
    harness = makeHarness();
  });

  describe('leases', () => {
    it('grants a free lease and refuses a held one', async () => {
      const clock = new TestClock();
      const store = harness.store(clock);
      const id = mbx();
      const lease = await store.acquireLease(id, 'run-a', 60_000);
      expect(lease).toEqual({ mailboxId: id, owner: 'run-a', expiresAt: clock.t + 60_000 });
      expect(await store.acquireLease(id, 'run-b', 60_000)).toBeUndefined();
      // The holder itself cannot take it twice either: a second poll in the same process must skip.
      expect(await store.acquireLease(id, 'run-a', 60_000)).toBeUndefined();
    });

    it('lets another owner take an expired lease, after which the old owner cannot renew', async () => {
      const clock = new TestClock();
      const store = harness.store(clock);
      const id = mbx();
      const a = await store.acquireLease(id, 'run-a', 1_000);
      expect(a).toBeDefined();
      clock.t += 1_000; // exactly at expiry: still held
      expect(await store.acquireLease(id, 'run-b', 1_000)).toBeUndefined();
      clock.t += 1;
      const b = await store.acquireLease(id, 'run-b', 5_000);
      expect(b?.owner).toBe('run-b');
      if (!a) throw new Error('unreachable');
      expect(await store.renewLease(a, 5_000)).toBe(false);
      expect(await store.acquireLease(id, 'run-c', 5_000)).toBeUndefined();
    });

    it('renews a held lease, extending expiresAt', async () => {
      const clock = new TestClock();
      const store = harness.store(clock);
      const id = mbx();
      const lease = await store.acquireLease(id, 'run-a', 1_000);
      if (!lease) throw new Error('no lease');
      clock.t += 900;
      expect(await store.renewLease(lease, 1_000)).toBe(true);
      expect(lease.expiresAt).toBe(clock.t + 1_000);
      clock.t += 900; // past the first expiry, inside the renewed one
      expect(await store.acquireLease(id, 'run-b', 1_000)).toBeUndefined();
    });

    it('refuses release and renewal by a non-owner', async () => {
      const clock = new TestClock();
      const store = harness.store(clock);
      const id = mbx();
      const lease = await store.acquireLease(id, 'run-a', 60_000);
      if (!lease) throw new Error('no lease');
      const forged = { ...lease, owner: 'run-x' };
      await store.releaseLease(forged);
      expect(await store.renewLease(forged, 60_000)).toBe(false);
      expect(await store.acquireLease(id, 'run-b', 60_000)).toBeUndefined();
      await store.releaseLease(lease);
      expect((await store.acquireLease(id, 'run-b', 60_000))?.owner).toBe('run-b');
      // Releasing again after losing it changes nothing.
      await store.releaseLease(lease);
      expect(await store.acquireLease(id, 'run-c', 60_000)).toBeUndefined();
    });

    it('grants exactly one of 10 concurrent acquisitions, fresh and on takeover of an expired lease', async () => {
      const clock = new TestClock();
      const store = harness.store(clock);
      const id = mbx();
      const fresh = await Promise.all(
        Array.from({ length: 10 }, (_, i) => store.acquireLease(id, `run-${i}`, 1_000)),
      );
      expect(fresh.filter(Boolean)).toHaveLength(1);
      clock.t += 2_000;
      const takeover = await Promise.all(
        Array.from({ length: 10 }, (_, i) => store.acquireLease(id, `late-${i}`, 1_000)),
      );
      expect(takeover.filter(Boolean)).toHaveLength(1);
    });

    it('keeps leases of different mailboxes independent', async () => {
      const store = harness.store(new TestClock());
      expect(await store.acquireLease(mbx(), 'run-a', 60_000)).toBeDefined();
      expect(await store.acquireLease(mbx(), 'run-a', 60_000)).toBeDefined();
    });
  });

  describe('message records', () => {
    it('inserts once, then refuses; getMessage returns the stored record', async () => {
      const store = harness.store(new TestClock());
      const r = record(mbx(), 'UID-1');
      expect(await store.createMessage(r)).toBe(true);
      expect(await store.createMessage({ ...r, status: 'archived' })).toBe(false);
      expect(await store.getMessage(r.mailboxId, 'UID-1', 0)).toEqual(r);
      expect(await store.getMessage(r.mailboxId, 'UID-1', 1)).toBeUndefined();
      expect(await store.getMessage(r.mailboxId, 'UID-2', 0)).toBeUndefined();
    });

    it('lets exactly one of 10 concurrent createMessage calls for one key win', async () => {
      const store = harness.store(new TestClock());
      const id = mbx();
      const candidates = Array.from({ length: 10 }, (_, i) => record(id, 'same', { eventId: `evt-${i}` }));
      const results = await Promise.all(candidates.map((c) => store.createMessage(c)));
      expect(results.filter((x) => x)).toHaveLength(1);
      const winner = candidates[results.indexOf(true)];
      expect(await store.getMessage(id, 'same', 0)).toEqual(winner);
    });

    it('stores hostile UIDLs exactly and keeps occurrences apart', async () => {
      const store = harness.store(new TestClock());
      const id = mbx();
      const uidls = [
        'a#b#0',
        '../../etc/passwd',
        'MSG#x',
        ' spaced ',
        '~!@$%^&*()_+{}|:"<>?',
        'x'.repeat(70),
      ];
      for (const uidl of uidls) {
        expect(await store.createMessage(record(id, uidl))).toBe(true);
        expect(await store.createMessage(record(id, uidl, { occurrence: 1 }))).toBe(true);
      }
      for (const uidl of uidls) {
        expect((await store.getMessage(id, uidl, 0))?.uidl).toBe(uidl);
        expect((await store.getMessage(id, uidl, 1))?.occurrence).toBe(1);
      }
      const listed = await store.listMessages(id);
      expect(listed).toHaveLength(uidls.length * 2);
      expect(new Set(listed.map((r) => `${r.uidl}|${r.occurrence}`)).size).toBe(uidls.length * 2);
    });

    it('lists only the mailbox asked for, and nothing for an unknown mailbox', async () => {
      const store = harness.store(new TestClock());
      const a = mbx();
      const b = mbx();
      await store.createMessage(record(a, '1'));
      await store.createMessage(record(a, '2'));
      await store.createMessage(record(b, '1'));
      // A lease and a poll record live beside the messages and must not be listed as messages.
      await store.acquireLease(a, 'run', 60_000);
      await store.recordPoll({
        mailboxId: a,
        startedAt: '2025-03-01T12:00:00.000Z',
        finishedAt: '2025-03-01T12:00:01.000Z',
        outcome: 'ok',
        fetched: 2,
        bytes: 10,
        deleted: 0,
        remainingOnServer: 0,
      });
      expect((await store.listMessages(a)).map((r) => r.uidl).sort()).toEqual(['1', '2']);
      expect(await store.listMessages(b)).toHaveLength(1);
      expect(await store.listMessages(mbx())).toEqual([]);
    });

    it('replaces a record with putMessage, dropping fields that are no longer set', async () => {
      const store = harness.store(new TestClock());
      const r = record(mbx(), 'u', { lastError: 'timeout', failures: 1 });
      await store.createMessage(r);
      const next: MessageRecord = { ...r, status: 'archived', size: 1234, sha256: 'ab'.repeat(32) };
      delete next.lastError;
      delete next.failures;
      await store.putMessage(next);
      expect(await store.getMessage(r.mailboxId, 'u', 0)).toEqual(next);
    });

    it('finds records by content hash within one mailbox only, verifying the hash', async () => {
      const store = harness.store(new TestClock());
      const a = mbx();
      const b = mbx();
      const h1 = '11'.repeat(32);
      const h2 = '22'.repeat(32);
      await store.putMessage(record(a, 'old-uidl', { status: 'deleted', sha256: h1 }));
      await store.putMessage(record(a, 'new-uidl', { status: 'archived', sha256: h1 }));
      await store.putMessage(record(a, 'other', { sha256: h2 }));
      await store.putMessage(record(b, 'old-uidl', { sha256: h1 }));
      const found = await store.findBySha256(a, h1);
      expect(found.map((r) => r.uidl).sort()).toEqual(['new-uidl', 'old-uidl']);
      expect(await store.findBySha256(a, '33'.repeat(32))).toEqual([]);
      // A record whose hash changed leaves a dangling pointer behind, which must not match.
      const moved = await store.getMessage(a, 'other', 0);
      if (!moved) throw new Error('missing');
      await store.putMessage({ ...moved, sha256: h1 });
      expect((await store.findBySha256(a, h2)).length).toBe(0);
      expect((await store.findBySha256(a, h1)).length).toBe(3);
    });

    it('finds a record by message key across mailboxes', async () => {
      const store = harness.store(new TestClock());
      const r1 = record(mbx(), 'u1');
      const r2 = record(mbx(), 'u1');
      await store.createMessage(r1);
      await store.createMessage(r2);
      expect(await store.findByMessageKey(r1.messageKey)).toEqual(r1);
      expect(await store.findByMessageKey(r2.messageKey)).toEqual(r2);
      expect(await store.findByMessageKey('no/such/key')).toBeUndefined();
      // Status updates keep it findable.
      await store.putMessage({ ...r1, status: 'enqueued' });
      expect((await store.findByMessageKey(r1.messageKey))?.status).toBe('enqueued');
    });

    it('does not return a record through a pointer left by a losing createMessage', async () => {
      const store = harness.store(new TestClock());
      const r = record(mbx(), 'dup');
      await store.createMessage(r);
      const loser = { ...r, messageKey: `${r.messageKey}-other` };
      expect(await store.createMessage(loser)).toBe(false);
      expect(await store.findByMessageKey(loser.messageKey)).toBeUndefined();
      expect(await store.findByMessageKey(r.messageKey)).toEqual(r);
    });
  });

  describe('polls', () => {
    it('keeps the last poll per mailbox', async () => {
      const store = harness.store(new TestClock());
      const id = mbx();
      expect(await store.lastPoll(id)).toBeUndefined();
      const base = {
        mailboxId: id,
        finishedAt: '2025-03-01T12:00:05.000Z',
        fetched: 1,
        bytes: 100,
        deleted: 1,
        remainingOnServer: 0,
      };
      await store.recordPoll({ ...base, startedAt: '2025-03-01T12:00:00.000Z', outcome: 'ok' });
      const second = {
        ...base,
        startedAt: '2025-03-01T12:05:00.000Z',
        outcome: 'error' as const,
        errorCode: 'POP3_AUTH_FAILED',
        errorMessage: 'Login refused',
      };
      await store.recordPoll(second);
      expect(await store.lastPoll(id)).toEqual(second);
    });
  });

  describe('delivery log', () => {
    it('lists attempts oldest first, for that message only', async () => {
      const store = harness.store(new TestClock());
      const key = `m/${randomUUID()}`;
      const a3 = attempt(key, 'ep-a', 3, '2025-03-01T12:35:05.000Z');
      const a1 = attempt(key, 'ep-a', 1, '2025-03-01T12:00:00.000Z');
      const b1 = attempt(key, 'ep-b', 1, '2025-03-01T12:00:00.000Z');
      const a2 = {
        ...attempt(key, 'ep-a', 2, '2025-03-01T12:00:05.000Z'),
        nextAttemptAt: '2025-03-01T12:05:05.000Z',
      };
      const b2 = attempt(key, 'ep-b', 2, '2025-03-01T12:00:06.000Z');
      for (const a of [a3, b2, a1, a2, b1]) await store.recordAttempt(a);
      await store.recordAttempt(attempt(`${key}x`, 'ep-a', 1, '2025-03-01T11:00:00.000Z'));
      expect(await store.listAttempts(key)).toEqual([a1, b1, a2, b2, a3]);
      expect(await store.listAttempts('unknown')).toEqual([]);
    });

    it('stores and replaces endpoint state', async () => {
      const store = harness.store(new TestClock());
      const id = `ep-${randomUUID().slice(0, 8)}`;
      expect(await store.getEndpointState(id)).toBeUndefined();
      const disabled = {
        endpointId: id,
        disabled: true,
        disabledAt: '2025-03-01T12:00:00.000Z',
        disabledReason: 'HTTP 410 Gone',
      };
      await store.setEndpointState(disabled);
      expect(await store.getEndpointState(id)).toEqual(disabled);
      await store.setEndpointState({ endpointId: id, disabled: false });
      expect(await store.getEndpointState(id)).toEqual({ endpointId: id, disabled: false });
    });
  });
});

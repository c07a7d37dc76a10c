import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MailboxConfig } from '../../../shared/config/schema.js';
import { deliverJob, parseJob } from '../../../shared/delivery/deliver.js';
import { createWebhookHttp } from '../../../shared/delivery/http.js';
import { dayPrefixes, replay } from '../../../shared/delivery/replay.js';
import { ConfigError } from '../../../shared/errors.js';
import { silentLogger } from '../../../shared/log.js';
import type { MessageRecord } from '../../../shared/state/store.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import {
  defaultDelivery,
  eventKeyOf,
  localEndpoint,
  MemoryArchive,
  MemoryDeliveryLog,
  MemoryQueue,
  newSecret,
  receivedEvent,
  testClock,
} from './helpers.js';

const mailbox = (id: string) =>
  MailboxConfig.parse({
    id,
    host: 'pop.example.com',
    user: 'u',
    auth: { type: 'password', password: { secret: 'p' } },
  });

describe('replay', () => {
  const archive = new MemoryArchive();
  let receiver: Receiver;
  const events = [
    receivedEvent({ mailboxId: 'inbox', receivedAt: '2025-03-01T10:00:00.000Z', subject: 'Invoice 1' }),
    receivedEvent({ mailboxId: 'inbox', receivedAt: '2025-03-02T23:59:00.000Z', subject: 'Hello' }),
    receivedEvent({ mailboxId: 'inbox', receivedAt: '2025-03-05T08:00:00.000Z', subject: 'Invoice 3' }),
    receivedEvent({ mailboxId: 'sales', receivedAt: '2025-03-02T12:00:00.000Z', subject: 'Invoice 4' }),
  ];
  const endpoints = () => [
    localEndpoint('all', receiver.url),
    localEndpoint('invoices', receiver.url, { match: { subject: 'Invoice*' } }),
  ];
  const config = () => ({ endpoints: endpoints(), mailboxes: [mailbox('inbox'), mailbox('sales')] });

  beforeAll(async () => {
    receiver = await startReceiver();
    for (const e of events) {
      await archive.put(e.data.raw.key, 'raw message');
      await archive.put(eventKeyOf(e), JSON.stringify(e));
    }
  });
  afterAll(async () => {
    await receiver.close();
  });

  it('walks only the days in range and re-enqueues with the original webhook-id', async () => {
    const queue = new MemoryQueue();
    const clock = testClock(Date.parse('2025-04-01T00:00:00Z'));
    const result = await replay(
      { mailboxId: 'inbox', from: '2025-03-01T00:00:00Z', to: '2025-03-02T23:59:59Z', dryRun: false },
      { archive, queue, config: config(), clock },
    );
    expect(result.scanned).toBe(2);
    expect(result.jobs.map((j) => [j.messageKey, j.endpointId])).toEqual([
      [events[0]?.data.messageKey, 'all'],
      [events[0]?.data.messageKey, 'invoices'],
      [events[1]?.data.messageKey, 'all'],
    ]);
    const jobs = queue.sent.map((s) => parseJob(s.body));
    expect(jobs).toHaveLength(3);
    for (const j of jobs) {
      expect(j.replay).toBe(true);
      expect(j.replayedAt).toBe('2025-04-01T00:00:00.000Z');
      expect(j.webhookId).toBe(events.find((e) => e.data.messageKey === j.messageKey)?.data.eventId);
    }
  });

  it('dry run reports without queueing; endpointIds narrows; every mailbox when none is named', async () => {
    const queue = new MemoryQueue();
    const result = await replay(
      { from: '2025-03-02T00:00:00Z', to: '2025-03-02T23:59:59Z', endpointIds: ['invoices'], dryRun: true },
      { archive, queue, config: config() },
    );
    expect(queue.sent).toHaveLength(0);
    expect(result.jobs.map((j) => j.messageKey)).toEqual([events[3]?.data.messageKey]);
    await expect(
      replay(
        { mailboxId: 'inbox', endpointIds: ['nope'], dryRun: true },
        { archive, queue, config: config() },
      ),
    ).rejects.toThrow(ConfigError);
    await expect(replay({ dryRun: true }, { archive, queue, config: config() })).rejects.toThrow(ConfigError);
  });

  it('finds messageKeys through the state store, or by scanning', async () => {
    const wanted = events[2]?.data.messageKey as string;
    const state = {
      findByMessageKey: async (key: string) =>
        key === wanted ? ({ rawKey: events[2]?.data.raw.key } as MessageRecord) : undefined,
    };
    const viaState = await replay(
      { messageKeys: [wanted], dryRun: true },
      { archive, queue: new MemoryQueue(), config: config(), state },
    );
    expect(viaState.scanned).toBe(1);
    expect(viaState.jobs.map((j) => j.endpointId)).toEqual(['all', 'invoices']);
    const scanned = await replay(
      { messageKeys: [wanted], mailboxId: 'inbox', dryRun: true },
      { archive, queue: new MemoryQueue(), config: config() },
    );
    expect(scanned.scanned).toBe(1);
    expect(scanned.jobs).toEqual(viaState.jobs);
  });

  it('a replayed job reaches the receiver with the original webhook-id', async () => {
    const queue = new MemoryQueue();
    const original = events[0];
    await replay(
      {
        messageKeys: [original?.data.messageKey as string],
        mailboxId: 'inbox',
        endpointIds: ['all'],
        dryRun: false,
      },
      { archive, queue, config: config() },
    );
    const http = createWebhookHttp();
    try {
      const job = parseJob(queue.sent[0]?.body ?? '');
      const result = await deliverJob(job, {
        config: { endpoints: endpoints(), delivery: defaultDelivery() },
        archive,
        log: new MemoryDeliveryLog(),
        http,
        clock: testClock(),
        logger: silentLogger,
        random: () => 0.5,
        resolveSecret: async () => newSecret(),
      });
      expect(result.outcome).toBe('delivered');
      expect(receiver.requests.at(-1)?.headers['webhook-id']).toBe(original?.data.eventId);
    } finally {
      await http.close();
    }
  });

  it('dayPrefixes covers inclusive UTC days', () => {
    expect(
      dayPrefixes('inbox', Date.parse('2024-12-31T23:00:00Z'), Date.parse('2025-01-01T01:00:00Z')),
    ).toEqual(['raw/inbox/2024/12/31/', 'raw/inbox/2025/01/01/']);
  });
});

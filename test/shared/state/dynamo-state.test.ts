/**
 * DynamoDB-specific behaviour (the shared behaviour is in store-contract.test.ts): the table schema,
 * the item layout (hashed UIDLs, TTL attributes) and error mapping, against a real dynalite.
 */
import { createHash } from 'node:crypto';
import { DescribeTableCommand, GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StateError } from '../../../shared/errors.js';
import {
  createStateTable,
  DELIVERY_ATTEMPT_TTL_SECONDS,
  DynamoStateStore,
  POLL_HISTORY_TTL_SECONDS,
  STATE_TABLE_SCHEMA,
} from '../../../shared/state/dynamo-state.js';
import { type DynaliteFixture, startDynalite } from '../../fixtures/dynalite.js';

const TABLE = 'pophook-state-dyn';
const NOW = Date.parse('2025-03-01T12:00:00Z');
const clock = { now: () => NOW };

let dyn: DynaliteFixture;
let store: DynamoStateStore;

beforeAll(async () => {
  dyn = await startDynalite();
  await createStateTable(dyn.client, TABLE);
  store = new DynamoStateStore({ client: dyn.client, tableName: TABLE, clock });
});

afterAll(async () => {
  await dyn?.close();
});

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

async function rawItem(pk: string, sk: string) {
  const out = await dyn.client.send(
    new GetItemCommand({ TableName: TABLE, Key: { pk: { S: pk }, sk: { S: sk } } }),
  );
  return out.Item;
}

describe('createStateTable', () => {
  it('creates the documented key schema, pay-per-request, and is idempotent', async () => {
    const again = await createStateTable(dyn.client, TABLE);
    // dynalite does not implement UpdateTimeToLive; AWS does.
    expect(again).toEqual({ ttlEnabled: false });
    const { Table } = await dyn.client.send(new DescribeTableCommand({ TableName: TABLE }));
    expect(Table?.KeySchema).toEqual([
      { AttributeName: STATE_TABLE_SCHEMA.partitionKey.name, KeyType: 'HASH' },
      { AttributeName: STATE_TABLE_SCHEMA.sortKey.name, KeyType: 'RANGE' },
    ]);
    expect(Table?.AttributeDefinitions).toEqual(
      expect.arrayContaining([
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ]),
    );
    expect(Table?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    expect(Table?.GlobalSecondaryIndexes).toBeUndefined();
  });
});

describe('item layout', () => {
  it('keys messages by the SHA-256 of the UIDL and keeps the exact UIDL in the item', async () => {
    const uidl = 'weird#uidl/../1';
    await store.createMessage({
      mailboxId: 'm1',
      uidl,
      occurrence: 2,
      messageKey: 'm1/key-1',
      status: 'seen',
      firstSeenAt: '2025-03-01T12:00:00.000Z',
      updatedAt: '2025-03-01T12:00:00.000Z',
      sha256: 'ab'.repeat(32),
    });
    const item = await rawItem('MBX#m1', `MSG#${sha(uidl)}#2`);
    expect(item?.uidl).toEqual({ S: uidl });
    expect(item?.ttl).toBeUndefined(); // message records are the dedupe history: they never expire
    const { Items } = await dyn.client.send(
      new QueryCommand({
        TableName: TABLE,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: 'MBX#m1' } },
      }),
    );
    for (const i of Items ?? []) expect(i.sk?.S).not.toContain(uidl);
    expect(await rawItem('KEY#m1/key-1', 'KEY')).toBeDefined();
  });

  it('sets the TTL attribute on leases, poll history and delivery attempts', async () => {
    const nowSeconds = Math.floor(NOW / 1000);
    await store.acquireLease('m2', 'run', 60_000);
    const lease = await rawItem('MBX#m2', 'LEASE');
    expect(Number(lease?.ttl?.N)).toBeGreaterThan(nowSeconds + 60);

    await store.recordPoll({
      mailboxId: 'm2',
      startedAt: '2025-03-01T12:00:00.000Z',
      finishedAt: '2025-03-01T12:00:01.000Z',
      outcome: 'ok',
      fetched: 0,
      bytes: 0,
      deleted: 0,
      remainingOnServer: 0,
    });
    expect((await rawItem('MBX#m2', 'POLL'))?.ttl).toBeUndefined();
    const history = await rawItem('MBX#m2', 'POLLH#2025-03-01T12:00:00.000Z');
    expect(history?.ttl).toEqual({ N: String(nowSeconds + POLL_HISTORY_TTL_SECONDS) });

    await store.recordAttempt({
      messageKey: 'm2/k',
      endpointId: 'ep',
      webhookId: 'msg_1',
      attempt: 1,
      at: '2025-03-01T12:00:00.000Z',
      outcome: 'delivered',
      status: 200,
      latencyMs: 5,
    });
    const dlv = await rawItem('DLV#m2/k', 'ep#2025-03-01T12:00:00.000Z#000001');
    expect(dlv?.ttl).toEqual({ N: String(nowSeconds + DELIVERY_ATTEMPT_TTL_SECONDS) });
    expect(DELIVERY_ATTEMPT_TTL_SECONDS).toBe(90 * 24 * 3600);
  });
});

describe('errors', () => {
  it('names a missing table and says what to do, as a permanent StateError', async () => {
    const broken = new DynamoStateStore({ client: dyn.client, tableName: 'no-such-table' });
    const err = await broken.getMessage('m', 'u', 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateError);
    expect(err).toMatchObject({ code: 'STATE_TABLE_MISSING', transient: false });
    expect((err as Error).message).toContain('no-such-table');
    expect((err as Error).message).toMatch(/Deploy the stack/);
  });

  it('maps an unreachable endpoint to a transient STATE_UNAVAILABLE', async () => {
    const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
    // Port 9 (discard) on loopback is closed: the connection is refused at once.
    const client = new DynamoDBClient({
      endpoint: 'http://127.0.0.1:9',
      region: 'us-east-1',
      maxAttempts: 1,
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    });
    const unreachable = new DynamoStateStore({ client, tableName: TABLE });
    await expect(unreachable.lastPoll('m')).rejects.toMatchObject({
      code: 'STATE_UNAVAILABLE',
      transient: true,
    });
    client.destroy();
  });
});

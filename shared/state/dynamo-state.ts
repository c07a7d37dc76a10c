/**
 * DynamoDB implementation of the state port (StateStore + DeliveryLog) on ONE table.
 *
 * Key schema (the CDK creates the same; see STATE_TABLE_SCHEMA): `pk` (S, hash), `sk` (S, range),
 * PAY_PER_REQUEST, TTL on `ttl` (epoch seconds). No GSI.
 *
 * Item layout (`et` names the entity, for people reading the table in the console):
 *
 * | entity          | pk                  | sk                                     | ttl       |
 * |-----------------|---------------------|----------------------------------------|-----------|
 * | lease           | MBX#<mailboxId>     | LEASE                                  | expiry+1d |
 * | message record  | MBX#<mailboxId>     | MSG#<sha256(uidl)>#<occurrence>        | none      |
 * | sha256 pointer  | MBX#<mailboxId>     | SHA#<contentSha256>#<sha256(uidl)>#<occ> | none    |
 * | last poll       | MBX#<mailboxId>     | POLL                                   | none      |
 * | poll history    | MBX#<mailboxId>     | POLLH#<startedAt>                      | 30 days   |
 * | messageKey ptr  | KEY#<messageKey>    | KEY                                    | none      |
 * | delivery attempt| DLV#<messageKey>    | <endpointId>#<at>#<attempt, 6 digits>  | 90 days   |
 * | endpoint state  | EP#<endpointId>     | STATE                                  | none      |
 *
 * Raw UIDLs are never keys (they are server-controlled bytes, up to 70 chars, any printable ASCII):
 * keys use their SHA-256 and the record keeps the exact `uidl`.
 *
 * Lookups by content hash and by message key go through pointer items rather than a GSI: a scan-free
 * query that reads only matching items (query + filter would read the whole mailbox history for every
 * new message, O(n²) over a mailbox's life), strongly consistent (GSI reads are not), and no extra
 * index to provision. Pointers are written BEFORE the record they point to and every pointer is
 * verified against the record on read, so a crash between the two writes leaves at most a dangling
 * pointer that is ignored, never a record that cannot be found. DynamoDB transactions would make the
 * pair atomic but are not needed for that, and dynalite (our emulator) does not implement them.
 */
import { createHash } from 'node:crypto';
import {
  type AttributeValue,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { type Clock, systemClock } from '../clock.js';
import { StateError } from '../errors.js';
import type {
  DeliveryAttempt,
  DeliveryLog,
  EndpointState,
  Lease,
  MessageRecord,
  PollRecord,
  StateStore,
} from './store.js';

/** The table's shape, for the CDK helper and local tooling: both must create exactly this. */
export const STATE_TABLE_SCHEMA = {
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  billingMode: 'PAY_PER_REQUEST',
  timeToLiveAttribute: 'ttl',
} as const;

/** Delivery attempts are an audit trail for `show` and support; 90 days covers any retry schedule plus a quarter of hindsight. */
export const DELIVERY_ATTEMPT_TTL_SECONDS = 90 * 24 * 3600;
/** Poll history is for diagnosing recent trouble; the last poll per mailbox is kept forever. */
export const POLL_HISTORY_TTL_SECONDS = 30 * 24 * 3600;
/** Expired leases linger a day before DynamoDB's TTL sweeper removes them (they are harmless until then). */
const LEASE_TTL_GRACE_SECONDS = 24 * 3600;
/** createStateTable waits at most this long for the table to become ACTIVE (AWS takes seconds). */
const TABLE_ACTIVE_TIMEOUT_MS = 120_000;
const TABLE_ACTIVE_POLL_MS = 500;

/** Attributes that are ours, not part of the stored record. */
const INTERNAL_ATTRIBUTES = new Set(['pk', 'sk', 'et', 'ttl']);

export interface DynamoStateStoreOptions {
  client: DynamoDBClient;
  tableName: string;
  clock?: Clock;
}

type Item = Record<string, AttributeValue>;

/** StateStore and DeliveryLog on one DynamoDB table. See the module comment for the item layout. */
export class DynamoStateStore implements StateStore, DeliveryLog {
  private readonly client: DynamoDBClient;
  private readonly table: string;
  private readonly clock: Clock;

  constructor(options: DynamoStateStoreOptions) {
    this.client = options.client;
    this.table = options.tableName;
    this.clock = options.clock ?? systemClock;
  }

  // ---- leases ----

  async acquireLease(mailboxId: string, owner: string, ttlMs: number): Promise<Lease | undefined> {
    const now = this.clock.now();
    const lease: Lease = { mailboxId, owner, expiresAt: now + ttlMs };
    const ok = await this.conditional('acquireLease', () =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: {
            ...keys(mailboxPk(mailboxId), 'LEASE'),
            et: { S: 'lease' },
            owner: { S: owner },
            expiresAt: { N: String(lease.expiresAt) },
            ttl: { N: String(epochSeconds(lease.expiresAt) + LEASE_TTL_GRACE_SECONDS) },
          },
          ConditionExpression: 'attribute_not_exists(pk) OR expiresAt < :now',
          ExpressionAttributeValues: { ':now': { N: String(now) } },
        }),
      ),
    );
    return ok ? lease : undefined;
  }

  /**
   * Extends the lease if `lease.owner` still holds it (an expired lease nobody took is still ours).
   * On success `lease.expiresAt` is updated in place. Owners must be unique per run.
   */
  async renewLease(lease: Lease, ttlMs: number): Promise<boolean> {
    const expiresAt = this.clock.now() + ttlMs;
    const ok = await this.conditional('renewLease', () =>
      this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: keys(mailboxPk(lease.mailboxId), 'LEASE'),
          UpdateExpression: 'SET expiresAt = :e, #ttl = :t',
          ConditionExpression: 'attribute_exists(pk) AND #owner = :o',
          ExpressionAttributeNames: { '#ttl': 'ttl', '#owner': 'owner' },
          ExpressionAttributeValues: {
            ':e': { N: String(expiresAt) },
            ':t': { N: String(epochSeconds(expiresAt) + LEASE_TTL_GRACE_SECONDS) },
            ':o': { S: lease.owner },
          },
        }),
      ),
    );
    if (ok) lease.expiresAt = expiresAt;
    return ok;
  }

  /** Releases the lease if we still hold it; a lease someone else now holds is left alone. */
  async releaseLease(lease: Lease): Promise<void> {
    await this.conditional('releaseLease', () =>
      this.client.send(
        new DeleteItemCommand({
          TableName: this.table,
          Key: keys(mailboxPk(lease.mailboxId), 'LEASE'),
          ConditionExpression: '#owner = :o',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: { ':o': { S: lease.owner } },
        }),
      ),
    );
  }

  // ---- message records ----

  /** All records of a mailbox, in no particular order. */
  async listMessages(mailboxId: string): Promise<MessageRecord[]> {
    const items = await this.queryAll('listMessages', mailboxPk(mailboxId), 'MSG#');
    return items.map((item) => fromItem<MessageRecord>(item));
  }

  async getMessage(mailboxId: string, uidl: string, occurrence: number): Promise<MessageRecord | undefined> {
    const item = await this.getItem('getMessage', mailboxPk(mailboxId), messageSk(uidl, occurrence));
    return item ? fromItem<MessageRecord>(item) : undefined;
  }

  async createMessage(record: MessageRecord): Promise<boolean> {
    await this.writePointers(record);
    return this.conditional('createMessage', () =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: this.messageItem(record),
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      ),
    );
  }

  async putMessage(record: MessageRecord): Promise<void> {
    await this.writePointers(record);
    await this.call('putMessage', () =>
      this.client.send(new PutItemCommand({ TableName: this.table, Item: this.messageItem(record) })),
    );
  }

  async findBySha256(mailboxId: string, sha256: string): Promise<MessageRecord[]> {
    const pointers = await this.queryAll('findBySha256', mailboxPk(mailboxId), `SHA#${sha256}#`);
    const out: MessageRecord[] = [];
    for (const pointer of pointers) {
      const { uidl, occurrence } = fromItem<{ uidl: string; occurrence: number }>(pointer);
      const record = await this.getMessage(mailboxId, uidl, occurrence);
      if (record?.sha256 === sha256) out.push(record);
    }
    return out;
  }

  async findByMessageKey(messageKey: string): Promise<MessageRecord | undefined> {
    const pointer = await this.getItem('findByMessageKey', keyPk(messageKey), 'KEY');
    if (!pointer) return undefined;
    const { mailboxId, uidl, occurrence } = fromItem<{ mailboxId: string; uidl: string; occurrence: number }>(
      pointer,
    );
    const record = await this.getMessage(mailboxId, uidl, occurrence);
    return record?.messageKey === messageKey ? record : undefined;
  }

  // ---- polls ----

  async recordPoll(poll: PollRecord): Promise<void> {
    const pk = mailboxPk(poll.mailboxId);
    const ttl = epochSeconds(this.clock.now()) + POLL_HISTORY_TTL_SECONDS;
    await Promise.all([
      this.call('recordPoll', () =>
        this.client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: { ...toItem(poll), ...keys(pk, 'POLL'), et: { S: 'poll' } },
          }),
        ),
      ),
      this.call('recordPoll', () =>
        this.client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: {
              ...toItem(poll),
              ...keys(pk, `POLLH#${poll.startedAt}`),
              et: { S: 'poll-history' },
              ttl: { N: String(ttl) },
            },
          }),
        ),
      ),
    ]);
  }

  async lastPoll(mailboxId: string): Promise<PollRecord | undefined> {
    const item = await this.getItem('lastPoll', mailboxPk(mailboxId), 'POLL');
    return item ? fromItem<PollRecord>(item) : undefined;
  }

  // ---- delivery log ----

  async recordAttempt(attempt: DeliveryAttempt): Promise<void> {
    const ttl = epochSeconds(this.clock.now()) + DELIVERY_ATTEMPT_TTL_SECONDS;
    await this.call('recordAttempt', () =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: {
            ...toItem(attempt),
            ...keys(`DLV#${attempt.messageKey}`, attemptSk(attempt)),
            et: { S: 'attempt' },
            ttl: { N: String(ttl) },
          },
        }),
      ),
    );
  }

  /** Oldest first (by `at`, then endpoint id, then attempt number). */
  async listAttempts(messageKey: string): Promise<DeliveryAttempt[]> {
    const items = await this.queryAll('listAttempts', `DLV#${messageKey}`);
    return items.map((item) => fromItem<DeliveryAttempt>(item)).sort(compareAttempts);
  }

  async getEndpointState(endpointId: string): Promise<EndpointState | undefined> {
    const item = await this.getItem('getEndpointState', `EP#${endpointId}`, 'STATE');
    return item ? fromItem<EndpointState>(item) : undefined;
  }

  async setEndpointState(state: EndpointState): Promise<void> {
    await this.call('setEndpointState', () =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: { ...toItem(state), ...keys(`EP#${state.endpointId}`, 'STATE'), et: { S: 'endpoint' } },
        }),
      ),
    );
  }

  // ---- internals ----

  private messageItem(record: MessageRecord): Item {
    return {
      ...toItem(record),
      ...keys(mailboxPk(record.mailboxId), messageSk(record.uidl, record.occurrence)),
      et: { S: 'message' },
    };
  }

  /** Pointers first: a crash after them leaves a dangling pointer (ignored on read), never a lost lookup. */
  private async writePointers(record: MessageRecord): Promise<void> {
    const target = {
      mailboxId: { S: record.mailboxId },
      uidl: { S: record.uidl },
      occurrence: { N: String(record.occurrence) },
    };
    const writes = [
      this.call('writePointers', () =>
        this.client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: { ...keys(keyPk(record.messageKey), 'KEY'), et: { S: 'key-pointer' }, ...target },
          }),
        ),
      ),
    ];
    if (record.sha256) {
      const sk = `SHA#${record.sha256}#${sha256Hex(record.uidl)}#${record.occurrence}`;
      writes.push(
        this.call('writePointers', () =>
          this.client.send(
            new PutItemCommand({
              TableName: this.table,
              Item: { ...keys(mailboxPk(record.mailboxId), sk), et: { S: 'sha-pointer' }, ...target },
            }),
          ),
        ),
      );
    }
    await Promise.all(writes);
  }

  private async getItem(op: string, pk: string, sk: string): Promise<Item | undefined> {
    const out = await this.call(op, () =>
      this.client.send(
        new GetItemCommand({ TableName: this.table, Key: keys(pk, sk), ConsistentRead: true }),
      ),
    );
    return out.Item;
  }

  private async queryAll(op: string, pk: string, skPrefix?: string): Promise<Item[]> {
    const items: Item[] = [];
    let start: Item | undefined;
    do {
      const out = await this.call(op, () =>
        this.client.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: skPrefix ? 'pk = :pk AND begins_with(sk, :p)' : 'pk = :pk',
            ExpressionAttributeValues: skPrefix
              ? { ':pk': { S: pk }, ':p': { S: skPrefix } }
              : { ':pk': { S: pk } },
            ConsistentRead: true,
            ExclusiveStartKey: start,
          }),
        ),
      );
      items.push(...(out.Items ?? []));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  }

  /** Runs a conditional write: true if it applied, false if the condition failed. */
  private async conditional(op: string, run: () => Promise<unknown>): Promise<boolean> {
    try {
      await run();
      return true;
    } catch (err) {
      if (errorName(err) === 'ConditionalCheckFailedException') return false;
      throw this.wrap(op, err);
    }
  }

  private async call<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.wrap(op, err);
    }
  }

  private wrap(op: string, err: unknown): StateError {
    const details = { op, table: this.table, awsError: errorName(err) };
    switch (errorName(err)) {
      case 'ResourceNotFoundException':
        return new StateError(
          'STATE_TABLE_MISSING',
          `State table "${this.table}" does not exist in this account and region. Deploy the stack, or check the table name and region.`,
          { cause: err, details, transient: false },
        );
      case 'AccessDeniedException':
      case 'UnrecognizedClientException':
        return new StateError(
          'STATE_ACCESS_DENIED',
          `Access to state table "${this.table}" was denied. Check the role's DynamoDB permissions (the stack grants them).`,
          { cause: err, details, transient: false },
        );
      case 'ValidationException':
        return new StateError(
          'STATE_INVALID_REQUEST',
          `DynamoDB rejected a ${op} request on "${this.table}" (often an item over 400 KB). This is a bug; report it.`,
          { cause: err, details, transient: false },
        );
      default:
        return new StateError(
          'STATE_UNAVAILABLE',
          `State table "${this.table}" failed a ${op} request; the operation will be retried.`,
          { cause: err, details },
        );
    }
  }
}

export interface CreateStateTableResult {
  /** False when the endpoint does not implement UpdateTimeToLive (dynalite). */
  ttlEnabled: boolean;
}

/**
 * Creates the state table with STATE_TABLE_SCHEMA (idempotent: an existing table is accepted) and waits
 * until it is ACTIVE. For tests and local tooling; in AWS the CDK stack creates the same table.
 */
export async function createStateTable(
  client: DynamoDBClient,
  name: string,
): Promise<CreateStateTableResult> {
  try {
    await client.send(
      new CreateTableCommand({
        TableName: name,
        BillingMode: STATE_TABLE_SCHEMA.billingMode,
        AttributeDefinitions: [
          {
            AttributeName: STATE_TABLE_SCHEMA.partitionKey.name,
            AttributeType: STATE_TABLE_SCHEMA.partitionKey.type,
          },
          { AttributeName: STATE_TABLE_SCHEMA.sortKey.name, AttributeType: STATE_TABLE_SCHEMA.sortKey.type },
        ],
        KeySchema: [
          { AttributeName: STATE_TABLE_SCHEMA.partitionKey.name, KeyType: 'HASH' },
          { AttributeName: STATE_TABLE_SCHEMA.sortKey.name, KeyType: 'RANGE' },
        ],
      }),
    );
  } catch (err) {
    if (errorName(err) !== 'ResourceInUseException') throw err;
  }
  const deadline = Date.now() + TABLE_ACTIVE_TIMEOUT_MS;
  for (;;) {
    const out = await client.send(new DescribeTableCommand({ TableName: name }));
    if (out.Table?.TableStatus === 'ACTIVE') break;
    if (Date.now() > deadline)
      throw new StateError(
        'STATE_TABLE_NOT_ACTIVE',
        `Table "${name}" did not become ACTIVE in time; try again.`,
      );
    await new Promise((resolve) => setTimeout(resolve, TABLE_ACTIVE_POLL_MS));
  }
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: name,
        TimeToLiveSpecification: { AttributeName: STATE_TABLE_SCHEMA.timeToLiveAttribute, Enabled: true },
      }),
    );
    return { ttlEnabled: true };
  } catch (err) {
    const name = errorName(err);
    if (name === 'UnknownOperationException') return { ttlEnabled: false };
    // Enabling TTL twice is refused with "TimeToLive is already enabled".
    if (name === 'ValidationException' && /already enabled/i.test((err as Error).message))
      return { ttlEnabled: true };
    throw err;
  }
}

// ---- keys and marshalling ----

function keys(pk: string, sk: string): Item {
  return { pk: { S: pk }, sk: { S: sk } };
}

const mailboxPk = (mailboxId: string) => `MBX#${mailboxId}`;
const keyPk = (messageKey: string) => `KEY#${messageKey}`;
const messageSk = (uidl: string, occurrence: number) => `MSG#${sha256Hex(uidl)}#${occurrence}`;
const attemptSk = (a: DeliveryAttempt) => `${a.endpointId}#${a.at}#${String(a.attempt).padStart(6, '0')}`;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function epochSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

function compareAttempts(a: DeliveryAttempt, b: DeliveryAttempt): number {
  if (a.at !== b.at) return Date.parse(a.at) - Date.parse(b.at) || (a.at < b.at ? -1 : 1);
  if (a.endpointId !== b.endpointId) return a.endpointId < b.endpointId ? -1 : 1;
  return a.attempt - b.attempt;
}

function errorName(err: unknown): string | undefined {
  return err && typeof err === 'object' && 'name' in err && typeof err.name === 'string'
    ? err.name
    : undefined;
}

/** Marshals a flat-ish record (strings, numbers, booleans, arrays, objects); undefined fields are omitted. */
function toItem(value: object): Item {
  const out: Item = {};
  for (const [k, v] of Object.entries(value)) {
    const av = toAttribute(v);
    if (av) out[k] = av;
  }
  return out;
}

function toAttribute(v: unknown): AttributeValue | undefined {
  if (v === undefined) return undefined;
  if (v === null) return { NULL: true };
  if (typeof v === 'string') return { S: v };
  if (typeof v === 'number') {
    if (!Number.isFinite(v))
      throw new StateError('STATE_INVALID_REQUEST', 'Cannot store a non-finite number.');
    return { N: String(v) };
  }
  if (typeof v === 'boolean') return { BOOL: v };
  if (Array.isArray(v)) return { L: v.map((x) => toAttribute(x) ?? { NULL: true }) };
  if (typeof v === 'object') return { M: toItem(v) };
  throw new StateError('STATE_INVALID_REQUEST', `Cannot store a value of type ${typeof v}.`);
}

function fromAttribute(av: AttributeValue): unknown {
  if (av.S !== undefined) return av.S;
  if (av.N !== undefined) return Number(av.N);
  if (av.BOOL !== undefined) return av.BOOL;
  if (av.NULL !== undefined) return null;
  if (av.L !== undefined) return av.L.map(fromAttribute);
  if (av.M !== undefined) return fromItemRaw(av.M);
  return undefined;
}

function fromItemRaw(item: Item): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(item)) out[k] = fromAttribute(v);
  return out;
}

function fromItem<T>(item: Item): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(item)) if (!INTERNAL_ATTRIBUTES.has(k)) out[k] = fromAttribute(v);
  return out as T;
}

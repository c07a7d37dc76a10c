/**
 * The poller Lambda end to end, offline: real Dovecot, real S3 (s3rver) and DynamoDB (dynalite) through
 * the SDK's AWS_ENDPOINT_URL_* variables; only SQS and Secrets Manager are mocked (aws-sdk-client-mock),
 * since no faithful emulator exists for them here.
 */
import { createHash } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DeliveryJob } from '../../shared/queue/queue.js';
import { createStateTable, DynamoStateStore } from '../../shared/state/dynamo-state.js';
import { type Dovecot, dovecotAvailable, requireDovecot, startDovecot } from '../fixtures/dovecot.js';
import { type DynaliteFixture, startDynalite } from '../fixtures/dynalite.js';
import { makeMessage } from '../fixtures/messages.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';
import { emulatorEnv, setLambdaEnv, TABLE } from './lambda-env.js';

requireDovecot();
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MESSAGES = [1, 2, 3, 4].map((index) => makeMessage({ index, size: 4000 + index * 1000 }));

function context(remainingMs = 600_000): Context {
  return {
    awsRequestId: `req-${Math.random()}`,
    getRemainingTimeInMillis: () => remainingMs,
  } as unknown as Context;
}

describe.runIf(dovecotAvailable())('functions/poller handler', () => {
  let dovecot: Dovecot;
  let s3: S3rverFixture;
  let ddb: DynaliteFixture;
  let restoreEnv = () => {};
  const sqsMock = mockClient(SQSClient);
  const secretsMock = mockClient(SecretsManagerClient);
  const sent: DeliveryJob[] = [];

  beforeAll(async () => {
    [dovecot, s3, ddb] = await Promise.all([
      startDovecot({ messages: MESSAGES }),
      startS3rver(),
      startDynalite(),
    ]);
    await createStateTable(ddb.client, TABLE);
    const config = {
      version: 1,
      mailboxes: [
        {
          id: 'inbox',
          host: 'localhost',
          port: dovecot.tlsPort,
          tls: 'implicit',
          ca: dovecot.caPem,
          user: dovecot.user,
          auth: { type: 'password', password: { secret: 'pophook/inbox' } },
          retention: 'delete',
        },
      ],
      endpoints: [
        { id: 'app', url: 'https://hooks.example.com/email', secrets: [{ secret: 'pophook/app' }] },
      ],
    };
    restoreEnv = setLambdaEnv({
      ...emulatorEnv(config, s3, ddb),
      POWERTOOLS_METRICS_DISABLED: 'true',
    });
    secretsMock
      .on(GetSecretValueCommand, { SecretId: 'pophook/inbox' })
      .resolves({ SecretString: dovecot.password });
    sqsMock
      .on(SendMessageBatchCommand)
      .callsFake((input: { Entries: { Id: string; MessageBody: string }[] }) => {
        for (const e of input.Entries) sent.push(JSON.parse(e.MessageBody) as DeliveryJob);
        return {
          Successful: input.Entries.map((e) => ({ Id: e.Id, MessageId: e.Id, MD5OfMessageBody: '' })),
          Failed: [],
        };
      });
  });

  afterAll(async () => {
    restoreEnv();
    sqsMock.restore();
    secretsMock.restore();
    await Promise.all([dovecot?.stop(), s3?.stop(), ddb?.close()]);
  });

  it('archives every message to S3 over implicit TLS, records state, enqueues jobs, then deletes', async () => {
    vi.resetModules();
    const { handler } = await import('../../functions/poller.js');
    const [result] = await handler({ mailboxId: 'inbox' }, context());
    expect(result).toMatchObject({ outcome: 'ok', fetched: 4, deleted: 4, remaining: 0 });
    expect(await dovecot.messageCount()).toBe(0);

    const s3client = new S3Client(s3.clientConfig);
    const listed = await s3client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'raw/inbox/' }));
    const raws = (listed.Contents ?? []).filter((o) => o.Key?.endsWith('.eml'));
    const hashes = await Promise.all(
      raws.map(async (o) => {
        const got = await s3client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: o.Key }));
        return sha(
          Buffer.from(
            await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
          ),
        );
      }),
    );
    expect(hashes.sort()).toEqual(MESSAGES.map(sha).sort());
    s3client.destroy();

    expect(sent).toHaveLength(4);
    expect(new Set(sent.map((j) => j.webhookId)).size).toBe(4);
    const state = new DynamoStateStore({ client: ddb.client, tableName: TABLE });
    const records = await state.listMessages('inbox');
    expect(records.map((r) => r.status)).toEqual(['deleted', 'deleted', 'deleted', 'deleted']);
    expect((await state.lastPoll('inbox'))?.outcome).toBe('ok');

    // A repeated invocation (Scheduler is at-least-once) finds nothing to do.
    const [again] = await handler({ mailboxId: 'inbox' }, context());
    expect(again).toMatchObject({ outcome: 'ok', fetched: 0 });
    expect(sent).toHaveLength(4);
  });

  it('throws (so the Errors alarm sees it) when a mailbox cannot be polled', async () => {
    vi.resetModules();
    secretsMock
      .on(GetSecretValueCommand, { SecretId: 'pophook/inbox' })
      .resolves({ SecretString: 'wrong-password' });
    const { handler } = await import('../../functions/poller.js');
    await expect(handler({ mailboxId: 'inbox' }, context())).rejects.toThrow(/inbox \(POP3_AUTH_FAILED\)/);
  });
});

/**
 * The delivery Lambda end to end, offline: real S3 (s3rver) and DynamoDB (dynalite) reached through the
 * SDK's standard AWS_ENDPOINT_URL_* variables, real HTTP receivers, and only SQS and Secrets Manager
 * mocked (aws-sdk-client-mock).
 */
import { randomBytes } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ChangeMessageVisibilityCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createStateTable, DynamoStateStore } from '../../shared/state/dynamo-state.js';
import { type DynaliteFixture, startDynalite } from '../fixtures/dynalite.js';
import { type Receiver, startReceiver } from '../fixtures/receiver.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';
import { eventKeyOf, jobFor, receivedEvent, record } from '../shared/delivery/helpers.js';
import { emulatorEnv, setLambdaEnv, TABLE } from './lambda-env.js';

describe('functions/delivery handler', () => {
  let s3: S3rverFixture;
  let ddb: DynaliteFixture;
  let ok: Receiver;
  let failing: Receiver;
  let restoreEnv = () => {};
  const sqsMock = mockClient(SQSClient);
  const secretsMock = mockClient(SecretsManagerClient);
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const event = receivedEvent({ text: 'handler test body' });

  beforeAll(async () => {
    [s3, ddb, ok, failing] = await Promise.all([
      startS3rver(),
      startDynalite(),
      startReceiver(),
      startReceiver({ behaviour: { kind: 'status', status: 500 } }),
    ]);
    await createStateTable(ddb.client, TABLE);
    const client = new S3Client(s3.clientConfig);
    await client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: event.data.raw.key, Body: 'RAW MESSAGE' }),
    );
    await client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: eventKeyOf(event), Body: JSON.stringify(event) }),
    );
    client.destroy();

    const endpoint = (id: string, url: string) => ({
      id,
      url,
      secrets: [{ secret: 'pophook/endpoint' }],
      allowHttp: true,
      allowPrivateNetwork: true,
      timeoutMs: 2000,
    });
    const config = {
      version: 1,
      mailboxes: [
        {
          id: 'inbox',
          host: 'pop.example.com',
          user: 'u',
          auth: { type: 'password', password: { secret: 'p' } },
        },
      ],
      endpoints: [endpoint('ok', ok.url), endpoint('failing', failing.url)],
      delivery: { retryScheduleSeconds: [30, 300] },
    };
    restoreEnv = setLambdaEnv({
      ...emulatorEnv(config, s3, ddb),
    });
    sqsMock.on(ChangeMessageVisibilityCommand).resolves({});
    secretsMock
      .on(GetSecretValueCommand, { SecretId: 'pophook/endpoint' })
      .resolves({ SecretString: secret });
  });

  afterAll(async () => {
    restoreEnv();
    sqsMock.restore();
    secretsMock.restore();
    await Promise.all([s3?.stop(), ddb?.close(), ok?.close(), failing?.close()]);
  });

  it('delivers, parks the failure, and names exactly the failed records', async () => {
    vi.resetModules();
    const { handler } = await import('../../functions/delivery.js');
    const job = (endpointId: string) => JSON.stringify(jobFor(event, eventKeyOf(event), endpointId));
    const batch: SQSEvent = {
      Records: [record('a', job('ok')), record('b', job('failing')), record('c', '{"not":"a job"}')],
    };
    const result = await handler(batch);
    expect(result.batchItemFailures).toEqual([{ itemIdentifier: 'b' }, { itemIdentifier: 'c' }]);

    // The receiver verifies the signature with the reference library and can fetch the raw message.
    const req = ok.requests[0];
    const body = new Webhook(secret).verify(req?.body.toString() ?? '', {
      'webhook-id': String(req?.headers['webhook-id']),
      'webhook-timestamp': String(req?.headers['webhook-timestamp']),
      'webhook-signature': String(req?.headers['webhook-signature']),
    }) as { data: { text: string; links: { raw: { url: string } } } };
    expect(body.data.text).toBe('handler test body');
    const raw = await fetch(body.data.links.raw.url);
    expect(await raw.text()).toBe('RAW MESSAGE');

    const visibility = sqsMock.commandCalls(ChangeMessageVisibilityCommand).map((c) => c.args[0].input);
    expect(visibility).toHaveLength(2);
    // 30 s ± 10% jitter.
    const seconds = visibility.find((v) => v.ReceiptHandle === 'rh-b')?.VisibilityTimeout as number;
    expect(seconds).toBeGreaterThanOrEqual(27);
    expect(seconds).toBeLessThanOrEqual(33);
    expect(visibility.find((v) => v.ReceiptHandle === 'rh-c')?.VisibilityTimeout).toBe(0);

    // Attempts landed in DynamoDB.
    const store = new DynamoStateStore({ client: ddb.client, tableName: TABLE });
    const attempts = await store.listAttempts(event.data.messageKey);
    expect(attempts.map((a) => [a.endpointId, a.outcome, a.status]).sort()).toEqual([
      ['failing', 'retry', 500],
      ['ok', 'delivered', 200],
    ]);

    // A redelivered batch: the delivered job is skipped, not sent twice.
    const again = await handler({ Records: [record('a2', job('ok'))] });
    expect(again.batchItemFailures).toEqual([]);
    expect(ok.requests).toHaveLength(1);
  });
});

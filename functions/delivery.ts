/**
 * Delivery Lambda: SQS-triggered (ReportBatchItemFailures on). Everything is built once per container
 * from the environment; each batch goes to the shared delivery core (shared/delivery): records run
 * concurrently (bounded, per-endpoint caps), retries park via ChangeMessageVisibility, and the response
 * names exactly the records that must stay queued.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { systemClock } from '../shared/clock.js';
import { createWebhookHttp, type DeliverDeps, deliverJob, handleSqsBatch } from '../shared/delivery/index.js';
import { DEFAULT_ENDPOINT_CONCURRENCY } from '../shared/delivery/sqs-batch.js';
import { createJsonLogger } from '../shared/log.js';
import { createPowertoolsMetrics } from '../shared/metrics/powertools.js';
import { readLambdaEnv } from '../shared/runtime/env.js';
import { AwsSecretResolver } from '../shared/secrets/aws-secrets.js';
import { DynamoStateStore } from '../shared/state/dynamo-state.js';
import { createS3Client, S3Archive } from '../shared/storage/s3-archive.js';

const env = readLambdaEnv();
const region = env.region ? { region: env.region } : {};
const logger = createJsonLogger({ level: env.logLevel, fields: { fn: 'delivery' } });
const metrics = createPowertoolsMetrics();
const secrets = new AwsSecretResolver({ client: new SecretsManagerClient(region) });

const deps: DeliverDeps = {
  config: env.config,
  archive: new S3Archive({ client: createS3Client(region), bucket: env.bucket, logger }),
  log: new DynamoStateStore({ client: new DynamoDBClient(region), tableName: env.tableName }),
  // One per container: keep-alive connections to each endpoint survive between invocations.
  http: createWebhookHttp(),
  clock: systemClock,
  logger,
  random: Math.random,
  resolveSecret: (ref) => secrets.resolve(ref),
  metrics,
};
const sqs = new SQSClient(region);
const endpointLimits = new Map(env.config.endpoints.map((e) => [e.id, e.maxConcurrency]));

export const handler = async (event: SQSEvent): Promise<SQSBatchResponse> => {
  try {
    return await handleSqsBatch(event, {
      deliver: (job) => deliverJob(job, deps),
      sqs,
      queueUrl: env.queueUrl,
      logger,
      endpointConcurrency: (id) => endpointLimits.get(id) ?? DEFAULT_ENDPOINT_CONCURRENCY,
    });
  } finally {
    metrics.flush();
  }
};

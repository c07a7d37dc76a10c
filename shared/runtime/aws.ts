/**
 * The AWS runtime: the same poller as local mode, on S3, DynamoDB, SQS and Secrets Manager. Built once
 * per Lambda container (clients and the token cache survive between invocations).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { type CredentialsProvider, createCredentialsProvider } from '../auth/credentials.js';
import { systemClock } from '../clock.js';
import { routeEvent } from '../delivery/route.js';
import type { PollDeps } from '../ingest/poll.js';
import type { Logger } from '../log.js';
import { parseMessage } from '../mail/parse.js';
import type { Metrics } from '../metrics/metrics.js';
import { connect } from '../pop3/client.js';
import { SqsJobQueue } from '../queue/sqs-queue.js';
import { AwsSecretResolver } from '../secrets/aws-secrets.js';
import { AwsSecretWriter } from '../secrets/writer.js';
import { DynamoStateStore } from '../state/dynamo-state.js';
import { createS3Client, S3Archive } from '../storage/s3-archive.js';
import type { LambdaEnvironment } from './env.js';

export interface AwsRuntime {
  archive: S3Archive;
  state: DynamoStateStore;
  queue: SqsJobQueue;
  credentials: CredentialsProvider;
}

export function createAwsRuntime(env: LambdaEnvironment, logger: Logger): AwsRuntime {
  const region = env.region ? { region: env.region } : {};
  const secretsClient = new SecretsManagerClient(region);
  return {
    archive: new S3Archive({ client: createS3Client(region), bucket: env.bucket, logger }),
    state: new DynamoStateStore({ client: new DynamoDBClient(region), tableName: env.tableName }),
    queue: new SqsJobQueue({ client: new SQSClient(region), queueUrl: env.queueUrl, logger }),
    credentials: createCredentialsProvider({
      secrets: new AwsSecretResolver({ client: secretsClient }),
      secretWriter: new AwsSecretWriter({ client: secretsClient }),
      logger,
    }),
  };
}

export function awsPollDeps(
  env: LambdaEnvironment,
  runtime: AwsRuntime,
  options: { logger: Logger; metrics: Metrics; owner: string; deadline: number },
): PollDeps {
  return {
    config: env.config,
    archive: runtime.archive,
    state: runtime.state,
    queue: runtime.queue,
    connect,
    credentials: runtime.credentials,
    credentialsExpireAt: (m) => runtime.credentials.tokenExpiresAt(m),
    onAuthFailure: (m) => runtime.credentials.invalidate(m),
    parse: parseMessage,
    route: routeEvent,
    clock: systemClock,
    logger: options.logger,
    metrics: options.metrics,
    owner: options.owner,
    deadline: options.deadline,
  };
}

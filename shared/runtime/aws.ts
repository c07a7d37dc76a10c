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
import type { ParseFn, PollDeps } from '../ingest/poll.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { connect } from '../pop3/client.js';
import { SqsJobQueue } from '../queue/sqs-queue.js';
import { AwsSecretResolver } from '../secrets/aws-secrets.js';
import { AwsSecretWriter } from '../secrets/writer.js';
import { DynamoStateStore } from '../state/dynamo-state.js';
import { createS3Client, S3Archive } from '../storage/s3-archive.js';
import type { LambdaEnvironment } from './env.js';

/**
 * mailparser and what it loads (libmime builds iconv-lite's GBK table, linkify-it compiles its TLD
 * regexes) are ~100 ms of the poller bundle's start-up CPU, and a poll that finds no new mail never
 * parses. So the parser is loaded at the first parse, once per container. (While shared/ingest/poll.ts
 * imports a value from mail/parse.ts, the bundle loads it at start-up anyway and this only resolves an
 * already-loaded module.)
 */
let mailParser: Promise<typeof import('../mail/parse.js')> | undefined;
const parseLazily: ParseFn = async (input, deps) => {
  mailParser ??= import('../mail/parse.js');
  return (await mailParser).parseMessage(input, deps);
};

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
    parse: parseLazily,
    route: routeEvent,
    clock: systemClock,
    logger: options.logger,
    metrics: options.metrics,
    owner: options.owner,
    deadline: options.deadline,
  };
}

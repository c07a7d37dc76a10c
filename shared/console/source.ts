/**
 * Where the console reads from. Local mode: the data directory of a config (the same LocalArchive,
 * LocalStateStore and LocalJobQueue `pophook poll` uses). AWS mode: the S3 bucket and DynamoDB table of
 * a deployed stack, with the user's own AWS credentials (the SDK's default chain); replay needs the
 * delivery queue's URL, and the delivery Lambda sends what it enqueues.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { PophookConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { SqsJobQueue } from '../queue/sqs-queue.js';
import { deliverDue, type LocalRuntime } from '../runtime/local.js';
import { DynamoStateStore } from '../state/dynamo-state.js';
import { createS3Client, S3Archive } from '../storage/s3-archive.js';
import type { ConsoleSource } from './data.js';

/** The console over a local runtime (createLocalRuntime); replays are delivered at once. */
export function localConsoleSource(runtime: LocalRuntime): ConsoleSource {
  return {
    mode: 'local',
    description: runtime.dataDir,
    config: runtime.config,
    archive: runtime.archive,
    state: runtime.state,
    queue: runtime.queue,
    deliverDue: (signal) => deliverDue(runtime, { signal }),
    clock: runtime.clock,
    logger: runtime.logger,
  };
}

export interface AwsConsoleOptions {
  config: PophookConfig;
  /** The archive bucket of the deployed stack. */
  bucket: string;
  /** The state table of the deployed stack. */
  table: string;
  /** The delivery queue URL; without it the console is read-only (no replay). */
  queueUrl?: string;
  region?: string;
  /** Key prefix inside the bucket, when the stack uses one. */
  prefix?: string;
  /** Endpoint overrides (emulators in tests). */
  endpoints?: { s3?: string; dynamodb?: string; sqs?: string };
  /** Explicit credentials (emulators); by default the SDK's chain (env, profile, SSO, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  logger?: Logger;
}

/** The console over a deployed stack's bucket and table. Clients use the default credential chain. */
export function awsConsoleSource(options: AwsConsoleOptions): ConsoleSource {
  const region = options.region ?? options.config.aws.region;
  const base = {
    ...(region ? { region } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
  };
  const s3 = createS3Client({
    ...base,
    ...(options.endpoints?.s3 ? { endpoint: options.endpoints.s3, forcePathStyle: true } : {}),
  });
  const dynamo = new DynamoDBClient({
    ...base,
    ...(options.endpoints?.dynamodb ? { endpoint: options.endpoints.dynamodb } : {}),
  });
  const archive = new S3Archive({
    client: s3,
    bucket: options.bucket,
    ...(options.prefix ? { prefix: options.prefix } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
  const state = new DynamoStateStore({ client: dynamo, tableName: options.table });
  const queue = options.queueUrl
    ? new SqsJobQueue({
        client: new SQSClient({
          ...base,
          ...(options.endpoints?.sqs ? { endpoint: options.endpoints.sqs } : {}),
        }),
        queueUrl: options.queueUrl,
        ...(options.logger ? { logger: options.logger } : {}),
      })
    : undefined;
  return {
    mode: 'aws',
    description: `s3://${options.bucket}${options.prefix ? `/${options.prefix}` : ''} + DynamoDB ${options.table}`,
    config: options.config,
    archive,
    state,
    ...(queue ? { queue } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  };
}

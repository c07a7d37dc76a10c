/**
 * Sets a Lambda function's environment for a test file and restores exactly what was there before
 * (handlers read process.env once, at module load, through shared/runtime/env.ts).
 */
export function setLambdaEnv(values: Record<string, string>): () => void {
  const saved = new Map(Object.keys(values).map((k) => [k, process.env[k]]));
  Object.assign(process.env, values);
  return () => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

export const TABLE = 'pophook-state';
export const QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/pophook-deliveries';

/**
 * The environment both handlers get in these tests: the deployed variables pointed at s3rver and
 * dynalite (s3rver's fixed key pair; dynalite accepts any), with the SQS queue mocked by QUEUE_URL.
 */
export function emulatorEnv(
  config: unknown,
  s3: { bucket: string; endpoint: string },
  dynamo: { endpoint: string },
): Record<string, string> {
  return {
    CONFIG_JSON: JSON.stringify(config),
    ARCHIVE_BUCKET: s3.bucket,
    QUEUE_URL,
    STATE_TABLE: TABLE,
    LOG_LEVEL: 'error',
    AWS_ENDPOINT_URL_S3: s3.endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
  };
}

/**
 * The one module that reads `process.env`. Lambda handlers and the CLI call these once at start-up;
 * everything else receives typed values.
 */

import * as z from 'zod/mini';
import { parseConfig } from '../config/parse.js';
import type { PophookConfig } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { LogLevel } from '../log.js';
import '../zod.js';

const LambdaEnv = z.object({
  CONFIG_JSON: z.string().check(z.minLength(2)),
  ARCHIVE_BUCKET: z.string().check(z.minLength(3)),
  QUEUE_URL: z.string().check(z.url()),
  STATE_TABLE: z.string().check(z.minLength(1)),
  AWS_REGION: z.optional(z.string().check(z.minLength(1))),
  LOG_LEVEL: z.optional(z.enum(['debug', 'info', 'warn', 'error'])),
});

export interface LambdaEnvironment {
  config: PophookConfig;
  bucket: string;
  queueUrl: string;
  tableName: string;
  region: string | undefined;
  logLevel: LogLevel;
}

export function readLambdaEnv(env: NodeJS.ProcessEnv = process.env): LambdaEnvironment {
  const parsed = LambdaEnv.safeParse(env);
  if (!parsed.success) {
    const names = parsed.error.issues.map((i) => i.path.join('.')).join(', ');
    throw new ConfigError(`Function environment is incomplete or invalid (${names}); redeploy the stack.`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(parsed.data.CONFIG_JSON);
  } catch (err) {
    throw new ConfigError('CONFIG_JSON is not valid JSON; redeploy the stack.', { cause: err });
  }
  return {
    config: parseConfig(raw, 'CONFIG_JSON'),
    bucket: parsed.data.ARCHIVE_BUCKET,
    queueUrl: parsed.data.QUEUE_URL,
    tableName: parsed.data.STATE_TABLE,
    region: parsed.data.AWS_REGION,
    logLevel: parsed.data.LOG_LEVEL ?? 'info',
  };
}

/** What the CLI and local mode read from the environment. */
export interface CliEnvironment {
  configPath: string | undefined;
  noColor: boolean;
  ci: boolean;
  logLevel: LogLevel | undefined;
  /** Passed to the local secret resolver (POPHOOK_SECRET_<NAME>). */
  env: Readonly<Record<string, string | undefined>>;
}

export function readCliEnv(env: NodeJS.ProcessEnv = process.env): CliEnvironment {
  const level = env.POPHOOK_LOG_LEVEL;
  return {
    configPath: env.POPHOOK_CONFIG || undefined,
    noColor: env.NO_COLOR !== undefined && env.NO_COLOR !== '',
    ci: env.CI === 'true' || env.CI === '1',
    logLevel:
      level === 'debug' || level === 'info' || level === 'warn' || level === 'error' ? level : undefined,
    env: { ...env },
  };
}

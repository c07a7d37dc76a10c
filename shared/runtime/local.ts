/**
 * Local mode: the same poller and delivery code as the Lambda functions, on a single machine, with the
 * archive, state and queue under one data directory (`.pophook/` by default). It is a real deployment,
 * not a toy: everything is durable across restarts and crashes, and the same invariants hold.
 *
 *   <dataDir>/archive/   raw mail, events and attachments (same key layout as the S3 bucket)
 *   <dataDir>/state/     message records, leases, poll history, delivery attempts
 *   <dataDir>/queue/     delivery jobs (ready, in flight, dead letters)
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CredentialsProvider, createCredentialsProvider } from '../auth/credentials.js';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import type { MailboxConfig, PophookConfig } from '../config/schema.js';
import { type DeliverResult, deliverJob, type QueuedJob } from '../delivery/deliver.js';
import { createWebhookHttp, type WebhookHttp, type WebhookHttpOptions } from '../delivery/http.js';
import { routeEvent } from '../delivery/route.js';
import { drainOnce, type WorkerStats } from '../delivery/worker.js';
import { errorCode } from '../errors.js';
import {
  type PollDeps,
  type PollHooks,
  type PollProgress,
  type PollResult,
  pollMailbox,
} from '../ingest/poll.js';
import { createJsonLogger, type Logger } from '../log.js';
import { parseMessage } from '../mail/parse.js';
import type { Metrics } from '../metrics/metrics.js';
import { connect } from '../pop3/client.js';
import type { Pop3ConnectOptions, Pop3Credentials, Pop3Session } from '../pop3/types.js';
import { LocalJobQueue } from '../queue/local-queue.js';
import { LocalSecretResolver } from '../secrets/local-secrets.js';
import type { SecretResolver } from '../secrets/resolver.js';
import { LocalSecretWriter } from '../secrets/writer.js';
import { LocalStateStore } from '../state/local-state.js';
import type { DeliveryAttempt, PollRecord } from '../state/store.js';
import { LocalArchive } from '../storage/local-archive.js';

/** Archive temp files older than this are crash leftovers and removed when a runtime opens. */
export const STALE_TEMP_MS = 60 * 60 * 1000;
/** Pause between delivery drains when the queue is empty. */
export const LOCAL_DELIVERY_IDLE_MS = 250;

export interface LocalRuntime {
  config: PophookConfig;
  dataDir: string;
  archive: LocalArchive;
  state: LocalStateStore;
  queue: LocalJobQueue;
  secrets: SecretResolver;
  http: WebhookHttp;
  clock: Clock;
  logger: Logger;
  close(): Promise<void>;
}

export interface LocalRuntimeOptions {
  /** Resolves relative `local.dataDir` and `local.secretsFile`. @default process.cwd() at the boundary */
  baseDir?: string;
  /** Environment for POPHOOK_SECRET_<NAME> secrets (process.env at the CLI boundary). */
  env?: Readonly<Record<string, string | undefined>>;
  logger?: Logger;
  clock?: Clock;
  /** Extra trusted CAs for webhook receivers (tests, private CAs). */
  http?: WebhookHttpOptions;
  /** Replaces the credential provider (OAuth providers plug in here). */
  credentials?: (mailbox: MailboxConfig) => Promise<Pop3Credentials>;
}

export async function createLocalRuntime(
  config: PophookConfig,
  options: LocalRuntimeOptions = {},
): Promise<LocalRuntime & { credentials: (mailbox: MailboxConfig) => Promise<Pop3Credentials> }> {
  const baseDir = options.baseDir ?? '.';
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const dataDir = abs(config.local.dataDir);
  const logger = options.logger ?? createJsonLogger();
  const clock = options.clock ?? systemClock;
  const archive = new LocalArchive({ dir: join(dataDir, 'archive'), logger, clock });
  const state = new LocalStateStore({ dir: join(dataDir, 'state'), clock });
  const queue = new LocalJobQueue({ dir: join(dataDir, 'queue'), clock, logger });
  const secrets = new LocalSecretResolver({
    ...(config.local.secretsFile ? { file: abs(config.local.secretsFile) } : {}),
    env: options.env ?? {},
    logger,
  });
  // Temp files a killed run left behind (never visible as archive objects or jobs); an hour is far
  // longer than any write in progress by another process sharing this data directory.
  await archive
    .cleanupTemp(STALE_TEMP_MS)
    .catch((err: unknown) => logger.warn('Temp cleanup failed', { err }));
  await queue
    .cleanupTemp(STALE_TEMP_MS)
    .catch((err: unknown) => logger.warn('Queue temp cleanup failed', { err }));
  const http = createWebhookHttp(options.http);
  const credentials =
    options.credentials ??
    createCredentialsProvider({
      secrets,
      ...(config.local.secretsFile
        ? {
            secretWriter: new LocalSecretWriter({
              file: abs(config.local.secretsFile),
              env: options.env ?? {},
            }),
          }
        : {}),
      clock,
      logger,
    });
  return {
    config,
    dataDir,
    archive,
    state,
    queue,
    secrets,
    http,
    clock,
    logger,
    credentials,
    close: () => http.close(),
  };
}

function isProvider(fn: unknown): fn is CredentialsProvider {
  return typeof fn === 'function' && 'tokenExpiresAt' in fn && 'invalidate' in fn;
}

/** A lease owner unique to this run: host, process and a random suffix. */
export function leaseOwner(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

export interface LocalPollOptions {
  signal?: AbortSignal;
  onProgress?: (progress: PollProgress) => void;
  hooks?: PollHooks;
  metrics?: Metrics;
  connectOptions?: Partial<Pop3ConnectOptions>;
  /** Replaces the POP3 connect function (fault-injecting proxies in tests). */
  connect?: (options: Pop3ConnectOptions) => Promise<Pop3Session>;
}

export function pollDeps(
  runtime: LocalRuntime & { credentials: (mailbox: MailboxConfig) => Promise<Pop3Credentials> },
  options: LocalPollOptions = {},
): PollDeps {
  return {
    config: runtime.config,
    archive: runtime.archive,
    state: runtime.state,
    queue: runtime.queue,
    connect: options.connect ?? connect,
    credentials: runtime.credentials,
    ...(isProvider(runtime.credentials)
      ? {
          credentialsExpireAt: (m: MailboxConfig) =>
            (runtime.credentials as CredentialsProvider).tokenExpiresAt(m),
          onAuthFailure: (m: MailboxConfig) => (runtime.credentials as CredentialsProvider).invalidate(m),
        }
      : {}),
    parse: parseMessage,
    route: routeEvent,
    clock: runtime.clock,
    logger: runtime.logger,
    owner: leaseOwner(),
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.hooks ? { hooks: options.hooks } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.connectOptions ? { connectOptions: options.connectOptions } : {}),
  };
}

/** Polls the given mailboxes (all by default) one after another. */
export async function pollLocal(
  runtime: LocalRuntime & { credentials: (mailbox: MailboxConfig) => Promise<Pop3Credentials> },
  mailboxIds: readonly string[] | undefined,
  options: LocalPollOptions = {},
): Promise<PollResult[]> {
  const ids = mailboxIds ?? runtime.config.mailboxes.map((m) => m.id);
  const results: PollResult[] = [];
  for (const id of ids) {
    if (options.signal?.aborted) break;
    results.push(await pollMailbox(id, pollDeps(runtime, options)));
  }
  return results;
}

export function localDeliver(
  runtime: LocalRuntime,
  metrics?: Metrics,
): (job: QueuedJob) => Promise<DeliverResult> {
  return (job) =>
    deliverJob(job, {
      config: runtime.config,
      archive: runtime.archive,
      log: runtime.state,
      http: runtime.http,
      clock: runtime.clock,
      logger: runtime.logger,
      random: Math.random,
      resolveSecret: (ref) => runtime.secrets.resolve(ref),
      ...(metrics ? { metrics } : {}),
    });
}

/** Delivers until the queue has nothing due (or `signal` aborts). */
export async function deliverDue(
  runtime: LocalRuntime,
  options: { signal?: AbortSignal; metrics?: Metrics } = {},
): Promise<WorkerStats> {
  const total: WorkerStats = { received: 0, delivered: 0, retried: 0, failed: 0, other: 0 };
  const deliver = localDeliver(runtime, options.metrics);
  while (!options.signal?.aborted) {
    const stats = await drainOnce({ queue: runtime.queue, deliver, logger: runtime.logger });
    for (const k of Object.keys(total) as (keyof WorkerStats)[]) total[k] += stats[k];
    if (stats.received === 0) break;
  }
  return total;
}

export type LocalPipelineEvent =
  | { type: 'poll'; poll: PollRecord }
  | { type: 'delivery'; attempt: DeliveryAttempt };

/**
 * `pophook dev`: polls every mailbox every `intervalMs` and delivers continuously, until `signal`
 * aborts. On abort the current message is finished (or left for the next run), the session QUITs and
 * the lease is released; nothing is lost either way.
 */
export async function runLocalPipeline(
  config: PophookConfig,
  options: {
    intervalMs: number;
    signal: AbortSignal;
    logger?: Logger;
    onEvent?: (event: LocalPipelineEvent) => void;
    env?: Readonly<Record<string, string | undefined>>;
    baseDir?: string;
    http?: WebhookHttpOptions;
  },
): Promise<void> {
  const runtime = await createLocalRuntime(config, {
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.env ? { env: options.env } : {}),
    ...(options.baseDir ? { baseDir: options.baseDir } : {}),
    ...(options.http ? { http: options.http } : {}),
  });
  const { signal } = options;
  const seenAttempts = new Set<string>();
  const pollLoop = async () => {
    while (!signal.aborted) {
      for (const result of await pollLocal(runtime, undefined, { signal }).catch((err: unknown) => {
        runtime.logger.error('Local poll loop failed', { errorCode: errorCode(err), err });
        return [] as PollResult[];
      })) {
        const poll = await runtime.state.lastPoll(result.mailboxId);
        if (poll) options.onEvent?.({ type: 'poll', poll });
      }
      await sleep(options.intervalMs, undefined, { signal }).catch(() => {});
    }
  };
  const deliveryLoop = async () => {
    const deliver = localDeliver(runtime);
    while (!signal.aborted) {
      const stats = await drainOnce({
        queue: runtime.queue,
        logger: runtime.logger,
        deliver: async (job) => {
          const result = await deliver(job);
          if (options.onEvent) {
            const attempts = await runtime.state.listAttempts(job.messageKey);
            for (const attempt of attempts) {
              const id = `${attempt.endpointId}#${attempt.attempt}#${attempt.at}`;
              if (attempt.endpointId !== job.endpointId || seenAttempts.has(id)) continue;
              seenAttempts.add(id);
              options.onEvent({ type: 'delivery', attempt });
            }
          }
          return result;
        },
      }).catch((err: unknown) => {
        runtime.logger.error('Local delivery loop failed', { errorCode: errorCode(err), err });
        return undefined;
      });
      if (!stats || stats.received === 0)
        await sleep(LOCAL_DELIVERY_IDLE_MS, undefined, { signal }).catch(() => {});
    }
  };
  try {
    await Promise.all([pollLoop(), deliveryLoop()]);
  } finally {
    await runtime.close();
  }
}

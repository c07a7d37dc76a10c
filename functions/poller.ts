/**
 * Poller Lambda, invoked by EventBridge Scheduler with `{ "mailboxId": "..." }` (one schedule per
 * mailbox), or with `{}` to poll every mailbox in turn. Each poll takes the mailbox lease, so an
 * overlapping or repeated invocation is a no-op, and stops early enough to QUIT before the deadline.
 */
import type { Context } from 'aws-lambda';
import { errorCode } from '../shared/errors.js';
import { type PollResult, pollMailbox } from '../shared/ingest/poll.js';
import { createJsonLogger } from '../shared/log.js';
import { createPowertoolsMetrics } from '../shared/metrics/powertools.js';
import { awsPollDeps, createAwsRuntime } from '../shared/runtime/aws.js';
import { readLambdaEnv } from '../shared/runtime/env.js';

const env = readLambdaEnv();
const logger = createJsonLogger({ level: env.logLevel, fields: { service: 'pophook', fn: 'poller' } });
const metrics = createPowertoolsMetrics();
const runtime = createAwsRuntime(env, logger);

/** Outcomes that mean "the server asked us to wait" or "another run has it": not failures. */
const QUIET = new Set<PollResult['outcome']>(['ok', 'partial', 'in-use', 'login-delay', 'lease-held']);

export interface PollerEvent {
  mailboxId?: string;
}

export const handler = async (event: PollerEvent, context: Context): Promise<PollResult[]> => {
  const ids = event?.mailboxId ? [event.mailboxId] : env.config.mailboxes.map((m) => m.id);
  const deadline = Date.now() + context.getRemainingTimeInMillis();
  const results: PollResult[] = [];
  try {
    for (const id of ids) {
      const log = logger.child({ requestId: context.awsRequestId });
      const deps = awsPollDeps(env, runtime, { logger: log, metrics, owner: context.awsRequestId, deadline });
      const result = await pollMailbox(id, deps).catch((err: unknown) => {
        log.error('Poll could not start', { mailbox: id, errorCode: errorCode(err), err });
        return undefined;
      });
      if (result) results.push(result);
      log.info('Poll finished', { ...result, mailbox: id });
    }
  } finally {
    metrics.flush();
  }
  const failed = results.filter((r) => !QUIET.has(r.outcome));
  if (failed.length > 0 || results.length < ids.length) {
    // Surfacing the failure makes it count in the function's Errors metric (the poller-errors alarm);
    // nothing is lost: every message not yet safe is simply fetched again next time.
    throw new Error(
      `Poll failed for ${failed.map((r) => `${r.mailboxId} (${r.error?.code ?? 'error'})`).join(', ') || 'a mailbox'}`,
    );
  }
  return results;
};

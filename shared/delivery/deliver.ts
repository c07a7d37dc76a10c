/**
 * One delivery attempt for one job: the core both the SQS handler and the local worker call.
 *
 * Order: endpoint known and enabled? -> run state from the attempt log (already delivered -> skip; a
 * long delay not yet over -> park again without an attempt) -> event from the archive -> payload for
 * this endpoint -> secrets -> sign (webhook-id = job.webhookId, the same on every retry and replay;
 * webhook-timestamp = now) -> POST -> classify -> record the attempt -> outcome.
 *
 * The attempt is recorded after the POST; if recording fails the job fails and is retried, which can
 * send again: at-least-once, with a stable webhook-id the receiver dedupes on. Logs carry endpoint,
 * messageKey and webhookId; never secrets, bodies or URLs' query strings.
 */
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { DeliveryConfig, EndpointConfig, SecretRef } from '../config/schema.js';
import { DeliveryError, errorCode } from '../errors.js';
import { type Logger, registerSecret } from '../log.js';
import type { PophookEvent } from '../mail/event.js';
import type { Metrics } from '../metrics/metrics.js';
import type { DeliveryJob } from '../queue/queue.js';
import { sanitizeForeignText } from '../sanitize.js';
import type { DeliveryAttempt, DeliveryLog } from '../state/store.js';
import type { Archive } from '../storage/archive.js';
import type { WebhookHttp, WebhookResponse } from './http.js';
import { buildPayload } from './payload.js';
import { type Classification, classify, EARLY_ATTEMPT_TOLERANCE_MS, nextDelayMs, runState } from './retry.js';
import { webhookHeaders } from './sign.js';

/**
 * A job as it travels. `replayedAt` is an additive field (proposed for `DeliveryJob`): set by replay
 * with `replay: true`, it starts a fresh run, so only attempts from then on count toward the schedule.
 * A replay without it is treated like the original job.
 */
export type QueuedJob = DeliveryJob & { replayedAt?: string };

/** Validates a queue message body (hostile until parsed: anyone with SendMessage can write one). */
export const DeliveryJobSchema = z
  .object({
    v: z.literal(1),
    webhookId: z.string().regex(/^[A-Za-z0-9_-]{1,200}$/),
    type: z.enum(['email.received', 'email.skipped', 'webhook.test']),
    mailboxId: z.string().min(1).max(100),
    messageKey: z.string().min(1).max(200),
    endpointId: z.string().min(1).max(48),
    eventKey: z.string().max(1024),
    replay: z.boolean().optional(),
    replayedAt: z.iso.datetime().optional(),
  })
  .strict();

/** Parses a queue body into a job; throws DeliveryError JOB_INVALID (permanent) with the reason. */
export function parseJob(body: string): QueuedJob {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new DeliveryError('JOB_INVALID', 'Queue message is not JSON; it cannot be delivered.');
  }
  const result = DeliveryJobSchema.safeParse(raw);
  if (!result.success) {
    const first = result.error.issues[0];
    throw new DeliveryError(
      'JOB_INVALID',
      `Queue message is not a delivery job (${first?.path.join('.') || 'body'}: ${first?.message ?? 'invalid'}).`,
    );
  }
  return result.data as QueuedJob;
}

export type DeliverOutcome = 'delivered' | 'retry' | 'failed' | 'disabled' | 'skipped';

export interface DeliverResult {
  outcome: DeliverOutcome;
  /** For 'retry': how long until the next attempt is due (may exceed one SQS visibility step). */
  delayMs?: number;
  /** The attempt number made, when one was made. */
  attempt?: number;
  status?: number;
  errorCode?: string;
}

export interface DeliverDeps {
  config: { endpoints: readonly EndpointConfig[]; delivery: DeliveryConfig };
  archive: Pick<Archive, 'getBytes' | 'linkFor'>;
  log: DeliveryLog;
  http: WebhookHttp;
  clock: Clock;
  logger: Logger;
  /** In [0, 1); jitter. */
  random: () => number;
  /** Resolves a secret reference to its value (`whsec_...`). */
  resolveSecret: (ref: SecretRef) => Promise<string>;
  metrics?: Metrics;
}

const iso = (ms: number) => new Date(ms).toISOString();

async function loadEvent(job: QueuedJob, deps: DeliverDeps, nowMs: number): Promise<PophookEvent | Json> {
  if (job.type === 'webhook.test') {
    // A synthetic event: lets an operator prove the path (DNS, TLS, signature) without real mail.
    return {
      type: 'webhook.test',
      timestamp: iso(nowMs),
      data: { endpointId: job.endpointId, mailboxId: job.mailboxId, messageKey: job.messageKey, test: true },
    };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse((await deps.archive.getBytes(job.eventKey)).toString('utf8'));
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new DeliveryError('EVENT_UNREADABLE', `Event ${job.eventKey} in the archive is not JSON.`, {
        cause: err,
      });
    }
    throw err;
  }
  const event = parsed as PophookEvent;
  if (event?.type !== job.type || typeof event.data?.eventId !== 'string') {
    throw new DeliveryError('EVENT_MISMATCH', `Event ${job.eventKey} does not match the job (type or id).`);
  }
  return event;
}

type Json = { type: string; timestamp: string; data: Record<string, unknown> };

/** Runs one attempt for `job`. Throws only for infrastructure failures (archive, state store). */
export async function deliverJob(job: QueuedJob, deps: DeliverDeps): Promise<DeliverResult> {
  const { config, log, clock, metrics } = deps;
  const logger = deps.logger.child({
    endpointId: job.endpointId,
    messageKey: job.messageKey,
    webhookId: job.webhookId,
    ...(job.replay ? { replay: true } : {}),
  });
  const endpoint = config.endpoints.find((e) => e.id === job.endpointId);
  if (!endpoint) {
    logger.warn('Endpoint no longer configured; job dropped');
    return { outcome: 'skipped', errorCode: 'ENDPOINT_UNKNOWN' };
  }

  const startMs = clock.now();
  const [state, attempts] = await Promise.all([
    log.getEndpointState(endpoint.id),
    log.listAttempts(job.messageKey),
  ]);
  const since = job.replay && job.replayedAt ? Date.parse(job.replayedAt) : undefined;
  const run = runState(attempts, job, since);
  const attempt = run.attemptsMade + 1;
  const base = { messageKey: job.messageKey, endpointId: endpoint.id, webhookId: job.webhookId };

  if (!endpoint.enabled || state?.disabled) {
    const code = endpoint.enabled ? 'ENDPOINT_DISABLED' : 'ENDPOINT_DISABLED_IN_CONFIG';
    // Recorded so the log (and a later replay) shows what this endpoint never got.
    await log.recordAttempt({
      ...base,
      attempt,
      at: iso(startMs),
      outcome: 'disabled',
      latencyMs: 0,
      errorCode: code,
    });
    logger.info('Endpoint disabled; not sent', { errorCode: code });
    metrics?.add('Deliveries', 1, { Outcome: 'disabled' });
    return { outcome: 'disabled', errorCode: code };
  }
  if (run.finished === 'delivered') {
    logger.info('Already delivered; duplicate job skipped');
    return { outcome: 'skipped', errorCode: 'ALREADY_DELIVERED' };
  }
  if (run.finished === 'failed') {
    // Our schedule is over; the message is cycling toward the DLQ (see retry.requiredMaxReceiveCount).
    return { outcome: 'failed', errorCode: 'RETRIES_EXHAUSTED' };
  }
  if (run.nextAttemptAt !== undefined && startMs < run.nextAttemptAt - EARLY_ATTEMPT_TOLERANCE_MS) {
    // A delay longer than one visibility step, or an early duplicate: park again, no attempt.
    return { outcome: 'retry', delayMs: run.nextAttemptAt - startMs };
  }

  const event = await loadEvent(job, deps, startMs);
  let response: WebhookResponse;
  try {
    const body =
      event.type === 'webhook.test'
        ? JSON.stringify(event)
        : (
            await buildPayload(event as PophookEvent, {
              mode: endpoint.payload,
              delivery: config.delivery,
              archive: deps.archive,
              nowMs: startMs,
            })
          ).body;
    const secrets = await Promise.all(endpoint.secrets.map((ref) => deps.resolveSecret(ref)));
    for (const s of secrets) registerSecret(s);
    const headers = webhookHeaders({
      id: job.webhookId,
      timestamp: Math.floor(clock.now() / 1000),
      body,
      secrets,
    });
    response = await deps.http.post({ endpoint, headers, body });
  } catch (err) {
    // Payload links, secrets or signing failed: nothing was sent. Counted as an attempt, so a broken
    // secret shows up in the attempt log and the schedule gives an operator time to fix it.
    response = {
      errorCode: errorCode(err),
      snippet: sanitizeForeignText(String((err as Error).message)),
      latencyMs: 0,
    };
  }

  const nowMs = clock.now();
  const verdict: Classification = classify(response, nowMs);
  const record: DeliveryAttempt = {
    ...base,
    attempt,
    at: iso(startMs),
    outcome: 'delivered',
    latencyMs: response.latencyMs,
    ...(response.status !== undefined ? { status: response.status } : {}),
    ...(response.snippet ? { response: response.snippet } : {}),
  };
  const fields = { attempt, status: response.status, latencyMs: response.latencyMs };
  if (response.status !== undefined)
    metrics?.add('DeliveryLatency', response.latencyMs, { EndpointId: endpoint.id });

  if (verdict.kind === 'success') {
    await log.recordAttempt(record);
    logger.info('Webhook delivered', fields);
    metrics?.add('Deliveries', 1, { Outcome: 'delivered' });
    metrics?.add('RetryDepth', attempt - 1);
    return { outcome: 'delivered', attempt, ...(response.status ? { status: response.status } : {}) };
  }

  if (verdict.kind === 'disable') {
    await log.setEndpointState({
      endpointId: endpoint.id,
      disabled: true,
      disabledAt: iso(nowMs),
      disabledReason: verdict.reason,
    });
    await log.recordAttempt({ ...record, outcome: 'disabled', errorCode: 'HTTP_410' });
    logger.error('Endpoint disabled by receiver (410 Gone); re-enable it to resume', fields);
    metrics?.add('EndpointDisabled', 1, { EndpointId: endpoint.id });
    metrics?.add('Deliveries', 1, { Outcome: 'disabled' });
    return { outcome: 'disabled', attempt, status: 410, errorCode: 'HTTP_410' };
  }

  const delayMs = nextDelayMs({
    attempt,
    schedule: config.delivery.retryScheduleSeconds,
    random: deps.random,
    ...(verdict.retryAfterMs !== undefined ? { retryAfterMs: verdict.retryAfterMs } : {}),
  });
  const code = verdict.errorCode;
  if (delayMs === undefined) {
    await log.recordAttempt({ ...record, outcome: 'failed', errorCode: code });
    logger.error('Webhook delivery failed after the last attempt; dead-lettered', {
      ...fields,
      errorCode: code,
    });
    metrics?.add('Deliveries', 1, { Outcome: 'failed' });
    return {
      outcome: 'failed',
      attempt,
      errorCode: code,
      ...(response.status ? { status: response.status } : {}),
    };
  }
  const nextAttemptAt = iso(nowMs + delayMs);
  await log.recordAttempt({
    ...record,
    outcome: code === 'SSRF_BLOCKED' ? 'blocked' : 'retry',
    errorCode: code,
    nextAttemptAt,
  });
  logger.warn('Webhook attempt failed; will retry', { ...fields, errorCode: code, nextAttemptAt });
  metrics?.add('Deliveries', 1, { Outcome: 'retry' });
  return {
    outcome: 'retry',
    delayMs,
    attempt,
    errorCode: code,
    ...(response.status ? { status: response.status } : {}),
  };
}

/**
 * What one HTTP outcome means, and when to try again (Standard Webhooks "operational considerations").
 *
 * - 2xx: delivered.
 * - 410 Gone: the receiver asks us to stop: disable the endpoint until an operator re-enables it.
 * - 429 / 503 with Retry-After: wait at least that long (capped), never less than the schedule says.
 * - Anything else (3xx: redirects are never followed; 4xx; 5xx; timeouts; resets; refused; TLS; SSRF
 *   refusals): retry per `DeliveryConfig.retryScheduleSeconds` with ±10% jitter, then give up
 *   ('failed', dead-letter; replay brings it back).
 *
 * Attempt numbers come from the attempt log (DeliveryLog), not SQS `ApproximateReceiveCount`: the
 * receive count also grows when Lambda is throttled, when a long delay is split into several
 * visibility steps (SQS caps one at 12 h), on duplicate deliveries, and it does not exist in the local
 * queue. The log records what the receiver actually saw, which is what the schedule is about.
 */
import type { DeliveryAttempt } from '../state/store.js';

/** SQS refuses a visibility timeout beyond 12 h counted from the receive. */
export const SQS_MAX_VISIBILITY_SECONDS = 12 * 3600;
/**
 * The longest single visibility step we ask for. The 12 h cap counts from when Lambda received the
 * message, which is before our code runs; keep back a Lambda's maximum run time (15 min) so the call is
 * never rejected.
 */
export const MAX_VISIBILITY_STEP_SECONDS = SQS_MAX_VISIBILITY_SECONDS - 15 * 60;
/** Longest Retry-After we honour: a receiver cannot park a message longer than our longest step. */
export const MAX_RETRY_AFTER_SECONDS = 24 * 3600;
/** ±10% spreads retries of a burst that failed together so they do not return together. */
export const JITTER_FRACTION = 0.1;
/**
 * A message that comes back this much before its next attempt is due is still attempted: visibility
 * is whole seconds and Lambdas' clocks differ slightly; parking it again for a few hundred ms would
 * cost a receive for nothing.
 */
export const EARLY_ATTEMPT_TOLERANCE_MS = 2000;
/** Receives beyond the schedule's own need, for Lambda throttling and duplicate deliveries. */
export const RECEIVE_COUNT_SLACK = 5;

export interface HttpOutcome {
  /** HTTP status when a response arrived. */
  status?: number;
  /** Raw Retry-After header value. */
  retryAfter?: string;
  /** Stable error code when no response arrived (TIMEOUT, CONNECTION_RESET, SSRF_BLOCKED, ...). */
  errorCode?: string;
}

export type Classification =
  | { kind: 'success' }
  | { kind: 'disable'; reason: string }
  | { kind: 'retry'; errorCode: string; retryAfterMs?: number };

/** Parses Retry-After: delta-seconds or an HTTP date. Returns ms from now, capped; undefined if absent/bad. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (!text) return undefined;
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    // Only an HTTP date (it has a day or month name); Date.parse would read "-5" as the year -5.
    if (!/[A-Za-z]/.test(text)) return undefined;
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = at - nowMs;
  }
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_SECONDS * 1000);
}

/** Maps one HTTP outcome to success, disable, or retry (with the receiver's Retry-After, if honoured). */
export function classify(outcome: HttpOutcome, nowMs: number): Classification {
  const { status } = outcome;
  if (status === undefined) return { kind: 'retry', errorCode: outcome.errorCode ?? 'NETWORK_ERROR' };
  if (status >= 200 && status < 300) return { kind: 'success' };
  if (status === 410) return { kind: 'disable', reason: 'receiver answered 410 Gone' };
  const errorCode = status >= 300 && status < 400 ? 'HTTP_REDIRECT' : `HTTP_${status}`;
  if (status === 429 || status === 503) {
    const retryAfterMs = parseRetryAfter(outcome.retryAfter, nowMs);
    return retryAfterMs === undefined
      ? { kind: 'retry', errorCode }
      : { kind: 'retry', errorCode, retryAfterMs };
  }
  return { kind: 'retry', errorCode };
}

/**
 * Delay before the attempt after `attempt` (1-based), or undefined when `attempt` was the last one.
 * The schedule is jittered by ±JITTER_FRACTION using `random()` in [0, 1); a Retry-After is a floor.
 */
export function nextDelayMs(args: {
  attempt: number;
  schedule: readonly number[];
  random: () => number;
  retryAfterMs?: number;
}): number | undefined {
  const base = args.schedule[args.attempt - 1];
  if (base === undefined) return undefined;
  const jitter = 1 + (args.random() * 2 - 1) * JITTER_FRACTION;
  const jittered = Math.round(base * 1000 * jitter);
  return Math.max(jittered, args.retryAfterMs ?? 0, 0);
}

/** Total attempts a schedule allows: the first plus one per delay. */
export function maxAttempts(schedule: readonly number[]): number {
  return schedule.length + 1;
}

/** Whole seconds for one SQS visibility step toward `delayMs`: rounded up, capped at the 12 h limit. */
export function visibilityStepSeconds(delayMs: number): number {
  return Math.min(Math.max(0, Math.ceil(delayMs / 1000)), MAX_VISIBILITY_STEP_SECONDS);
}

/**
 * The `maxReceiveCount` the delivery queue's redrive policy needs so SQS never dead-letters a message
 * our schedule still wants to try: one receive per attempt, plus one per extra visibility step for a
 * delay (jitter included) longer than a step, plus slack for throttling. When our own logic says
 * 'failed', the handler sets visibility 0 and reports failure, so the message cycles (no HTTP, one log
 * read per cycle) until SQS moves it to the DLQ at this count. The CDK must use this function rather
 * than `schedule.length + 1`, which is too low as soon as one step exceeds ~11.75 h.
 */
export function requiredMaxReceiveCount(schedule: readonly number[]): number {
  let receives = maxAttempts(schedule);
  for (const seconds of schedule) {
    const longest = Math.ceil(seconds * (1 + JITTER_FRACTION));
    receives += Math.ceil(longest / MAX_VISIBILITY_STEP_SECONDS) - 1;
  }
  return receives + RECEIVE_COUNT_SLACK;
}

/** Outcomes that end a run: after one of these the job is finished (until a replay starts a new run). */
const TERMINAL = new Set<DeliveryAttempt['outcome']>(['delivered', 'failed']);

export interface RunState {
  /** Attempts of this run so far that reached (or tried to reach) the receiver. */
  attemptsMade: number;
  /** The terminal outcome already recorded for this run, if any (a redelivered SQS message). */
  finished?: 'delivered' | 'failed';
  /** When the next attempt is due, from the last recorded attempt. */
  nextAttemptAt?: number;
}

/**
 * Reconstructs the state of one (message, endpoint, webhook-id) run from the attempt log. A replay run
 * (`since`) only counts attempts at or after the replay was requested.
 */
const byTimeThenAttempt = (a: DeliveryAttempt, b: DeliveryAttempt) =>
  Date.parse(a.at) - Date.parse(b.at) || a.attempt - b.attempt;

export function runState(
  attempts: readonly DeliveryAttempt[],
  job: { endpointId: string; webhookId: string },
  since?: number,
): RunState {
  // A loop rather than filter/filter/sort: this runs for every job, usually over no or few attempts.
  const mine: DeliveryAttempt[] = [];
  for (const a of attempts) {
    if (a.endpointId !== job.endpointId || a.webhookId !== job.webhookId) continue;
    if (since !== undefined && !(Date.parse(a.at) >= since)) continue;
    mine.push(a);
  }
  if (mine.length > 1) mine.sort(byTimeThenAttempt);
  const state: RunState = { attemptsMade: 0 };
  for (const a of mine) {
    if (TERMINAL.has(a.outcome)) state.finished = a.outcome as 'delivered' | 'failed';
    if (a.outcome === 'retry' || a.outcome === 'blocked') state.attemptsMade++;
  }
  const last = mine.at(-1);
  if (last?.outcome === 'retry' || last?.outcome === 'blocked') {
    if (last.nextAttemptAt) state.nextAttemptAt = Date.parse(last.nextAttemptAt);
  }
  return state;
}

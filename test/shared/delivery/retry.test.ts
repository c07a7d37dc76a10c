import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  classify,
  MAX_RETRY_AFTER_SECONDS,
  MAX_VISIBILITY_STEP_SECONDS,
  maxAttempts,
  nextDelayMs,
  parseRetryAfter,
  requiredMaxReceiveCount,
  runState,
  SQS_MAX_VISIBILITY_SECONDS,
  visibilityStepSeconds,
} from '../../../shared/delivery/retry.js';
import type { DeliveryAttempt } from '../../../shared/state/store.js';

const NOW = Date.parse('2025-06-01T12:00:00Z');

describe('classify', () => {
  it('maps statuses and transport errors to outcomes', () => {
    expect(classify({ status: 200 }, NOW)).toEqual({ kind: 'success' });
    expect(classify({ status: 204 }, NOW)).toEqual({ kind: 'success' });
    expect(classify({ status: 410 }, NOW).kind).toBe('disable');
    expect(classify({ status: 301 }, NOW)).toEqual({ kind: 'retry', errorCode: 'HTTP_REDIRECT' });
    expect(classify({ status: 400 }, NOW)).toEqual({ kind: 'retry', errorCode: 'HTTP_400' });
    expect(classify({ status: 500 }, NOW)).toEqual({ kind: 'retry', errorCode: 'HTTP_500' });
    expect(classify({ errorCode: 'TIMEOUT' }, NOW)).toEqual({ kind: 'retry', errorCode: 'TIMEOUT' });
    expect(classify({}, NOW)).toEqual({ kind: 'retry', errorCode: 'NETWORK_ERROR' });
  });

  it('honours Retry-After on 429 and 503 only', () => {
    expect(classify({ status: 429, retryAfter: '120' }, NOW)).toEqual({
      kind: 'retry',
      errorCode: 'HTTP_429',
      retryAfterMs: 120_000,
    });
    expect(classify({ status: 503, retryAfter: new Date(NOW + 60_000).toUTCString() }, NOW)).toMatchObject({
      retryAfterMs: 60_000,
    });
    expect(classify({ status: 500, retryAfter: '120' }, NOW)).toEqual({
      kind: 'retry',
      errorCode: 'HTTP_500',
    });
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, caps, and ignores junk', () => {
    expect(parseRetryAfter('0', NOW)).toBe(0);
    expect(parseRetryAfter(' 30 ', NOW)).toBe(30_000);
    expect(parseRetryAfter('999999999', NOW)).toBe(MAX_RETRY_AFTER_SECONDS * 1000);
    expect(parseRetryAfter(new Date(NOW - 5000).toUTCString(), NOW)).toBe(0);
    expect(parseRetryAfter('soon', NOW)).toBeUndefined();
    expect(parseRetryAfter('-5', NOW)).toBeUndefined();
    expect(parseRetryAfter(undefined, NOW)).toBeUndefined();
  });
});

describe('nextDelayMs', () => {
  const schedule = [5, 300, 1800];

  it('follows the schedule with at most ±10% jitter, then stops', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (attempt, r) => {
          const base = (schedule[attempt - 1] as number) * 1000;
          const d = nextDelayMs({ attempt, schedule, random: () => r }) as number;
          expect(d).toBeGreaterThanOrEqual(Math.floor(base * 0.9));
          expect(d).toBeLessThanOrEqual(Math.ceil(base * 1.1));
        },
      ),
    );
    expect(nextDelayMs({ attempt: 4, schedule, random: () => 0.5 })).toBeUndefined();
    expect(maxAttempts(schedule)).toBe(4);
  });

  it('treats Retry-After as a floor', () => {
    expect(nextDelayMs({ attempt: 1, schedule, random: () => 0.5, retryAfterMs: 60_000 })).toBe(60_000);
    expect(nextDelayMs({ attempt: 2, schedule, random: () => 0.5, retryAfterMs: 1000 })).toBe(300_000);
  });
});

describe('SQS visibility steps and maxReceiveCount', () => {
  it('never asks SQS for more than its 12 h cap', () => {
    expect(visibilityStepSeconds(1)).toBe(1);
    expect(visibilityStepSeconds(1500)).toBe(2);
    expect(visibilityStepSeconds(86_400_000)).toBe(MAX_VISIBILITY_STEP_SECONDS);
    expect(MAX_VISIBILITY_STEP_SECONDS).toBeLessThan(SQS_MAX_VISIBILITY_SECONDS);
  });

  it('counts a receive per attempt plus one per extra visibility step, plus slack', () => {
    expect(requiredMaxReceiveCount([5, 300])).toBe(3 + 5);
    // Default schedule: 10 attempts; 14 h and 20 h need 2 steps each, 24 h (+10% jitter) needs 3.
    const defaults = [5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400];
    expect(requiredMaxReceiveCount(defaults)).toBe(10 + 1 + 1 + 2 + 5);
    // A step of exactly 11 h + 10% jitter (12.1 h) crosses the cap too.
    expect(requiredMaxReceiveCount([39_600])).toBe(2 + 1 + 5);
  });
});

describe('runState', () => {
  const job = { endpointId: 'ep', webhookId: 'msg_1' };
  const a = (
    at: number,
    outcome: DeliveryAttempt['outcome'],
    extra: Partial<DeliveryAttempt> = {},
  ): DeliveryAttempt => ({
    messageKey: 'k',
    endpointId: 'ep',
    webhookId: 'msg_1',
    attempt: 1,
    at: new Date(at).toISOString(),
    outcome,
    latencyMs: 1,
    ...extra,
  });

  it('counts this endpoint and webhook-id only, and remembers the next due time', () => {
    const log = [
      a(NOW, 'retry', { nextAttemptAt: new Date(NOW + 5000).toISOString() }),
      a(NOW + 5000, 'blocked', { attempt: 2, nextAttemptAt: new Date(NOW + 305_000).toISOString() }),
      a(NOW, 'delivered', { endpointId: 'other' }),
      a(NOW, 'retry', { webhookId: 'msg_2' }),
      a(NOW + 6000, 'disabled'),
    ];
    expect(runState(log, job)).toEqual({ attemptsMade: 2 });
    expect(runState(log.slice(0, 2), job)).toEqual({ attemptsMade: 2, nextAttemptAt: NOW + 305_000 });
  });

  it('reports a finished run, and a replay window starts fresh', () => {
    const log = [a(NOW, 'retry'), a(NOW + 1000, 'failed', { attempt: 2 }), a(NOW + 2000, 'delivered')];
    expect(runState(log.slice(0, 2), job).finished).toBe('failed');
    expect(runState(log, job).finished).toBe('delivered');
    expect(runState(log, job, NOW + 1500)).toEqual({ attemptsMade: 0, finished: 'delivered' });
    expect(runState(log.slice(0, 2), job, NOW + 1500)).toEqual({ attemptsMade: 0 });
  });
});

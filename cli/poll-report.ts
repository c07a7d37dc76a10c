/**
 * One readable line per poll, for `pophook poll` and `pophook dev`. A server asking us to come back later
 * (IN-USE, LOGIN-DELAY) or another pophook run holding the mailbox is not a failure: the line says what
 * happened and that the next poll picks the mail up.
 */
import type { PollResult } from '../shared/ingest/poll.js';
import type { PollRecord } from '../shared/state/store.js';
import { formatBytes, formatDuration } from './output.js';

/** Outcomes that mean "nothing wrong, try again later". */
export const QUIET_OUTCOMES: ReadonlySet<PollRecord['outcome']> = new Set([
  'in-use',
  'login-delay',
  'lease-held',
]);

/** Why a quiet outcome is fine, in one sentence. */
export function explainQuietOutcome(outcome: PollRecord['outcome']): string | undefined {
  if (outcome === 'in-use')
    return 'the server says another client has the mailbox open (IN-USE); the next poll tries again, nothing is lost';
  if (outcome === 'login-delay')
    return 'the server allows a login only every so often (LOGIN-DELAY); the next poll tries again, consider a larger pollEveryMinutes';
  if (outcome === 'lease-held')
    return 'another pophook run is polling this mailbox right now; it will fetch the mail';
  return undefined;
}

interface PollFigures {
  mailboxId: string;
  outcome: PollRecord['outcome'];
  fetched: number;
  bytes: number;
  deleted: number;
  remaining?: number;
  skipped?: number;
  deferred?: number;
  errorMessage?: string;
  durationMs?: number;
}

function describe(p: PollFigures): { line: string; failed: boolean } {
  const took = p.durationMs === undefined ? '' : ` in ${formatDuration(p.durationMs)}`;
  const quiet = explainQuietOutcome(p.outcome);
  if (quiet) return { line: `${p.mailboxId}: not polled: ${quiet}`, failed: false };
  const parts: string[] = [];
  parts.push(p.fetched === 0 ? 'no new mail' : `${p.fetched} new (${formatBytes(p.bytes)})${took}`);
  if (p.fetched === 0 && took) parts[0] = `no new mail${took}`;
  if (p.deleted > 0) parts.push(`${p.deleted} deleted from the server`);
  if (p.skipped) parts.push(`${p.skipped} skipped (over maxMessageBytes)`);
  if (p.deferred) parts.push(`${p.deferred} left for the next poll`);
  if (p.remaining !== undefined && p.remaining > 0) parts.push(`${p.remaining} still on the server`);
  // 'partial' without an error is a budget (maxMessagesPerRun/maxBytesPerRun) reached: not a failure.
  const failed = p.outcome === 'error' || p.errorMessage !== undefined;
  if (failed) {
    const what = p.outcome === 'partial' ? 'stopped early' : 'failed';
    return {
      line: `${p.mailboxId}: ${what}: ${p.errorMessage ?? 'unknown error'}${p.fetched > 0 ? ` (${parts.join(', ')})` : ''}`,
      failed,
    };
  }
  return { line: `${p.mailboxId}: ${parts.join(', ')}`, failed };
}

/** A poll record (what `pophook dev` sees after each poll). */
export function describePollRecord(p: PollRecord): { line: string; failed: boolean } {
  const durationMs = Date.parse(p.finishedAt) - Date.parse(p.startedAt);
  return describe({
    ...p,
    remaining: p.remainingOnServer,
    ...(Number.isFinite(durationMs) ? { durationMs } : {}),
  });
}

/** A poll result (what `pophook poll` gets back). */
export function describePollResult(r: PollResult, durationMs: number): { line: string; failed: boolean } {
  return describe({
    ...r,
    durationMs,
    ...(r.error ? { errorMessage: r.error.message } : {}),
  });
}

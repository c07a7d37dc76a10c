/**
 * `pophook poll`: fetches new mail from each mailbox (archive, parse, enqueue, delete per retention), then
 * delivers every webhook that is due, and prints one line per mailbox. With --watch it keeps going, each
 * mailbox on its own pollEveryMinutes, until Ctrl-C. Exit 0 when every mailbox polled (a server saying
 * "busy, come back later" counts as fine), 3 when some failed, 1 when all failed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MailboxConfig } from '../../shared/config/schema.js';
import type { WorkerStats } from '../../shared/delivery/worker.js';
import { errorCode } from '../../shared/errors.js';
import { emptyPollResult, type PollResult } from '../../shared/ingest/poll.js';
import { deliverDue, pollLocal } from '../../shared/runtime/local.js';
import { type CliContext, EXIT, type ExitCode } from '../context.js';
import { type CliRuntime, loadCliConfig, openRuntime, reclaimDeadLeases, selectMailboxes } from '../local.js';
import { describePollResult, explainQuietOutcome } from '../poll-report.js';

/** In --watch, how often due webhook retries are delivered between polls. */
export const WATCH_DELIVERY_TICK_MS = 5000;

export interface PollOptions {
  config?: string;
  /** Only these mailboxes (default: all). */
  mailbox?: string[];
  /** Keep polling, each mailbox every pollEveryMinutes, until Ctrl-C. */
  watch?: boolean;
  json?: boolean;
}

export interface MailboxPollReport extends PollResult {
  durationMs: number;
  /** The result is a failure (not "busy, later"). */
  failed: boolean;
  /** For in-use, login-delay and lease-held: why that is fine. */
  note?: string;
}

/** Polls the mailboxes one after another with a progress line each; never throws for one mailbox. */
export async function pollWithProgress(
  runtime: CliRuntime,
  mailboxes: readonly MailboxConfig[],
  ctx: CliContext,
  options: { json?: boolean } = {},
): Promise<MailboxPollReport[]> {
  const out = ctx.out;
  const reports: MailboxPollReport[] = [];
  for (const r of await reclaimDeadLeases(
    runtime.state,
    mailboxes.map((m) => m.id),
  ))
    out.info(
      out.errStyle.dim(
        `released the lease on ${r.mailboxId} left by pophook process ${r.pid}, which is no longer running`,
      ),
    );
  for (const mailbox of mailboxes) {
    if (ctx.signal.aborted) break;
    const progress = out.progress(mailbox.id);
    const started = Date.now();
    let result: PollResult;
    try {
      const [polled] = await pollLocal(runtime, [mailbox.id], {
        signal: ctx.signal,
        onProgress: (p) => {
          if (p.phase === 'fetching' || p.phase === 'deleting' || p.phase === 'done')
            progress.setTotals({ messages: p.total, bytes: p.totalBytes });
          progress.update({ messages: p.done, bytes: p.bytes }, p.phase);
        },
      });
      if (!polled) break; // aborted before it started
      result = polled;
    } catch (err) {
      // Infrastructure (state, archive) failed around the poll: report it as this mailbox's failure.
      result = {
        ...emptyPollResult(mailbox.id, 'error'),
        error: {
          code: errorCode(err),
          message: err instanceof Error ? err.message : String(err),
          transient: true,
        },
      };
    } finally {
      progress.done();
    }
    const durationMs = Date.now() - started;
    const { line, failed } = describePollResult(result, durationMs);
    const note = explainQuietOutcome(result.outcome);
    const report: MailboxPollReport = { ...result, durationMs, failed, ...(note ? { note } : {}) };
    reports.push(report);
    if (options.json) out.print(JSON.stringify({ type: 'poll', at: new Date().toISOString(), ...report }));
    else {
      const s = out.style;
      out.print(failed ? s.red(line) : note ? s.yellow(line) : line);
      if (result.uidlResetSuspected)
        out.print(
          s.yellow(
            `${mailbox.id}: the server's message ids (UIDL) changed; messages were matched by content, so none was archived twice`,
          ),
        );
    }
  }
  return reports;
}

/** Delivers what is due and prints one summary line (or a JSON line). */
export async function deliverWithSummary(
  runtime: CliRuntime,
  ctx: CliContext,
  options: { json?: boolean; quietWhenIdle?: boolean } = {},
): Promise<WorkerStats> {
  const out = ctx.out;
  const progress = options.json ? undefined : out.progress('deliveries');
  let stats: WorkerStats;
  try {
    stats = await deliverDue(runtime, { signal: ctx.signal });
  } finally {
    progress?.done();
  }
  if (options.quietWhenIdle && stats.received === 0) return stats;
  if (options.json) {
    out.print(JSON.stringify({ type: 'deliveries', at: new Date().toISOString(), ...stats }));
    return stats;
  }
  if (runtime.config.endpoints.length === 0) {
    out.print(out.style.dim('deliveries: no endpoints configured; messages are archived only'));
    return stats;
  }
  out.print(formatDeliveryStats(stats, out.style));
  return stats;
}

export function formatDeliveryStats(
  stats: WorkerStats,
  style: { yellow(s: string): string; red(s: string): string } = { yellow: (s) => s, red: (s) => s },
): string {
  if (stats.received === 0) return 'deliveries: nothing due';
  const parts = [`${stats.delivered} delivered`];
  if (stats.retried)
    parts.push(style.yellow(`${stats.retried} to retry later (pophook poll again, or --watch)`));
  if (stats.failed)
    parts.push(style.red(`${stats.failed} failed for good ("pophook replay --failed" sends them again)`));
  if (stats.other) parts.push(`${stats.other} skipped (already delivered, endpoint disabled or removed)`);
  return `deliveries: ${parts.join(', ')}`;
}

function exitFor(reports: readonly MailboxPollReport[]): ExitCode {
  const failed = reports.filter((r) => r.failed).length;
  if (failed === 0) return EXIT.OK;
  return failed === reports.length ? EXIT.FAILURE : EXIT.PARTIAL;
}

export async function runPoll(opts: PollOptions, ctx: CliContext): Promise<ExitCode> {
  const { config } = await loadCliConfig(opts.config, ctx);
  const mailboxes = selectMailboxes(config, opts.mailbox);
  const runtime = await openRuntime(config, ctx);
  try {
    if (opts.watch) return await watch(runtime, mailboxes, opts, ctx);
    const reports = await pollWithProgress(runtime, mailboxes, ctx, opts);
    if (!ctx.signal.aborted) await deliverWithSummary(runtime, ctx, opts);
    return exitFor(reports);
  } finally {
    await runtime.close();
  }
}

/** --watch: each mailbox every pollEveryMinutes, due deliveries every few seconds, until Ctrl-C. */
async function watch(
  runtime: CliRuntime,
  mailboxes: readonly MailboxConfig[],
  opts: PollOptions,
  ctx: CliContext,
): Promise<ExitCode> {
  const next = new Map(mailboxes.map((m) => [m.id, 0]));
  if (!opts.json) {
    const every = mailboxes.map((m) => `${m.id} every ${m.pollEveryMinutes} min`).join(', ');
    ctx.out.info(ctx.out.errStyle.dim(`watching ${every}; Ctrl-C to stop`));
  }
  while (!ctx.signal.aborted) {
    const now = Date.now();
    const due = mailboxes.filter((m) => (next.get(m.id) ?? 0) <= now);
    for (const m of due) next.set(m.id, now + m.pollEveryMinutes * 60_000);
    if (due.length > 0) await pollWithProgress(runtime, due, ctx, opts);
    if (ctx.signal.aborted) break;
    await deliverWithSummary(runtime, ctx, { ...opts, quietWhenIdle: true });
    const wake = Math.min(...next.values(), Date.now() + WATCH_DELIVERY_TICK_MS);
    await sleep(Math.max(0, wake - Date.now()), undefined, { signal: ctx.signal }).catch(() => undefined);
  }
  if (!opts.json) ctx.out.info('stopped');
  return EXIT.OK;
}

/**
 * `pophook replay`: sends archived messages again, with their ORIGINAL webhook-id, through the same
 * `replay()` the console uses (shared/delivery/replay.ts), then delivers what is due. Select by message
 * keys, a mailbox, a date range, and/or --failed (messages whose last delivery to some endpoint failed
 * for good); --endpoint narrows the targets; --dry-run lists and sends nothing.
 */

import { mapLimit } from '../../shared/concurrency.js';
import { type ReplayedJob, replay } from '../../shared/delivery/replay.js';
import { type CliContext, EXIT, type ExitCode, UsageError } from '../context.js';
import {
  type CliRuntime,
  checkEndpointIds,
  dataDirOf,
  ensureDataDir,
  loadCliConfig,
  openRuntime,
  parseDateOption,
  selectMailboxes,
} from '../local.js';
import {
  allRecords,
  FAILED_OUTCOMES,
  findMessage,
  latestPerEndpoint,
  READ_CONCURRENCY,
} from '../messages.js';
import { deliverWithSummary } from './poll.js';

export interface ReplayOptions {
  config?: string;
  /** Only messages of this mailbox. */
  mailbox?: string;
  /** Only to these endpoints (default: every endpoint the rules route the message to). */
  endpoint?: string[];
  /** Messages whose last delivery to some endpoint failed (to those endpoints only). */
  failed?: boolean;
  /** Only messages received at or after this ISO date. */
  since?: string;
  /** Only messages received at or before this ISO date. */
  until?: string;
  /** List what would be replayed, send nothing. */
  dryRun?: boolean;
  json?: boolean;
}

/** Message key -> endpoints whose latest attempt failed for good, within the selection. */
async function failedDeliveries(
  runtime: CliRuntime,
  mailboxIds: readonly string[],
  since: Date | undefined,
  until: Date | undefined,
  keys: ReadonlySet<string> | undefined,
): Promise<Map<string, string[]>> {
  const records = (await allRecords(runtime, mailboxIds)).filter((r) => {
    const t = Date.parse(r.firstSeenAt);
    return (
      (!keys || keys.has(r.messageKey)) &&
      (!since || t >= since.getTime()) &&
      (!until || t <= until.getTime())
    );
  });
  const failed = new Map<string, string[]>();
  await mapLimit(records, READ_CONCURRENCY, async (r) => {
    const endpoints = latestPerEndpoint(await runtime.state.listAttempts(r.messageKey))
      .filter((d) => FAILED_OUTCOMES.has(d.outcome))
      .map((d) => d.endpointId);
    if (endpoints.length) failed.set(r.messageKey, endpoints);
  });
  return failed;
}

export async function runReplay(messages: string[], opts: ReplayOptions, ctx: CliContext): Promise<ExitCode> {
  const { config } = await loadCliConfig(opts.config, ctx);
  const since = parseDateOption(opts.since, '--since');
  const until = parseDateOption(opts.until, '--until');
  if (opts.mailbox) selectMailboxes(config, [opts.mailbox]);
  checkEndpointIds(config, opts.endpoint);
  if (messages.length === 0 && !opts.mailbox && !since && !until && !opts.failed)
    throw new UsageError(
      'Say what to replay: message keys, --mailbox ID, --since/--until DATE, or --failed (replaying everything needs --since 1970-01-01).',
    );
  await ensureDataDir(dataDirOf(config, ctx.cwd), ctx, false);
  const runtime = await openRuntime(config, ctx, { create: !opts.dryRun });
  try {
    const keys = [];
    for (const m of messages) keys.push((await findMessage(runtime, config, m)).messageKey);
    const mailboxIds = opts.mailbox ? [opts.mailbox] : config.mailboxes.map((m) => m.id);
    const deps = {
      archive: runtime.archive,
      queue: runtime.queue,
      config,
      state: runtime.state,
      logger: ctx.logger,
    };
    const jobs: ReplayedJob[] = [];
    let scanned = 0;

    if (opts.failed) {
      const failed = await failedDeliveries(
        runtime,
        mailboxIds,
        since,
        until,
        keys.length ? new Set(keys) : undefined,
      );
      // One replay per message: each goes only to the endpoints that failed it (and --endpoint, if given).
      for (const [messageKey, endpoints] of failed) {
        const targets = opts.endpoint ? endpoints.filter((e) => opts.endpoint?.includes(e)) : endpoints;
        if (targets.length === 0) continue;
        const result = await replay(
          { messageKeys: [messageKey], endpointIds: targets, dryRun: opts.dryRun === true },
          deps,
        );
        scanned += result.scanned;
        jobs.push(...result.jobs);
      }
    } else {
      const result = await replay(
        {
          ...(keys.length ? { messageKeys: keys } : {}),
          ...(opts.mailbox ? { mailboxId: opts.mailbox } : {}),
          ...(since ? { from: since } : {}),
          ...(until ? { to: until } : {}),
          ...(opts.endpoint ? { endpointIds: opts.endpoint } : {}),
          dryRun: opts.dryRun === true,
        },
        deps,
      );
      scanned = result.scanned;
      jobs.push(...result.jobs);
    }

    const out = ctx.out;
    if (opts.json) {
      out.print(JSON.stringify({ type: 'replay', dryRun: opts.dryRun === true, scanned, jobs }));
    } else {
      const verb = opts.dryRun ? 'would queue' : 'queued';
      for (const j of jobs)
        out.print(
          `${opts.dryRun ? 'would replay' : 'replaying'} ${j.messageKey} (${j.mailboxId}) -> ${j.endpointId}  ${out.style.dim(`webhook-id ${j.webhookId}`)}`,
        );
      const messagesCount = new Set(jobs.map((j) => j.messageKey)).size;
      out.print(
        jobs.length === 0
          ? `nothing to replay (${scanned} archived event${scanned === 1 ? '' : 's'} looked at${opts.failed ? ', no failed deliveries among them' : ''})`
          : `${verb} ${jobs.length} deliver${jobs.length === 1 ? 'y' : 'ies'} of ${messagesCount} message${messagesCount === 1 ? '' : 's'}, with their original webhook-id`,
      );
    }
    if (opts.dryRun || jobs.length === 0) return EXIT.OK;
    const stats = await deliverWithSummary(runtime, ctx, opts);
    const unsuccessful = stats.failed + stats.retried;
    if (unsuccessful === 0) return EXIT.OK;
    return stats.delivered === 0 ? EXIT.FAILURE : EXIT.PARTIAL;
  } finally {
    await runtime.close();
  }
}

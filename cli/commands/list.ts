/**
 * `pophook list`: archived messages, newest first, with how each endpoint's delivery went. Reads the
 * state records of the config's mailboxes (one directory per mailbox), filters and limits them, and
 * only then reads the event JSON and attempt log of the messages it prints.
 */

import { mapLimit } from '../../shared/concurrency.js';
import { routeEvent } from '../../shared/delivery/route.js';
import { sanitizeForeignText } from '../../shared/sanitize.js';
import type { MessageStatus } from '../../shared/state/store.js';
import { type CliContext, displayPath, EXIT, type ExitCode } from '../context.js';
import {
  dataDirOf,
  ensureDataDir,
  loadCliConfig,
  openRuntime,
  parseDateOption,
  selectMailboxes,
} from '../local.js';
import {
  allRecords,
  type EndpointDelivery,
  eventIdOf,
  formatAddress,
  latestPerEndpoint,
  READ_CONCURRENCY,
  readEvent,
} from '../messages.js';
import { formatBytes, type Style } from '../output.js';

/** Characters of the message key shown in the table (show and replay accept any unique prefix). */
export const SHOWN_KEY_CHARS = 12;
/** Subject column width: the table stays readable in a 120-column terminal. */
const SUBJECT_CHARS = 40;
const FROM_CHARS = 28;

export interface ListOptions {
  config?: string;
  mailbox?: string;
  /** Only messages in this state (seen, archived, enqueued, deleted, skipped). */
  status?: MessageStatus;
  /** Only messages first seen at or after this ISO date. */
  since?: string;
  limit: number;
  json?: boolean;
}

export interface ListedMessage {
  messageKey: string;
  eventId: string;
  mailboxId: string;
  status: MessageStatus;
  receivedAt: string;
  date: string | null;
  from: string;
  subject: string | null;
  size: number | null;
  attachments: number;
  rawKey: string | null;
  /** Per endpoint: the latest attempt, or `queued` when routed but not attempted yet. */
  deliveries: (EndpointDelivery | { endpointId: string; outcome: 'queued'; attempts: 0 })[];
}

const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function deliveryCell(d: ListedMessage['deliveries'][number], style: Style): string {
  const detail =
    'status' in d && d.status ? ` ${d.status}` : 'errorCode' in d && d.errorCode ? ` ${d.errorCode}` : '';
  const text = `${d.endpointId}:${d.outcome}${d.outcome === 'delivered' ? '' : detail}`;
  if (d.outcome === 'delivered') return style.green(text);
  if (d.outcome === 'retry' || d.outcome === 'queued') return style.yellow(text);
  return style.red(text);
}

export async function runList(opts: ListOptions, ctx: CliContext): Promise<ExitCode> {
  const { config } = await loadCliConfig(opts.config, ctx);
  const mailboxes = selectMailboxes(config, opts.mailbox ? [opts.mailbox] : undefined);
  const since = parseDateOption(opts.since, '--since');
  const dataDir = dataDirOf(config, ctx.cwd);
  if (!(await ensureDataDir(dataDir, ctx, false))) {
    ctx.out.info(
      `No messages yet: ${displayPath(dataDir, ctx.cwd)} does not exist; "pophook poll" fetches mail.`,
    );
    return EXIT.OK;
  }
  const runtime = await openRuntime(config, ctx, { create: false });
  try {
    let records = await allRecords(
      runtime,
      mailboxes.map((m) => m.id),
    );
    const total = records.length;
    if (opts.status) records = records.filter((r) => r.status === opts.status);
    if (since) records = records.filter((r) => Date.parse(r.firstSeenAt) >= since.getTime());
    records.sort(
      (a, b) => b.firstSeenAt.localeCompare(a.firstSeenAt) || a.messageKey.localeCompare(b.messageKey),
    );
    const matching = records.length;
    records = records.slice(0, opts.limit);
    const enabled = config.endpoints.filter((e) => e.enabled);

    const rows: ListedMessage[] = await mapLimit(records, READ_CONCURRENCY, async (record) => {
      const [event, attempts] = await Promise.all([
        readEvent(runtime, record),
        runtime.state.listAttempts(record.messageKey),
      ]);
      const latest = latestPerEndpoint(attempts);
      const deliveries: ListedMessage['deliveries'] = [...latest];
      if (
        event &&
        (record.status === 'enqueued' || record.status === 'deleted' || record.status === 'skipped')
      )
        for (const endpointId of routeEvent(event, enabled))
          if (!latest.some((d) => d.endpointId === endpointId))
            deliveries.push({ endpointId, outcome: 'queued', attempts: 0 });
      const received = event?.type === 'email.received' ? event.data : undefined;
      return {
        messageKey: record.messageKey,
        eventId: eventIdOf(record),
        mailboxId: record.mailboxId,
        status: record.status,
        receivedAt: record.firstSeenAt,
        date: received?.date ?? null,
        from: sanitizeForeignText(formatAddress(received?.from), 200),
        subject: received?.subject == null ? null : sanitizeForeignText(received.subject, 500),
        size: record.size ?? (event?.type === 'email.skipped' ? event.data.size : null),
        attachments: received?.attachments.length ?? 0,
        rawKey: record.rawKey ?? null,
        deliveries,
      };
    });

    const more = () => {
      if (matching > rows.length)
        ctx.out.info(
          ctx.out.errStyle.dim(
            `${rows.length} of ${matching} shown; --limit N for more, --json for every field`,
          ),
        );
    };
    if (opts.json) {
      for (const row of rows) ctx.out.print(JSON.stringify(row));
      more();
      return EXIT.OK;
    }
    if (rows.length === 0) {
      ctx.out.info(total === 0 ? 'No messages yet; "pophook poll" fetches mail.' : 'No messages match.');
      return EXIT.OK;
    }
    const s = ctx.out.style;
    ctx.out.table(
      rows.map((r) => [
        r.receivedAt.slice(0, 16).replace('T', ' '),
        r.mailboxId,
        r.messageKey.slice(0, SHOWN_KEY_CHARS),
        cut(r.from || '-', FROM_CHARS),
        cut(r.status === 'skipped' ? '(skipped: too large)' : (r.subject ?? '(no subject)'), SUBJECT_CHARS),
        r.size === null ? '-' : formatBytes(r.size),
        r.attachments ? String(r.attachments) : '-',
        r.status,
        r.deliveries.length ? r.deliveries.map((d) => deliveryCell(d, s)).join(' ') : s.dim('-'),
      ]),
      {
        header: [
          'RECEIVED (UTC)',
          'MAILBOX',
          'KEY',
          'FROM',
          'SUBJECT',
          'SIZE',
          'ATT',
          'STATUS',
          'DELIVERIES',
        ],
      },
    );
    more();
    return EXIT.OK;
  } finally {
    await runtime.close();
  }
}

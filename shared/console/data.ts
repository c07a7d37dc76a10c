/**
 * Read models for the console over the same ports everything else uses: the Archive (events, raw
 * mail, attachments), the StateStore (last polls, message records) and the DeliveryLog (attempts,
 * endpoint state). No extra database: the message list is an in-memory index built by listing the
 * event JSONs under `raw/` once, then refreshed incrementally (new keys only; attempts re-read), at
 * most every `maxAgeMs` or when the user asks.
 *
 * Cost: the first build reads every event once (locally ~5,000 events in about a second; on S3 one
 * GET each). Later refreshes list keys (S3: one call per 1,000) and re-read delivery attempts.
 */

import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { mapLimit } from '../concurrency.js';
import type { PophookConfig } from '../config/schema.js';
import { routeEvent } from '../delivery/route.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { Address, AttachmentInfo, EmailReceivedData, PophookEvent } from '../mail/event.js';
import type { JobQueue } from '../queue/queue.js';
import type { DeliveryAttempt, DeliveryLog, EndpointState, PollRecord, StateStore } from '../state/store.js';
import type { Archive } from '../storage/archive.js';

/** Messages per page of the list. */
export const PAGE_SIZE = 50;
/** Attempts per page of the deliveries view. */
export const ATTEMPTS_PAGE_SIZE = 100;
/** Archive keys per list call (S3's maximum page). */
const LIST_PAGE = 1000;
/** Archive and state reads in flight at once while indexing (bounded file descriptors / sockets). */
const INDEX_CONCURRENCY = 32;
/** Background refreshes re-read every message's attempts at least this often (replays made elsewhere). */
const FULL_REFRESH_MS = 5 * 60_000;
/** Characters of body text kept per message for the list preview and search (memory stays ~1 KB/message). */
const SNIPPET_CHARS = 300;
/** Endpoint health looks at this many most recent attempts. */
const HEALTH_WINDOW = 100;

export type DeliveryStatus = 'delivered' | 'pending' | 'retrying' | 'failed' | 'disabled' | 'none';
export const DELIVERY_STATUSES: readonly DeliveryStatus[] = [
  'delivered',
  'pending',
  'retrying',
  'failed',
  'disabled',
  'none',
];

/** What the console reads and (for replay and re-enable) writes. */
export interface ConsoleSource {
  mode: 'local' | 'aws';
  /** Where the data lives, for the page header: a directory, or `s3://bucket` + table. */
  description: string;
  config: PophookConfig;
  archive: Archive;
  state: StateStore & DeliveryLog;
  /** Where replays are enqueued; without it replay is unavailable (read-only console). */
  queue?: JobQueue;
  /** Local mode: delivers due jobs right after a replay, so the result shows at once. */
  deliverDue?: (signal: AbortSignal) => Promise<{ delivered: number; retried: number; failed: number }>;
  clock?: Clock;
  logger?: Logger;
}

/** One row of the message list: what search, filters and the list need, nothing more. */
export interface MessageSummary {
  messageKey: string;
  mailboxId: string;
  eventKey: string;
  rawKey: string | undefined;
  type: PophookEvent['type'];
  receivedAt: string;
  receivedMs: number;
  subject: string;
  from: string;
  to: string;
  attachments: { index: number; filename: string; size: number }[];
  size: number;
  spamFlagged: boolean;
  snippet: string;
  /** Endpoints the current rules route this message to. */
  routed: string[];
  /** Oldest first. */
  attempts: DeliveryAttempt[];
  status: DeliveryStatus;
  /** Lower-cased text that free-text search matches against. */
  haystack: string;
}

export interface MessageQuery {
  q?: string;
  mailbox?: string;
  from?: string;
  to?: string;
  subject?: string;
  /** ISO date or date-time; inclusive. */
  since?: string;
  /** ISO date (inclusive, the whole day) or date-time. */
  until?: string;
  attachments?: 'yes' | 'no';
  status?: DeliveryStatus;
  page?: number;
}

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  pages: number;
}

const formatAddresses = (list: readonly Address[] | undefined): string =>
  (list ?? []).map((a) => (a.name ? `${a.name} <${a.address}>` : a.address)).join(', ');

/** The delivery status of one message from its routed endpoints and its attempts. */
export function deliveryStatus(
  routed: readonly string[],
  attempts: readonly DeliveryAttempt[],
): DeliveryStatus {
  const latest = latestPerEndpoint(attempts);
  const endpoints = new Set([...routed, ...latest.keys()]);
  if (endpoints.size === 0) return 'none';
  const states = [...endpoints].map((id) => {
    const a = latest.get(id);
    if (!a) return 'pending';
    if (a.outcome === 'delivered') return 'delivered';
    if (a.outcome === 'retry' || a.outcome === 'blocked') return 'retrying';
    return a.outcome;
  });
  for (const s of ['failed', 'retrying', 'disabled', 'pending'] as const) if (states.includes(s)) return s;
  return 'delivered';
}

/** The newest attempt per endpoint (attempts are oldest first). */
export function latestPerEndpoint(attempts: readonly DeliveryAttempt[]): Map<string, DeliveryAttempt> {
  const latest = new Map<string, DeliveryAttempt>();
  for (const a of attempts) latest.set(a.endpointId, a);
  return latest;
}

function summarize(
  key: string,
  event: PophookEvent,
  config: PophookConfig,
): Omit<MessageSummary, 'attempts' | 'status'> {
  const d = event.data;
  const received = event.type === 'email.received' ? (d as EmailReceivedData) : undefined;
  const subject = received?.subject ?? (event.type === 'email.skipped' ? '(skipped: too large)' : '');
  const from = formatAddresses(received?.from);
  const to = formatAddresses([...(received?.to ?? []), ...(received?.cc ?? [])]);
  // Inline parts (logos in HTML) are not what "has attachments" means to a reader.
  const attachments = (received?.attachments ?? [])
    .filter((a: AttachmentInfo) => a.disposition !== 'inline')
    .map((a: AttachmentInfo) => ({
      index: a.index,
      filename: a.filename ?? `attachment-${a.index}`,
      size: a.size,
    }));
  const snippet = (received?.text ?? '').replace(/\s+/g, ' ').trim().slice(0, SNIPPET_CHARS);
  let routed: string[] = [];
  try {
    routed = routeEvent(event, config.endpoints);
  } catch {
    // A bad rule is reported by config validation; the list still shows the message.
  }
  const receivedMs = Date.parse(d.receivedAt);
  return {
    messageKey: d.messageKey,
    mailboxId: d.mailboxId,
    eventKey: key,
    rawKey: received?.raw?.key,
    type: event.type,
    receivedAt: d.receivedAt,
    receivedMs: Number.isNaN(receivedMs) ? 0 : receivedMs,
    subject,
    from,
    to,
    attachments,
    size: received?.raw?.size ?? (event.type === 'email.skipped' ? event.data.size : 0),
    spamFlagged: received?.spam?.flagged === true,
    snippet,
    routed,
    haystack: [
      subject,
      from,
      to,
      snippet,
      d.messageKey,
      received?.messageId ?? '',
      d.mailboxId,
      ...attachments.map((a) => a.filename),
    ]
      .join('\n')
      .toLowerCase(),
  };
}

/** Start (ms) of a since-filter value; end (ms, inclusive) of an until-filter value. */
export function parseDateFilter(value: string | undefined, edge: 'start' | 'end'): number | undefined {
  if (!value) return undefined;
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(value);
  const ms = Date.parse(dateOnly ? `${value}T00:00:00` : value);
  if (Number.isNaN(ms)) return undefined;
  return dateOnly && edge === 'end' ? ms + 86_400_000 - 1 : ms;
}

export interface MessageIndexOptions {
  /** A list older than this is refreshed on the next read. */
  maxAgeMs: number;
}

/**
 * The cached message list. The first build blocks; afterwards a stale list is served at once and
 * refreshed in the background (stale-while-revalidate), so pages stay fast however big the archive.
 * A background refresh reads new events and re-reads the attempts of messages still in flight
 * (pending, retrying); a full refresh (the Refresh link, or every FULL_REFRESH_MS) re-reads all
 * attempts, catching replays made elsewhere (another process, the CLI).
 */
export class MessageIndex {
  private readonly byKey = new Map<string, MessageSummary>();
  /** Event keys already read (including unreadable ones, so they are not re-read every refresh). */
  private readonly seenEventKeys = new Map<string, string | undefined>();
  private sorted: MessageSummary[] = [];
  private builtAt = Number.NEGATIVE_INFINITY;
  private fullAt = Number.NEGATIVE_INFINITY;
  private running: { promise: Promise<void>; full: boolean } | undefined;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** How long the last refresh took, for the page footer and tests. */
  lastRefreshMs = 0;
  /** Event objects that could not be read or parsed in the last refreshes. */
  unreadable = 0;

  constructor(
    private readonly source: ConsoleSource,
    private readonly options: MessageIndexOptions,
  ) {
    this.clock = source.clock ?? systemClock;
    this.logger = source.logger ?? silentLogger;
  }

  /** Builds the list on first use (blocking); later, starts a background refresh when it is stale. */
  async ensure(): Promise<void> {
    if (this.builtAt === Number.NEGATIVE_INFINITY) return this.refresh();
    if (this.running || this.clock.now() - this.builtAt < this.options.maxAgeMs) return;
    const full = this.clock.now() - this.fullAt >= FULL_REFRESH_MS;
    this.refresh(full).catch((err: unknown) =>
      this.logger.warn('Console index refresh failed', { error: err }),
    );
  }

  /** Re-lists the archive now and reads new events; `full` also re-reads every message's attempts. */
  async refresh(full = true): Promise<void> {
    while (this.running) {
      const current = this.running;
      await current.promise.catch(() => undefined);
      if (current.full || !full) return;
    }
    const promise = this.build(full).finally(() => {
      this.running = undefined;
    });
    this.running = { promise, full };
    return promise;
  }

  /** Re-reads the attempts of these messages (after a replay or a delivery). */
  async refreshAttempts(messageKeys: readonly string[]): Promise<void> {
    await mapLimit([...new Set(messageKeys)], INDEX_CONCURRENCY, async (key) => {
      const entry = this.byKey.get(key);
      if (entry) this.setAttempts(entry, await this.source.state.listAttempts(key));
    });
  }

  get size(): number {
    return this.sorted.length;
  }

  get(messageKey: string): MessageSummary | undefined {
    return this.byKey.get(messageKey);
  }

  /** Newest first. */
  all(): readonly MessageSummary[] {
    return this.sorted;
  }

  /** Every message matching `q` (its page is ignored), newest first. */
  filter(q: MessageQuery): MessageSummary[] {
    return this.sorted.filter(matcher(q));
  }

  query(q: MessageQuery): Page<MessageSummary> {
    return paginate(this.filter(q), q.page, PAGE_SIZE);
  }

  private setAttempts(entry: MessageSummary, attempts: DeliveryAttempt[]): void {
    entry.attempts = attempts;
    entry.status = deliveryStatus(entry.routed, attempts);
  }

  private async build(full: boolean): Promise<void> {
    const started = performance.now();
    const keys = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await this.source.archive.list('raw/', {
        limit: LIST_PAGE,
        ...(cursor ? { cursor } : {}),
      });
      for (const item of page.items) if (item.key.endsWith('.json')) keys.add(item.key);
      cursor = page.cursor;
    } while (cursor);

    const unseen = [...keys].filter((k) => !this.seenEventKeys.has(k));
    // A new message's event and attempts are read in one go (overlapping the two reads).
    const added = await mapLimit(
      unseen,
      INDEX_CONCURRENCY,
      async (key): Promise<MessageSummary | undefined> => {
        try {
          const event = JSON.parse(
            (await this.source.archive.getBytes(key)).toString('utf8'),
          ) as PophookEvent;
          if (typeof event?.data?.messageKey !== 'string' || typeof event.data.mailboxId !== 'string')
            throw new Error('not a pophook event');
          const summary = summarize(key, event, this.source.config);
          const attempts = await this.source.state.listAttempts(summary.messageKey);
          this.seenEventKeys.set(key, summary.messageKey);
          return { ...summary, attempts, status: deliveryStatus(summary.routed, attempts) };
        } catch (err) {
          this.unreadable++;
          this.seenEventKeys.set(key, undefined);
          this.logger.warn('Archived event unreadable; not listed', { key, error: err });
          return undefined;
        }
      },
    );
    // Objects removed from the archive (retention, lifecycle rules) leave the list too.
    for (const [key, messageKey] of this.seenEventKeys) {
      if (keys.has(key)) continue;
      this.seenEventKeys.delete(key);
      if (messageKey && this.byKey.get(messageKey)?.eventKey === key) this.byKey.delete(messageKey);
    }
    const fresh = new Set<MessageSummary>();
    for (const entry of added) {
      if (!entry) continue;
      this.byKey.set(entry.messageKey, entry);
      fresh.add(entry);
    }
    const reread = [...this.byKey.values()].filter(
      (e) => !fresh.has(e) && (full || e.status === 'pending' || e.status === 'retrying'),
    );
    await mapLimit(reread, INDEX_CONCURRENCY, async (entry) => {
      this.setAttempts(entry, await this.source.state.listAttempts(entry.messageKey));
    });
    this.sorted = [...this.byKey.values()].sort(
      (a, b) => b.receivedMs - a.receivedMs || (a.messageKey < b.messageKey ? -1 : 1),
    );
    this.builtAt = this.clock.now();
    if (full) this.fullAt = this.builtAt;
    this.lastRefreshMs = Math.round(performance.now() - started);
  }
}

function matcher(q: MessageQuery): (m: MessageSummary) => boolean {
  const terms = (q.q ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  const from = q.from?.trim().toLowerCase();
  const to = q.to?.trim().toLowerCase();
  const subject = q.subject?.trim().toLowerCase();
  const since = parseDateFilter(q.since, 'start');
  const until = parseDateFilter(q.until, 'end');
  return (m) =>
    (!q.mailbox || m.mailboxId === q.mailbox) &&
    (!from || m.from.toLowerCase().includes(from)) &&
    (!to || m.to.toLowerCase().includes(to)) &&
    (!subject || m.subject.toLowerCase().includes(subject)) &&
    (since === undefined || m.receivedMs >= since) &&
    (until === undefined || m.receivedMs <= until) &&
    (q.attachments === undefined || (q.attachments === 'yes') === m.attachments.length > 0) &&
    (!q.status || m.status === q.status) &&
    terms.every((t) => m.haystack.includes(t));
}

export function paginate<T>(items: T[], page: number | undefined, size: number): Page<T> {
  const pages = Math.max(1, Math.ceil(items.length / size));
  const p = Math.min(Math.max(1, Math.trunc(page ?? 1) || 1), pages);
  return { items: items.slice((p - 1) * size, p * size), total: items.length, page: p, pages };
}

// ---- mailboxes ----

export interface MailboxView {
  id: string;
  host: string;
  user: string;
  lastPoll: PollRecord | undefined;
  durationMs: number | undefined;
  /** Messages first seen since local midnight. */
  fetchedToday: number;
  archived: number;
  skipped: number;
}

export async function mailboxViews(source: ConsoleSource, index: MessageIndex): Promise<MailboxView[]> {
  const clock = source.clock ?? systemClock;
  const midnight = new Date(clock.now());
  midnight.setHours(0, 0, 0, 0);
  const counts = new Map<string, { today: number; archived: number; skipped: number }>();
  for (const m of index.all()) {
    const c = counts.get(m.mailboxId) ?? { today: 0, archived: 0, skipped: 0 };
    if (m.receivedMs >= midnight.getTime()) c.today++;
    if (m.type === 'email.skipped') c.skipped++;
    else c.archived++;
    counts.set(m.mailboxId, c);
  }
  return Promise.all(
    source.config.mailboxes.map(async (mb) => {
      const lastPoll = await source.state.lastPoll(mb.id);
      const c = counts.get(mb.id);
      const duration = lastPoll
        ? Date.parse(lastPoll.finishedAt) - Date.parse(lastPoll.startedAt)
        : Number.NaN;
      return {
        id: mb.id,
        host: `${mb.host}${mb.port ? `:${mb.port}` : ''}`,
        user: mb.user,
        lastPoll,
        durationMs: Number.isNaN(duration) ? undefined : duration,
        fetchedToday: c?.today ?? 0,
        archived: c?.archived ?? 0,
        skipped: c?.skipped ?? 0,
      };
    }),
  );
}

// ---- deliveries and endpoints ----

export interface AttemptRow {
  attempt: DeliveryAttempt;
  message: MessageSummary;
  /** This is the newest attempt of its (message, endpoint). */
  latest: boolean;
}

export interface AttemptQuery {
  endpoint?: string;
  outcome?: DeliveryAttempt['outcome'];
  page?: number;
}

/** Every attempt of every listed message, newest first, filtered. */
export function attemptRows(index: MessageIndex, q: AttemptQuery): Page<AttemptRow> {
  return paginate(filteredAttempts(index, q), q.page, ATTEMPTS_PAGE_SIZE);
}

export function filteredAttempts(index: MessageIndex, q: Omit<AttemptQuery, 'page'>): AttemptRow[] {
  const rows: AttemptRow[] = [];
  for (const message of index.all()) {
    const latest = latestPerEndpoint(message.attempts);
    for (const attempt of message.attempts) {
      if (q.endpoint && attempt.endpointId !== q.endpoint) continue;
      if (q.outcome && attempt.outcome !== q.outcome) continue;
      rows.push({ attempt, message, latest: latest.get(attempt.endpointId) === attempt });
    }
  }
  return rows.sort(
    (a, b) => Date.parse(b.attempt.at) - Date.parse(a.attempt.at) || b.attempt.attempt - a.attempt.attempt,
  );
}

export interface EndpointView {
  id: string;
  /** Scheme, host and path only: a query string may carry a token. */
  displayUrl: string;
  enabledInConfig: boolean;
  state: EndpointState | undefined;
  /** Of the last HEALTH_WINDOW attempts. */
  recentAttempts: number;
  recentDelivered: number;
  successRate: number | undefined;
  lastSuccess: DeliveryAttempt | undefined;
  lastError: DeliveryAttempt | undefined;
  /** Messages whose latest attempt to this endpoint is waiting for a retry. */
  retrying: number;
  nextRetryAt: string | undefined;
}

export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(invalid URL)';
  }
}

export async function endpointViews(source: ConsoleSource, index: MessageIndex): Promise<EndpointView[]> {
  return Promise.all(
    source.config.endpoints.map(async (ep) => {
      const rows = filteredAttempts(index, { endpoint: ep.id });
      const recent = rows.slice(0, HEALTH_WINDOW);
      const delivered = recent.filter((r) => r.attempt.outcome === 'delivered').length;
      const waiting = rows.filter(
        (r) => r.latest && r.attempt.outcome === 'retry' && r.attempt.nextAttemptAt,
      );
      const next = waiting.map((r) => r.attempt.nextAttemptAt as string).sort()[0];
      return {
        id: ep.id,
        displayUrl: displayUrl(ep.url),
        enabledInConfig: ep.enabled,
        state: await source.state.getEndpointState(ep.id),
        recentAttempts: recent.length,
        recentDelivered: delivered,
        successRate: recent.length ? delivered / recent.length : undefined,
        lastSuccess: rows.find((r) => r.attempt.outcome === 'delivered')?.attempt,
        lastError: rows.find((r) => r.attempt.outcome !== 'delivered')?.attempt,
        retrying: waiting.length,
        nextRetryAt: next,
      };
    }),
  );
}

// ---- one message ----

export interface MessageDetail {
  summary: MessageSummary;
  event: PophookEvent;
}

/** The event of a listed message, read from the archive (the source of truth). */
export async function messageDetail(
  source: ConsoleSource,
  index: MessageIndex,
  messageKey: string,
): Promise<MessageDetail | undefined> {
  let summary = index.get(messageKey);
  if (!summary) {
    // Maybe newer than the list: look for new events (not a full attempts re-read).
    await index.refresh(false);
    summary = index.get(messageKey);
  }
  if (!summary) return undefined;
  const event = JSON.parse(
    (await source.archive.getBytes(summary.eventKey)).toString('utf8'),
  ) as PophookEvent;
  await index.refreshAttempts([messageKey]);
  return { summary, event };
}

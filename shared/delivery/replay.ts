/**
 * Replay: send archived events again. Events are read from the archive (the source of truth), routed
 * with the current rules, and enqueued as ordinary jobs with the ORIGINAL webhook-id (the event id),
 * so receivers that already processed a message recognise it, plus `replay: true` and `replayedAt`
 * (a fresh retry run; see deliver.ts).
 *
 * Selection: explicit `messageKeys`, and/or a mailbox and a date range. The archive is laid out by day
 * (`raw/<mailbox>/yyyy/mm/dd/`), so a range lists only its days' prefixes. `endpointIds` narrows the
 * targets to those endpoints among the ones the rules route to (replay never bypasses routing).
 */
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import type { PophookConfig } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { PophookEvent } from '../mail/event.js';
import type { JobQueue, QueueSendItem } from '../queue/queue.js';
import type { StateStore } from '../state/store.js';
import type { Archive } from '../storage/archive.js';
import { eventKey as eventKeyOf, safeSegment } from '../storage/archive.js';
import type { QueuedJob } from './deliver.js';
import { routeEvent } from './route.js';

/** Longest date range one replay walks day by day; a bigger one is almost certainly a typo. */
export const MAX_REPLAY_DAYS = 400;
/** Jobs sent per queue call: memory stays flat however many events a range holds. */
export const REPLAY_SEND_CHUNK = 100;
/** Archive keys fetched per list call. */
const LIST_PAGE = 1000;
const DAY_MS = 86_400_000;

export interface ReplayOptions {
  messageKeys?: string[];
  mailboxId?: string;
  /** Inclusive lower bound on the event's receivedAt (ISO 8601 or Date). */
  from?: string | Date;
  /** Inclusive upper bound on receivedAt. */
  to?: string | Date;
  endpointIds?: string[];
  /** Report what would be queued without queueing. */
  dryRun: boolean;
}

export interface ReplayDeps {
  archive: Pick<Archive, 'list' | 'getBytes'>;
  queue: JobQueue;
  config: Pick<PophookConfig, 'endpoints' | 'mailboxes'>;
  /** Finds the archive key of a message without scanning (for `messageKeys`). */
  state?: Pick<StateStore, 'findByMessageKey'>;
  clock?: Clock;
  logger?: Logger;
}

export interface ReplayedJob {
  messageKey: string;
  mailboxId: string;
  endpointId: string;
  webhookId: string;
  eventKey: string;
  type: QueuedJob['type'];
}

export interface ReplayResult {
  dryRun: boolean;
  /** Event objects read. */
  scanned: number;
  /** Jobs queued (or that would be). */
  jobs: ReplayedJob[];
}

const pad = (n: number) => String(n).padStart(2, '0');

function toMs(value: string | Date | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  if (Number.isNaN(ms)) throw new ConfigError(`replay ${name} is not a date; use ISO 8601 like 2025-01-31.`);
  return ms;
}

/** Day prefixes `raw/<mailbox>/yyyy/mm/dd/` from `fromMs` to `toMs` (UTC days, inclusive). */
export function dayPrefixes(mailboxSegment: string, fromMs: number, toMs: number): string[] {
  const out: string[] = [];
  const start = Math.floor(fromMs / DAY_MS) * DAY_MS;
  for (let t = start; t <= toMs; t += DAY_MS) {
    const d = new Date(t);
    out.push(
      `raw/${mailboxSegment}/${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/`,
    );
  }
  return out;
}

async function* listEventKeys(archive: ReplayDeps['archive'], prefix: string): AsyncGenerator<string> {
  let cursor: string | undefined;
  do {
    const page = await archive.list(prefix, { limit: LIST_PAGE, ...(cursor ? { cursor } : {}) });
    for (const item of page.items) if (item.key.endsWith('.json')) yield item.key;
    cursor = page.cursor;
  } while (cursor);
}

/** Re-enqueues archived events (or reports what it would). */
export async function replay(options: ReplayOptions, deps: ReplayDeps): Promise<ReplayResult> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? silentLogger;
  const fromMs = toMs(options.from, 'from');
  const toMsValue = toMs(options.to, 'to');
  const replayedAt = new Date(clock.now()).toISOString();
  const wantedKeys = options.messageKeys ? new Set(options.messageKeys) : undefined;
  const wantedEndpoints = options.endpointIds ? new Set(options.endpointIds) : undefined;
  if (wantedEndpoints) {
    const known = new Set(deps.config.endpoints.map((e) => e.id));
    const unknown = [...wantedEndpoints].filter((id) => !known.has(id));
    if (unknown.length) throw new ConfigError(`replay: unknown endpoint id(s) ${unknown.join(', ')}.`);
  }
  if (!wantedKeys && !options.mailboxId && fromMs === undefined && toMsValue === undefined) {
    throw new ConfigError(
      'replay needs messageKeys, a mailbox or a date range; refusing to replay everything.',
    );
  }

  // Where to look: direct keys from the state store when we can, else the day prefixes, else whole mailboxes.
  const directKeys: string[] = [];
  let prefixes: string[] = [];
  let remaining = wantedKeys ? new Set(wantedKeys) : undefined;
  if (wantedKeys && deps.state) {
    for (const key of wantedKeys) {
      const record = await deps.state.findByMessageKey(key);
      if (record?.rawKey) {
        directKeys.push(eventKeyOf(record.rawKey));
        remaining?.delete(key);
      }
    }
    if (remaining?.size === 0) remaining = undefined;
  }
  if (!wantedKeys || remaining) {
    const mailboxes = options.mailboxId ? [options.mailboxId] : deps.config.mailboxes.map((m) => m.id);
    for (const m of mailboxes) {
      const segment = safeSegment(m);
      if (fromMs !== undefined) {
        const end = toMsValue ?? clock.now();
        if (end - fromMs > MAX_REPLAY_DAYS * DAY_MS) {
          throw new ConfigError(`replay range is over ${MAX_REPLAY_DAYS} days; split it.`);
        }
        prefixes.push(...dayPrefixes(segment, fromMs, end));
      } else {
        prefixes.push(`raw/${segment}/`);
      }
    }
  }
  if (wantedKeys && !remaining) prefixes = [];

  const jobs: ReplayedJob[] = [];
  let pending: QueueSendItem[] = [];
  let scanned = 0;
  const flush = async () => {
    if (!options.dryRun && pending.length) await deps.queue.send(pending);
    pending = [];
  };

  const consider = async (key: string) => {
    if (remaining && !directKeys.includes(key)) {
      // Scanning for specific messages: the file name is the message key, so skip without reading.
      const name = key.slice(key.lastIndexOf('/') + 1, -'.json'.length);
      if (!remaining.has(name)) return;
    }
    scanned++;
    let event: PophookEvent;
    try {
      event = JSON.parse((await deps.archive.getBytes(key)).toString('utf8')) as PophookEvent;
    } catch (err) {
      logger.warn('Archived event unreadable; not replayed', { key, error: err });
      return;
    }
    const at = Date.parse(event.data.receivedAt);
    if (fromMs !== undefined && at < fromMs) return;
    if (toMsValue !== undefined && at > toMsValue) return;
    if (options.mailboxId && event.data.mailboxId !== options.mailboxId) return;
    if (wantedKeys && !wantedKeys.has(event.data.messageKey)) return;
    for (const endpointId of routeEvent(event, deps.config.endpoints)) {
      if (wantedEndpoints && !wantedEndpoints.has(endpointId)) continue;
      const job: QueuedJob = {
        v: 1,
        webhookId: event.data.eventId,
        type: event.type,
        mailboxId: event.data.mailboxId,
        messageKey: event.data.messageKey,
        endpointId,
        eventKey: key,
        replay: true,
        replayedAt,
      };
      jobs.push({
        messageKey: job.messageKey,
        mailboxId: job.mailboxId,
        endpointId,
        webhookId: job.webhookId,
        eventKey: key,
        type: job.type,
      });
      pending.push({ id: `r${jobs.length}`, body: JSON.stringify(job) });
      if (pending.length >= REPLAY_SEND_CHUNK) await flush();
    }
  };

  for (const key of directKeys) await consider(key);
  for (const prefix of prefixes) {
    for await (const key of listEventKeys(deps.archive, prefix)) await consider(key);
  }
  await flush();
  logger.info('Replay queued', { jobs: jobs.length, scanned, dryRun: options.dryRun });
  return { dryRun: options.dryRun, scanned, jobs };
}

/**
 * One poll of one mailbox: lease, connect, authenticate, list, diff against state, then for each new
 * message: RETR streamed into the archive, parse, enqueue, mark safe; then DELE what retention allows;
 * QUIT; release the lease.
 *
 * The commit order is the whole point (invariant 1, "no mail lost"):
 *   state 'seen' (fixes the archive key) -> archive create-only + verify -> state 'archived'
 *   -> event JSON + jobs enqueued -> state 'enqueued' -> DELE -> QUIT -> state 'deleted'.
 * A crash between any two steps leaves the message on the server (DELE only commits at QUIT, RFC 1939
 * §6) and the next poll resumes from the recorded status without a second archive object
 * (create-only writes at a deterministic key) or a second event id.
 */

import { Readable } from 'node:stream';
import type { Clock } from '../clock.js';
import { mapLimit } from '../concurrency.js';
import type { EndpointConfig, MailboxConfig, PophookConfig } from '../config/schema.js';
import { ConfigError, errorCode, isPophookError, PophookError } from '../errors.js';
import type { Logger } from '../log.js';
import { createArchiveAttachmentWriter } from '../mail/attachment-writer.js';
import type { EmailReceivedData, EmailSkippedData, PophookEvent } from '../mail/event.js';
import { EVENT_VERSION } from '../mail/event.js';
import type { ParseDeps, ParseMessageInput } from '../mail/parse.js';
import type { Metrics } from '../metrics/metrics.js';
import { noopMetrics } from '../metrics/metrics.js';
import type { Pop3ConnectOptions, Pop3Credentials, Pop3MessageStream, Pop3Session } from '../pop3/types.js';
import type { DeliveryJob, JobQueue, QueueSendItem } from '../queue/queue.js';
import type { Lease, MessageRecord, PollRecord, StateStore } from '../state/store.js';
import type { Archive } from '../storage/archive.js';
import { eventKey, rawKey } from '../storage/archive.js';
import { eventIdFor, type ListedMessage, listMessages, messageKeyFor } from './identity.js';
import { MAX_MESSAGE_FAILURES, type PlannedAction, planPoll } from './plan.js';
import { type Spooled, spool } from './spool.js';

/** Longer than any session (Lambda's 15 min cap) so a live run never loses it; renewed as we go. */
export const LEASE_TTL_MS = 16 * 60 * 1000;
/** Renew when this much of the lease has passed. */
export const LEASE_RENEW_AFTER_MS = LEASE_TTL_MS / 3;
/** Time kept back before the deadline to parse, enqueue, DELE and QUIT cleanly. */
export const DEADLINE_MARGIN_MS = 20_000;
/** An OAuth session ends this long before its access token expires. */
export const TOKEN_EXPIRY_MARGIN_MS = 60_000;
/** Messages fetched per pipelined burst; the deadline, abort signal and lease are checked between bursts. */
export const FETCH_BURST = 50;
/**
 * Background tasks (archive writes, parse + enqueue) in flight while the next RETRs stream in. Each
 * small message's task makes ~5 durable writes one after another (raw, its record, attachments, event,
 * job): at ~15 ms a write under load, 16 tasks capped a poll near 200 msg/s. Memory is bounded by
 * bytes (INLINE_BYTES_IN_FLIGHT) and big messages by STREAMED_TASKS, not by this.
 */
export const PIPELINE_CONCURRENCY = 64;
/**
 * Tasks parsing a message too big to hold in memory (streamed from the archive) at once: each keeps a
 * parser's buffers and its text and HTML up to the parse limits, so they are few.
 */
export const STREAMED_TASKS = 4;
/**
 * Messages up to this size (per LIST) are read into memory, then archived and parsed in the background
 * from those bytes while the next RETRs stream in. Bigger ones stream to the archive and are parsed
 * from it, so memory never depends on message size.
 */
export const INLINE_ARCHIVE_MAX_BYTES = 4 * 1024 * 1024;
/** Bytes of such in-memory messages held at once (being archived or parsed): the memory bound. */
export const INLINE_BYTES_IN_FLIGHT = 32 * 1024 * 1024;
/** Sizes below this are not held to the lie factor on their own (odd LIST counts of tiny mail). */
const INLINE_MIN_LIMIT_BYTES = 256 * 1024;
/** A server whose RETR exceeds its own LIST size by this factor is lying; stop buffering it. */
export const INLINE_LIE_FACTOR = 4;
/**
 * State writes issued at once when pre-registering a burst: the whole burst, so the local journal
 * commits it in one flush (DynamoDB takes 50 concurrent conditional puts in its stride).
 */
export const STATE_WRITE_CONCURRENCY = FETCH_BURST;

export type PollStep =
  | 'after-connect'
  | 'after-seen'
  | 'after-archive'
  | 'after-parse'
  | 'after-enqueue'
  | 'after-dele'
  | 'after-quit';

/** Fault injection for tests: throwing from a hook simulates a crash at that step. */
export interface PollHooks {
  at?(
    step: PollStep,
    context: { mailboxId: string; session?: Pop3Session; messageKey?: string },
  ): void | Promise<void>;
  /** Wraps the RETR stream before it reaches the archive (e.g. to fail mid-upload). */
  wrapRetr?(stream: Readable, messageKey: string): Readable;
}

export type ParseFn = (input: ParseMessageInput, deps: ParseDeps) => Promise<EmailReceivedData>;
export type { ParseDeps, ParseMessageInput };
export type RouteFn = (event: PophookEvent, endpoints: readonly EndpointConfig[]) => string[];

export interface PollProgress {
  mailboxId: string;
  phase: 'connecting' | 'listing' | 'fetching' | 'deleting' | 'done';
  total: number;
  done: number;
  bytes: number;
  totalBytes: number;
}

export interface PollDeps {
  config: PophookConfig;
  archive: Archive;
  state: StateStore;
  queue: JobQueue;
  connect: (options: Pop3ConnectOptions) => Promise<Pop3Session>;
  credentials: (mailbox: MailboxConfig) => Promise<Pop3Credentials>;
  /** When the credentials stop working (OAuth access token expiry): the session ends before it. */
  credentialsExpireAt?: (mailbox: MailboxConfig) => number | undefined;
  /** Called when the server refused the credentials (drop a cached token). */
  onAuthFailure?: (mailbox: MailboxConfig) => void;
  parse: ParseFn;
  route: RouteFn;
  clock: Clock;
  logger: Logger;
  metrics?: Metrics;
  /** Who we are, for the lease: `<host>:<pid>:<random>` or the Lambda request id. */
  owner: string;
  /** Epoch ms by which the session must be closed (the Lambda deadline). */
  deadline?: number;
  signal?: AbortSignal;
  hooks?: PollHooks;
  onProgress?: (progress: PollProgress) => void;
  /** Extra connect options (source address, timeouts, pipelining) for tests and `pophook check`. */
  connectOptions?: Partial<Pop3ConnectOptions>;
}

export interface PollResult {
  mailboxId: string;
  outcome: PollRecord['outcome'];
  fetched: number;
  bytes: number;
  skipped: number;
  deleted: number;
  /** Messages still on the server after this poll. */
  remaining: number;
  /** Messages we wanted but left for the next run (budget, deadline, abort). */
  deferred: number;
  parseErrors: number;
  uidlResetSuspected: boolean;
  error?: { code: string; message: string; transient: boolean };
}

interface Budget {
  messages: number;
  bytes: number;
}

/**
 * Mailboxes whose server broke PIPELINING (a desync killed a session): later sessions in this process
 * (a warm Lambda, a local loop) fetch one command at a time. Latched for the life of the process.
 */
const pipeliningBroken = new Set<string>();

/** Errors that end the run quietly (a metric, not an alarm): the server asked us to come back later. */
const QUIET_CODES: Record<string, PollRecord['outcome']> = {
  POP3_IN_USE: 'in-use',
  POP3_LOGIN_DELAY: 'login-delay',
};

/** A result with nothing done yet (also what a poll that could not start reports). */
export function emptyPollResult(mailboxId: string, outcome: PollResult['outcome'] = 'ok'): PollResult {
  return {
    mailboxId,
    outcome,
    fetched: 0,
    bytes: 0,
    skipped: 0,
    deleted: 0,
    remaining: 0,
    deferred: 0,
    parseErrors: 0,
    uidlResetSuspected: false,
  };
}

export async function pollMailbox(mailboxId: string, deps: PollDeps): Promise<PollResult> {
  const mailbox = deps.config.mailboxes.find((m) => m.id === mailboxId);
  if (!mailbox)
    throw new ConfigError(`Unknown mailbox "${mailboxId}": it is not in the config's mailboxes list.`);
  const logger = deps.logger.child({ mailbox: mailboxId });
  const metrics = deps.metrics ?? noopMetrics;
  const startedAt = new Date(deps.clock.now()).toISOString();
  const result = emptyPollResult(mailboxId);

  const lease = await deps.state.acquireLease(mailboxId, deps.owner, LEASE_TTL_MS);
  if (!lease) {
    logger.info('Mailbox lease held by another run', {});
    metrics.add('PollSkipped', 1, { MailboxId: mailboxId });
    return { ...result, outcome: 'lease-held' };
  }
  let session: Pop3Session | undefined;
  try {
    const run = new PollRun(mailbox, deps, logger, metrics, result, lease);
    session = await run.open();
    await run.execute(session);
    session = undefined; // QUIT done
  } catch (err) {
    // No QUIT: dropping the connection discards every DELE of this session (RFC 1939 §6).
    session?.close();
    const quiet = QUIET_CODES[errorCode(err)];
    result.outcome = quiet ?? (result.fetched > 0 ? 'partial' : 'error');
    result.error = {
      code: errorCode(err),
      message: err instanceof Error ? err.message : String(err),
      transient: isPophookError(err) ? err.transient : true,
    };
    if (quiet) logger.info('Mailbox busy; will retry next poll', { code: result.error.code });
    else logger.error('Poll failed', { err });
    if (
      causeChain(err).some((e) => isPophookError(e) && e.details.pipelined === true) &&
      !pipeliningBroken.has(mailboxId)
    ) {
      pipeliningBroken.add(mailboxId);
      logger.warn('Pipelining latched off for this mailbox after a desync', {});
    }
  } finally {
    await deps.state
      .releaseLease(lease)
      .catch((err: unknown) => logger.warn('Lease release failed', { err }));
  }
  const succeeded = result.outcome === 'ok' || result.outcome === 'partial';
  metrics.add(succeeded ? 'PollSucceeded' : 'PollFailed', 1, { MailboxId: mailboxId });
  await deps.state
    .recordPoll({
      mailboxId,
      startedAt,
      finishedAt: new Date(deps.clock.now()).toISOString(),
      outcome: result.outcome,
      fetched: result.fetched,
      bytes: result.bytes,
      deleted: result.deleted,
      remainingOnServer: result.remaining,
      ...(result.error ? { errorCode: result.error.code, errorMessage: result.error.message } : {}),
    })
    .catch((err: unknown) => logger.warn('Poll record write failed', { err }));
  return result;
}

class PollRun {
  private leaseRenewedAt: number;
  /** Epoch ms by which the session must be over: the run's deadline or the token's expiry. */
  private sessionDeadline: number | undefined;
  private readonly toDelete: { n: number; record: MessageRecord }[] = [];
  private readonly pending = new Set<Promise<void>>();
  private stageError: unknown;
  /** Bytes of in-memory messages not yet released by their archive and parse tasks. */
  private inlineBytes = 0;
  /** Background tasks parsing from the archive (messages too big for memory); see STREAMED_TASKS. */
  private streamedTasks = 0;

  constructor(
    private readonly mailbox: MailboxConfig,
    private readonly deps: PollDeps,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly result: PollResult,
    private lease: Lease,
  ) {
    this.leaseRenewedAt = deps.clock.now();
    this.sessionDeadline = deps.deadline;
  }

  private progress(phase: PollProgress['phase'], total: number, totalBytes: number): void {
    this.deps.onProgress?.({
      mailboxId: this.mailbox.id,
      phase,
      total,
      done: this.result.fetched,
      bytes: this.result.bytes,
      totalBytes,
    });
  }

  private hook(step: PollStep, session?: Pop3Session, messageKey?: string): void | Promise<void> {
    return this.deps.hooks?.at?.(step, {
      mailboxId: this.mailbox.id,
      ...(session ? { session } : {}),
      ...(messageKey ? { messageKey } : {}),
    });
  }

  async open(): Promise<Pop3Session> {
    const { mailbox, deps } = this;
    this.progress('connecting', 0, 0);
    // Credentials first: a token endpoint failure should not cost a POP3 connection.
    const credentials = await deps.credentials(mailbox);
    const tokenExpiry = deps.credentialsExpireAt?.(mailbox);
    if (tokenExpiry !== undefined) {
      // Gmail closes a POP session when its access token expires; stop cleanly before that.
      this.sessionDeadline = Math.min(
        this.sessionDeadline ?? Number.POSITIVE_INFINITY,
        tokenExpiry - TOKEN_EXPIRY_MARGIN_MS,
      );
    }
    const sessionMs = this.sessionDeadline
      ? Math.max(1000, this.sessionDeadline - deps.clock.now())
      : undefined;
    const session = await deps.connect({
      host: mailbox.host,
      ...(mailbox.port ? { port: mailbox.port } : {}),
      tls: mailbox.tls,
      ...(mailbox.ca ? { ca: mailbox.ca } : {}),
      ...(mailbox.pinSha256 ? { pinSha256: mailbox.pinSha256 } : {}),
      allowInsecureAuth: mailbox.allowInsecureAuth,
      logger: this.logger,
      // deps.signal is deliberately not passed: an abort (Ctrl-C) stops the poll between bursts so the
      // current messages finish, DELEs commit with QUIT and nothing is fetched twice. Session timeouts
      // still bound how long that takes.
      ...(pipeliningBroken.has(mailbox.id) ? { pipelining: false } : {}),
      ...deps.connectOptions,
      timeouts: { ...(sessionMs ? { sessionMs } : {}), ...deps.connectOptions?.timeouts },
      limits: { maxMessageBytes: mailbox.limits.maxMessageBytes, ...deps.connectOptions?.limits },
    });
    try {
      await session.login(credentials);
      await this.hook('after-connect', session);
    } catch (err) {
      session.close();
      if (errorCode(err) === 'POP3_AUTH_FAILED') deps.onAuthFailure?.(mailbox);
      throw err;
    }
    return session;
  }

  private timeLeft(): number {
    return this.deps.deadline
      ? this.deps.deadline - DEADLINE_MARGIN_MS - this.deps.clock.now()
      : Number.POSITIVE_INFINITY;
  }

  private shouldStop(): boolean {
    return this.deps.signal?.aborted === true || this.timeLeft() <= 0 || this.stageError !== undefined;
  }

  private async renewLeaseIfDue(): Promise<void> {
    const now = this.deps.clock.now();
    if (now - this.leaseRenewedAt < LEASE_RENEW_AFTER_MS) return;
    if (!(await this.deps.state.renewLease(this.lease, LEASE_TTL_MS))) {
      throw new PophookError(
        'LEASE_LOST',
        'The mailbox lease expired and was taken by another run; stopping.',
        {
          transient: true,
        },
      );
    }
    this.lease = { ...this.lease, expiresAt: now + LEASE_TTL_MS };
    this.leaseRenewedAt = now;
  }

  async execute(session: Pop3Session): Promise<void> {
    try {
      await this.executeInner(session);
    } catch (err) {
      // Let background archive/parse/enqueue work settle before the lease is released, so the next
      // run never overlaps with this one's writes.
      await this.drain();
      throw err;
    }
  }

  private async executeInner(session: Pop3Session): Promise<void> {
    const { mailbox, deps, result } = this;
    this.progress('listing', 0, 0);
    const sizes = await session.list();
    const uidls = await this.listUidls(session, sizes);
    const listed = listMessages(uidls, sizes);
    const records = await deps.state.listMessages(mailbox.id);
    const plan = planPoll({
      listed,
      records,
      retention: mailbox.retention,
      maxMessageBytes: mailbox.limits.maxMessageBytes,
      now: deps.clock.now(),
    });
    result.uidlResetSuspected = plan.uidlResetSuspected;
    if (plan.uidlResetSuspected) this.logger.warn('UIDL reset suspected; deduplicating by content hash', {});

    const budget: Budget = {
      messages: mailbox.limits.maxMessagesPerRun,
      bytes: mailbox.limits.maxBytesPerRun,
    };
    const fetches: Extract<PlannedAction, { kind: 'fetch' }>[] = [];
    for (const action of plan.actions) {
      if (action.kind === 'none' && (action.record.failures ?? 0) >= MAX_MESSAGE_FAILURES) {
        this.logger.warn('Message set aside after repeated fetch failures; it stays on the server', {
          messageKey: action.record.messageKey,
          failures: action.record.failures,
          code: action.record.lastError,
        });
      }
      if (action.kind === 'delete') this.toDelete.push({ n: action.message.n, record: action.record });
      else if (action.kind === 'skip') await this.reportSkipped(action.message, action.record);
      else if (action.kind === 'fetch') {
        // Oldest first; a message bigger than the whole byte budget still goes alone so it is never starved.
        const fits = budget.messages > 0 && (action.message.size <= budget.bytes || fetches.length === 0);
        if (fits) {
          fetches.push(action);
          budget.messages--;
          budget.bytes -= action.message.size;
        } else result.deferred++;
      }
    }

    const totalBytes = fetches.reduce((a, f) => a + f.message.size, 0);
    for (let i = 0; i < fetches.length; i += FETCH_BURST) {
      if (this.shouldStop()) {
        result.deferred += fetches.length - i;
        break;
      }
      await this.renewLeaseIfDue();
      await this.fetchBurst(session, fetches.slice(i, i + FETCH_BURST), plan.uidlResetSuspected);
      this.progress('fetching', fetches.length, totalBytes);
    }
    await this.drain();
    if (this.stageError) throw this.stageError;

    this.progress('deleting', fetches.length, totalBytes);
    for (const { n, record } of this.toDelete) {
      await session.dele(n);
      await this.hook('after-dele', session, record.messageKey);
    }
    await session.quit();
    await this.hook('after-quit', undefined);
    const deletedAt = new Date(deps.clock.now()).toISOString();
    await mapLimit(this.toDelete, STATE_WRITE_CONCURRENCY, async ({ record }) => {
      await deps.state.putMessage({ ...record, status: 'deleted', deletedAt, updatedAt: deletedAt });
      result.deleted++;
    });
    if (this.toDelete.length)
      this.metrics.add('MessagesDeleted', this.toDelete.length, { MailboxId: mailbox.id });
    result.remaining = listed.length - this.toDelete.length;
    result.outcome = result.deferred > 0 ? 'partial' : 'ok';
    this.progress('done', fetches.length, totalBytes);
  }

  /**
   * Counts a fetch that failed because of this message (it broke the session). After
   * MAX_MESSAGE_FAILURES the planner sets it aside so one poison message cannot stall the mailbox.
   */
  private async recordFailure(record: MessageRecord, err: unknown): Promise<void> {
    const failures = (record.failures ?? 0) + 1;
    await this.deps.state
      .putMessage({
        ...record,
        failures,
        lastError: errorCode(err),
        updatedAt: new Date(this.deps.clock.now()).toISOString(),
      })
      .catch((e: unknown) => this.logger.warn('Failure count write failed', { err: e }));
    this.logger.warn('Message fetch failed', {
      messageKey: record.messageKey,
      failures,
      code: errorCode(err),
    });
  }

  /** UIDL, or (server without UIDL, delete mode only) `null` so identity comes from content. */
  private async listUidls(session: Pop3Session, sizes: { n: number; size: number }[]) {
    try {
      return await session.uidl();
    } catch (err) {
      if (!isPophookError(err) || !['POP3_NOT_SUPPORTED', 'POP3_COMMAND_FAILED'].includes(err.code))
        throw err;
      if (this.mailbox.retention !== 'delete') {
        throw new ConfigError(
          `Mailbox "${this.mailbox.id}": the server does not support UIDL, so pophook cannot tell new mail from old while keeping it on the server. Set retention: delete for this mailbox.`,
          { cause: err },
        );
      }
      this.logger.warn('Server has no UIDL; identifying messages by content', {});
      return sizes.map(({ n }) => ({ n, uidl: NO_UIDL }));
    }
  }

  private async reportSkipped(message: ListedMessage, record?: MessageRecord): Promise<void> {
    const { deps, mailbox } = this;
    const messageKey = record?.messageKey ?? messageKeyFor(mailbox.id, message.uidl, message.occurrence);
    const firstSeenAt = record?.firstSeenAt ?? new Date(deps.clock.now()).toISOString();
    const eventId = eventIdFor(messageKey);
    const data: EmailSkippedData = {
      version: EVENT_VERSION,
      eventId,
      messageKey,
      mailboxId: mailbox.id,
      uidl: message.uidl === NO_UIDL ? null : message.uidl,
      receivedAt: firstSeenAt,
      size: message.size,
      reason: 'too-large',
      limit: mailbox.limits.maxMessageBytes,
    };
    const key = eventKey(rawKey(mailbox.id, messageKey, new Date(firstSeenAt)));
    await deps.archive.put(key, JSON.stringify({ type: 'email.skipped', data }), {
      contentType: 'application/json',
    });
    await this.enqueue({ type: 'email.skipped', data }, key);
    const now = new Date(deps.clock.now()).toISOString();
    await deps.state.putMessage({
      mailboxId: mailbox.id,
      uidl: message.uidl,
      occurrence: message.occurrence,
      messageKey,
      status: 'skipped',
      firstSeenAt,
      updatedAt: now,
      size: message.size,
      eventId,
      skippedReason: `larger than maxMessageBytes (${mailbox.limits.maxMessageBytes})`,
    });
    this.result.skipped++;
    this.metrics.add('MessagesSkipped', 1, { MailboxId: mailbox.id });
    this.logger.warn('Message over size limit skipped', { messageKey, size: message.size });
  }

  private async enqueue(event: PophookEvent, evKey: string): Promise<void> {
    const endpointIds = this.deps.route(
      event,
      this.deps.config.endpoints.filter((e) => e.enabled),
    );
    const items: QueueSendItem[] = endpointIds.map((endpointId, i) => {
      const job: DeliveryJob = {
        v: 1,
        webhookId: event.data.eventId,
        type: event.type,
        mailboxId: event.data.mailboxId,
        messageKey: event.data.messageKey,
        endpointId,
        eventKey: evKey,
      };
      return { id: `j${i}`, body: JSON.stringify(job) };
    });
    if (items.length) await this.deps.queue.send(items);
  }

  /** Registers the burst's records (fixing each archive key) before any byte is fetched. */
  private async ensureRecords(burst: Extract<PlannedAction, { kind: 'fetch' }>[]): Promise<MessageRecord[]> {
    const { deps, mailbox } = this;
    return mapLimit(burst, STATE_WRITE_CONCURRENCY, async (action) => {
      if (action.record && action.record.status !== 'skipped') return action.record;
      const now = new Date(deps.clock.now()).toISOString();
      const { message } = action;
      const messageKey =
        action.record?.messageKey ?? messageKeyFor(mailbox.id, message.uidl, message.occurrence);
      const record: MessageRecord = {
        mailboxId: mailbox.id,
        uidl: message.uidl,
        occurrence: message.occurrence,
        messageKey,
        status: 'seen',
        firstSeenAt: action.record?.firstSeenAt ?? now,
        updatedAt: now,
        size: message.size,
      };
      if (action.record) await deps.state.putMessage(record);
      else if (!(await deps.state.createMessage(record))) {
        const existing = await deps.state.getMessage(mailbox.id, message.uidl, message.occurrence);
        if (!existing) throw new PophookError('STATE_INCONSISTENT', 'Message record vanished during a poll.');
        return existing;
      }
      return record;
    });
  }

  private async fetchBurst(
    session: Pop3Session,
    burst: Extract<PlannedAction, { kind: 'fetch' }>[],
    dedupeByContent: boolean,
  ): Promise<void> {
    const noUidl = burst.some((a) => a.message.uidl === NO_UIDL);
    if (noUidl) return this.fetchWithoutUidl(session, burst);
    const records = await this.ensureRecords(burst);
    await this.hook('after-seen', session);
    // Messages already archived by an earlier run are not fetched again: parse from the archive.
    const needRetr: number[] = [];
    for (const [i, record] of records.entries()) {
      if (
        record.status === 'archived' &&
        record.rawKey &&
        record.sha256 !== undefined &&
        record.size !== undefined
      ) {
        await this.waitForSlot();
        this.afterArchive(record, (burst[i] as (typeof burst)[number]).message);
      } else needRetr.push(i);
    }
    const streams = session.retrMany(needRetr.map((i) => (burst[i] as (typeof burst)[number]).message.n));
    let k = 0;
    for await (const stream of streams) {
      const i = needRetr[k++] as number;
      const action = burst[i] as (typeof burst)[number];
      const record = records[i] as MessageRecord;
      try {
        if (action.message.size <= INLINE_ARCHIVE_MAX_BYTES && !dedupeByContent) {
          // Small message (nearly all mail): read it off the wire now and archive it in the background,
          // so the next RETR streams in while this one's disk or S3 write completes. Memory stays
          // bounded by INLINE_BYTES_IN_FLIGHT (plus one message, up to the lie factor).
          while (this.inlineBytes > 0 && this.inlineBytes + action.message.size > INLINE_BYTES_IN_FLIGHT)
            await Promise.race(this.pending);
          const bytes = await collect(
            stream,
            Math.max(action.message.size, INLINE_MIN_LIMIT_BYTES) * INLINE_LIE_FACTOR,
          );
          const hold = this.holdInline(bytes.length);
          await this.waitForSlot();
          this.track(this.archiveOne(bytes, record, action.message, false, hold).finally(hold));
          continue;
        }
        await this.archiveOne(stream, record, action.message, dedupeByContent);
      } catch (err) {
        // The server refused this one RETR (deleted by another client, or broken on its side): skip it,
        // keep the session; it is tried again next poll and nothing is deleted.
        if (!hasCode(err, 'POP3_COMMAND_FAILED')) {
          if (MESSAGE_FAULT_CODES.some((code) => hasCode(err, code))) await this.recordFailure(record, err);
          throw err;
        }
        this.logger.warn('Server refused RETR; message skipped this poll', { messageKey: record.messageKey });
        continue;
      }
      await this.waitForSlot();
    }
  }

  /** Counts `bytes` against INLINE_BYTES_IN_FLIGHT until the returned release runs (once). */
  private holdInline(bytes: number): () => void {
    this.inlineBytes += bytes;
    let held = true;
    return () => {
      if (held) this.inlineBytes -= bytes;
      held = false;
    };
  }

  /**
   * `input` is the RETR stream, or the whole message when it was small enough to read into memory;
   * then `hold` is its INLINE_BYTES_IN_FLIGHT reservation, handed on to the parse task when it parses
   * from those bytes (the caller releases it otherwise).
   */
  private async archiveOne(
    input: Readable | Buffer,
    record: MessageRecord,
    message: ListedMessage,
    dedupeByContent: boolean,
    hold?: () => void,
  ): Promise<void> {
    const { deps } = this;
    const key = rawKey(this.mailbox.id, record.messageKey, new Date(record.firstSeenAt));
    const wrap = deps.hooks?.wrapRetr;
    const stream = Buffer.isBuffer(input) ? undefined : input;
    const source = wrap ? wrap(stream ?? Readable.from([input]), record.messageKey) : input;
    let spooled: Spooled | undefined;
    try {
      let body: Readable | Buffer = source;
      if (dedupeByContent) {
        spooled = await spool(Buffer.isBuffer(source) ? Readable.from([source]) : source);
        const twin = (await deps.state.findBySha256(this.mailbox.id, spooled.sha256)).find(
          (r) => r.messageKey !== record.messageKey && r.rawKey,
        );
        if (twin) {
          // Same bytes under a new UIDL: the server renumbered. Point the new UIDL at the old message.
          const now = new Date(deps.clock.now()).toISOString();
          const mapped: MessageRecord = {
            ...twin,
            uidl: record.uidl,
            occurrence: record.occurrence,
            status: twin.status === 'deleted' || twin.status === 'seen' ? 'enqueued' : twin.status,
            updatedAt: now,
          };
          delete mapped.deletedAt;
          if (mapped.status === 'archived') {
            await deps.state.putMessage(mapped);
            this.afterArchive(mapped, message);
          } else {
            await deps.state.putMessage(mapped);
            if (this.mailbox.retention === 'delete') this.toDelete.push({ n: message.n, record: mapped });
          }
          this.logger.info('Renumbered message matched by content', { messageKey: twin.messageKey });
          return;
        }
        body = spooled.open();
      }
      const stored = await deps.archive.putStreamCreateOnly(key, body, { contentType: 'message/rfc822' });
      if (!stored.created)
        this.logger.info('Raw message already archived', { messageKey: record.messageKey });
      if (message.size && stored.size !== message.size) {
        // Servers may count differently (bare LF stores); a large gap hints at a server that does not byte-stuff.
        this.logger.warn('Fetched size differs from LIST size', {
          messageKey: record.messageKey,
          listed: message.size,
          fetched: stored.size,
        });
      }
      const archived: MessageRecord = {
        ...record,
        status: 'archived',
        rawKey: stored.key,
        size: stored.size,
        sha256: stored.sha256,
        updatedAt: new Date(deps.clock.now()).toISOString(),
      };
      // Recorded while the parse runs, not before it: the record only saves a re-fetch after a crash
      // (a 'seen' record whose raw object exists is fetched again, found identical, and parsed), and
      // postArchive awaits it before the 'enqueued' record, so the journal keeps that order.
      const recorded = deps.state.putMessage(archived);
      recorded.catch(() => {}); // awaited (and its failure raised) in postArchive
      this.result.fetched++;
      this.result.bytes += stored.size;
      this.metrics.add('MessagesFetched', 1, { MailboxId: this.mailbox.id });
      this.metrics.add('BytesFetched', stored.size, { MailboxId: this.mailbox.id });
      await this.hook('after-archive', undefined, record.messageKey);
      // Parse from the bytes in hand when they are what was archived (created now, byte for byte).
      const inHand = stored.created && Buffer.isBuffer(body) && hold ? { bytes: body, hold } : {};
      this.afterArchive(archived, message, { ...inHand, recorded });
    } finally {
      await spooled?.dispose();
      // Unconsumed data would desync the session; the connection layer drains or fails it.
      if (stream && !stream.readableEnded) stream.destroy();
    }
  }

  /** Parse, write the event, enqueue: runs beside the next RETRs, bounded. */
  private afterArchive(
    record: MessageRecord,
    message: ListedMessage,
    { bytes, hold, recorded }: { bytes?: Buffer; hold?: () => void; recorded?: Promise<void> } = {},
  ): void {
    if (!bytes || !hold) {
      this.streamedTasks++;
      this.track(
        this.postArchive(record, message, undefined, recorded).finally(() => {
          this.streamedTasks--;
        }),
      );
      return;
    }
    // The bytes stay reserved until parsed: take over the reservation from the archive task.
    const release = this.holdInline(bytes.length);
    hold();
    this.track(this.postArchive(record, message, bytes, recorded).finally(release));
  }

  /** Runs `work` in the background pool; its failure stops the poll (after the burst) like a crash. */
  private track(work: Promise<void>): void {
    const task = work.catch((err: unknown) => {
      this.stageError ??= err;
    });
    const tracked = task.finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  private async waitForSlot(): Promise<void> {
    while (this.pending.size >= PIPELINE_CONCURRENCY || this.streamedTasks >= STREAMED_TASKS)
      await Promise.race(this.pending);
  }

  private async drain(): Promise<void> {
    while (this.pending.size) await Promise.race(this.pending);
  }

  private async postArchive(
    record: MessageRecord,
    message: ListedMessage,
    bytes?: Buffer,
    recorded?: Promise<void>,
  ): Promise<void> {
    const { deps, mailbox } = this;
    const rawObjectKey = record.rawKey as string;
    const eventId = eventIdFor(record.messageKey);
    const attachments = createArchiveAttachmentWriter(deps.archive, mailbox.id, record.messageKey);
    const data = await deps.parse(
      {
        ...(bytes ? { bytes } : { source: await deps.archive.get(rawObjectKey) }),
        mailboxId: mailbox.id,
        messageKey: record.messageKey,
        eventId,
        uidl: record.uidl === NO_UIDL || record.uidl.startsWith(CONTENT_UIDL_PREFIX) ? null : record.uidl,
        receivedAt: record.firstSeenAt,
        raw: { key: rawObjectKey, size: record.size ?? 0, sha256: record.sha256 ?? '' },
        limits: deps.config.parse,
      },
      {
        writeAttachment: attachments,
        logger: this.logger,
      },
    );
    if (data.parseError) {
      this.result.parseErrors++;
      this.metrics.add('ParseErrors', 1, { MailboxId: mailbox.id });
      this.logger.warn('Message parsed with errors', {
        messageKey: record.messageKey,
        code: data.parseError.code,
      });
    }
    // The event names the attachments: they are stored before it is.
    await attachments.settle();
    await this.hook('after-parse', undefined, record.messageKey);
    const evKey = eventKey(rawObjectKey);
    const event: PophookEvent = { type: 'email.received', data };
    await deps.archive.put(evKey, JSON.stringify(event), { contentType: 'application/json' });
    await this.enqueue(event, evKey);
    await this.hook('after-enqueue', undefined, record.messageKey);
    await recorded;
    const enqueued: MessageRecord = {
      ...record,
      status: 'enqueued',
      eventId,
      updatedAt: new Date(deps.clock.now()).toISOString(),
    };
    await deps.state.putMessage(enqueued);
    // `deleteAfterDays` messages are new today, so only `delete` removes them in the same session.
    if (mailbox.retention === 'delete') this.toDelete.push({ n: message.n, record: enqueued });
  }

  /**
   * A server without UIDL (delete mode only): identity is the content hash, so each message is spooled,
   * hashed, and only then registered. A re-fetch after a crash finds the same identity and is not
   * archived twice.
   */
  private async fetchWithoutUidl(
    session: Pop3Session,
    burst: Extract<PlannedAction, { kind: 'fetch' }>[],
  ): Promise<void> {
    const { deps, mailbox } = this;
    const seenHashes = new Map<string, number>();
    for await (const stream of session.retrMany(burst.map((a) => a.message.n))) {
      const action = burst.find((a) => a.message.n === stream.messageNumber) as (typeof burst)[number];
      const spooled = await spool(stream);
      try {
        const uidl = `${CONTENT_UIDL_PREFIX}${spooled.sha256}`;
        const occurrence = seenHashes.get(uidl) ?? 0;
        seenHashes.set(uidl, occurrence + 1);
        const message: ListedMessage = { ...action.message, uidl, occurrence };
        let record = await deps.state.getMessage(mailbox.id, uidl, occurrence);
        if (record && (record.status === 'enqueued' || record.status === 'deleted')) {
          this.toDelete.push({ n: message.n, record });
          continue;
        }
        if (!record) {
          const now = new Date(deps.clock.now()).toISOString();
          record = {
            mailboxId: mailbox.id,
            uidl,
            occurrence,
            messageKey: messageKeyFor(mailbox.id, uidl, occurrence),
            status: 'seen',
            firstSeenAt: now,
            updatedAt: now,
            size: spooled.size,
          };
          await deps.state.createMessage(record);
        }
        await this.archiveOne(
          Object.assign(spooled.open(), { messageNumber: message.n }) as unknown as Pop3MessageStream,
          record,
          message,
          false,
        );
        await this.waitForSlot();
      } finally {
        await spooled.dispose();
      }
    }
  }
}

/** Reads a whole (small) stream; a server sending far more than it announced is a protocol error. */
async function collect(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      stream.destroy();
      throw new PophookError(
        'POP3_PROTOCOL',
        'The server sent far more bytes for a message than its LIST size.',
        {
          transient: true,
        },
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** `err` and its causes, outermost first (bounded: causes can be cyclic). */
function causeChain(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e: unknown = err; e !== undefined && out.length < 8; e = e instanceof Error ? e.cause : undefined)
    out.push(e);
  return out;
}

/** True when `err` or any error in its cause chain carries `code`. */
function hasCode(err: unknown, code: string): boolean {
  return causeChain(err).some((e) => isPophookError(e) && e.code === code);
}

/** Errors raised while reading one message off the wire that point at that message, not the session. */
const MESSAGE_FAULT_CODES = ['POP3_MESSAGE_TOO_LARGE', 'POP3_LINE_TOO_LONG', 'POP3_PROTOCOL', 'POP3_TIMEOUT'];

/** Placeholder identity while a server without UIDL is listed; replaced by the content hash. */
const NO_UIDL = '\u0000no-uidl';
/** UIDLs we make up from content for servers without UIDL. */
export const CONTENT_UIDL_PREFIX = 'x-pophook-sha256:';

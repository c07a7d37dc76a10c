/**
 * The pure part of a poll: given what the server lists and what the state store remembers, decide
 * what to do with each message. No I/O, so every edge case is a unit test.
 */
import type { Retention } from '../config/schema.js';
import type { MessageRecord } from '../state/store.js';
import { type ListedMessage, recordId } from './identity.js';

export type PlannedAction =
  /** New, or a previous attempt stopped before the message was safe. */
  | { kind: 'fetch'; message: ListedMessage; record?: MessageRecord }
  /** Over the size limit and not reported yet: record and report `email.skipped`, never delete. */
  | { kind: 'skip'; message: ListedMessage; record?: MessageRecord }
  /** Safe (archived and enqueued) and the retention policy allows deleting it now. */
  | { kind: 'delete'; message: ListedMessage; record: MessageRecord }
  /** Safe and kept on the server, or already reported as skipped. */
  | { kind: 'none'; message: ListedMessage; record: MessageRecord };

export interface Plan {
  actions: PlannedAction[];
  /** Almost every listed UIDL is new and almost every remembered one is gone: the server renumbered. */
  uidlResetSuspected: boolean;
}

/** A UIDL reset needs this many remembered messages before we call it one (tiny mailboxes churn). */
export const UIDL_RESET_MIN_KNOWN = 5;
/** Share of listed UIDLs that must be new, and of remembered ones that must be gone, to call a reset. */
export const UIDL_RESET_RATIO = 0.9;

const DAY_MS = 86_400_000;

/**
 * A message whose fetch broke the session this many times is set aside (kept on the server, never
 * deleted, logged each poll) so that one poison message cannot stop every later one from arriving.
 */
export const MAX_MESSAGE_FAILURES = 5;

export function retentionAllowsDelete(retention: Retention, record: MessageRecord, now: number): boolean {
  if (retention === 'delete') return true;
  if (retention === 'keep') return false;
  return Date.parse(record.firstSeenAt) + retention.deleteAfterDays * DAY_MS <= now;
}

export function planPoll(input: {
  listed: readonly ListedMessage[];
  records: readonly MessageRecord[];
  retention: Retention;
  maxMessageBytes: number;
  now: number;
}): Plan {
  const byId = new Map(input.records.map((r) => [recordId(r.uidl, r.occurrence), r]));
  const actions: PlannedAction[] = [];
  let matched = 0;
  for (const message of input.listed) {
    const record = byId.get(recordId(message.uidl, message.occurrence));
    if (record) matched++;
    const oversize = message.size > input.maxMessageBytes;
    if (
      record &&
      (record.failures ?? 0) >= MAX_MESSAGE_FAILURES &&
      record.status !== 'enqueued' &&
      record.status !== 'deleted'
    ) {
      actions.push({ kind: 'none', message, record });
    } else if (!record || record.status === 'seen' || record.status === 'archived') {
      actions.push(
        oversize && record?.status !== 'archived'
          ? { kind: 'skip', message, ...(record ? { record } : {}) }
          : { kind: 'fetch', message, ...(record ? { record } : {}) },
      );
    } else if (record.status === 'skipped') {
      // The limit may have been raised since: fetch it now; otherwise it was reported once already.
      actions.push(oversize ? { kind: 'none', message, record } : { kind: 'fetch', message, record });
    } else if (retentionAllowsDelete(input.retention, record, input.now)) {
      // 'enqueued', or 'deleted' but still listed (the QUIT that would have committed it never came).
      actions.push({ kind: 'delete', message, record });
    } else {
      actions.push({ kind: 'none', message, record });
    }
  }
  const remembered = input.records.filter((r) => r.status !== 'deleted').length;
  const listed = input.listed.length;
  const uidlResetSuspected =
    remembered >= UIDL_RESET_MIN_KNOWN &&
    listed > 0 &&
    (listed - matched) / listed >= UIDL_RESET_RATIO &&
    (remembered - matched) / remembered >= UIDL_RESET_RATIO;
  return { actions, uidlResetSuspected };
}

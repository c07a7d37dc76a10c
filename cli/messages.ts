/**
 * Reading the local archive and state for `list`, `show` and `replay`: finding a message by key, key
 * prefix or event id, reading its event, and summing up its delivery attempts per endpoint.
 */
import type { PophookConfig } from '../shared/config/schema.js';
import { eventIdFor } from '../shared/ingest/identity.js';
import type { Address, PophookEvent } from '../shared/mail/event.js';
import { sanitizeForeignText } from '../shared/sanitize.js';
import type { DeliveryAttempt, MessageRecord } from '../shared/state/store.js';
import { eventKey, rawKey } from '../shared/storage/archive.js';
import { UsageError } from './context.js';
import type { CliRuntime } from './local.js';

/** Shortest key prefix accepted (list prints 12 characters). */
export const MIN_KEY_PREFIX = 6;
/** Files read at once when listing (bounded file descriptors). */
export const READ_CONCURRENCY = 16;

const HEX = /^[0-9a-f]+$/;

/** Archive key of the event JSON of `record`, when it has one (archived messages and skipped ones). */
export function eventKeyOf(record: MessageRecord): string | undefined {
  if (record.rawKey) return eventKey(record.rawKey);
  if (record.status === 'skipped')
    return eventKey(rawKey(record.mailboxId, record.messageKey, new Date(record.firstSeenAt)));
  return undefined;
}

/** The archived event, or undefined when it is missing or unreadable (listing goes on). */
export async function readEvent(
  runtime: CliRuntime,
  record: MessageRecord,
): Promise<PophookEvent | undefined> {
  const key = eventKeyOf(record);
  if (!key) return undefined;
  try {
    return JSON.parse((await runtime.archive.getBytes(key)).toString('utf8')) as PophookEvent;
  } catch {
    return undefined;
  }
}

/** Every record of the given mailboxes (one directory read per mailbox). */
export async function allRecords(
  runtime: CliRuntime,
  mailboxIds: readonly string[],
): Promise<MessageRecord[]> {
  const lists = await Promise.all(mailboxIds.map((id) => runtime.state.listMessages(id)));
  return lists.flat();
}

/**
 * The record for a message key, a unique key prefix (at least MIN_KEY_PREFIX characters) or an event
 * id (`msg_<key>`). UsageError when there is none or the prefix is ambiguous.
 */
export async function findMessage(
  runtime: CliRuntime,
  config: PophookConfig,
  text: string,
): Promise<MessageRecord> {
  const key = text.trim().toLowerCase().replace(/^msg_/, '');
  const shown = sanitizeForeignText(text, 80);
  if (!HEX.test(key) || key.length < MIN_KEY_PREFIX)
    throw new UsageError(
      `"${shown}" is not a message key or event id; copy one from "pophook list" (at least ${MIN_KEY_PREFIX} characters).`,
    );
  const exact = await runtime.state.findByMessageKey(key);
  if (exact) return exact;
  const matches = (
    await allRecords(
      runtime,
      config.mailboxes.map((m) => m.id),
    )
  ).filter((r) => r.messageKey.startsWith(key));
  if (matches.length === 1 && matches[0]) return matches[0];
  if (matches.length > 1)
    throw new UsageError(`"${shown}" matches ${matches.length} messages; give more characters of the key.`);
  throw new UsageError(`No message "${shown}" in the local archive; "pophook list" shows what is there.`);
}

export interface EndpointDelivery {
  endpointId: string;
  /** The latest attempt's outcome. */
  outcome: DeliveryAttempt['outcome'];
  status?: number;
  errorCode?: string;
  attempts: number;
  at: string;
  nextAttemptAt?: string;
}

/** The latest attempt per endpoint, in endpoint order of first attempt. */
export function latestPerEndpoint(attempts: readonly DeliveryAttempt[]): EndpointDelivery[] {
  const by = new Map<string, EndpointDelivery>();
  for (const a of attempts) {
    const count = (by.get(a.endpointId)?.attempts ?? 0) + 1;
    by.set(a.endpointId, {
      endpointId: a.endpointId,
      outcome: a.outcome,
      ...(a.status !== undefined ? { status: a.status } : {}),
      ...(a.errorCode ? { errorCode: a.errorCode } : {}),
      attempts: count,
      at: a.at,
      ...(a.nextAttemptAt ? { nextAttemptAt: a.nextAttemptAt } : {}),
    });
  }
  return [...by.values()];
}

/** Delivery outcomes `replay --failed` picks up: the retry schedule ended, or the target was refused. */
export const FAILED_OUTCOMES: ReadonlySet<DeliveryAttempt['outcome']> = new Set([
  'failed',
  'blocked',
  'disabled',
]);

export function formatAddress(list: readonly Address[] | undefined): string {
  const first = list?.[0];
  if (!first) return '';
  const one = first.name ? `${first.name} <${first.address}>` : first.address;
  return list.length > 1 ? `${one} +${list.length - 1}` : one;
}

export function eventIdOf(record: MessageRecord): string {
  return record.eventId ?? eventIdFor(record.messageKey);
}

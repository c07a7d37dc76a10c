/**
 * Message identity. A message is (mailbox, UIDL, occurrence): RFC 1939 allows duplicate UIDLs in one
 * listing, so the n-th message carrying a UIDL is occurrence n-1. Raw UIDLs are attacker-controlled
 * and never become keys or paths: every key derives from a hash.
 */
import { createHash } from 'node:crypto';

export interface ListedMessage {
  /** Message number, valid for this session only. */
  n: number;
  uidl: string;
  occurrence: number;
  /** Octets, from LIST. */
  size: number;
}

/** Deterministic: the same (mailbox, uidl, occurrence) always yields the same key. 128 bits of hash. */
export function messageKeyFor(mailboxId: string, uidl: string, occurrence: number): string {
  return createHash('sha256')
    .update(`${mailboxId}\u0000${uidl}\u0000${occurrence}`)
    .digest('hex')
    .slice(0, 32);
}

/** Standard Webhooks `webhook-id` and event id: one per message, shared by every endpoint and retry. */
export function eventIdFor(messageKey: string): string {
  return `msg_${messageKey}`;
}

/** Joins UIDL and LIST output by message number and numbers duplicate UIDLs in listing order. */
export function listMessages(
  uidls: ReadonlyArray<{ n: number; uidl: string }>,
  sizes: ReadonlyArray<{ n: number; size: number }>,
): ListedMessage[] {
  const sizeByN = new Map(sizes.map((s) => [s.n, s.size]));
  const seen = new Map<string, number>();
  return [...uidls]
    .sort((a, b) => a.n - b.n)
    .map(({ n, uidl }) => {
      const occurrence = seen.get(uidl) ?? 0;
      seen.set(uidl, occurrence + 1);
      return { n, uidl, occurrence, size: sizeByN.get(n) ?? 0 };
    });
}

/** State-store key of a record: never the raw UIDL. */
export function recordId(uidl: string, occurrence: number): string {
  return `${createHash('sha256').update(uidl).digest('hex')}#${occurrence}`;
}

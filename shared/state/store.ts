/**
 * The state port: what each mailbox has seen, who is polling it, and how deliveries went. DynamoDB in
 * AWS (`dynamo-state.ts`), files locally (`local-state.ts`). Every write that guards an invariant is
 * conditional.
 */

export type MessageStatus =
  /** Seen in a listing; a fetch started (firstSeenAt fixes the archive key). */
  | 'seen'
  /** Raw bytes durably archived and verified. */
  | 'archived'
  /** Events enqueued for delivery: the message is safe; it may now be deleted per retention. */
  | 'enqueued'
  /** DELE + QUIT done. */
  | 'deleted'
  /** Over a limit; reported once as `email.skipped`, never deleted. */
  | 'skipped';

export interface MessageRecord {
  mailboxId: string;
  uidl: string;
  /** 0 for the first message with this UIDL in a listing, 1 for the next duplicate, ... */
  occurrence: number;
  messageKey: string;
  status: MessageStatus;
  firstSeenAt: string;
  updatedAt: string;
  size?: number;
  sha256?: string;
  rawKey?: string;
  eventId?: string;
  /** Fetch attempts that failed; quarantined after a limit. */
  failures?: number;
  lastError?: string;
  skippedReason?: string;
  deletedAt?: string;
}

export interface Lease {
  mailboxId: string;
  owner: string;
  expiresAt: number;
}

export interface PollRecord {
  mailboxId: string;
  startedAt: string;
  finishedAt: string;
  outcome: 'ok' | 'partial' | 'in-use' | 'login-delay' | 'lease-held' | 'error';
  fetched: number;
  bytes: number;
  deleted: number;
  remainingOnServer: number;
  errorCode?: string;
  errorMessage?: string;
}

export interface StateStore {
  /** Takes the mailbox lease if free or expired. Undefined when someone else holds it. */
  acquireLease(mailboxId: string, owner: string, ttlMs: number): Promise<Lease | undefined>;
  /** Extends a lease we hold; false if it was lost (expired and taken). */
  renewLease(lease: Lease, ttlMs: number): Promise<boolean>;
  releaseLease(lease: Lease): Promise<void>;

  listMessages(mailboxId: string): Promise<MessageRecord[]>;
  getMessage(mailboxId: string, uidl: string, occurrence: number): Promise<MessageRecord | undefined>;
  /** Insert-only; false when a record already exists for (mailbox, uidl, occurrence). */
  createMessage(record: MessageRecord): Promise<boolean>;
  /** Replace a record. */
  putMessage(record: MessageRecord): Promise<void>;
  /** Records whose content hash matches (UIDL-reset dedupe). */
  findBySha256(mailboxId: string, sha256: string): Promise<MessageRecord[]>;
  /** Find by message key across mailboxes (for `show`, replay). */
  findByMessageKey(messageKey: string): Promise<MessageRecord | undefined>;

  recordPoll(poll: PollRecord): Promise<void>;
  lastPoll(mailboxId: string): Promise<PollRecord | undefined>;
}

export interface DeliveryAttempt {
  messageKey: string;
  endpointId: string;
  webhookId: string;
  attempt: number;
  at: string;
  outcome: 'delivered' | 'retry' | 'failed' | 'disabled' | 'blocked';
  status?: number;
  latencyMs: number;
  errorCode?: string;
  /** Short, sanitised response snippet. */
  response?: string;
  nextAttemptAt?: string;
}

export interface EndpointState {
  endpointId: string;
  disabled: boolean;
  disabledAt?: string;
  disabledReason?: string;
}

export interface DeliveryLog {
  recordAttempt(attempt: DeliveryAttempt): Promise<void>;
  listAttempts(messageKey: string): Promise<DeliveryAttempt[]>;
  getEndpointState(endpointId: string): Promise<EndpointState | undefined>;
  setEndpointState(state: EndpointState): Promise<void>;
}

/**
 * Typed errors. Every error pophook raises carries a stable `code` (for alarms, metrics and tests),
 * the original `cause`, and whether retrying later can help (`transient`). Messages are plain
 * sentences that say what happened and what to do; they never contain a secret or a mail body.
 */

export type ErrorClass = 'transient' | 'permanent';

export interface PophookErrorOptions {
  cause?: unknown;
  /** Overrides the class default. */
  transient?: boolean;
  /** Extra machine-readable context (mailbox id, command, endpoint id). Never secrets. */
  details?: Record<string, unknown>;
}

export class PophookError extends Error {
  /** Stable, documented identifier, e.g. `POP3_AUTH_FAILED`. */
  readonly code: string;
  /** True when the same operation may succeed later without anyone changing anything. */
  readonly transient: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: string, message: string, options: PophookErrorOptions = {}, defaultTransient = false) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.transient = options.transient ?? defaultTransient;
    this.details = options.details ?? {};
  }

  get errorClass(): ErrorClass {
    return this.transient ? 'transient' : 'permanent';
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      transient: this.transient,
      ...this.details,
    };
  }
}

/** The configuration file or environment is wrong; a person must fix it. */
export class ConfigError extends PophookError {
  constructor(message: string, options: PophookErrorOptions = {}) {
    super('CONFIG_INVALID', message, options, false);
  }
}

/** A secret could not be resolved (missing, access denied, malformed). */
export class SecretError extends PophookError {
  constructor(code: string, message: string, options: PophookErrorOptions = {}) {
    super(code, message, options, false);
  }
}

/** The archive (S3 or local directory) failed a read or write. */
export class ArchiveError extends PophookError {
  constructor(code: string, message: string, options: PophookErrorOptions = {}) {
    super(code, message, options, true);
  }
}

/** The state store (DynamoDB or local) failed. */
export class StateError extends PophookError {
  constructor(code: string, message: string, options: PophookErrorOptions = {}) {
    super(code, message, options, true);
  }
}

/** Another run holds the mailbox lease; this run must not open a session. */
export class LeaseHeldError extends StateError {
  constructor(mailboxId: string, options: PophookErrorOptions = {}) {
    super('LEASE_HELD', `Mailbox "${mailboxId}" is being polled by another run; this run skips it.`, {
      ...options,
      details: { mailboxId, ...options.details },
    });
  }
}

/** The queue (SQS or local) refused or failed a send. */
export class QueueError extends PophookError {
  constructor(code: string, message: string, options: PophookErrorOptions = {}) {
    super(code, message, options, true);
  }
}

/** Webhook delivery failed. `transient` says whether the attempt will be retried. */
export class DeliveryError extends PophookError {}

/** A webhook URL was refused by the SSRF policy. Permanent until the config changes. */
export class SsrfBlockedError extends PophookError {
  constructor(message: string, options: PophookErrorOptions = {}) {
    super('SSRF_BLOCKED', message, options, false);
  }
}

export function isPophookError(err: unknown): err is PophookError {
  return err instanceof PophookError;
}

/** Best-effort stable code for any thrown value, for logs and metrics. */
export function errorCode(err: unknown): string {
  if (err instanceof PophookError) return err.code;
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return 'UNEXPECTED';
}

/** Whether retrying can help. Unknown errors count as transient: "fetch again", never "gone". */
export function isTransient(err: unknown): boolean {
  if (err instanceof PophookError) return err.transient;
  return true;
}

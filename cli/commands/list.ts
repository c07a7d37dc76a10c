/**
 * `pophook list`: lists archived messages and how their deliveries went.
 * Wiring: createLocalRuntime(config).state.listMessages + deliveryLog.listAttempts.
 */
import { type CliContext, type ExitCode, NotAvailableYetError } from '../context.js';

export interface ListOptions {
  config?: string;
  mailbox?: string;
  /** Only messages in this state (seen, archived, enqueued, deleted, skipped). */
  status?: string;
  /** Only messages first seen at or after this ISO date. */
  since?: string;
  limit: number;
  json?: boolean;
}

export async function runList(_opts: ListOptions, _ctx: CliContext): Promise<ExitCode> {
  throw new NotAvailableYetError('"pophook list"');
}

/**
 * `pophook poll`: fetches new mail from each mailbox, archives it, delivers webhooks, and applies retention.
 * Exit 0 when every mailbox polled, 3 when some failed, 1 when all failed. Wiring: createLocalRuntime(config)
 * then pollMailbox(id, deps) per mailbox (shared/ingest/poll.ts), with a progress line from cli/output.ts.
 */
import { type CliContext, type ExitCode, NotAvailableYetError } from '../context.js';

export interface PollOptions {
  config?: string;
  /** Only these mailboxes (default: all). */
  mailbox?: string[];
  /** Keep polling, each mailbox every pollEveryMinutes, until Ctrl-C. */
  watch?: boolean;
  json?: boolean;
}

export async function runPoll(_opts: PollOptions, _ctx: CliContext): Promise<ExitCode> {
  throw new NotAvailableYetError('"pophook poll"');
}

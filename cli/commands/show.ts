/**
 * `pophook show`: prints one message: its event, raw size and hash, attachments and delivery attempts.
 * Wiring: state.findByMessageKey, archive.getBytes(eventKey), deliveryLog.listAttempts.
 */
import { type CliContext, type ExitCode, NotAvailableYetError } from '../context.js';

export interface ShowOptions {
  config?: string;
  /** Print the raw .eml bytes to stdout instead. */
  raw?: boolean;
  json?: boolean;
}

export async function runShow(_message: string, _opts: ShowOptions, _ctx: CliContext): Promise<ExitCode> {
  throw new NotAvailableYetError('"pophook show"');
}

/**
 * `pophook check`: tests each mailbox login and each endpoint without fetching or deleting anything.
 * Exit 0 when everything passed, 3 when some checks failed, 2 on a config error. Wiring: connect with the
 * shared/pop3 client (CAPA, TLS info, login, STAT), then one signed webhook.test per endpoint.
 */
import { type CliContext, type ExitCode, NotAvailableYetError } from '../context.js';

export interface CheckOptions {
  config?: string;
  /** Only these mailboxes (default: all). */
  mailbox?: string[];
  /** Only these endpoints (default: all). */
  endpoint?: string[];
  /** Skip the signed `webhook.test` delivery to each endpoint. */
  endpoints: boolean;
  json?: boolean;
}

export async function runCheck(_opts: CheckOptions, _ctx: CliContext): Promise<ExitCode> {
  throw new NotAvailableYetError('"pophook check"');
}

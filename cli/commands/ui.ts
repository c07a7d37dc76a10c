/**
 * `pophook ui`: a local web page to browse the archive and delivery log.
 * Loopback only by default; read-only except for replay.
 */
import { type CliContext, type ExitCode, NotAvailableYetError } from '../context.js';

export interface UiOptions {
  config?: string;
  port: number;
  host: string;
  /** Open the page in the default browser. */
  open?: boolean;
}

export async function runUi(_opts: UiOptions, _ctx: CliContext): Promise<ExitCode> {
  throw new NotAvailableYetError('"pophook ui"');
}

/**
 * `pophook replay`: delivers archived messages again, with their original webhook-id.
 * Wiring: enqueue DeliveryJob { replay: true } with the stored webhookId (never a new one).
 */
import { type CliContext, type ExitCode, NotAvailableYetError } from '../context.js';

export interface ReplayOptions {
  config?: string;
  /** Only to these endpoints (default: every endpoint that matches). */
  endpoint?: string[];
  /** Every message whose last delivery failed. */
  failed?: boolean;
  /** With --failed: only messages first seen at or after this ISO date. */
  since?: string;
  /** List what would be replayed, send nothing. */
  dryRun?: boolean;
}

export async function runReplay(
  _messages: string[],
  _opts: ReplayOptions,
  _ctx: CliContext,
): Promise<ExitCode> {
  throw new NotAvailableYetError('"pophook replay"');
}

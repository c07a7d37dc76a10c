/**
 * TEMPORARY stand-in for `runLocalPipeline` from `shared/runtime/local.ts` (being written by the lead).
 * To wire: in `cli/commands/dev.ts` change the import of `runLocalPipeline` from '../pipeline-stub.js' to
 * '../../shared/runtime/local.js', then delete this file. The types below are the contract dev.ts uses.
 */
import type { PophookConfig } from '../shared/config/schema.js';
import type { Logger } from '../shared/log.js';
import type { DeliveryAttempt, PollRecord } from '../shared/state/store.js';
import { NotAvailableYetError } from './context.js';

/** What the local loop reports, so `pophook dev` can print it. */
export type LocalPipelineEvent =
  | { type: 'poll'; poll: PollRecord }
  | { type: 'delivery'; attempt: DeliveryAttempt };

export interface LocalPipelineOptions {
  /** Time between polls of every mailbox; overrides `pollEveryMinutes` (dev uses 2000). */
  intervalMs: number;
  /** Stops the loop. The promise resolves once in-flight work has finished or been safely abandoned. */
  signal: AbortSignal;
  logger?: Logger;
  onEvent?: (event: LocalPipelineEvent) => void;
}

/**
 * Polls every mailbox of `config` each `intervalMs` and delivers queued jobs, with the local archive,
 * state and queue under `config.local.dataDir`, until `signal` aborts.
 */
export async function runLocalPipeline(
  _config: PophookConfig,
  _options: LocalPipelineOptions,
): Promise<void> {
  throw new NotAvailableYetError('The local poll/deliver loop');
}

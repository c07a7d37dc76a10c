/**
 * What every command gets (output, cwd, environment, an abort signal) and the CLI's exit-code and error
 * vocabulary. Commands return an exit code or throw; `main.ts` turns throws into one clear line.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, PophookError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { Output } from './output.js';

/** Process exit codes, documented in `pophook --help`. */
export const EXIT = {
  OK: 0,
  /** Something failed; the message says what to do. */
  FAILURE: 1,
  /** The command line or the config is wrong; nothing was attempted. */
  USAGE: 2,
  /** Partly done: e.g. some mailboxes polled, others failed. */
  PARTIAL: 3,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface CliContext {
  out: Output;
  /** A readable logger on stderr (warnings by default, everything with --debug). */
  logger: Logger;
  cwd: string;
  /** The process environment, read only here at the CLI boundary. */
  env: Readonly<Record<string, string | undefined>>;
  debug: boolean;
  /** Aborted on Ctrl-C / SIGTERM: long-running commands stop cleanly and return. */
  signal: AbortSignal;
}

/** A wrong command line (bad option value, missing file). Exit code 2. */
export class UsageError extends PophookError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('CLI_USAGE', message, options, false);
  }
}

/** A feature whose engine is not wired in yet (`what`: e.g. `"pophook poll"`). Exit code 1. */
export class NotAvailableYetError extends PophookError {
  constructor(what: string) {
    super(
      'CLI_NOT_AVAILABLE',
      `${what} is not available yet in this build; "pophook config validate" works today.`,
    );
  }
}

/** Exit code for an error thrown by a command. */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof UsageError || err instanceof ConfigError) return EXIT.USAGE;
  if (err instanceof PophookError && err.code.startsWith('SECRET_')) return EXIT.USAGE;
  return EXIT.FAILURE;
}

/** Config files looked for in the working directory, in order, when neither --config nor POPHOOK_CONFIG is set. */
export const DEFAULT_CONFIG_FILES = ['pophook.yaml', 'pophook.yml', 'pophook.json'] as const;

/**
 * The config file to use: `--config` (commander also fills it from POPHOOK_CONFIG), else the first of
 * DEFAULT_CONFIG_FILES in `cwd`. Throws UsageError naming what was tried.
 */
export async function resolveConfigPath(option: string | undefined, cwd: string): Promise<string> {
  if (option) {
    const file = path.resolve(cwd, option);
    try {
      await access(file);
    } catch {
      throw new UsageError(`Config file ${option} does not exist; check the path given to --config.`);
    }
    return file;
  }
  for (const name of DEFAULT_CONFIG_FILES) {
    const file = path.join(cwd, name);
    try {
      await access(file);
      return file;
    } catch {
      // try the next name
    }
  }
  throw new UsageError(
    `No config file found: pass --config FILE, set POPHOOK_CONFIG, or create ${DEFAULT_CONFIG_FILES[0]} here (run "pophook dev" to try pophook without one).`,
  );
}

/** A path as the user would type it: relative to `cwd` when inside it, else absolute. */
export function displayPath(file: string, cwd: string): string {
  const rel = path.relative(cwd, file);
  return rel === '' ? '.' : rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
}

/** Resolves when `signal` aborts (Ctrl-C). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

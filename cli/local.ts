/**
 * What the local-mode commands (poll, list, show, replay, check, dev --config) share: reading the config
 * with problems named field by field, checking the data directory before anything touches it, opening
 * the local runtime, and releasing a lease left behind by a pophook process that no longer exists.
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { inlineCaFiles } from '../shared/config/load.js';
import type { MailboxConfig, PophookConfig } from '../shared/config/schema.js';
import { PophookConfig as ConfigSchema } from '../shared/config/schema.js';
import { ConfigError } from '../shared/errors.js';
import type { LogFields, Logger } from '../shared/log.js';
import { createLocalRuntime, type LocalRuntime } from '../shared/runtime/local.js';
import { sanitizeForeignText } from '../shared/sanitize.js';
import type { Lease, StateStore } from '../shared/state/store.js';
import { explainConfigIssues } from './config-issues.js';
import { type CliContext, displayPath, resolveConfigPath, UsageError } from './context.js';

/** Lines of a YAML syntax error shown (the parser quotes the offending lines). */
const MAX_YAML_ERROR_LINES = 4;
/** Problems listed for a malformed config before "and N more". */
const MAX_CONFIG_PROBLEMS = 8;

export interface LoadedConfig {
  config: PophookConfig;
  /** Absolute path of the file. */
  file: string;
  /** The path as the user would type it. */
  shown: string;
}

/**
 * Reads, parses and validates the config. Every problem names the field (`mailboxes[0].port: ...`);
 * throws ConfigError (exit 2). Relative `ca:` file paths resolve from `ctx.cwd`, like local.dataDir
 * and local.secretsFile, and are replaced by the file's PEM text.
 */
/** A config file that is not YAML/JSON; `lines` is the parser's message, sanitised, for printing. */
export class ConfigSyntaxError extends ConfigError {
  constructor(
    readonly shown: string,
    readonly lines: string[],
    cause: unknown,
  ) {
    super(`${shown} is not valid YAML or JSON: ${lines.slice(0, MAX_YAML_ERROR_LINES).join(' / ')}`, {
      cause,
    });
  }
}

/**
 * Finds and reads the config file and parses its YAML/JSON, without validating it (shared by every
 * command and by `config validate`, which reports problems its own way). Unreadable: UsageError;
 * not YAML: ConfigSyntaxError.
 */
export async function readRawConfig(
  option: string | undefined,
  ctx: CliContext,
): Promise<{ file: string; shown: string; raw: unknown }> {
  const file = await resolveConfigPath(option, ctx.cwd);
  const shown = displayPath(file, ctx.cwd);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`Cannot read ${shown} (${(err as NodeJS.ErrnoException).code ?? 'error'}).`, {
      cause: err,
    });
  }
  try {
    return { file, shown, raw: parseYaml(text) };
  } catch (err) {
    const lines = (err as Error).message
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => sanitizeForeignText(l, 200));
    throw new ConfigSyntaxError(shown, lines, err);
  }
}

export async function loadCliConfig(option: string | undefined, ctx: CliContext): Promise<LoadedConfig> {
  const { file, shown, raw } = await readRawConfig(option, ctx);
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const problems = explainConfigIssues(result.error.issues, raw);
    if (problems.length === 1) throw new ConfigError(`${shown}: ${problems[0]}`);
    const listed = problems.slice(0, MAX_CONFIG_PROBLEMS).map((p) => `\n  - ${p}`);
    const more =
      problems.length > MAX_CONFIG_PROBLEMS
        ? `\n  ... and ${problems.length - MAX_CONFIG_PROBLEMS} more`
        : '';
    throw new ConfigError(
      `${shown} has ${problems.length} problems (run "pophook config validate" for all):${listed.join('')}${more}`,
    );
  }
  const config = result.data;
  await inlineCaFiles(config, ctx.cwd, shown);
  return { config, file, shown };
}

/** The mailboxes named by `ids` (all when absent). Unknown ids: UsageError listing the known ones. */
export function selectMailboxes(config: PophookConfig, ids: readonly string[] | undefined): MailboxConfig[] {
  if (!ids || ids.length === 0) return config.mailboxes;
  return ids.map((id) => {
    const mailbox = config.mailboxes.find((m) => m.id === id);
    if (!mailbox)
      throw new UsageError(
        `No mailbox "${sanitizeForeignText(id, 60)}" in the config (mailboxes: ${config.mailboxes.map((m) => m.id).join(', ')}).`,
      );
    return mailbox;
  });
}

/** Same as selectMailboxes, for endpoint ids. */
export function checkEndpointIds(config: PophookConfig, ids: readonly string[] | undefined): void {
  for (const id of ids ?? []) {
    if (!config.endpoints.some((e) => e.id === id))
      throw new UsageError(
        `No endpoint "${sanitizeForeignText(id, 60)}" in the config (endpoints: ${config.endpoints.map((e) => e.id).join(', ') || 'none'}).`,
      );
  }
}

/** Absolute data directory of `config`, relative paths resolved from `cwd`. */
export function dataDirOf(config: PophookConfig, cwd: string): string {
  return path.resolve(cwd, config.local.dataDir);
}

/**
 * Makes sure the data directory exists (or, with `create: false`, says whether it does) and is a
 * directory. A file in its place, a parent that is a file, or no permission: UsageError in one line.
 */
export async function ensureDataDir(dir: string, ctx: CliContext, create = true): Promise<boolean> {
  const shown = displayPath(dir, ctx.cwd);
  try {
    const info = await stat(dir);
    if (!info.isDirectory())
      throw new UsageError(
        `The data directory ${shown} is a file, not a directory; set local.dataDir in the config to a directory.`,
      );
    return true;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw unusable(shown, code, err);
  }
  if (!create) return false;
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return true;
  } catch (err) {
    throw unusable(shown, (err as NodeJS.ErrnoException).code, err);
  }
}

function unusable(shown: string, code: string | undefined, cause: unknown): UsageError {
  const why =
    code === 'ENOTDIR' || code === 'EEXIST'
      ? 'part of its path is a file'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EROFS'
          ? 'the filesystem is read-only'
          : (code ?? 'error');
  return new UsageError(
    `The data directory ${shown} cannot be used (${why}); set local.dataDir in the config to a writable directory.`,
    { cause },
  );
}

export type CliRuntime = Awaited<ReturnType<typeof createLocalRuntime>>;

/**
 * Log messages the commands already report in their own output (a poll line, the delivery summary):
 * at the default level they would print twice, once as a JSON-ish log line. They stay visible at
 * --debug.
 */
const REPORTED_BY_COMMANDS = new Set([
  'Poll failed',
  'Mailbox busy; will retry next poll',
  'Webhook attempt failed; will retry',
  'Webhook delivery failed after the last attempt; dead-lettered',
]);

/** The CLI logger minus REPORTED_BY_COMMANDS (demoted to debug). */
export function commandLogger(logger: Logger): Logger {
  const demote =
    (level: 'warn' | 'error') =>
    (message: string, fields?: LogFields): void =>
      REPORTED_BY_COMMANDS.has(message) ? logger.debug(message, fields) : logger[level](message, fields);
  return {
    debug: (m, f) => logger.debug(m, f),
    info: (m, f) => logger.info(m, f),
    warn: demote('warn'),
    error: demote('error'),
    child: (fields) => commandLogger(logger.child(fields)),
  };
}

/** Opens the local archive, state and queue of `config` (data directory checked first). */
export async function openRuntime(
  config: PophookConfig,
  ctx: CliContext,
  options: { create?: boolean } = {},
): Promise<CliRuntime> {
  await ensureDataDir(dataDirOf(config, ctx.cwd), ctx, options.create ?? true);
  return createLocalRuntime(config, { baseDir: ctx.cwd, env: ctx.env, logger: commandLogger(ctx.logger) });
}

/** `<host>:<pid>:<8 hex>`, as written by leaseOwner() in shared/runtime/local.ts. */
const OWNER = /^(.*):(\d+):([0-9a-f]{8})$/;

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface ReclaimedLease {
  mailboxId: string;
  pid: number;
}

/**
 * Releases leases held by pophook processes on this machine that no longer exist (killed, crashed), so
 * the next run does not wait out the 16-minute lease. Safe: a dead process's POP3 session died with it,
 * and the server discarded its uncommitted DELEs. Leases of live or remote processes are left alone.
 */
export async function reclaimDeadLeases(
  state: Pick<StateStore, 'releaseLease'> & { peekLease(mailboxId: string): Promise<Lease | undefined> },
  mailboxIds: readonly string[],
  now = Date.now(),
): Promise<ReclaimedLease[]> {
  const reclaimed: ReclaimedLease[] = [];
  const host = hostname();
  for (const mailboxId of mailboxIds) {
    const lease = await state.peekLease(mailboxId);
    if (!lease || lease.expiresAt < now) continue;
    const m = OWNER.exec(lease.owner);
    const pid = Number(m?.[2]);
    if (!m || m[1] !== host || pid === process.pid || !processGone(pid)) continue;
    await state.releaseLease(lease);
    reclaimed.push({ mailboxId, pid });
  }
  return reclaimed;
}

/** Parses a --since/--until value (ISO 8601 date or date-time). */
export function parseDateOption(value: string | undefined, option: string): Date | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(ms))
    throw new UsageError(
      `${option} ${sanitizeForeignText(value, 40)} is not a date; use ISO 8601 like 2025-01-31 or 2025-01-31T14:00:00Z.`,
    );
  return new Date(ms);
}

export type { LocalRuntime };

/**
 * One small structured logger interface, so the same code logs through Powertools in Lambda and as
 * JSON lines locally, and tests can capture every line. Messages are short constants; data goes in
 * fields. Secrets are redacted at the source (never passed in), and as a second line of defence every
 * registered secret value is scrubbed from the serialised line.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (mailbox, uidl, endpoint). */
  child(fields: LogFields): Logger;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** Values that must never appear in output. Filled when secrets are resolved. */
const registeredSecrets = new Set<string>();

/** Shortest secret we scrub; shorter strings would redact ordinary words. */
const MIN_SCRUB_LENGTH = 4;

export function registerSecret(value: string): void {
  if (value.length >= MIN_SCRUB_LENGTH) registeredSecrets.add(value);
}

export function scrubSecrets(text: string): string {
  let out = text;
  for (const secret of registeredSecrets) {
    if (out.includes(secret)) out = out.split(secret).join('[REDACTED]');
  }
  return out;
}

/** Error objects do not serialise with JSON.stringify; keep name, code, message and cause chain. */
export function serializeError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { name: err.name, message: err.message };
  const withCode = err as Error & { code?: unknown; transient?: unknown; details?: unknown };
  if (withCode.code !== undefined) out.code = withCode.code;
  if (withCode.transient !== undefined) out.transient = withCode.transient;
  if (withCode.details !== undefined) out.details = withCode.details;
  if (err.cause !== undefined && depth < 3) out.cause = serializeError(err.cause, depth + 1);
  return out;
}

export interface JsonLoggerOptions {
  level?: LogLevel;
  /** Where lines go; defaults to stderr so stdout stays free for command output. */
  write?: (line: string) => void;
  fields?: LogFields;
  now?: () => Date;
}

export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const threshold = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const now = options.now ?? (() => new Date());
  const base = options.fields ?? {};

  const emit = (level: Exclude<LogLevel, 'silent'>, message: string, fields?: LogFields) => {
    if (LEVELS[level] < threshold) return;
    const record: LogFields = { level, time: now().toISOString(), message, ...base };
    for (const [k, v] of Object.entries(fields ?? {})) record[k] = v instanceof Error ? serializeError(v) : v;
    write(scrubSecrets(JSON.stringify(record)));
  };

  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createJsonLogger({ ...options, fields: { ...base, ...fields } }),
  };
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

/** A logger that keeps every line in memory, for tests that assert on logs. */
export function createMemoryLogger(
  level: LogLevel = 'debug',
): Logger & { lines: string[]; records: LogFields[] } {
  const lines: string[] = [];
  const logger = createJsonLogger({ level, write: (line) => lines.push(line) });
  const out = Object.assign(logger, { lines }) as Logger & { lines: string[]; records: LogFields[] };
  // A getter, so `records` reflects lines logged after creation (Object.assign would copy it once).
  Object.defineProperty(out, 'records', { get: () => lines.map((l) => JSON.parse(l) as LogFields) });
  return out;
}

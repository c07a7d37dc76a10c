/**
 * Readable terminal output for the CLI: results on stdout, messages and progress on stderr (so stdout
 * can be piped), colour only on a terminal and never under NO_COLOR, and a progress line (messages,
 * bytes, rate, ETA) that redraws in place on a terminal and prints now and then when piped.
 */

import type { TextStyle } from '../shared/demo/receiver.js';
import type { LogFields, Logger, LogLevel } from '../shared/log.js';
import { scrubSecrets, serializeError } from '../shared/log.js';

/** The subset of a stream the output needs (process.stdout, or a capture in tests). */
export interface OutStream {
  /** Text, or raw bytes (`pophook show --raw`). Returns false when the caller should wait for 'drain'. */
  write(chunk: string | Uint8Array): unknown;
  isTTY?: boolean;
  columns?: number;
  /** Present on real streams: lets byte writers respect backpressure. */
  once?(event: 'drain', listener: () => void): unknown;
}

export interface Style extends TextStyle {
  /** Removes colour codes (for width calculations). */
  strip(s: string): string;
}

/** Progress redraws on a terminal at most this often: smooth without flooding the terminal. */
const REDRAW_INTERVAL_MS = 100;
/** When stderr is not a terminal (CI logs), a progress line at most this often. */
const PIPED_PROGRESS_INTERVAL_MS = 10_000;
/** Rate and ETA are hidden until this much time has passed: early rates are noise. */
const MIN_RATE_WINDOW_MS = 500;
/** Width used when the terminal does not say. */
const DEFAULT_COLUMNS = 100;

const ANSI = /\u001b\[[0-9;]*m/g;

function makeStyle(enabled: boolean): Style {
  const wrap = (open: number, close: number) => (s: string) =>
    enabled ? `\u001b[${open}m${s}\u001b[${close}m` : s;
  return {
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    cyan: wrap(36, 39),
    strip: (s) => s.replace(ANSI, ''),
  };
}

/**
 * Colour when the stream is a terminal, unless NO_COLOR is set (no-color.org: any non-empty value) or
 * TERM is dumb. FORCE_COLOR (non-empty, not 0) forces it on; an explicit flag wins over both.
 */
export function shouldUseColour(
  stream: OutStream,
  env: Readonly<Record<string, string | undefined>>,
  flag?: boolean,
): boolean {
  if (flag !== undefined) return flag;
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR && env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

/** 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '?';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** Seconds -> "0:07", "12:34", "1:02:03". */
export function formatClock(totalSeconds: number): string {
  if (!Number.isFinite(totalSeconds) || totalSeconds < 0) return '?';
  const s = Math.round(totalSeconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** Milliseconds -> "850 ms", "3.2 s", "2 m 05 s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, '0')} s`;
}

export interface ProgressCounts {
  messages: number;
  bytes: number;
}

export interface Progress {
  /** Totals, when known (they make the ETA possible). */
  setTotals(totals: Partial<ProgressCounts>): void;
  /** Work done so far, plus an optional short note (the current mailbox, say). */
  update(done: ProgressCounts, note?: string): void;
  /** Removes the line; prints `summary` in its place when given. */
  done(summary?: string): void;
}

export interface Output {
  /** Styling for stdout. */
  readonly style: Style;
  /** Styling for stderr (it may be a terminal when stdout is not, or the reverse). */
  readonly errStyle: Style;
  readonly colour: boolean;
  /** stderr is a terminal: progress redraws in place. */
  readonly interactive: boolean;
  /** A result line on stdout. */
  print(line?: string): void;
  /** Raw text on stdout (JSON). */
  write(text: string): void;
  /**
   * Exact bytes on stdout (a raw message), never scrubbed or re-encoded. Resolves once the stream can
   * take more, so piping a 50 MB message keeps memory flat.
   */
  writeBytes(bytes: Uint8Array): Promise<void>;
  info(message: string): void;
  success(message: string): void;
  warn(message: string): void;
  /** `error: message` on stderr. */
  error(message: string): void;
  /** Rows as aligned columns on stdout. */
  table(rows: readonly (readonly string[])[], options?: { header?: readonly string[] }): void;
  progress(label: string, totals?: Partial<ProgressCounts>): Progress;
}

export interface OutputOptions {
  stdout: OutStream;
  stderr: OutStream;
  env: Readonly<Record<string, string | undefined>>;
  /** --color / --no-color. */
  colour?: boolean;
  now?: () => number;
}

export function createOutput(options: OutputOptions): Output {
  const { stdout, stderr } = options;
  const colour = shouldUseColour(stdout, options.env, options.colour);
  const errColour = shouldUseColour(stderr, options.env, options.colour);
  const style = makeStyle(colour);
  const errStyle = makeStyle(errColour);
  const interactive = stderr.isTTY === true && options.env.TERM !== 'dumb';
  const now = options.now ?? Date.now;
  /** The progress line currently drawn on stderr, if any: cleared before other output. */
  let drawn: { redraw(): void } | undefined;
  let lineVisible = false;

  const clearLine = () => {
    if (lineVisible) {
      stderr.write('\r\u001b[2K');
      lineVisible = false;
    }
  };
  const around = (fn: () => void) => {
    clearLine();
    fn();
    drawn?.redraw();
  };
  const toErr = (text: string) => around(() => stderr.write(`${scrubSecrets(text)}\n`));

  const output: Output = {
    style,
    errStyle,
    colour,
    interactive,
    print: (line = '') => around(() => stdout.write(`${scrubSecrets(line)}\n`)),
    write: (text) => around(() => stdout.write(text)),
    writeBytes: async (bytes) => {
      clearLine();
      if (stdout.write(bytes) === false && stdout.once)
        await new Promise<void>((resolve) => stdout.once?.('drain', resolve));
    },
    info: (m) => toErr(m),
    success: (m) => toErr(`${errStyle.green('ok')} ${m}`),
    warn: (m) => toErr(`${errStyle.yellow('warning:')} ${m}`),
    error: (m) => toErr(`${errStyle.red('error:')} ${m}`),
    table(rows, opts = {}) {
      const all = opts.header ? [opts.header, ...rows] : rows;
      const widths: number[] = [];
      for (const row of all)
        row.forEach((cell, i) => {
          widths[i] = Math.max(widths[i] ?? 0, style.strip(cell).length);
        });
      const render = (row: readonly string[]) =>
        row
          .map((cell, i) =>
            i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - style.strip(cell).length),
          )
          .join('  ')
          .trimEnd();
      if (opts.header) output.print(style.bold(render(opts.header)));
      for (const row of rows) output.print(render(row));
    },
    progress(label, totals = {}) {
      const started = now();
      let counts: ProgressCounts = { messages: 0, bytes: 0 };
      let note: string | undefined;
      let lastDraw = 0;
      const known: Partial<ProgressCounts> = { ...totals };

      const render = (): string => {
        const elapsed = now() - started;
        const parts = [errStyle.bold(label)];
        parts.push(
          known.messages !== undefined
            ? `${counts.messages}/${known.messages} msgs`
            : `${counts.messages} msg${counts.messages === 1 ? '' : 's'}`,
        );
        parts.push(
          known.bytes !== undefined
            ? `${formatBytes(counts.bytes)}/${formatBytes(known.bytes)}`
            : formatBytes(counts.bytes),
        );
        if (elapsed >= MIN_RATE_WINDOW_MS) {
          const seconds = elapsed / 1000;
          parts.push(`${formatBytes(counts.bytes / seconds)}/s`);
          let remaining: number | undefined;
          if (known.bytes !== undefined && counts.bytes > 0)
            remaining = ((known.bytes - counts.bytes) * seconds) / counts.bytes;
          else if (known.messages !== undefined && counts.messages > 0)
            remaining = ((known.messages - counts.messages) * seconds) / counts.messages;
          if (remaining !== undefined) parts.push(`ETA ${formatClock(Math.max(0, remaining))}`);
        }
        if (note) parts.push(errStyle.dim(note));
        return parts.join('  ');
      };
      const draw = () => {
        const line = scrubSecrets(render());
        if (interactive) {
          const columns = stderr.columns ?? DEFAULT_COLUMNS;
          const visible = errStyle.strip(line);
          const fitted = visible.length > columns - 1 ? visible.slice(0, columns - 1) : line;
          stderr.write(`\r\u001b[2K${fitted}`);
          lineVisible = true;
        } else {
          stderr.write(`${line}\n`);
        }
        lastDraw = now();
      };
      const handle = { redraw: () => interactive && draw() };
      drawn = handle;
      if (interactive) draw();
      else lastDraw = started;

      return {
        setTotals(t) {
          Object.assign(known, t);
        },
        update(done, newNote) {
          counts = done;
          note = newNote;
          const interval = interactive ? REDRAW_INTERVAL_MS : PIPED_PROGRESS_INTERVAL_MS;
          if (now() - lastDraw >= interval) draw();
        },
        done(summary) {
          if (drawn === handle) drawn = undefined;
          clearLine();
          if (summary) stderr.write(`${scrubSecrets(summary)}\n`);
        },
      };
    },
  };
  return output;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function formatField(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(serializeError(value));
  if (typeof value === 'string') return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value) ?? String(value);
}

/** A Logger that writes `level message key=value` lines through the output (stderr). */
export function createCliLogger(out: Output, level: LogLevel, base: LogFields = {}): Logger {
  const emit = (lvl: Exclude<LogLevel, 'silent'>, message: string, fields?: LogFields) => {
    if (LEVEL_RANK[lvl] < LEVEL_RANK[level]) return;
    const all = { ...base, ...fields };
    const rest = Object.entries(all)
      .map(([k, v]) => `${k}=${formatField(v)}`)
      .join(' ');
    const s = out.errStyle;
    const tag = lvl === 'error' ? s.red(lvl) : lvl === 'warn' ? s.yellow(lvl) : s.dim(lvl);
    out.info(`${tag} ${message}${rest ? ` ${s.dim(rest)}` : ''}`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createCliLogger(out, level, { ...base, ...fields }),
  };
}

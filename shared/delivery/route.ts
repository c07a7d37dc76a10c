/**
 * Routing: which endpoints an event goes to. An endpoint's `match` lists fields (mailbox, from, to,
 * subject, header); every field given must match, and a field matches when any of its patterns does.
 * A pattern is a glob (`*@example.com`, `?` = one character) or a regex written `/source/flags`.
 * Globs are case-insensitive everywhere; regexes keep their own flags, except that addresses,
 * mailbox ids and headers are always compared case-insensitively (RFC 5321 domains and header names
 * are case-insensitive, and nobody means `Bob@Example.com` to miss).
 *
 * `from` tests every From address; `to` tests every To, Cc and Bcc address. An `email.skipped` event
 * has no headers (the message was never fetched), so only `mailbox` is evaluated for it: an endpoint
 * that would want the message hears that it was skipped.
 */
import type { EndpointConfig, EndpointMatch } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { PophookEvent } from '../mail/event.js';

/**
 * Longest input a pattern is tested against. JS regexes backtrack; bounding the input bounds the
 * worst case of a careless pattern like `/(a+)+$/` on attacker-controlled subjects and headers.
 */
export const MAX_MATCH_INPUT_CHARS = 1024;
/** Longest pattern accepted; longer ones are almost certainly a paste error. */
export const MAX_PATTERN_CHARS = 512;
/** Regex flags that make sense for matching one value (no `g`/`y`: they make `test` stateful). */
const ALLOWED_FLAGS = /^[imsu]*$/;

export type Matcher = (value: string) => boolean;

/** Compiles one pattern. Throws ConfigError for an invalid or over-long regex. */
export function compilePattern(pattern: string, forceCaseInsensitive = false): Matcher {
  if (pattern.length > MAX_PATTERN_CHARS) {
    throw new ConfigError(
      `Match pattern is ${pattern.length} characters; keep it under ${MAX_PATTERN_CHARS}.`,
    );
  }
  let re: RegExp;
  const regex = /^\/(.+)\/([a-z]*)$/s.exec(pattern);
  if (regex) {
    const [, source = '', flags = ''] = regex;
    if (!ALLOWED_FLAGS.test(flags)) {
      throw new ConfigError(`Match regex ${pattern} uses flags "${flags}"; only i, m, s and u are allowed.`);
    }
    const finalFlags = forceCaseInsensitive && !flags.includes('i') ? `${flags}i` : flags;
    try {
      re = new RegExp(source, finalFlags);
    } catch (err) {
      throw new ConfigError(`Match regex ${pattern} is invalid: ${(err as Error).message}`, { cause: err });
    }
  } else {
    const source = pattern
      .split('')
      .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')))
      .join('');
    re = new RegExp(`^${source}$`, 'is');
  }
  return (value) => re.test(value.slice(0, MAX_MATCH_INPUT_CHARS));
}

function compileAny(patterns: string | string[] | undefined, ci: boolean): Matcher | undefined {
  if (patterns === undefined) return undefined;
  const list = (Array.isArray(patterns) ? patterns : [patterns]).map((p) => compilePattern(p, ci));
  return (value) => list.some((m) => m(value));
}

export interface CompiledMatch {
  mailbox?: Matcher;
  from?: Matcher;
  to?: Matcher;
  subject?: Matcher;
  headers: { name: string; matcher: Matcher }[];
}

/** Compiles an endpoint's rules once; throws ConfigError naming the bad pattern. */
export function compileMatch(match: EndpointMatch): CompiledMatch {
  const compiled: CompiledMatch = {
    headers: Object.entries(match.header ?? {}).map(([name, patterns]) => ({
      name: name.toLowerCase(),
      matcher: compileAny(patterns, true) as Matcher,
    })),
  };
  const mailbox = compileAny(match.mailbox, true);
  const from = compileAny(match.from, true);
  const to = compileAny(match.to, true);
  const subject = compileAny(match.subject, false);
  if (mailbox) compiled.mailbox = mailbox;
  if (from) compiled.from = from;
  if (to) compiled.to = to;
  if (subject) compiled.subject = subject;
  return compiled;
}

// Compiled rules per endpoint object: configs are parsed once per process, so this is a one-time cost.
const cache = new WeakMap<EndpointMatch, CompiledMatch>();

function compiledFor(endpoint: EndpointConfig): CompiledMatch {
  let compiled = cache.get(endpoint.match);
  if (!compiled) {
    compiled = compileMatch(endpoint.match);
    cache.set(endpoint.match, compiled);
  }
  return compiled;
}

/** Whether `event` satisfies the compiled rules. */
export function matches(event: PophookEvent, rules: CompiledMatch): boolean {
  if (rules.mailbox && !rules.mailbox(event.data.mailboxId)) return false;
  if (event.type !== 'email.received') return true;
  const data = event.data;
  if (rules.from) {
    const m = rules.from;
    if (!data.from.some((a) => m(a.address))) return false;
  }
  if (rules.to) {
    const m = rules.to;
    if (![...data.to, ...data.cc, ...data.bcc].some((a) => m(a.address))) return false;
  }
  if (rules.subject && !rules.subject(data.subject ?? '')) return false;
  for (const { name, matcher } of rules.headers) {
    if (!data.headers.some((h) => h.name.toLowerCase() === name && matcher(h.value))) return false;
  }
  return true;
}

/**
 * The ids of the enabled endpoints whose rules match `event`, in config order. An endpoint whose rules
 * do not compile is a config error and throws (config validation should have caught it first).
 */
export function routeEvent(event: PophookEvent, endpoints: readonly EndpointConfig[]): string[] {
  return endpoints.filter((e) => e.enabled && matches(event, compiledFor(e))).map((e) => e.id);
}

/** Validates every endpoint's rules (for config checks); returns one message per bad pattern. */
export function validateRoutes(endpoints: readonly EndpointConfig[]): string[] {
  const problems: string[] = [];
  for (const e of endpoints) {
    try {
      compileMatch(e.match);
    } catch (err) {
      problems.push(`endpoints.${e.id}.match: ${(err as Error).message}`);
    }
  }
  return problems;
}

/**
 * The receiving server's authentication verdicts. We trust only the topmost `Authentication-Results`
 * header (RFC 8601): it is the one our mailbox provider added; lower ones came with the message and
 * may be forged by the sender. `Received-SPF` (RFC 7208 §9.1) fills in SPF when the topmost
 * Authentication-Results has none. These are verdicts as reported, not verified by pophook.
 */
import type { AuthResults, HeaderLine } from './event.js';
import { stripComments } from './headers.js';

const METHODS = ['spf', 'dkim', 'dmarc', 'arc'] as const;
type Method = (typeof METHODS)[number];

// RFC 8601 §2.2: method and result are Keywords (letters, digits, hyphens); be lenient about underscores.
const METHOD_SPEC = /^\s*([a-z0-9_-]+)\s*(?:\/\s*[0-9]+\s*)?=\s*([a-z0-9_-]+)/i;
// Keywords are short; anything longer is not a result we recognise.
const MAX_KEYWORD_CHARS = 32;
// An authserv-id is a domain name in practice (RFC 8601 §2.5).
const MAX_AUTHSERV_ID_CHARS = 255;

/** Extracts the verdicts from a message's headers, or null when it carries neither header. */
export function extractAuthResults(headers: readonly HeaderLine[]): AuthResults | null {
  const ar = headers.find((h) => h.name === 'authentication-results');
  const spf = headers.find((h) => h.name === 'received-spf');
  if (!ar && !spf) return null;
  const result: AuthResults = ar ? parseAuthenticationResults(ar.value) : {};
  if (result.spf === undefined && spf) {
    const verdict = parseReceivedSpf(spf.value);
    if (verdict) result.spf = verdict;
  }
  return result;
}

/** Parses one `Authentication-Results` value (RFC 8601 §2.2). Unknown methods are ignored. */
export function parseAuthenticationResults(value: string): AuthResults {
  const segments = splitOutsideQuotes(stripComments(value), ';');
  const out: AuthResults = {};
  const first = segments[0] ?? '';
  let resinfo = segments.slice(1);
  if (METHOD_SPEC.test(first) && !/^\s*"/.test(first)) {
    // No authserv-id (a common producer bug): the first segment is already a result.
    resinfo = segments;
  } else {
    const id = unquote(first.trim().split(/\s+/)[0] ?? '');
    if (id) out.authservId = id.slice(0, MAX_AUTHSERV_ID_CHARS);
  }
  const seen = new Map<Method, string>();
  for (const segment of resinfo) {
    const match = METHOD_SPEC.exec(segment);
    if (!match?.[1] || !match[2]) continue;
    const method = match[1].toLowerCase();
    if (!isMethod(method)) continue;
    const verdict = match[2].toLowerCase().slice(0, MAX_KEYWORD_CHARS);
    const previous = seen.get(method);
    // Several results for one method (e.g. two DKIM signatures): any pass wins, else the first.
    if (previous === undefined || (previous !== 'pass' && verdict === 'pass')) seen.set(method, verdict);
  }
  for (const method of METHODS) {
    const verdict = seen.get(method);
    if (verdict !== undefined) out[method] = verdict;
  }
  return out;
}

/** The result keyword at the start of a `Received-SPF` value (RFC 7208 §9.1), lower-cased. */
export function parseReceivedSpf(value: string): string | undefined {
  const match = /^\s*([a-z]+)\b/i.exec(stripComments(value));
  return match?.[1]?.toLowerCase().slice(0, MAX_KEYWORD_CHARS);
}

function isMethod(name: string): name is Method {
  return (METHODS as readonly string[]).includes(name);
}

function unquote(token: string): string {
  return token.length >= 2 && token.startsWith('"') && token.endsWith('"')
    ? token.slice(1, -1).replace(/\\(.)/g, '$1')
    : token;
}

function splitOutsideQuotes(value: string, separator: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && quoted) {
      current += value.slice(i, i + 2);
      i += 1;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === separator && !quoted) {
      out.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  out.push(current);
  return out;
}

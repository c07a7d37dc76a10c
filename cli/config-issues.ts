/**
 * Turns zod issues into lines a person can act on: the field, what is wrong, what we got, and a fix
 * (`mailboxes[0].retension: unknown field; remove it or fix the spelling (did you mean "retention"?)`).
 * Values under secret-looking keys are never echoed: a password typed inline must not be printed back.
 */
import type { z } from 'zod';
import { formatPath } from '../shared/config/load.js';
import { PophookConfig } from '../shared/config/schema.js';
import { sanitizeForeignText } from '../shared/sanitize.js';

/** Longest value echoed back in a problem line. */
const MAX_ECHOED_CHARS = 60;

const SENSITIVE_KEY = /pass|secret|token|key/i;

type Path = ReadonlyArray<PropertyKey>;

function valueAt(root: unknown, path: Path): unknown {
  let node = root;
  for (const part of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

function isSensitive(path: Path): boolean {
  return path.some((p) => typeof p === 'string' && SENSITIVE_KEY.test(p));
}

/** "the text "abc"", "the number 7", "a list", ... */
export function describeValue(value: unknown, sensitive = false): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  if (sensitive) return `a ${typeof value === 'string' ? 'text' : typeof value} value (not shown)`;
  if (typeof value === 'string')
    return `the text ${JSON.stringify(sanitizeForeignText(value, MAX_ECHOED_CHARS))}`;
  return `the ${typeof value} ${String(value)}`;
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = prev[j] ?? 0;
      prev[j] = Math.min(above + 1, (prev[j - 1] ?? 0) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = above;
    }
  }
  return prev[b.length] ?? 0;
}

/** The closest candidate within a few edits, if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestScore) {
      best = c;
      bestScore = d;
    }
  }
  return best !== undefined && bestScore <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

interface Def {
  type: string;
  shape?: Record<string, { _zod: { def: Def } }>;
  element?: { _zod: { def: Def } };
  innerType?: { _zod: { def: Def } };
  in?: { _zod: { def: Def } };
  options?: ReadonlyArray<{ _zod: { def: Def } }>;
}

function unwrap(def: Def): Def[] {
  if ((def.type === 'optional' || def.type === 'default' || def.type === 'nullable') && def.innerType)
    return unwrap(def.innerType._zod.def);
  if (def.type === 'pipe' && def.in) return unwrap(def.in._zod.def);
  if (def.type === 'union' && def.options) return def.options.flatMap((o) => unwrap(o._zod.def));
  return [def];
}

/** Field names the schema allows for the object at `path` (the union of all variants). */
export function knownKeysAt(path: Path): string[] {
  let defs = unwrap((PophookConfig as unknown as { _zod: { def: Def } })._zod.def);
  for (const part of path) {
    const next: Def[] = [];
    for (const def of defs) {
      if (def.type === 'array' && typeof part === 'number' && def.element)
        next.push(...unwrap(def.element._zod.def));
      const child = typeof part === 'string' ? def.shape?.[part] : undefined;
      if (def.type === 'object' && child) next.push(...unwrap(child._zod.def));
    }
    defs = next;
  }
  return [...new Set(defs.flatMap((d) => (d.type === 'object' && d.shape ? Object.keys(d.shape) : [])))];
}

const SECRET_REF_HINT =
  'secrets are references, not values: write { secret: "name" } and keep the value in AWS Secrets Manager or the local secrets file';

/** One or more problem lines for one issue, each starting with the field path. */
export function explainConfigIssue(issue: z.core.$ZodIssue, raw: unknown): string[] {
  const where = formatPath(issue.path);
  const value = valueAt(raw, issue.path);
  const got = describeValue(value, isSensitive(issue.path));

  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeysAt(issue.path);
      return issue.keys.map((key) => {
        const field = formatPath([...issue.path, key]);
        const guess = closest(key, known);
        const hint = guess
          ? ` (did you mean "${guess}"?)`
          : known.length > 0
            ? ` (allowed: ${known.join(', ')})`
            : '';
        return `${field}: unknown field; remove it or fix the spelling${hint}`;
      });
    }
    case 'invalid_type': {
      if (value === undefined)
        return [`${where}: required field is missing; add it (expected ${issue.expected})`];
      if (issue.expected === 'object' && typeof value === 'string' && isSensitive(issue.path))
        return [`${where}: ${SECRET_REF_HINT}`];
      return [`${where}: expected ${article(issue.expected)} (got ${got})`];
    }
    case 'too_small':
    case 'too_big': {
      const bound = Number(issue.code === 'too_small' ? issue.minimum : issue.maximum);
      const inclusive = issue.inclusive !== false;
      if (issue.origin === 'string' && issue.code === 'too_small' && bound === 1)
        return [`${where}: must not be empty`];
      if (issue.origin === 'array' || issue.origin === 'set')
        return [
          `${where}: needs ${issue.code === 'too_small' ? 'at least' : 'at most'} ${bound} item${bound === 1 ? '' : 's'} (got ${Array.isArray(value) ? value.length : got})`,
        ];
      if (issue.origin === 'string')
        return [
          `${where}: must be ${issue.code === 'too_small' ? 'at least' : 'at most'} ${bound} characters long`,
        ];
      const relation =
        issue.code === 'too_small'
          ? inclusive
            ? 'at least'
            : 'more than'
          : inclusive
            ? 'at most'
            : 'less than';
      return [`${where}: must be ${relation} ${bound} (got ${got})`];
    }
    case 'invalid_value': {
      const options = issue.values.map((v) => JSON.stringify(v));
      const guess = typeof value === 'string' ? closest(value, issue.values.map(String)) : undefined;
      const hint = guess ? ` (did you mean "${guess}"?)` : '';
      return [
        options.length === 1
          ? `${where}: must be ${options[0]} (got ${got})`
          : `${where}: use one of ${options.join(', ')} (got ${got})${hint}`,
      ];
    }
    case 'invalid_union': {
      const detail = issue as typeof issue & { discriminator?: string; options?: unknown[] };
      if (detail.options && detail.discriminator) {
        const allowed = detail.options.map(String);
        const guess = typeof value === 'string' ? closest(value, allowed) : undefined;
        return [
          `${where}: use one of ${allowed.map((o) => JSON.stringify(o)).join(', ')} (got ${got})${guess ? ` (did you mean "${guess}"?)` : ''}`,
        ];
      }
      if (typeof value === 'string' && isSensitive(issue.path)) return [`${where}: ${SECRET_REF_HINT}`];
      return [`${where}: ${issue.message} (got ${got})`];
    }
    case 'invalid_format': {
      if (issue.format === 'url')
        return [`${where}: must be a full URL such as https://hooks.example.com/pophook (got ${got})`];
      if (issue.format === 'email') return [`${where}: must be an email address (got ${got})`];
      return [`${where}: ${issue.message} (got ${got})`];
    }
    case 'not_multiple_of':
      return [`${where}: must be a whole number (got ${got})`];
    default:
      return [`${where}: ${issue.message}`];
  }
}

function article(type: string): string {
  if (type === 'int') return 'a whole number';
  if (type === 'array') return 'a list';
  if (type === 'string') return 'text';
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/** Every issue of a failed parse, explained, in schema order. */
export function explainConfigIssues(issues: ReadonlyArray<z.core.$ZodIssue>, raw: unknown): string[] {
  return issues.flatMap((issue) => explainConfigIssue(issue, raw));
}

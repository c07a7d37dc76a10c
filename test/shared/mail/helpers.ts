/**
 * Shared helpers for the mail parser tests: inputs, a recording attachment writer, streamed message
 * generators and a small JSON Schema (draft 2020-12 subset) validator for docs/event.schema.json.
 */
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { ParseConfig } from '../../../shared/config/schema.js';
import type { EmailReceivedData } from '../../../shared/mail/event.js';
import type { AttachmentMeta, BytesParseInput, ParseDeps, ParseInput } from '../../../shared/mail/parse.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CORPUS_DIR = join(REPO_ROOT, 'test', 'fixtures', 'mail');
export const RAW_SHA = 'a'.repeat(64);

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Every message file of the committed corpus (licence and notes files excluded). */
export function corpusFiles(): string[] {
  const out: string[] = [];
  for (const dir of readdirSync(CORPUS_DIR).sort()) {
    const full = join(CORPUS_DIR, dir);
    if (!statSync(full).isDirectory()) continue;
    for (const file of readdirSync(full).sort()) {
      if (/^(LICENSE|COPYING)/.test(file)) continue;
      out.push(join(full, file));
    }
  }
  return out;
}

export function makeInput(source: Readable | Buffer | string, limits: Partial<ParseConfig> = {}): ParseInput {
  const stream =
    source instanceof Readable
      ? source
      : Readable.from([typeof source === 'string' ? Buffer.from(source) : source]);
  return {
    source: stream,
    mailboxId: 'inbox-1',
    messageKey: 'msg-0001',
    eventId: 'evt_0001',
    uidl: 'uidl-1',
    receivedAt: '2024-05-01T12:00:00.000Z',
    raw: { key: 'raw/inbox-1/2024/05/01/msg-0001.eml', size: 1234, sha256: RAW_SHA },
    limits: limits as ParseConfig,
  };
}

/** makeInput's fields with the message as an in-memory Buffer (the `bytes` fast path). */
export function bytesInput(bytes: Buffer | string, limits: Partial<ParseConfig> = {}): BytesParseInput {
  const { source, ...base } = makeInput(Buffer.alloc(0), limits);
  source.destroy();
  return { ...base, bytes: typeof bytes === 'string' ? Buffer.from(bytes) : bytes };
}

export interface RecordedAttachment {
  index: number;
  meta: AttachmentMeta;
  bytes: Buffer;
  key: string;
}

/** A writeAttachment that keeps (small) attachments in memory and records the call order. */
export function recordingDeps(options: { keep?: boolean } = {}): ParseDeps & { calls: RecordedAttachment[] } {
  const calls: RecordedAttachment[] = [];
  return {
    calls,
    async writeAttachment(index, meta, content) {
      const hash = createHash('sha256');
      const chunks: Buffer[] = [];
      let size = 0;
      await pipeline(
        content,
        new Writable({
          write(chunk: Buffer, _encoding, callback) {
            hash.update(chunk);
            size += chunk.length;
            if (options.keep !== false) chunks.push(chunk);
            callback();
          },
        }),
      );
      const key = `attachments/test/${index}`;
      calls.push({ index, meta, bytes: Buffer.concat(chunks), key });
      return { key, size, sha256: hash.digest('hex') };
    },
  };
}

/** A readable that emits `parts` lazily, so huge generated messages never sit in memory whole. */
export function lazyStream(parts: Iterable<Buffer | string>): Readable {
  const iterator = parts[Symbol.iterator]();
  return new Readable({
    read() {
      for (;;) {
        const next = iterator.next();
        if (next.done) {
          this.push(null);
          return;
        }
        const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
        if (!this.push(chunk)) return;
      }
    },
  });
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
// Not allowed in SQS messages (and troublesome in JSON consumers): C0 controls but TAB/LF/CR, U+FFFE/F.
const SQS_FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

/** Every string in the event, with its path, for hygiene checks. */
export function stringsOf(value: unknown, path = '$', out: [string, string][] = []): [string, string][] {
  if (typeof value === 'string') out.push([path, value]);
  else if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) stringsOf(v, `${path}[${i}]`, out);
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      stringsOf(k, `${path}.<key>`, out);
      stringsOf(v, `${path}.${k}`, out);
    }
  }
  return out;
}

/** Paths of strings that are not safe for JSON/SQS: lone surrogates, NUL and other controls. */
export function unsafeStrings(event: EmailReceivedData): string[] {
  return stringsOf(event)
    .filter(([, s]) => LONE_SURROGATE.test(s) || SQS_FORBIDDEN.test(s))
    .map(([p]) => p);
}

/** Samples RSS while `work` runs; returns the peak growth over the baseline, in bytes. */
export async function peakRssGrowth<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 5);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, growth: peak - baseline };
  } finally {
    clearInterval(timer);
  }
}

type JsonSchema = Record<string, unknown>;

/**
 * Validates `value` against a JSON Schema, supporting the keywords zod emits for our schemas
 * ($ref to #/$defs, type, const, enum, properties, required, additionalProperties, propertyNames,
 * items, anyOf, oneOf, minimum, maximum, pattern, format date-time). Returns error paths; [] = valid.
 * Throws on a keyword it does not know, so the schema cannot silently outgrow the validator.
 */
export function validateJsonSchema(root: JsonSchema, value: unknown): string[] {
  const errors: string[] = [];
  const KNOWN = new Set([
    '$schema',
    '$defs',
    '$ref',
    'title',
    'description',
    'type',
    'const',
    'enum',
    'properties',
    'required',
    'additionalProperties',
    'propertyNames',
    'items',
    'anyOf',
    'oneOf',
    'minimum',
    'maximum',
    'pattern',
    'format',
  ]);
  const typeOf = (v: unknown): string => {
    if (v === null) return 'null';
    if (Array.isArray(v)) return 'array';
    if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
    return typeof v;
  };
  const check = (schema: JsonSchema, v: unknown, path: string): void => {
    for (const key of Object.keys(schema)) {
      if (!KNOWN.has(key)) throw new Error(`validator does not support keyword "${key}" at ${path}`);
    }
    if (typeof schema.$ref === 'string') {
      const name = schema.$ref.replace(/^#\/\$defs\//, '');
      const target = (root.$defs as Record<string, JsonSchema> | undefined)?.[name];
      if (!target) throw new Error(`unresolvable $ref ${schema.$ref}`);
      check(target, v, path);
    }
    if (schema.type !== undefined) {
      const types = ([] as string[]).concat(schema.type as string | string[]);
      const actual = typeOf(v);
      const ok = types.some((t) => t === actual || (t === 'number' && actual === 'integer'));
      if (!ok) {
        errors.push(`${path}: expected ${types.join('|')}, got ${actual}`);
        return;
      }
    }
    if ('const' in schema && v !== schema.const)
      errors.push(`${path}: expected const ${String(schema.const)}`);
    if (Array.isArray(schema.enum) && !schema.enum.includes(v)) errors.push(`${path}: not in enum`);
    if (typeof v === 'number') {
      if (typeof schema.minimum === 'number' && v < schema.minimum) errors.push(`${path}: below minimum`);
      if (typeof schema.maximum === 'number' && v > schema.maximum) errors.push(`${path}: above maximum`);
    }
    if (typeof v === 'string') {
      if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern).test(v)) {
        errors.push(`${path}: does not match pattern`);
      }
      if (schema.format === 'date-time' && Number.isNaN(Date.parse(v)))
        errors.push(`${path}: not a date-time`);
    }
    if (Array.isArray(v) && schema.items) {
      for (const [i, item] of v.entries()) check(schema.items as JsonSchema, item, `${path}[${i}]`);
    }
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const obj = v as Record<string, unknown>;
      const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
      for (const req of (schema.required ?? []) as string[]) {
        if (!(req in obj)) errors.push(`${path}: missing ${req}`);
      }
      for (const [k, item] of Object.entries(obj)) {
        if (schema.propertyNames) check(schema.propertyNames as JsonSchema, k, `${path}.<${k}>`);
        if (props[k]) check(props[k], item, `${path}.${k}`);
        else if (schema.additionalProperties === false) errors.push(`${path}: unexpected property ${k}`);
        else if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
          check(schema.additionalProperties as JsonSchema, item, `${path}.${k}`);
        }
      }
    }
    for (const keyword of ['anyOf', 'oneOf'] as const) {
      const options = schema[keyword] as JsonSchema[] | undefined;
      if (!options) continue;
      const passing = options.filter((option) => {
        const saved = errors.length;
        check(option, v, path);
        const ok = errors.length === saved;
        errors.length = saved;
        return ok;
      }).length;
      if (keyword === 'anyOf' ? passing === 0 : passing !== 1) {
        errors.push(`${path}: ${keyword} matched ${passing} of ${options.length}`);
      }
    }
  };
  check(root, value, '$');
  return errors;
}

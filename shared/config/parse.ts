/**
 * Validates an already-parsed config object. Kept apart from the file loader so the Lambda bundles
 * (which get the config as JSON) do not carry a YAML parser.
 */
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { PophookConfig } from './schema.js';

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(top level)';
}

export function formatIssues(issues: ReadonlyArray<z.core.$ZodIssue>): string[] {
  return issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`);
}

/** Validates an already-parsed object. */
export function parseConfig(raw: unknown, source = 'config'): PophookConfig {
  const result = PophookConfig.safeParse(raw);
  if (!result.success) {
    const lines = formatIssues(result.error.issues);
    throw new ConfigError(`${source} is invalid:\n  - ${lines.join('\n  - ')}`, {
      details: { issues: lines },
    });
  }
  return result.data;
}

/**
 * Reads and validates the config file (YAML or JSON). Errors name the field and say how to fix it,
 * e.g. `mailboxes[0].port: expected a number from 1 to 65535 (got "abc")`.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
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

export function parseConfigText(text: string, source = 'config'): PophookConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text); // YAML is a superset of JSON, so one parser reads both.
  } catch (err) {
    throw new ConfigError(`${source} is not valid YAML or JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseConfig(raw, source);
}

export async function loadConfigFile(path: string): Promise<PophookConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `Cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      {
        cause: err,
      },
    );
  }
  return parseConfigText(text, path);
}

/**
 * Reads and validates the config file (YAML or JSON). Errors name the field and say how to fix it,
 * e.g. `mailboxes[0].port: expected a number from 1 to 65535 (got "abc")`.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';
import { parseConfig } from './parse.js';
import type { PophookConfig } from './schema.js';

export { formatIssues, formatPath, parseConfig } from './parse.js';

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

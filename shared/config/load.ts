/**
 * Reads and validates the config file (YAML or JSON). Errors name the field and say how to fix it,
 * e.g. `mailboxes[0].port: expected a number from 1 to 65535 (got "abc")`.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
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

/**
 * `ca:` may be inline PEM or a file path (relative to `baseDir`); paths are replaced by the file's
 * PEM text here, at the boundary, so the Lambda functions (which have no such file) get the PEM.
 */
export async function inlineCaFiles(
  config: PophookConfig,
  baseDir: string,
  source = 'config',
): Promise<void> {
  await Promise.all(
    config.mailboxes.map(async (m, i) => {
      if (m.ca === undefined || m.ca.includes('-----BEGIN')) return;
      const caFile = resolve(baseDir, m.ca);
      try {
        m.ca = await readFile(caFile, 'utf8');
      } catch (err) {
        throw new ConfigError(
          `${source}: mailboxes[${i}].ca: cannot read the file ${m.ca} (${(err as NodeJS.ErrnoException).code ?? 'error'}); give a PEM certificate inline or a readable file path.`,
        );
      }
      if (!m.ca.includes('-----BEGIN'))
        throw new ConfigError(
          `${source}: mailboxes[${i}].ca: ${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----).`,
        );
    }),
  );
}

export async function loadConfigFile(path: string, baseDir = process.cwd()): Promise<PophookConfig> {
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
  const config = parseConfigText(text, path);
  await inlineCaFiles(config, baseDir, path);
  return config;
}

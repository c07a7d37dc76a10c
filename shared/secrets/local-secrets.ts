/**
 * Local SecretResolver: an environment variable `POPHOOK_SECRET_<NAME>` (name upper-cased, every other
 * character `_`) wins; otherwise the key `<name>` of the local secrets file (`local.secretsFile`, a JSON
 * object `{ "name": "value" }`, or `{ "name": { "field": "value" } }` for references with a field).
 * The environment is injected: only the boundary module reads process.env. The file is read once.
 */
import { readFile, stat } from 'node:fs/promises';
import type { SecretRef } from '../config/schema.js';
import { SecretError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { describeRef, finishSecret, pickField, type SecretResolver } from './resolver.js';

const ENV_PREFIX = 'POPHOOK_SECRET_';

/** The environment variable that holds secret `name` locally. */
export function secretEnvName(name: string): string {
  return `${ENV_PREFIX}${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export interface LocalSecretResolverOptions {
  /** Path of the local secrets file, if the config names one. */
  file?: string;
  /** The environment (process.env at the boundary; a plain object in tests). */
  env: Readonly<Record<string, string | undefined>>;
  logger?: Logger;
}

export class LocalSecretResolver implements SecretResolver {
  private readonly file: string | undefined;
  private readonly env: Readonly<Record<string, string | undefined>>;
  private readonly logger: Logger;
  private contents: Promise<Record<string, unknown>> | undefined;

  constructor(options: LocalSecretResolverOptions) {
    this.file = options.file;
    this.env = options.env;
    this.logger = options.logger ?? silentLogger;
  }

  async resolve(ref: SecretRef): Promise<string> {
    const envName = secretEnvName(ref.secret);
    const fromEnv = this.env[envName];
    if (fromEnv !== undefined) return finishSecret(ref, fromEnv, `environment variable ${envName}`);

    if (this.file !== undefined) {
      const where = `the local secrets file ${this.file}`;
      const all = await this.load(this.file);
      const value = Object.hasOwn(all, ref.secret) ? all[ref.secret] : undefined;
      if (typeof value === 'string') return finishSecret(ref, value, where);
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        if (ref.field === undefined)
          throw new SecretError(
            'SECRET_FIELD_MISSING',
            `Secret "${ref.secret}" in ${where} is an object; add "field" to the reference in the config to pick one value.`,
            { details: { secret: ref.secret } },
          );
        return finishSecret(
          { secret: ref.secret },
          pickField(ref, value as Record<string, unknown>, where),
          where,
        );
      }
      if (value !== undefined)
        throw new SecretError(
          'SECRET_NOT_TEXT',
          `Secret "${ref.secret}" in ${where} must be a string (or an object of strings).`,
          { details: { secret: ref.secret } },
        );
    }

    throw new SecretError(
      'SECRET_NOT_FOUND',
      `The ${describeRef(ref)} is not set. ` +
        (this.file === undefined
          ? `Set the environment variable ${envName}, or name a secrets file in local.secretsFile.`
          : `Add "${ref.secret}" to ${this.file} or set the environment variable ${envName}.`),
      { details: { secret: ref.secret, field: ref.field, envName } },
    );
  }

  private load(file: string): Promise<Record<string, unknown>> {
    if (!this.contents) {
      const pending = this.read(file);
      this.contents = pending;
      // A failed read is not cached: a later call retries, e.g. once the file is fixed.
      pending.catch(() => {
        if (this.contents === pending) this.contents = undefined;
      });
    }
    return this.contents;
  }

  private async read(file: string): Promise<Record<string, unknown>> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
      const { mode } = await stat(file);
      if ((mode & 0o077) !== 0)
        this.logger.warn('local secrets file is readable by other users; run chmod 600 on it', { file });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new SecretError(
        'SECRET_FILE_UNREADABLE',
        `Cannot read the local secrets file ${file} (${code}). Create it as a JSON object {"name": "value"} ` +
          'with mode 600, or fix local.secretsFile in the config.',
        { cause: err, details: { file, errno: code } },
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // No cause: JSON.parse messages quote the file's text, i.e. secrets.
      parsed = undefined;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw new SecretError(
        'SECRET_FILE_INVALID',
        `The local secrets file ${file} is not a JSON object. Write it as {"name": "value", ...}.`,
        { details: { file } },
      );
    return parsed as Record<string, unknown>;
  }
}

/**
 * Writing secrets back: a rotated OAuth refresh token (Microsoft issues a new one on every refresh) and
 * the token `pophook auth` obtains. Two implementations: Secrets Manager, and the local secrets file.
 *
 * Both are read-compare-write: a rotated token is stored only if the stored value is still the one we
 * refreshed with (`expectedPrevious`). If another run rotated first, its token stays and ours is dropped
 * ('superseded'). No token is lost by that, nor by the remaining race (Secrets Manager has no
 * compare-and-swap, so two runs can both pass the compare and the last PutSecretValue wins): each run
 * got its own valid refresh token from the provider, and redeeming a refresh token does not revoke the
 * earlier ones (Microsoft keeps them valid until their own expiry; Google does not rotate at all), so
 * whichever value ends up stored still works. Runs of the same mailbox are also serialised by the poll
 * lease, so the race needs `pophook check` or an operator running alongside a poll.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { SecretRef } from '../config/schema.js';
import { SecretError } from '../errors.js';
import { registerSecret } from '../log.js';
import { secretEnvName } from './local-secrets.js';
import { describeRef } from './resolver.js';

/**
 * `written`: stored. `unchanged`: the store already held `value`. `superseded`: the stored value is no
 * longer `expectedPrevious` (another run rotated first, or the secret is gone), so nothing was written.
 */
export type SecretWriteOutcome = 'written' | 'unchanged' | 'superseded';

export interface SecretWriter {
  /**
   * Stores `value` at `ref` (the whole secret, or `ref.field` of a JSON secret, keeping its other
   * fields) if the stored value is still `expectedPrevious`. `undefined` writes unconditionally and
   * creates the secret when missing (used by `pophook auth`). Throws SecretError; never quotes values.
   */
  write(ref: SecretRef, value: string, expectedPrevious: string | undefined): Promise<SecretWriteOutcome>;
  /** Where `ref` lives, for messages ("Secrets Manager secret "x""), never the value. */
  describe(ref: SecretRef): string;
}

// ---------------------------------------------------------------------------------------------------
// Secrets Manager

export interface AwsSecretWriterOptions {
  client: SecretsManagerClient;
}

/**
 * Secrets Manager writer: GetSecretValue, compare, PutSecretValue. The ClientRequestToken is derived
 * from the secret id, the version we read and the new text: a retried PutSecretValue (SDK retry after
 * a lost response) is then idempotent instead of creating a second version, while a later, different
 * transition gets a different token. Needs secretsmanager:GetSecretValue and PutSecretValue (and
 * kms:GenerateDataKey/Decrypt on a customer-managed key).
 */
export class AwsSecretWriter implements SecretWriter {
  private readonly client: SecretsManagerClient;

  constructor(options: AwsSecretWriterOptions) {
    this.client = options.client;
  }

  describe(ref: SecretRef): string {
    return `Secrets Manager ${describeRef(ref)}`;
  }

  async write(
    ref: SecretRef,
    value: string,
    expectedPrevious: string | undefined,
  ): Promise<SecretWriteOutcome> {
    registerSecret(value);
    if (expectedPrevious !== undefined) registerSecret(expectedPrevious);
    const id = ref.secret;
    let text: string | undefined;
    let versionId = '';
    try {
      const out = await this.client.send(new GetSecretValueCommand({ SecretId: id }));
      if (typeof out.SecretString !== 'string')
        throw new SecretError(
          'SECRET_NOT_TEXT',
          `Secret "${id}" holds binary data; pophook stores tokens as a SecretString. Delete it or point the config at another secret.`,
          { details: { secret: id } },
        );
      text = out.SecretString;
      registerSecret(text);
      versionId = out.VersionId ?? '';
    } catch (err) {
      if (err instanceof SecretError) throw err;
      if (errName(err) !== 'ResourceNotFoundException') throw mapAwsError(id, err, 'read');
      // Gone while we held a token from it: someone deleted it on purpose; do not bring it back.
      if (expectedPrevious !== undefined) return 'superseded';
    }

    const next = nextText(ref, text, value, expectedPrevious, `Secrets Manager`);
    if (typeof next !== 'string') return next.outcome;
    const token = requestToken(id, versionId, next);
    try {
      if (text === undefined)
        await this.client.send(
          new CreateSecretCommand({ Name: id, SecretString: next, ClientRequestToken: token }),
        );
      else
        await this.client.send(
          new PutSecretValueCommand({ SecretId: id, SecretString: next, ClientRequestToken: token }),
        );
    } catch (err) {
      throw mapAwsError(id, err, 'write');
    }
    return 'written';
  }
}

/** A UUID-shaped idempotency token (Secrets Manager wants 32-64 characters). */
function requestToken(secretId: string, versionId: string, text: string): string {
  const h = createHash('sha256').update(`${secretId}\0${versionId}\0${text}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function errName(err: unknown): string {
  return err && typeof err === 'object' && 'name' in err ? String(err.name) : 'Error';
}

function mapAwsError(id: string, err: unknown, op: 'read' | 'write'): SecretError {
  const name = errName(err);
  const details = { secret: id, awsError: name };
  if (name === 'AccessDeniedException')
    return new SecretError(
      'SECRET_ACCESS_DENIED',
      `Not allowed to ${op} secret "${id}". Grant secretsmanager:GetSecretValue and secretsmanager:PutSecretValue on it ` +
        '(and secretsmanager:CreateSecret for a new secret) to this role or user.',
      { cause: err, details },
    );
  if (name === 'DecryptionFailure' || name === 'EncryptionFailure')
    return new SecretError(
      'SECRET_ACCESS_DENIED',
      `Secret "${id}" could not be ${op === 'read' ? 'decrypted' : 'encrypted'}. Grant kms:Decrypt and kms:GenerateDataKey on its KMS key.`,
      { cause: err, details },
    );
  return new SecretError(
    'SECRET_UNAVAILABLE',
    `Secrets Manager failed to ${op} secret "${id}" (${name}); it will be retried.`,
    { cause: err, details, transient: true },
  );
}

/**
 * The compare step shared by both writers: the new whole-secret text, or the outcome when nothing is
 * to be written. `text` is the stored text (undefined when the secret does not exist).
 */
function nextText(
  ref: SecretRef,
  text: string | undefined,
  value: string,
  expectedPrevious: string | undefined,
  where: string,
): string | { outcome: SecretWriteOutcome } {
  if (ref.field === undefined) {
    if (text === value) return { outcome: 'unchanged' };
    if (expectedPrevious !== undefined && text !== expectedPrevious) return { outcome: 'superseded' };
    return value;
  }
  let object: Record<string, unknown> = {};
  if (text !== undefined) {
    const parsed = parseObject(text);
    if (!parsed)
      throw new SecretError(
        'SECRET_NOT_JSON',
        `Secret "${ref.secret}" in ${where} is not a JSON object, so its field "${ref.field}" cannot be written. ` +
          'Store it as {"field": "value"} or remove "field" from the reference in the config.',
        { details: { secret: ref.secret, field: ref.field } },
      );
    object = parsed;
  }
  const current = Object.hasOwn(object, ref.field) ? object[ref.field] : undefined;
  if (current === value) return { outcome: 'unchanged' };
  if (expectedPrevious !== undefined && current !== expectedPrevious) return { outcome: 'superseded' };
  return JSON.stringify({ ...object, [ref.field]: value });
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
  } catch {
    // not JSON; no cause kept (the text is a secret)
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Local secrets file

/** How long a writer waits for another process's lock before giving up. */
export const LOCK_TIMEOUT_MS = 10_000;
/** A lock older than this was left by a crashed process (a write takes milliseconds). */
export const STALE_LOCK_MS = 30_000;
/** Pause between attempts to take the lock. */
const LOCK_RETRY_MS = 20;

export interface LocalSecretWriterOptions {
  /** The local secrets file (`local.secretsFile`). */
  file: string;
  /**
   * The environment the LocalSecretResolver reads: a secret set there (POPHOOK_SECRET_<NAME>) wins over
   * the file, so writing the file would change nothing; that is refused with a clear error.
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** @default LOCK_TIMEOUT_MS */
  lockTimeoutMs?: number;
  /** @default STALE_LOCK_MS */
  staleLockMs?: number;
}

/**
 * Writes the local secrets file (`{ "name": "value" }` or `{ "name": { "field": "value" } }`) keeping
 * every other key: under an exclusive lock file (`<file>.lock`, O_EXCL), read, compare, write a temp file
 * (mode 600) in the same directory, fsync, rename over the original (atomic: a reader sees the old or
 * the new file, never half of one), fsync the directory.
 */
export class LocalSecretWriter implements SecretWriter {
  private readonly file: string;
  private readonly env: Readonly<Record<string, string | undefined>>;
  private readonly lockTimeoutMs: number;
  private readonly staleLockMs: number;

  constructor(options: LocalSecretWriterOptions) {
    this.file = options.file;
    this.env = options.env ?? {};
    this.lockTimeoutMs = options.lockTimeoutMs ?? LOCK_TIMEOUT_MS;
    this.staleLockMs = options.staleLockMs ?? STALE_LOCK_MS;
  }

  describe(ref: SecretRef): string {
    return `${describeRef(ref)} in the local secrets file ${this.file}`;
  }

  async write(
    ref: SecretRef,
    value: string,
    expectedPrevious: string | undefined,
  ): Promise<SecretWriteOutcome> {
    registerSecret(value);
    if (expectedPrevious !== undefined) registerSecret(expectedPrevious);
    const envName = secretEnvName(ref.secret);
    if (this.env[envName] !== undefined)
      throw new SecretError(
        'SECRET_NOT_WRITABLE',
        `Secret "${ref.secret}" is set by the environment variable ${envName}, which pophook cannot update and which ` +
          `wins over ${this.file}. Unset ${envName} and keep the value in the secrets file instead.`,
        { details: { secret: ref.secret, envName } },
      );
    const release = await this.lock();
    try {
      const all = await this.read(expectedPrevious === undefined);
      if (!all) return 'superseded';
      const entry = Object.hasOwn(all, ref.secret) ? all[ref.secret] : undefined;
      let next: unknown;
      if (ref.field === undefined) {
        if (entry !== undefined && typeof entry !== 'string')
          throw new SecretError(
            'SECRET_NOT_TEXT',
            `Secret "${ref.secret}" in ${this.file} is an object; add "field" to the reference in the config.`,
            { details: { secret: ref.secret } },
          );
        const out = nextText(ref, entry, value, expectedPrevious, this.file);
        if (typeof out !== 'string') return out.outcome;
        next = out;
      } else {
        if (entry !== undefined && (entry === null || typeof entry !== 'object' || Array.isArray(entry)))
          throw new SecretError(
            'SECRET_NOT_JSON',
            `Secret "${ref.secret}" in ${this.file} is not an object, so its field "${ref.field}" cannot be written.`,
            { details: { secret: ref.secret, field: ref.field } },
          );
        const out = nextText(
          ref,
          entry === undefined ? undefined : JSON.stringify(entry),
          value,
          expectedPrevious,
          this.file,
        );
        if (typeof out !== 'string') return out.outcome;
        next = JSON.parse(out);
      }
      await this.replace({ ...all, [ref.secret]: next });
      return 'written';
    } finally {
      await release();
    }
  }

  /** The file's object; `{}` when missing and `create`, undefined when missing otherwise. */
  private async read(create: boolean): Promise<Record<string, unknown> | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'ENOENT') return create ? {} : undefined;
      throw new SecretError(
        'SECRET_FILE_UNREADABLE',
        `Cannot read the local secrets file ${this.file} (${code}).`,
        {
          cause: err,
          details: { file: this.file, errno: code },
        },
      );
    }
    if (text.trim() === '' && create) return {};
    const parsed = parseObject(text);
    if (!parsed)
      throw new SecretError(
        'SECRET_FILE_INVALID',
        `The local secrets file ${this.file} is not a JSON object; pophook will not overwrite it. Fix it to {"name": "value", ...}.`,
        { details: { file: this.file } },
      );
    return parsed;
  }

  private async replace(object: Record<string, unknown>): Promise<void> {
    const tmp = `${this.file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(`${JSON.stringify(object, null, 2)}\n`, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new SecretError(
        'SECRET_FILE_UNWRITABLE',
        `Cannot write the local secrets file ${this.file} (${code}).`,
        {
          cause: err,
          details: { file: this.file, errno: code },
        },
      );
    }
    // The rename is durable only once the directory entry is; some filesystems refuse a directory fsync.
    try {
      const dir = await open(dirname(this.file), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch {
      // best effort
    }
  }

  /** Takes `<file>.lock` (O_EXCL), breaking a stale one; returns the release function. */
  private async lock(): Promise<() => Promise<void>> {
    const path = `${this.file}.lock`;
    const mine = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
    const deadline = Date.now() + this.lockTimeoutMs;
    for (;;) {
      try {
        const fh = await open(path, 'wx', 0o600);
        try {
          await fh.writeFile(mine, 'utf8');
        } finally {
          await fh.close();
        }
        return async () => {
          // Remove only our own lock: if it was broken as stale meanwhile, another holder owns the path.
          const content = await readFile(path, 'utf8').catch(() => '');
          if (content === mine) await unlink(path).catch(() => undefined);
        };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST')
          throw new SecretError(
            'SECRET_FILE_UNWRITABLE',
            `Cannot create the lock file ${path} (${code ?? 'error'}).`,
            {
              cause: err,
              details: { file: path, errno: code },
            },
          );
      }
      const before = await stat(path).catch(() => undefined);
      if (before && Date.now() - before.mtimeMs > this.staleLockMs) {
        // Re-check just before removing, so a lock re-created a moment ago by another process survives.
        const again = await stat(path).catch(() => undefined);
        if (again && again.ino === before.ino && again.mtimeMs === before.mtimeMs)
          await unlink(path).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline)
        throw new SecretError(
          'SECRET_FILE_LOCKED',
          `Another pophook process holds ${path}. If none is running, delete that file and try again.`,
          { transient: true, details: { file: path } },
        );
      await new Promise((r) => setTimeout(r, LOCK_RETRY_MS));
    }
  }
}

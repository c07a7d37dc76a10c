import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretError } from '../../../shared/errors.js';
import { createMemoryLogger, scrubSecrets } from '../../../shared/log.js';
import { LocalSecretResolver, secretEnvName } from '../../../shared/secrets/local-secrets.js';

let tmp: string;
let file: string;

const FILE = {
  'mail-password': 'file-pass-7Qx!',
  'ms-app': { clientSecret: 'file-client-secret-9f', tenant: 'file-tenant-value' },
  'json-text': '{"token":"file-json-token-3k"}',
  empty: '',
  number: 42,
};

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'pophook-secrets-'));
  file = join(tmp, 'secrets.json');
  await writeFile(file, JSON.stringify(FILE), { mode: 0o600 });
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<SecretError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SecretError);
  return err as SecretError;
}

/** No secret value from the file or the environment may appear in an error. */
function expectNoValues(err: Error) {
  const text = JSON.stringify({ message: err.message, ...(err as SecretError).toJSON() });
  for (const v of [
    'file-pass-7Qx!',
    'file-client-secret-9f',
    'file-tenant-value',
    'file-json-token-3k',
    'env-pass-Zz9',
  ])
    expect(text).not.toContain(v);
}

describe('LocalSecretResolver', () => {
  it('maps names to environment variables', () => {
    expect(secretEnvName('mail-password')).toBe('POPHOOK_SECRET_MAIL_PASSWORD');
    expect(secretEnvName('arn:aws:secretsmanager:x/y.z')).toBe('POPHOOK_SECRET_ARN_AWS_SECRETSMANAGER_X_Y_Z');
  });

  it('reads a string, an object field and a JSON-string field from the file', async () => {
    const r = new LocalSecretResolver({ file, env: {} });
    expect(await r.resolve({ secret: 'mail-password' })).toBe('file-pass-7Qx!');
    expect(await r.resolve({ secret: 'ms-app', field: 'clientSecret' })).toBe('file-client-secret-9f');
    expect(await r.resolve({ secret: 'json-text', field: 'token' })).toBe('file-json-token-3k');
  });

  it('prefers the environment over the file, and works without a file', async () => {
    const env = { POPHOOK_SECRET_MAIL_PASSWORD: 'env-pass-Zz9' };
    expect(await new LocalSecretResolver({ file, env }).resolve({ secret: 'mail-password' })).toBe(
      'env-pass-Zz9',
    );
    expect(await new LocalSecretResolver({ env }).resolve({ secret: 'mail-password' })).toBe('env-pass-Zz9');
  });

  it('registers every resolved value for log scrubbing', async () => {
    const r = new LocalSecretResolver({ file, env: { POPHOOK_SECRET_OTHER: 'env-only-secret-55' } });
    await r.resolve({ secret: 'ms-app', field: 'clientSecret' });
    await r.resolve({ secret: 'other' });
    expect(scrubSecrets('x file-client-secret-9f y env-only-secret-55')).toBe('x [REDACTED] y [REDACTED]');
  });

  it('says where to put a missing secret, naming the file and the variable', async () => {
    const err = await failure(new LocalSecretResolver({ file, env: {} }).resolve({ secret: 'nope-1' }));
    expect(err.code).toBe('SECRET_NOT_FOUND');
    expect(err.message).toContain('"nope-1"');
    expect(err.message).toContain(file);
    expect(err.message).toContain('POPHOOK_SECRET_NOPE_1');
    expectNoValues(err);
    const noFile = await failure(new LocalSecretResolver({ env: {} }).resolve({ secret: 'nope-1' }));
    expect(noFile.message).toMatch(/local\.secretsFile/);
  });

  it('names a missing field and the fields present, never their values', async () => {
    const r = new LocalSecretResolver({ file, env: { POPHOOK_SECRET_PLAIN: 'env-pass-Zz9' } });
    const missing = await failure(r.resolve({ secret: 'ms-app', field: 'clientSecrte' }));
    expect(missing.code).toBe('SECRET_FIELD_MISSING');
    expect(missing.message).toContain('"clientSecrte"');
    expect(missing.message).toContain('clientSecret, tenant');
    expectNoValues(missing);
    const notJson = await failure(r.resolve({ secret: 'plain', field: 'x' }));
    expect(notJson.code).toBe('SECRET_FIELD_MISSING');
    expectNoValues(notJson);
    const objectNoField = await failure(r.resolve({ secret: 'ms-app' }));
    expect(objectNoField.message).toMatch(/add "field"/);
    expectNoValues(objectNoField);
  });

  it('refuses empty and non-string values', async () => {
    const r = new LocalSecretResolver({ file, env: {} });
    expect((await failure(r.resolve({ secret: 'empty' }))).code).toBe('SECRET_EMPTY');
    expect((await failure(r.resolve({ secret: 'number' }))).code).toBe('SECRET_NOT_TEXT');
  });

  it('reports an unreadable or malformed file without quoting it', async () => {
    const missing = await failure(
      new LocalSecretResolver({ file: join(tmp, 'absent.json'), env: {} }).resolve({ secret: 'a' }),
    );
    expect(missing).toMatchObject({
      code: 'SECRET_FILE_UNREADABLE',
      message: expect.stringContaining('ENOENT'),
    });

    const broken = join(tmp, 'broken.json');
    await writeFile(broken, '{"mail-password": "file-pass-7Qx!", oops}', { mode: 0o600 });
    const invalid = await failure(
      new LocalSecretResolver({ file: broken, env: {} }).resolve({ secret: 'a' }),
    );
    expect(invalid.code).toBe('SECRET_FILE_INVALID');
    expect(invalid.cause).toBeUndefined();
    expectNoValues(invalid);
  });

  it('warns when the secrets file is readable by other users', async () => {
    const loose = join(tmp, 'loose.json');
    await writeFile(loose, JSON.stringify({ a: 'loose-value-1' }));
    await chmod(loose, 0o644);
    const logger = createMemoryLogger();
    await new LocalSecretResolver({ file: loose, env: {}, logger }).resolve({ secret: 'a' });
    expect(logger.lines.join('\n')).toMatch(/chmod 600/);
    expect(logger.lines.join('\n')).not.toContain('loose-value-1');
  });
});

import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { serializeError } from '../../../shared/log.js';
import { LocalSecretResolver } from '../../../shared/secrets/local-secrets.js';
import { AwsSecretWriter, LocalSecretWriter } from '../../../shared/secrets/writer.js';

const sm = mockClient(SecretsManagerClient);
const client = new SecretsManagerClient({ region: 'us-east-1' });

async function failure(p: Promise<unknown>): Promise<Error & { code?: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return err as Error & { code?: string };
}

describe('AwsSecretWriter', () => {
  beforeEach(() => sm.reset());
  afterEach(() => sm.reset());

  it('writes when the stored value is still the expected one, with an idempotent request token', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretString: 'rt-old-1234', VersionId: 'v1' });
    sm.on(PutSecretValueCommand).resolves({});
    const w = new AwsSecretWriter({ client });
    expect(await w.write({ secret: 'rt' }, 'rt-new-5678', 'rt-old-1234')).toBe('written');
    expect(await w.write({ secret: 'rt' }, 'rt-new-5678', 'rt-old-1234')).toBe('written');
    const puts = sm.commandCalls(PutSecretValueCommand).map((c) => c.args[0].input);
    expect(puts[0]?.SecretId).toBe('rt');
    expect(puts[0]?.SecretString).toBe('rt-new-5678');
    expect(puts[0]?.ClientRequestToken).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
    // Same transition (same version, same new value): same token, so a retry creates no second version.
    expect(puts[1]?.ClientRequestToken).toBe(puts[0]?.ClientRequestToken);
    sm.on(GetSecretValueCommand).resolves({ SecretString: 'rt-old-1234', VersionId: 'v2' });
    await w.write({ secret: 'rt' }, 'rt-new-5678', 'rt-old-1234');
    expect(sm.commandCalls(PutSecretValueCommand)[2]?.args[0].input.ClientRequestToken).not.toBe(
      puts[0]?.ClientRequestToken,
    );
  });

  it('does not write when another run changed the value meanwhile, or when it already holds the value', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretString: 'rt-from-other-run', VersionId: 'v2' });
    const w = new AwsSecretWriter({ client });
    expect(await w.write({ secret: 'rt' }, 'rt-new-5678', 'rt-old-1234')).toBe('superseded');
    expect(await w.write({ secret: 'rt' }, 'rt-from-other-run', 'rt-old-1234')).toBe('unchanged');
    expect(sm.commandCalls(PutSecretValueCommand)).toHaveLength(0);
  });

  it('writes one field of a JSON secret and keeps the others', async () => {
    sm.on(GetSecretValueCommand).resolves({
      SecretString: JSON.stringify({ clientSecret: 'cs-1234', refreshToken: 'rt-old-1234' }),
      VersionId: 'v1',
    });
    sm.on(PutSecretValueCommand).resolves({});
    const w = new AwsSecretWriter({ client });
    expect(await w.write({ secret: 'app', field: 'refreshToken' }, 'rt-new-5678', 'rt-old-1234')).toBe(
      'written',
    );
    const text = sm.commandCalls(PutSecretValueCommand)[0]?.args[0].input.SecretString ?? '';
    expect(JSON.parse(text)).toEqual({ clientSecret: 'cs-1234', refreshToken: 'rt-new-5678' });
  });

  it('creates a missing secret on an unconditional write, but never resurrects a deleted one', async () => {
    sm.on(GetSecretValueCommand).rejects(new ResourceNotFoundException({ message: 'gone', $metadata: {} }));
    sm.on(CreateSecretCommand).resolves({});
    const w = new AwsSecretWriter({ client });
    expect(await w.write({ secret: 'rt' }, 'rt-new-5678', 'rt-old-1234')).toBe('superseded');
    expect(sm.commandCalls(CreateSecretCommand)).toHaveLength(0);
    expect(await w.write({ secret: 'rt', field: 'token' }, 'rt-new-5678', undefined)).toBe('written');
    const input = sm.commandCalls(CreateSecretCommand)[0]?.args[0].input;
    expect(input?.Name).toBe('rt');
    expect(JSON.parse(input?.SecretString ?? '')).toEqual({ token: 'rt-new-5678' });
  });

  it('maps AccessDenied to SECRET_ACCESS_DENIED naming the permission, without values', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretString: 'rt-old-1234', VersionId: 'v1' });
    const denied = Object.assign(new Error('User is not authorized'), { name: 'AccessDeniedException' });
    sm.on(PutSecretValueCommand).rejects(denied);
    const err = await failure(
      new AwsSecretWriter({ client }).write({ secret: 'rt' }, 'rt-new-5678', 'rt-old-1234'),
    );
    expect(err.code).toBe('SECRET_ACCESS_DENIED');
    expect(err.message).toMatch(/secretsmanager:PutSecretValue/);
    expect(JSON.stringify(serializeError(err))).not.toMatch(/rt-new-5678|rt-old-1234/);
  });
});

describe('LocalSecretWriter', () => {
  let dir: string;
  let n = 0;
  const fresh = () => join(dir, `secrets-${++n}.json`);
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pophook-writer-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('replaces one key atomically, keeps the others, mode 600, no temp or lock file left behind', async () => {
    const file = fresh();
    await writeFile(file, JSON.stringify({ a: 'x', rt: 'rt-old-1234', obj: { f: 'g' } }), { mode: 0o644 });
    const w = new LocalSecretWriter({ file });
    expect(await w.write({ secret: 'rt' }, 'rt-new-5678', 'rt-old-1234')).toBe('written');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ a: 'x', rt: 'rt-new-5678', obj: { f: 'g' } });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(
      (await readdir(dir)).filter(
        (f) => f.startsWith(file.split('/').pop() ?? '') && f !== file.split('/').pop(),
      ),
    ).toEqual([]);
    // What the resolver reads back.
    expect(await new LocalSecretResolver({ file, env: {} }).resolve({ secret: 'rt' })).toBe('rt-new-5678');
  });

  it('supports fields, superseded and unchanged', async () => {
    const file = fresh();
    await writeFile(file, JSON.stringify({ app: { clientSecret: 'cs-1', refreshToken: 'rt-old-1234' } }));
    const w = new LocalSecretWriter({ file });
    const ref = { secret: 'app', field: 'refreshToken' };
    expect(await w.write(ref, 'rt-new-5678', 'rt-something-else')).toBe('superseded');
    expect(await w.write(ref, 'rt-new-5678', 'rt-old-1234')).toBe('written');
    expect(await w.write(ref, 'rt-new-5678', 'rt-old-1234')).toBe('unchanged');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      app: { clientSecret: 'cs-1', refreshToken: 'rt-new-5678' },
    });
  });

  it('creates the file (and the key) on an unconditional write; a conditional write to a missing file does nothing', async () => {
    const file = fresh();
    const w = new LocalSecretWriter({ file });
    expect(await w.write({ secret: 'rt' }, 'rt-new-5678', 'rt-old-1234')).toBe('superseded');
    await expect(stat(file)).rejects.toThrow();
    expect(await w.write({ secret: 'g', field: 'token' }, 'rt-new-5678', undefined)).toBe('written');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ g: { token: 'rt-new-5678' } });
  });

  it('serialises concurrent writers through the lock file: no update is lost', async () => {
    const file = fresh();
    await writeFile(file, '{}');
    const writers = Array.from({ length: 12 }, () => new LocalSecretWriter({ file }));
    await Promise.all(writers.map((w, i) => w.write({ secret: `k${i}` }, `value-${i}`, undefined)));
    const all = JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
    expect(Object.keys(all).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `k${i}`).sort());
    await expect(stat(`${file}.lock`)).rejects.toThrow();
  });

  it('waits for a held lock, breaks a stale one', async () => {
    const file = fresh();
    await writeFile(file, '{}');
    await writeFile(`${file}.lock`, 'someone else');
    const err = await failure(
      new LocalSecretWriter({ file, lockTimeoutMs: 100 }).write({ secret: 'a' }, 'v-1234', undefined),
    );
    expect(err.code).toBe('SECRET_FILE_LOCKED');
    expect(err.message).toMatch(/delete that file/);
    const old = new Date(Date.now() - 60_000);
    await utimes(`${file}.lock`, old, old);
    expect(await new LocalSecretWriter({ file }).write({ secret: 'a' }, 'v-1234', undefined)).toBe('written');
  });

  it('refuses a file that is not a JSON object, and a secret that comes from the environment', async () => {
    const file = fresh();
    await writeFile(file, 'not json, maybe a secret');
    const err = await failure(new LocalSecretWriter({ file }).write({ secret: 'a' }, 'v-1234', undefined));
    expect(err.code).toBe('SECRET_FILE_INVALID');
    expect(err.message).not.toMatch(/maybe a secret/);
    expect(await readFile(file, 'utf8')).toBe('not json, maybe a secret');
    const envErr = await failure(
      new LocalSecretWriter({ file, env: { POPHOOK_SECRET_GMAIL_RT: 'x' } }).write(
        { secret: 'gmail-rt' },
        'v-1234',
        undefined,
      ),
    );
    expect(envErr.code).toBe('SECRET_NOT_WRITABLE');
    expect(envErr.message).toMatch(/POPHOOK_SECRET_GMAIL_RT/);
  });
});

import {
  DecryptionFailure,
  GetSecretValueCommand,
  InternalServiceError,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SecretError } from '../../../shared/errors.js';
import { scrubSecrets } from '../../../shared/log.js';
import { AwsSecretResolver, SECRET_CACHE_TTL_MS } from '../../../shared/secrets/aws-secrets.js';

const sm = mockClient(SecretsManagerClient);
const meta = { $metadata: {} };

class TestClock {
  t = 1_000_000;
  now = () => this.t;
}

let clock: TestClock;
let resolver: AwsSecretResolver;

beforeEach(() => {
  sm.reset();
  clock = new TestClock();
  resolver = new AwsSecretResolver({ client: new SecretsManagerClient({ region: 'us-east-1' }), clock });
});

afterEach(() => {
  sm.reset();
});

async function failure(p: Promise<unknown>): Promise<SecretError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SecretError);
  return err as SecretError;
}

describe('AwsSecretResolver', () => {
  it('returns a plain SecretString and registers it for scrubbing', async () => {
    sm.on(GetSecretValueCommand, { SecretId: 'pophook/mail' }).resolves({ SecretString: 'aws-plain-Hk2' });
    expect(await resolver.resolve({ secret: 'pophook/mail' })).toBe('aws-plain-Hk2');
    expect(scrubSecrets('pw=aws-plain-Hk2')).toBe('pw=[REDACTED]');
  });

  it('reads a field of a JSON secret, and names a missing field without any value', async () => {
    sm.on(GetSecretValueCommand).resolves({
      SecretString: '{"username":"bob","password":"aws-json-pass-8Y"}',
    });
    expect(await resolver.resolve({ secret: 'app', field: 'password' })).toBe('aws-json-pass-8Y');
    const err = await failure(resolver.resolve({ secret: 'app', field: 'pasword' }));
    expect(err.code).toBe('SECRET_FIELD_MISSING');
    expect(err.message).toContain('"pasword"');
    expect(err.message).toContain('"app"');
    expect(err.message).toContain('username, password');
    expect(JSON.stringify(err.toJSON())).not.toContain('aws-json-pass-8Y');
  });

  it('refuses a field reference to a secret that is not JSON, without quoting it', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretString: 'not-json-secret-QQ' });
    const err = await failure(resolver.resolve({ secret: 'raw', field: 'x' }));
    expect(err.code).toBe('SECRET_FIELD_MISSING');
    expect(err.message).not.toContain('not-json-secret-QQ');
    expect(err.cause).toBeUndefined();
  });

  it('maps ResourceNotFoundException to SECRET_NOT_FOUND saying what to do', async () => {
    sm.on(GetSecretValueCommand).rejects(
      new ResourceNotFoundException({ message: "Secrets Manager can't find the specified secret.", ...meta }),
    );
    const err = await failure(resolver.resolve({ secret: 'pophook/missing' }));
    expect(err).toMatchObject({ code: 'SECRET_NOT_FOUND', transient: false });
    expect(err.message).toContain('"pophook/missing"');
    expect(err.message).toMatch(/create-secret/);
  });

  it('maps AccessDeniedException and DecryptionFailure to SECRET_ACCESS_DENIED', async () => {
    sm.on(GetSecretValueCommand, { SecretId: 'a' })
      // Secrets Manager has no modelled AccessDeniedException; the SDK raises a generic error by that name.
      .rejects(Object.assign(new Error('not authorized'), { name: 'AccessDeniedException' }))
      .on(GetSecretValueCommand, { SecretId: 'k' })
      .rejects(new DecryptionFailure({ message: 'kms', ...meta }));
    const denied = await failure(resolver.resolve({ secret: 'a' }));
    expect(denied.code).toBe('SECRET_ACCESS_DENIED');
    expect(denied.message).toMatch(/secretsmanager:GetSecretValue/);
    const kms = await failure(resolver.resolve({ secret: 'k' }));
    expect(kms.code).toBe('SECRET_ACCESS_DENIED');
    expect(kms.message).toMatch(/kms:Decrypt/);
  });

  it('marks service failures transient and does not cache them', async () => {
    sm.on(GetSecretValueCommand)
      .rejectsOnce(new InternalServiceError({ message: 'boom', ...meta }))
      .resolves({ SecretString: 'aws-after-retry-1' });
    const err = await failure(resolver.resolve({ secret: 's' }));
    expect(err).toMatchObject({ code: 'SECRET_UNAVAILABLE', transient: true });
    expect(await resolver.resolve({ secret: 's' })).toBe('aws-after-retry-1');
  });

  it('refuses a binary secret', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretBinary: new Uint8Array([1, 2, 3]) });
    expect((await failure(resolver.resolve({ secret: 'bin' }))).code).toBe('SECRET_NOT_TEXT');
  });

  it('caches per secret for SECRET_CACHE_TTL_MS, sharing one call between concurrent callers', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretString: '{"a":"aws-cache-a1","b":"aws-cache-b2"}' });
    const [a, b] = await Promise.all([
      resolver.resolve({ secret: 'c', field: 'a' }),
      resolver.resolve({ secret: 'c', field: 'b' }),
    ]);
    expect([a, b]).toEqual(['aws-cache-a1', 'aws-cache-b2']);
    clock.t += SECRET_CACHE_TTL_MS - 1;
    await resolver.resolve({ secret: 'c', field: 'a' });
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(1);
    clock.t += 1;
    await resolver.resolve({ secret: 'c', field: 'a' });
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(2);
    resolver.clear();
    await resolver.resolve({ secret: 'c', field: 'a' });
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(3);
  });
});

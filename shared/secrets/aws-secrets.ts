/**
 * Secrets Manager implementation of SecretResolver. Values are cached per secret for a few minutes, so
 * a warm Lambda does not call GetSecretValue per message, yet picks up a rotation soon after it happens.
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { type Clock, systemClock } from '../clock.js';
import type { SecretRef } from '../config/schema.js';
import { SecretError } from '../errors.js';
import { finishSecret, type SecretResolver } from './resolver.js';

/** How long a fetched secret is reused: rotations take effect within this, API calls stay rare. */
export const SECRET_CACHE_TTL_MS = 5 * 60_000;

export interface AwsSecretResolverOptions {
  client: SecretsManagerClient;
  clock?: Clock;
  /** Defaults to SECRET_CACHE_TTL_MS; 0 turns caching off. */
  cacheTtlMs?: number;
}

interface CacheEntry {
  /** The SecretString; a pending fetch is shared by concurrent callers. */
  text: Promise<string>;
  expiresAt: number;
}

export class AwsSecretResolver implements SecretResolver {
  private readonly client: SecretsManagerClient;
  private readonly clock: Clock;
  private readonly ttlMs: number;
  private readonly cache = new Map<string, CacheEntry>();

  constructor(options: AwsSecretResolverOptions) {
    this.client = options.client;
    this.clock = options.clock ?? systemClock;
    this.ttlMs = options.cacheTtlMs ?? SECRET_CACHE_TTL_MS;
  }

  async resolve(ref: SecretRef): Promise<string> {
    const text = await this.fetch(ref.secret);
    return finishSecret(ref, text, 'Secrets Manager');
  }

  /** Drops cached values, e.g. after a signature failure suggests a rotation. */
  clear(): void {
    this.cache.clear();
  }

  private fetch(secretId: string): Promise<string> {
    const now = this.clock.now();
    const cached = this.cache.get(secretId);
    if (cached && cached.expiresAt > now) return cached.text;
    const text = this.load(secretId);
    const entry = { text, expiresAt: now + this.ttlMs };
    this.cache.set(secretId, entry);
    // Failures are not cached: the next call asks again.
    text.catch(() => {
      if (this.cache.get(secretId) === entry) this.cache.delete(secretId);
    });
    return text;
  }

  private async load(secretId: string): Promise<string> {
    let out: { SecretString?: string };
    try {
      out = await this.client.send(new GetSecretValueCommand({ SecretId: secretId }));
    } catch (err) {
      throw mapError(secretId, err);
    }
    if (typeof out.SecretString !== 'string')
      throw new SecretError(
        'SECRET_NOT_TEXT',
        `Secret "${secretId}" holds binary data; pophook needs text. Store the value as a SecretString.`,
        { details: { secret: secretId } },
      );
    return out.SecretString;
  }
}

function mapError(secretId: string, err: unknown): SecretError {
  const name = err && typeof err === 'object' && 'name' in err ? String(err.name) : 'Error';
  const details = { secret: secretId, awsError: name };
  switch (name) {
    case 'ResourceNotFoundException':
      return new SecretError(
        'SECRET_NOT_FOUND',
        `Secret "${secretId}" does not exist in Secrets Manager in this account and region. ` +
          `Create it (aws secretsmanager create-secret --name ${secretId} --secret-string ...) or fix the reference in the config.`,
        { cause: err, details },
      );
    case 'AccessDeniedException':
      return new SecretError(
        'SECRET_ACCESS_DENIED',
        `This function may not read secret "${secretId}". Grant secretsmanager:GetSecretValue on it to the function's role ` +
          '(redeploying the stack does this for secrets named in the config).',
        { cause: err, details },
      );
    case 'DecryptionFailure':
      return new SecretError(
        'SECRET_ACCESS_DENIED',
        `Secret "${secretId}" could not be decrypted. Grant kms:Decrypt on its KMS key to the function's role.`,
        { cause: err, details },
      );
    case 'InvalidRequestException':
      return new SecretError(
        'SECRET_NOT_FOUND',
        `Secret "${secretId}" cannot be read now (it may be scheduled for deletion). Restore it or point the config at another secret.`,
        { cause: err, details },
      );
    default:
      return new SecretError(
        'SECRET_UNAVAILABLE',
        `Secrets Manager failed to return secret "${secretId}" (${name}); the operation will be retried.`,
        { cause: err, details, transient: true },
      );
  }
}

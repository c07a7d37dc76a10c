/**
 * Which Secrets Manager secrets the config references, and who may touch them. The construct never
 * reads a secret value: it only turns references into least-privilege IAM grants.
 */
import { createHash } from 'node:crypto';
import { Arn, ArnFormat } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { PophookConfig, SecretRef } from '../../shared/config/schema.js';

/** Who uses a secret, and whether the poller writes it back (OAuth refresh-token rotation). */
export interface SecretUse {
  /** The `secret` string exactly as written in the config: a name or an ARN. */
  readonly secretId: string;
  readonly user: 'poller' | 'delivery';
  /** True for OAuth refresh tokens: providers may rotate them, and the poller stores the new one. */
  readonly writable: boolean;
  /** Where in the config it came from, for error messages (`mailboxes[0].auth.password`). */
  readonly path: string;
}

/** Every secret reference in the config, deduplicated per (secret, user). */
export function collectSecretUses(config: PophookConfig): SecretUse[] {
  const uses: SecretUse[] = [];
  const add = (ref: SecretRef | undefined, user: SecretUse['user'], path: string, writable = false) => {
    if (ref) uses.push({ secretId: ref.secret, user, writable, path });
  };
  config.mailboxes.forEach((m, i) => {
    const at = `mailboxes[${i}].auth`;
    const auth = m.auth;
    if (auth.type === 'password') add(auth.password, 'poller', `${at}.password`);
    else if (auth.type === 'oauth2-microsoft-app') add(auth.clientSecret, 'poller', `${at}.clientSecret`);
    else {
      add(auth.clientSecret, 'poller', `${at}.clientSecret`);
      add(auth.refreshToken, 'poller', `${at}.refreshToken`, true);
    }
  });
  config.endpoints.forEach((e, i) => {
    e.secrets.forEach((s, j) => {
      add(s, 'delivery', `endpoints[${i}].secrets[${j}]`);
    });
  });
  // One entry per (secret, user); a secret that is written anywhere is writable.
  const merged = new Map<string, SecretUse>();
  for (const use of uses) {
    const key = `${use.user}\u0000${use.secretId}`;
    const prev = merged.get(key);
    merged.set(key, prev ? { ...prev, writable: prev.writable || use.writable } : use);
  }
  return [...merged.values()];
}

const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;
/** Secrets Manager appends `-` and six random characters to every secret's ARN. */
const COMPLETE_ARN_SUFFIX = /-[A-Za-z0-9]{6}$/;

/** Problems with secret references that would only surface at deploy or run time. */
export function validateSecretUses(uses: readonly SecretUse[]): string[] {
  const problems: string[] = [];
  for (const use of uses) {
    const id = use.secretId;
    if (id.startsWith('arn:')) {
      if (!SECRET_ARN.test(id))
        problems.push(
          `${use.path}.secret: "${id}" is not a Secrets Manager secret ARN ` +
            '(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX); use the ARN or just the name',
        );
    } else if (!SECRET_NAME.test(id)) {
      problems.push(
        `${use.path}.secret: "${id}" is not a valid Secrets Manager name ` +
          '(1-512 of A-Z a-z 0-9 / _ + = . @ -)',
      );
    }
  }
  return problems;
}

/**
 * Imports a referenced secret without reading it. Names resolve in the stack's own account and Region;
 * the IAM resource then ends in `-??????` because AWS appends a random six-character suffix to the ARN.
 * A full ARN (with suffix) is used as is; an ARN without the suffix is treated as a partial ARN.
 */
export function importSecret(scope: Construct, secretId: string): secretsmanager.ISecret {
  const id = `Secret${createHash('sha256').update(secretId).digest('hex').slice(0, 12)}`;
  const existing = scope.node.tryFindChild(id) as secretsmanager.ISecret | undefined;
  if (existing) return existing;
  if (!secretId.startsWith('arn:')) return secretsmanager.Secret.fromSecretNameV2(scope, id, secretId);
  const name = Arn.split(secretId, ArnFormat.COLON_RESOURCE_NAME).resourceName ?? '';
  return COMPLETE_ARN_SUFFIX.test(name)
    ? secretsmanager.Secret.fromSecretCompleteArn(scope, id, secretId)
    : secretsmanager.Secret.fromSecretPartialArn(scope, id, secretId);
}

/**
 * Grants exactly what each function needs: the poller reads mailbox credentials and may put a new
 * version of a rotated refresh token; the delivery function reads endpoint signing secrets. Nothing
 * else (no Describe/List across the account, no Update/Delete).
 */
export function grantSecretAccess(
  scope: Construct,
  uses: readonly SecretUse[],
  principals: { poller: iam.IGrantable; delivery: iam.IGrantable },
): secretsmanager.ISecret[] {
  const imported: secretsmanager.ISecret[] = [];
  for (const use of uses) {
    const secret = importSecret(scope, use.secretId);
    if (!imported.includes(secret)) imported.push(secret);
    const grantee = principals[use.user];
    secret.grantRead(grantee);
    if (use.writable) {
      iam.Grant.addToPrincipal({
        grantee,
        actions: ['secretsmanager:PutSecretValue'],
        resourceArns: [secretIamArn(secret)],
      });
    }
  }
  return imported;
}

/** The ARN IAM should match for a secret: name-imported and partial ARNs need the `-??????` suffix. */
function secretIamArn(secret: secretsmanager.ISecret): string {
  return secret.secretFullArn ?? `${secret.secretArn}-??????`;
}

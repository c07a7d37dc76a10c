/**
 * `pophook auth <mailbox>`: signs in to an OAuth mailbox interactively and stores its refresh token in
 * the secret the config names (`auth.refreshToken`). Microsoft delegated uses the device-code flow (a
 * code to type on any browser, fine over SSH); Google uses a loopback redirect to 127.0.0.1 with PKCE.
 * Prints where the token went (secret name, never the value).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { cacheKey } from '../../shared/auth/credentials.js';
import { runDeviceCodeFlow } from '../../shared/auth/device-code.js';
import { OAuthError } from '../../shared/auth/errors.js';
import { GOOGLE_SCOPE, googleEndpoints } from '../../shared/auth/google.js';
import { runLoopbackFlow } from '../../shared/auth/loopback-flow.js';
import { MICROSOFT_DELEGATED_DEFAULT_TENANT, microsoftDelegatedScope } from '../../shared/auth/microsoft.js';
import { sharedRefreshTokens } from '../../shared/auth/refresh-token-store.js';
import { sharedTokenCache } from '../../shared/auth/token-cache.js';
import type { TokenResponse } from '../../shared/auth/token-endpoint.js';
import type { Clock } from '../../shared/clock.js';
import { loadConfigFile } from '../../shared/config/load.js';
import type { PophookConfig, SecretRef } from '../../shared/config/schema.js';
import { registerSecret } from '../../shared/log.js';
import { AwsSecretResolver } from '../../shared/secrets/aws-secrets.js';
import { LocalSecretResolver } from '../../shared/secrets/local-secrets.js';
import type { SecretResolver } from '../../shared/secrets/resolver.js';
import {
  AwsSecretWriter,
  LocalSecretWriter,
  type SecretWriteOutcome,
  type SecretWriter,
} from '../../shared/secrets/writer.js';
import { type CliContext, EXIT, type ExitCode, resolveConfigPath, UsageError } from '../context.js';

export interface AuthCommandOptions {
  config: PophookConfig;
  mailboxId: string;
  /** Resolves the app's client secret when the config names one. */
  secrets: SecretResolver;
  /** Where the refresh token is stored. */
  secretWriter: SecretWriter;
  /** One line of output for the user. */
  print: (line: string) => void;
  /** Opens the sign-in URL in a browser (Google); the URL is printed either way. */
  openUrl?: (url: string) => Promise<void> | void;
  fetch?: typeof fetch;
  clock?: Clock;
  /** Device-code polling wait, injected by tests. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
  /** Loopback flow: how long to wait for the browser. */
  timeoutMs?: number;
}

export interface AuthCommandResult {
  mailboxId: string;
  /** The reference the refresh token was written to. */
  stored: SecretRef;
  /** Human description of where, e.g. `Secrets Manager secret "pophook/gmail"`. */
  where: string;
  outcome: SecretWriteOutcome;
}

/** Runs the right sign-in flow for the mailbox and stores the refresh token. */
export async function runAuthCommand(opts: AuthCommandOptions): Promise<AuthCommandResult> {
  const mailbox = opts.config.mailboxes.find((m) => m.id === opts.mailboxId);
  if (!mailbox) {
    const ids = opts.config.mailboxes.map((m) => m.id).join(', ');
    throw new UsageError(`No mailbox "${opts.mailboxId}" in the config (mailboxes: ${ids}).`);
  }
  const auth = mailbox.auth;
  if (auth.type === 'password')
    throw new UsageError(
      `Mailbox "${mailbox.id}" uses a password; "pophook auth" is for mailboxes with auth type oauth2-microsoft-delegated or oauth2-google.`,
    );
  if (auth.type === 'oauth2-microsoft-app')
    throw new UsageError(
      `Mailbox "${mailbox.id}" uses app-only access (client credentials): there is no user sign-in and no refresh token. ` +
        `Run "pophook check -m ${mailbox.id}" to test it.`,
    );

  const clientSecret = auth.clientSecret ? await opts.secrets.resolve(auth.clientSecret) : undefined;
  if (clientSecret) registerSecret(clientSecret);
  let token: TokenResponse;
  if (auth.type === 'oauth2-microsoft-delegated') {
    opts.print(`Signing in to Microsoft 365 for mailbox "${mailbox.id}" (${mailbox.user}).`);
    token = await runDeviceCodeFlow({
      ...(auth.authority ? { authority: auth.authority } : {}),
      tenantId: auth.tenantId ?? MICROSOFT_DELEGATED_DEFAULT_TENANT,
      clientId: auth.clientId,
      ...(clientSecret ? { clientSecret } : {}),
      scope: microsoftDelegatedScope(auth.authority),
      mailboxId: mailbox.id,
      print: opts.print,
      ...pick(opts, ['fetch', 'clock', 'sleep', 'signal']),
    });
  } else {
    opts.print(`Signing in to Google for mailbox "${mailbox.id}" (${mailbox.user}).`);
    const endpoints = googleEndpoints(auth.authority);
    token = await runLoopbackFlow({
      provider: 'google',
      authorizeUrl: endpoints.authorize,
      tokenUrl: endpoints.token,
      clientId: auth.clientId,
      ...(clientSecret ? { clientSecret } : {}),
      scope: GOOGLE_SCOPE,
      loginHint: mailbox.user,
      mailboxId: mailbox.id,
      print: opts.print,
      ...pick(opts, ['openUrl', 'fetch', 'signal', 'timeoutMs']),
    });
  }

  if (!token.refreshToken)
    throw new OAuthError(
      'OAUTH_SIGN_IN_FAILED',
      auth.type === 'oauth2-google'
        ? 'Google signed you in but returned no refresh token. Remove pophook\'s access at https://myaccount.google.com/permissions and run "pophook auth" again.'
        : 'Microsoft signed you in but returned no refresh token; the app must be allowed the offline_access permission. Add it and run "pophook auth" again.',
      { details: { mailboxId: mailbox.id } },
    );
  const outcome = await opts.secretWriter.write(auth.refreshToken, token.refreshToken, undefined);
  // A long-running process (pophook dev/ui) must use the new token, not one it held in memory.
  const key = cacheKey(mailbox);
  sharedRefreshTokens.set(key, token.refreshToken);
  sharedTokenCache.invalidate(key);
  const where = opts.secretWriter.describe(auth.refreshToken);
  opts.print(
    outcome === 'unchanged'
      ? `The refresh token for "${mailbox.id}" was already stored in ${where}.`
      : `Stored the refresh token for "${mailbox.id}" in ${where}.`,
  );
  opts.print(`Next: run "pophook check -m ${mailbox.id}" to test the POP login.`);
  return { mailboxId: mailbox.id, stored: auth.refreshToken, where, outcome };
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** Command-line options of `pophook auth <mailbox>`. */
export interface AuthCliOptions {
  config?: string;
  mailbox: string;
  /** Store in AWS Secrets Manager instead of the local secrets file. */
  aws?: boolean;
  /** `--no-browser`: print the URL only. */
  browser?: boolean;
}

/** The CLI action: loads the config, picks the secret store, runs the flow. */
export async function runAuth(opts: AuthCliOptions, ctx: CliContext): Promise<ExitCode> {
  const file = await resolveConfigPath(opts.config, ctx.cwd);
  const config = await loadConfigFile(file);
  let secrets: SecretResolver;
  let secretWriter: SecretWriter;
  if (opts.aws) {
    const client = new SecretsManagerClient(config.aws.region ? { region: config.aws.region } : {});
    secrets = new AwsSecretResolver({ client });
    secretWriter = new AwsSecretWriter({ client });
  } else {
    if (!config.local.secretsFile)
      throw new UsageError(
        'The config names no local secrets file: set local.secretsFile to store the token locally, or pass --aws to store it in AWS Secrets Manager.',
      );
    const secretsFile = path.resolve(ctx.cwd, config.local.secretsFile);
    secrets = new LocalSecretResolver({ file: secretsFile, env: ctx.env, logger: ctx.logger });
    secretWriter = new LocalSecretWriter({ file: secretsFile, env: ctx.env });
  }
  await runAuthCommand({
    config,
    mailboxId: opts.mailbox,
    secrets,
    secretWriter,
    print: (line) => ctx.out.print(line),
    ...(opts.browser === false ? {} : { openUrl: openInBrowser }),
    signal: ctx.signal,
  });
  return EXIT.OK;
}

/** Best effort: the platform's "open this URL" command, detached; the URL is printed anyway. */
function openInBrowser(url: string): void {
  const [cmd, args] =
    process.platform === 'darwin'
      ? ['open', [url]]
      : process.platform === 'win32'
        ? ['rundll32', ['url.dll,FileProtocolHandler', url]]
        : ['xdg-open', [url]];
  const child = spawn(cmd, args as string[], { detached: true, stdio: 'ignore' });
  child.on('error', () => undefined);
  child.unref();
}

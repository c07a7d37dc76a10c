/**
 * `pophook check` turns an authentication failure into plain sentences: which step failed (the token
 * endpoint, or the POP login with a token it issued), what the server said (the decoded SASL error
 * challenge), and the usual causes with the exact command or setting that fixes each. Nothing here
 * contains a secret: inputs are typed errors (already scrubbed) and token claims (ids, roles, scopes).
 */
import type { MailboxConfig } from '../config/schema.js';
import { PophookError } from '../errors.js';
import { isPop3Error } from '../pop3/errors.js';
import { isOAuthError } from './errors.js';
import { GOOGLE_SCOPE } from './google.js';
import type { TokenInfo } from './microsoft.js';

const APP_ROLE = 'POP.AccessAsApp';
const DELEGATED_SCOPE = 'POP.AccessAsUser.All';

/**
 * Plain sentences explaining why `mailbox` could not log in, most likely cause first. `tokenInfo` is
 * what `getCredentialsWithExpiry` returned, when the token was obtained.
 */
export function explainAuthFailure(err: unknown, mailbox: MailboxConfig, tokenInfo?: TokenInfo): string[] {
  const auth = mailbox.auth;
  if (isOAuthError(err)) {
    const lines = [
      err.code === 'OAUTH_ENDPOINT_UNAVAILABLE'
        ? 'The identity provider could not be reached, so no login was attempted.'
        : 'The token endpoint refused to issue an access token, so pophook did not try to log in to the POP server.',
      err.message,
    ];
    if (err.code === 'OAUTH_INVALID_CLIENT' && auth.type === 'oauth2-microsoft-app')
      lines.push(
        `Check that tenantId (${auth.tenantId}) and clientId (${auth.clientId}) come from the same app registration, ` +
          'and that the secret holds the client secret Value shown once at creation (not the Secret ID).',
      );
    return lines;
  }

  if (!isPop3Error(err, 'POP3_AUTH_FAILED')) {
    return [err instanceof PophookError || err instanceof Error ? err.message : String(err)];
  }

  if (auth.type === 'password')
    return [
      'The POP server refused the user name or password.',
      `Check "user" (${mailbox.user}) and the password secret "${auth.password.secret}"; some providers need an app password when 2-step verification is on.`,
    ];

  const lines = ['The token endpoint issued an access token, but the POP server refused the login with it.'];
  const challenge = err.details.challenge;
  if (challenge !== undefined)
    lines.push(
      `The server's error challenge, decoded: ${typeof challenge === 'string' ? challenge : JSON.stringify(challenge)}`,
    );
  if (err.response) lines.push(`The server's reply: ${err.response}`);
  const status = challengeField(challenge, 'status');
  if (status === '401' || status === '400')
    lines.push(
      status === '401'
        ? 'Status 401 means the server did not accept the token itself (wrong audience or scope, expired or revoked).'
        : 'Status 400 usually means the token is valid but for the wrong scope or user.',
    );

  if (auth.type === 'oauth2-microsoft-app') {
    const roles = tokenInfo?.roles;
    if (tokenInfo && !roles?.includes(APP_ROLE))
      lines.push(
        `The token carries no ${APP_ROLE} role (roles: ${roles?.length ? roles.join(', ') : 'none'}): in Microsoft Entra ID > ` +
          `App registrations > ${auth.clientId} > API permissions, add "Office 365 Exchange Online" > Application ` +
          `permissions > ${APP_ROLE}, click "Grant admin consent", and wait a few minutes.`,
      );
    const sp = tokenInfo?.objectId ?? '<object id of the app under Enterprise applications>';
    lines.push(
      'Exchange must know the app as a service principal. In Exchange Online PowerShell: ' +
        `New-ServicePrincipal -AppId ${auth.clientId} -ObjectId ${sp}` +
        ' (the object id from Enterprise applications, not from App registrations).',
      `The service principal needs access to the mailbox: Add-MailboxPermission -Identity ${mailbox.user} -User ${sp} -AccessRights FullAccess`,
      `POP must be enabled for the mailbox: Set-CASMailbox -Identity ${mailbox.user} -PopEnabled $true`,
      `"user" must be the mailbox's primary SMTP address (now ${mailbox.user}). Exchange can take a while to apply permission changes.`,
    );
    return lines;
  }

  if (auth.type === 'oauth2-microsoft-delegated') {
    const scopes = tokenInfo?.scopes;
    if (scopes && !scopes.includes(DELEGATED_SCOPE))
      lines.push(
        `The token lacks the ${DELEGATED_SCOPE} scope (scopes: ${scopes.join(', ') || 'none'}): add the delegated permission ` +
          `"Office 365 Exchange Online" > ${DELEGATED_SCOPE} to app ${auth.clientId} and run "pophook auth ${mailbox.id}" again.`,
      );
    if (tokenInfo?.user && tokenInfo.user.toLowerCase() !== mailbox.user.toLowerCase())
      lines.push(
        `The refresh token belongs to ${tokenInfo.user}, but "user" is ${mailbox.user}: sign in as ${mailbox.user} ` +
          `("pophook auth ${mailbox.id}"), or give ${tokenInfo.user} FullAccess to that mailbox.`,
      );
    lines.push(
      `POP must be enabled for the mailbox: Set-CASMailbox -Identity ${mailbox.user} -PopEnabled $true`,
      `"user" must be the signed-in account's mailbox address (now ${mailbox.user}).`,
    );
    return lines;
  }

  const scopes = tokenInfo?.scopes;
  if (scopes && !scopes.includes(GOOGLE_SCOPE))
    lines.push(
      `The token lacks the scope ${GOOGLE_SCOPE} (scopes: ${scopes.join(', ') || 'none'}): run "pophook auth ${mailbox.id}" ` +
        'again and allow full Gmail access (POP accepts no narrower scope).',
    );
  lines.push(
    'POP may be off in Gmail: open Gmail > Settings > See all settings > Forwarding and POP/IMAP and choose "Enable POP for all mail".',
    'In Google Workspace an administrator can turn POP off for everyone: Admin console > Apps > Google Workspace > Gmail > End User Access > POP and IMAP access.',
    `"user" must be the Gmail address that signed in with "pophook auth ${mailbox.id}" (now ${mailbox.user}).`,
  );
  return lines;
}

function challengeField(challenge: unknown, field: string): string | undefined {
  if (challenge === null || typeof challenge !== 'object') return undefined;
  const v = (challenge as Record<string, unknown>)[field];
  return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
}

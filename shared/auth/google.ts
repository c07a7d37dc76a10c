/**
 * Google OAuth for Gmail POP: a refresh token from `pophook auth` (loopback flow with PKCE, an OAuth
 * client of type "Desktop app"), redeemed at `https://oauth2.googleapis.com/token` for an access token
 * with scope `https://mail.google.com/` (the only scope Gmail accepts for POP/IMAP). Gmail ends a POP
 * session when its access token expires (~1 h), so the poller budgets sessions by `expiresAt`.
 * `authority`, when set, replaces both Google hosts: `<authority>/token` and `<authority>/auth`.
 */
import type { MailboxConfig } from '../config/schema.js';
import { registerSecret } from '../log.js';
import type { AcquiredToken, ProviderDeps, RefreshTokenAuth } from './microsoft.js';
import { refreshGrant } from './refresh-token-store.js';
import { checkEndpointUrl, trimBase } from './token-endpoint.js';

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
export const GOOGLE_AUTHORIZE_URL = 'https://accounts.google.com/o/oauth2/v2/auth';
/** Full mail access: Gmail's POP and IMAP accept no narrower scope. */
export const GOOGLE_SCOPE = 'https://mail.google.com/';

export interface GoogleEndpoints {
  token: string;
  authorize: string;
}

export function googleEndpoints(authority: string | undefined): GoogleEndpoints {
  if (!authority) return { token: GOOGLE_TOKEN_URL, authorize: GOOGLE_AUTHORIZE_URL };
  const base = trimBase(authority);
  checkEndpointUrl(base, 'Google OAuth');
  return { token: `${base}/token`, authorize: `${base}/auth` };
}

/** The refresh_token grant (Google normally keeps the refresh token; a rotated one is written back). */
export async function googleToken(
  mailbox: MailboxConfig,
  auth: RefreshTokenAuth,
  key: string,
  deps: ProviderDeps,
): Promise<AcquiredToken> {
  const { token: url } = googleEndpoints(auth.authority);
  const clientSecret = auth.clientSecret ? await deps.secrets.resolve(auth.clientSecret) : undefined;
  if (clientSecret) registerSecret(clientSecret);
  const token = await refreshGrant({
    key,
    tokenUrl: url,
    ref: auth.refreshToken,
    clientId: auth.clientId,
    clientSecret,
    ctx: {
      provider: 'google',
      mailboxId: mailbox.id,
      clientId: auth.clientId,
      refreshTokenRef: auth.refreshToken,
      ...(auth.clientSecret ? { clientSecretRef: auth.clientSecret } : {}),
    },
    secrets: deps.secrets,
    writer: deps.secretWriter,
    store: deps.refreshTokens,
    logger: deps.logger,
    http: deps.http,
  });
  // Google reports the granted scopes; explain.ts uses them when Gmail refuses the login.
  return token.scope ? { ...token, info: { scopes: token.scope.split(' ').filter(Boolean) } } : token;
}

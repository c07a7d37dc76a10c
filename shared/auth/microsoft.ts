/**
 * Microsoft identity platform (Entra ID) tokens for Exchange Online POP:
 * - app-only (client credentials): `/{tenant}/oauth2/v2.0/token`, scope `https://outlook.office365.com/.default`,
 *   the app needs the POP.AccessAsApp application permission, a service principal in Exchange and
 *   FullAccess on the mailbox (docs/oauth-setup.md);
 * - delegated: a refresh token from `pophook auth` (device-code flow), scope
 *   `https://outlook.office365.com/POP.AccessAsUser.All offline_access`, rotated on every refresh.
 * `authority` replaces `https://login.microsoftonline.com` (sovereign clouds, tests).
 */
import type { MailboxAuth, MailboxConfig } from '../config/schema.js';
import { type Logger, registerSecret } from '../log.js';
import { sanitizeForeignText } from '../sanitize.js';
import type { SecretResolver } from '../secrets/resolver.js';
import type { SecretWriter } from '../secrets/writer.js';
import { type RefreshTokenStore, refreshGrant } from './refresh-token-store.js';
import {
  checkEndpointUrl,
  requestToken,
  type TokenHttpDeps,
  type TokenResponse,
  trimBase,
} from './token-endpoint.js';

export const MICROSOFT_AUTHORITY = 'https://login.microsoftonline.com';
/** Exchange Online's resource in the global cloud. */
export const EXCHANGE_RESOURCE = 'https://outlook.office365.com';
/** App-only: every application permission the app was granted for Exchange Online. */
export const MICROSOFT_APP_SCOPE = `${EXCHANGE_RESOURCE}/.default`;
/** Delegated: POP as the signed-in user, plus a refresh token. */
export const MICROSOFT_DELEGATED_SCOPE = `${EXCHANGE_RESOURCE}/POP.AccessAsUser.All offline_access`;
/** Delegated tenant when none is configured: any work or school account. */
export const MICROSOFT_DELEGATED_DEFAULT_TENANT = 'organizations';

/** Sovereign clouds use their own Exchange resource; unknown authorities (tests, proxies) use the global one. */
const SOVEREIGN_RESOURCES: Record<string, string> = {
  'login.microsoftonline.us': 'https://outlook.office365.us',
  'login.partner.microsoftonline.cn': 'https://partner.outlook.cn',
  'login.chinacloudapi.cn': 'https://partner.outlook.cn',
};

export type MicrosoftAppAuth = Extract<MailboxAuth, { type: 'oauth2-microsoft-app' }>;
export type RefreshTokenAuth = Extract<MailboxAuth, { refreshToken: unknown }>;

export interface MicrosoftEndpoints {
  token: string;
  deviceCode: string;
  authorize: string;
}

/** The v2.0 endpoints of `tenant` under `authority`. */
export function microsoftEndpoints(authority: string | undefined, tenant: string): MicrosoftEndpoints {
  const base = `${trimBase(authority ?? MICROSOFT_AUTHORITY)}/${encodeURIComponent(tenant)}/oauth2/v2.0`;
  checkEndpointUrl(base, 'Microsoft identity platform');
  return { token: `${base}/token`, deviceCode: `${base}/devicecode`, authorize: `${base}/authorize` };
}

/** The Exchange Online resource for `authority`. */
export function exchangeResource(authority: string | undefined): string {
  if (!authority) return EXCHANGE_RESOURCE;
  try {
    return SOVEREIGN_RESOURCES[new URL(authority).hostname] ?? EXCHANGE_RESOURCE;
  } catch {
    return EXCHANGE_RESOURCE;
  }
}

export function microsoftAppScope(authority: string | undefined): string {
  return `${exchangeResource(authority)}/.default`;
}

export function microsoftDelegatedScope(authority: string | undefined): string {
  return `${exchangeResource(authority)}/POP.AccessAsUser.All offline_access`;
}

/**
 * What an access token says about itself, for `pophook check` diagnostics only (never for decisions:
 * Microsoft access tokens are not guaranteed to stay readable JWTs; Google's are opaque).
 */
export interface TokenInfo {
  /** Application permissions (app-only), e.g. `POP.AccessAsApp`. */
  roles?: string[];
  /** Delegated or granted scopes, e.g. `POP.AccessAsUser.All`. */
  scopes?: string[];
  audience?: string;
  tenantId?: string;
  appId?: string;
  /** The service principal's object id (app-only) or the user's (delegated). */
  objectId?: string;
  /** The signed-in user (delegated). */
  user?: string;
}

/** Claims of a JWT access token (unverified), or undefined when it is not a readable JWT. */
export function decodeMicrosoftToken(accessToken: string): TokenInfo | undefined {
  const part = accessToken.split('.')[1];
  if (!part) return undefined;
  let claims: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
    claims = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const str = (v: unknown) => (typeof v === 'string' ? sanitizeForeignText(v, 128) : undefined);
  const info: TokenInfo = {};
  if (Array.isArray(claims.roles))
    info.roles = claims.roles
      .filter((r): r is string => typeof r === 'string')
      .map((r) => sanitizeForeignText(r, 64));
  const scp = str(claims.scp);
  if (scp) info.scopes = scp.split(' ').filter(Boolean);
  const aud = str(claims.aud);
  if (aud) info.audience = aud;
  const tid = str(claims.tid);
  if (tid) info.tenantId = tid;
  const appid = str(claims.appid) ?? str(claims.azp);
  if (appid) info.appId = appid;
  const oid = str(claims.oid);
  if (oid) info.objectId = oid;
  const user = str(claims.upn) ?? str(claims.unique_name) ?? str(claims.preferred_username);
  if (user) info.user = user;
  return info;
}

/** What the token functions of both providers need. */
export interface ProviderDeps {
  secrets: SecretResolver;
  secretWriter: SecretWriter | undefined;
  refreshTokens: RefreshTokenStore;
  logger: Logger;
  http: TokenHttpDeps;
}

/** An access token plus what it says about itself (diagnostics). */
export interface AcquiredToken extends TokenResponse {
  info?: TokenInfo;
}

/** App-only: the client credentials grant with the app's client secret. */
export async function microsoftAppOnlyToken(
  mailbox: MailboxConfig,
  auth: MicrosoftAppAuth,
  deps: ProviderDeps,
): Promise<AcquiredToken> {
  const { token: url } = microsoftEndpoints(auth.authority, auth.tenantId);
  const clientSecret = await deps.secrets.resolve(auth.clientSecret);
  registerSecret(clientSecret);
  const form = {
    grant_type: 'client_credentials',
    client_id: auth.clientId,
    client_secret: clientSecret,
    scope: microsoftAppScope(auth.authority),
  };
  const token = await requestToken(
    url,
    form,
    {
      provider: 'microsoft',
      grant: 'client_credentials',
      mailboxId: mailbox.id,
      clientId: auth.clientId,
      tenantId: auth.tenantId,
      clientSecretRef: auth.clientSecret,
      secrets: [clientSecret],
    },
    deps.http,
  );
  const info = decodeMicrosoftToken(token.accessToken);
  return info ? { ...token, info } : token;
}

/** Delegated: the refresh_token grant, writing a rotated refresh token back. */
export async function microsoftDelegatedToken(
  mailbox: MailboxConfig,
  auth: RefreshTokenAuth,
  key: string,
  deps: ProviderDeps,
): Promise<AcquiredToken> {
  const tenantId = auth.tenantId ?? MICROSOFT_DELEGATED_DEFAULT_TENANT;
  const { token: url } = microsoftEndpoints(auth.authority, tenantId);
  const clientSecret = auth.clientSecret ? await deps.secrets.resolve(auth.clientSecret) : undefined;
  if (clientSecret) registerSecret(clientSecret);
  const token = await refreshGrant({
    key,
    tokenUrl: url,
    ref: auth.refreshToken,
    clientId: auth.clientId,
    clientSecret,
    scope: microsoftDelegatedScope(auth.authority),
    ctx: {
      provider: 'microsoft',
      mailboxId: mailbox.id,
      clientId: auth.clientId,
      tenantId,
      refreshTokenRef: auth.refreshToken,
      ...(auth.clientSecret ? { clientSecretRef: auth.clientSecret } : {}),
    },
    secrets: deps.secrets,
    writer: deps.secretWriter,
    store: deps.refreshTokens,
    logger: deps.logger,
    http: deps.http,
  });
  const info = decodeMicrosoftToken(token.accessToken);
  return info ? { ...token, info } : token;
}

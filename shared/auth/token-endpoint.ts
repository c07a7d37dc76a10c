/**
 * The one HTTP exchange every OAuth flow makes: POST a form to a token (or device-code) endpoint, read a
 * small JSON answer, and turn a refusal into an OAuthError that says what to fix. Provider quirks
 * (Microsoft's AADSTS numbers, Google's terse messages) are classified here, so flows stay small.
 * Nothing from the request body is ever logged or quoted: every value we sent is scrubbed from the
 * provider's text, and a body that fails to parse is never attached as a cause.
 */
import type { SecretRef } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import { registerSecret } from '../log.js';
import { sanitizeForeignText } from '../sanitize.js';
import { OAuthError, type OAuthErrorCode, type OAuthProviderError } from './errors.js';

/** Whole token request, connect to last byte: the endpoints answer in well under a second. */
export const TOKEN_REQUEST_TIMEOUT_MS = 15_000;
/** Largest token-endpoint answer we read; real ones are a few KB (a JWT access token plus metadata). */
export const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;
/** Longest provider error_description kept in a message (Microsoft's run to 500+ characters). */
export const MAX_ERROR_DESCRIPTION_CHARS = 300;
/** Lifetime assumed when a provider omits expires_in: short, so we refresh early rather than late. */
export const MISSING_EXPIRES_IN_S = 600;
/** Longest lifetime we believe; a bogus huge expires_in must not pin a stale token in the cache. */
export const MAX_TOKEN_LIFETIME_S = 24 * 3600;

export type OAuthProvider = 'microsoft' | 'google';

export type TokenGrant = 'client_credentials' | 'refresh_token' | 'device_code' | 'authorization_code';

/** Who asked for what, so errors can say what to fix. Never holds secret values except `secrets`. */
export interface TokenRequestContext {
  provider: OAuthProvider;
  grant: TokenGrant;
  /** Mailbox id, for "run pophook auth <id>". */
  mailboxId?: string;
  clientId: string;
  tenantId?: string;
  clientSecretRef?: SecretRef;
  refreshTokenRef?: SecretRef;
  /** Values sent in the request; scrubbed from anything the provider says back. */
  secrets: readonly string[];
}

export interface TokenHttpDeps {
  fetch: typeof fetch;
  signal?: AbortSignal;
}

/** A successful token response, normalised. */
export interface TokenResponse {
  accessToken: string;
  /** Seconds, clamped to [0, MAX_TOKEN_LIFETIME_S]. */
  expiresInS: number;
  refreshToken?: string;
  /** Granted scopes, as the provider reports them. */
  scope?: string;
}

/** The parsed answer of a form POST: status and JSON object (undefined when not JSON). */
export interface FormResult {
  status: number;
  body: Record<string, unknown> | undefined;
}

/**
 * Rejects a non-https endpoint unless it is on this machine (tests, local emulators): the client secret
 * and refresh token travel in the body.
 */
export function checkEndpointUrl(url: string, what: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`The ${what} URL "${url}" is not a valid URL; fix "authority" in the config.`);
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(parsed.hostname);
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback))
    throw new ConfigError(
      `The ${what} URL "${parsed.origin}" must use https (http is allowed only for 127.0.0.1/localhost); fix "authority" in the config.`,
    );
  return parsed;
}

/** Trims trailing slashes from an authority base URL. */
export function trimBase(url: string): string {
  return url.replace(/\/+$/, '');
}

/** POSTs `form` and returns status and JSON body. Network failures become OAUTH_ENDPOINT_UNAVAILABLE. */
export async function postForm(
  url: string,
  form: Record<string, string>,
  ctx: TokenRequestContext,
  deps: TokenHttpDeps,
): Promise<FormResult> {
  const endpoint = checkEndpointUrl(url, 'token endpoint');
  const timeout = AbortSignal.timeout(TOKEN_REQUEST_TIMEOUT_MS);
  const signal = deps.signal ? AbortSignal.any([deps.signal, timeout]) : timeout;
  let res: Response;
  let text: string;
  try {
    res = await deps.fetch(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams(form).toString(),
      // A token endpoint never redirects; following one would re-send the secret elsewhere.
      redirect: 'manual',
      signal,
    });
    text = await readCapped(res, MAX_TOKEN_RESPONSE_BYTES);
  } catch (err) {
    if (deps.signal?.aborted) throw err;
    const reason = timeout.aborted
      ? `no answer within ${TOKEN_REQUEST_TIMEOUT_MS / 1000} s`
      : networkReason(err);
    throw new OAuthError(
      'OAUTH_ENDPOINT_UNAVAILABLE',
      `Could not reach the ${providerName(ctx.provider)} token endpoint at ${endpoint.origin} (${reason}); it will be retried. ` +
        `If this persists, check that this machine or function can reach ${endpoint.host} over HTTPS.`,
      { cause: safeCause(err), details: { ...baseDetails(ctx), endpoint: endpoint.origin } },
    );
  }
  let body: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
      body = parsed as Record<string, unknown>;
  } catch {
    // No cause and no quote: the text may hold tokens.
    body = undefined;
  }
  return { status: res.status, body };
}

/** POSTs a token request and returns the token, or throws the classified OAuthError. */
export async function requestToken(
  url: string,
  form: Record<string, string>,
  ctx: TokenRequestContext,
  deps: TokenHttpDeps,
): Promise<TokenResponse> {
  return parseTokenResult(await postForm(url, form, ctx, deps), ctx, url);
}

/** A success answer to a TokenResponse (every token registered for scrubbing), else the OAuthError. */
export function parseTokenResult(result: FormResult, ctx: TokenRequestContext, url: string): TokenResponse {
  const { status, body } = result;
  if (status >= 200 && status < 300 && body && typeof body.error !== 'string') {
    const accessToken = body.access_token;
    if (typeof accessToken !== 'string' || accessToken.length === 0)
      throw badResponse(ctx, url, status, 'the answer has no access_token');
    registerSecret(accessToken);
    const tokenType = typeof body.token_type === 'string' ? body.token_type : 'Bearer';
    if (tokenType.toLowerCase() !== 'bearer')
      throw badResponse(
        ctx,
        url,
        status,
        `the token type is "${sanitizeForeignText(tokenType, 32)}", not Bearer`,
      );
    const refreshToken =
      typeof body.refresh_token === 'string' && body.refresh_token ? body.refresh_token : undefined;
    if (refreshToken) registerSecret(refreshToken);
    if (typeof body.id_token === 'string') registerSecret(body.id_token);
    return {
      accessToken,
      expiresInS: lifetime(body.expires_in),
      ...(refreshToken ? { refreshToken } : {}),
      ...(typeof body.scope === 'string' ? { scope: sanitizeForeignText(body.scope, 512) } : {}),
    };
  }
  throw tokenErrorFrom(result, ctx, url);
}

function lifetime(raw: unknown): number {
  const n =
    typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isFinite(n) || n < 0) return MISSING_EXPIRES_IN_S;
  return Math.min(Math.floor(n), MAX_TOKEN_LIFETIME_S);
}

/** The provider's error fields, cleaned for messages and details. */
export function providerError(result: FormResult, secrets: readonly string[]): OAuthProviderError {
  const b = result.body ?? {};
  const out: OAuthProviderError = { status: result.status };
  if (typeof b.error === 'string') out.error = sanitizeForeignText(scrub(b.error, secrets), 64);
  if (typeof b.error_description === 'string') {
    const description = cleanDescription(b.error_description, secrets);
    if (description) out.description = description;
    const aadsts = /AADSTS(\d{2,9})/.exec(b.error_description)?.[1];
    if (aadsts) out.aadsts = aadsts;
  }
  if (!out.aadsts && Array.isArray(b.error_codes) && typeof b.error_codes[0] === 'number')
    out.aadsts = String(b.error_codes[0]);
  if (typeof b.correlation_id === 'string') out.correlationId = sanitizeForeignText(b.correlation_id, 64);
  return out;
}

/**
 * Drops Microsoft's trace id, correlation id and timestamp (noise in a message; the correlation id is
 * kept in details), scrubs what we sent, flattens whitespace and caps the length.
 */
export function cleanDescription(text: string, secrets: readonly string[]): string {
  const stripped = scrub(text, secrets)
    .replace(/\s*Trace ID:\s*[\w-]+/gi, '')
    .replace(/\s*Correlation ID:\s*[\w-]+/gi, '')
    .replace(/\s*Timestamp:\s*[\d-]+[ T][\d:.]+Z?/gi, '')
    .replace(/\s+/g, ' ')
    .trim();
  return sanitizeForeignText(stripped, MAX_ERROR_DESCRIPTION_CHARS);
}

function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4 && out.includes(s)) out = out.split(s).join('***');
  return out;
}

/** Classifies a refusal from a token endpoint into an OAuthError with a plain "what to fix". */
export function tokenErrorFrom(result: FormResult, ctx: TokenRequestContext, url: string): OAuthError {
  const p = providerError(result, ctx.secrets);
  const { status } = result;
  const details = { ...baseDetails(ctx), provider_error: p };
  const said = quote(p);
  const who = providerName(ctx.provider);
  const mk = (code: OAuthErrorCode, message: string, transient?: boolean) =>
    new OAuthError(code, message, { details, ...(transient === undefined ? {} : { transient }) });

  if (!p.error) {
    if (status === 429 || status >= 500)
      return mk(
        'OAUTH_ENDPOINT_UNAVAILABLE',
        `The ${who} token endpoint answered HTTP ${status}; it will be retried.`,
      );
    if (status >= 200 && status < 300)
      return badResponse(ctx, url, status, 'the answer is not a JSON token response');
    return badResponse(ctx, url, status, `HTTP ${status} without an OAuth error`, false);
  }

  const error = p.error;
  const aadsts = p.aadsts ?? '';
  const desc = (p.description ?? '').toLowerCase();
  const mailbox = ctx.mailboxId ?? '<mailbox>';
  const secretName = ctx.clientSecretRef
    ? `secret "${ctx.clientSecretRef.secret}"`
    : 'the clientSecret secret';
  const reauth = `Run "pophook auth ${mailbox}" to sign in again and store a new refresh token.`;

  if (error === 'temporarily_unavailable' || error === 'server_error' || status === 429 || status >= 500)
    return mk(
      'OAUTH_ENDPOINT_UNAVAILABLE',
      `The ${who} token endpoint is temporarily unavailable ${said}; it will be retried.`,
      true,
    );

  // Consent first: Microsoft reports missing consent as invalid_grant or invalid_client (AADSTS65001).
  if (error === 'consent_required' || aadsts === '65001' || aadsts === '650057' || /\bconsent/.test(desc)) {
    const fix =
      ctx.grant === 'client_credentials'
        ? `An administrator must grant consent: in Microsoft Entra ID > App registrations > ${ctx.clientId} > API permissions, ` +
          'add "Office 365 Exchange Online" > Application permissions > POP.AccessAsApp, then click "Grant admin consent".'
        : `Run "pophook auth ${mailbox}" and accept the requested permission; if your organisation requires it, ` +
          'ask an administrator to grant admin consent to the app first.';
    return mk('OAUTH_CONSENT_REQUIRED', `${who} says the app has no consent for this access ${said}. ${fix}`);
  }

  if (error === 'invalid_client' || (error === 'unauthorized_client' && ctx.provider === 'microsoft')) {
    let fix: string;
    if (aadsts === '7000222')
      fix = `The client secret has expired: create a new one for app ${ctx.clientId} and store its value in ${secretName}.`;
    else if (aadsts === '700016')
      fix = `App ${ctx.clientId} does not exist in tenant ${ctx.tenantId ?? '(default)'}: check clientId and tenantId in the config.`;
    else if (aadsts === '7000218')
      fix =
        'The app registration expects a client secret: set "clientSecret" in the config, or turn on ' +
        '"Allow public client flows" in the app registration\'s Authentication settings.';
    else if (aadsts === '700025')
      fix =
        'The app is a public client, so no client secret may be sent: remove "clientSecret" from the config, ' +
        'or turn off "Allow public client flows".';
    else if (ctx.provider === 'google')
      fix =
        `Check clientId and the client secret in ${secretName}: download them again from Google Cloud console > ` +
        'APIs & Services > Credentials (an OAuth client of type "Desktop app").';
    else if (!ctx.clientSecretRef)
      fix =
        `Check clientId (${ctx.clientId}). With no clientSecret in the config the app registration must allow ` +
        'public client flows (Authentication > "Allow public client flows"); otherwise add "clientSecret".';
    else
      fix =
        `The client secret is wrong or expired: create a new client secret for app ${ctx.clientId} ` +
        '(Microsoft Entra ID > App registrations > Certificates & secrets), store its Value (not its Secret ID) in ' +
        `${secretName}, and try again.`;
    return mk('OAUTH_INVALID_CLIENT', `${who} rejected the app's credentials ${said}. ${fix}`);
  }

  if (error === 'invalid_grant' || error === 'interaction_required' || error === 'expired_token') {
    if (ctx.grant === 'refresh_token') {
      const where = ctx.refreshTokenRef ? ` in secret "${ctx.refreshTokenRef.secret}"` : '';
      const why =
        error === 'interaction_required'
          ? 'the organisation requires a fresh interactive sign-in (MFA or a Conditional Access policy)'
          : 'it was revoked, expired, or issued to a different app';
      return mk('OAUTH_INVALID_GRANT', `${who} refused the refresh token${where} ${said}: ${why}. ${reauth}`);
    }
    return mk(
      'OAUTH_INVALID_GRANT',
      `${who} refused the sign-in code ${said}: it expired or was already used. Run "pophook auth ${mailbox}" again.`,
    );
  }

  if (error === 'unauthorized_client')
    return mk(
      'OAUTH_INVALID_CLIENT',
      `${who} does not allow this OAuth client to use the ${ctx.grant} grant ${said}. ` +
        'Create an OAuth client of type "Desktop app" in Google Cloud console and put its id and secret in the config.',
    );

  if (error === 'access_denied' || error === 'authorization_declined')
    return mk(
      'OAUTH_CONSENT_REQUIRED',
      `The sign-in was declined ${said}. Run "pophook auth ${mailbox}" again and accept the permission.`,
    );

  let fix = 'Check clientId, tenantId and authority in the config.';
  if (aadsts === '90002' || aadsts === '900023' || /tenant/.test(desc))
    fix = `Tenant "${ctx.tenantId ?? ''}" was not found: set tenantId to your directory (tenant) id or domain.`;
  else if (error === 'invalid_scope' || aadsts === '70011')
    fix =
      ctx.provider === 'google'
        ? 'The scope https://mail.google.com/ was refused: add it to the OAuth consent screen of the Google Cloud project, then run "pophook auth" again.'
        : 'The requested scope was refused: check that the app has the Office 365 Exchange Online POP permission.';
  return mk('OAUTH_REQUEST_REJECTED', `${who} refused the token request ${said}. ${fix}`);
}

function badResponse(
  ctx: TokenRequestContext,
  url: string,
  status: number,
  what: string,
  transient?: boolean,
): OAuthError {
  const origin = safeOrigin(url);
  // 3xx/404/405 mean we are talking to the wrong URL: no retry will fix that.
  const permanent =
    transient === false || (status >= 300 && status < 400) || status === 404 || status === 405;
  return new OAuthError(
    'OAUTH_BAD_RESPONSE',
    `The token endpoint at ${origin} gave an answer pophook cannot use (HTTP ${status}: ${what}). ` +
      (permanent
        ? 'Check "authority" and "tenantId" in the config.'
        : 'It will be retried; if it persists, check "authority" in the config.'),
    { details: { ...baseDetails(ctx), status, endpoint: origin }, transient: !permanent },
  );
}

function quote(p: OAuthProviderError): string {
  const code = p.aadsts ? `${p.error}, AADSTS${p.aadsts}` : p.error;
  if (!code) return `(HTTP ${p.status})`;
  const desc = p.description ? `: ${p.description.replace(/^AADSTS\d+:\s*/, '')}` : '';
  return `(${code}${desc})`;
}

export function providerName(provider: OAuthProvider): string {
  return provider === 'microsoft' ? 'Microsoft' : 'Google';
}

function baseDetails(ctx: TokenRequestContext): Record<string, unknown> {
  const d: Record<string, unknown> = { provider: ctx.provider, grant: ctx.grant, clientId: ctx.clientId };
  if (ctx.mailboxId) d.mailboxId = ctx.mailboxId;
  if (ctx.tenantId) d.tenantId = ctx.tenantId;
  return d;
}

function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = cause && typeof cause.code === 'string' ? cause.code : undefined;
  if (code) return code;
  return err instanceof Error ? sanitizeForeignText(err.message, 80) : 'network error';
}

/** A cause without anything a request could have put in it: name, code and message only. */
function safeCause(err: unknown): unknown {
  if (!(err instanceof Error)) return undefined;
  const inner = (err as { cause?: unknown }).cause;
  const out = new Error(sanitizeForeignText(err.message, 200));
  out.name = err.name;
  if (inner instanceof Error) {
    const c = new Error(sanitizeForeignText(inner.message, 200));
    c.name = inner.name;
    const code = (inner as { code?: unknown }).code;
    if (typeof code === 'string') Object.assign(c, { code });
    Object.assign(out, { cause: c });
  }
  return out;
}

/** Reads a response body as text, refusing more than `max` bytes. */
async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw new Error(`response larger than ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

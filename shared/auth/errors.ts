/**
 * OAuth errors: one class, stable codes. Messages say in plain words what to fix (a wrong client
 * secret, missing admin consent, a revoked refresh token) and quote the provider's error code and a
 * sanitised, shortened error_description. They never hold a secret or a token: every value we sent is
 * scrubbed from the provider's text before it gets here.
 */
import { PophookError, type PophookErrorOptions } from '../errors.js';

export type OAuthErrorCode =
  /** The provider rejected the client: wrong/expired client secret, unknown client id or tenant. */
  | 'OAUTH_INVALID_CLIENT'
  /** The refresh token (or device/authorization code) is revoked, expired or for another client. */
  | 'OAUTH_INVALID_GRANT'
  /** A user or an administrator has not consented to the permission (or declined the sign-in). */
  | 'OAUTH_CONSENT_REQUIRED'
  /** Network failure, timeout, 5xx, 429 or `temporarily_unavailable`: retry later. */
  | 'OAUTH_ENDPOINT_UNAVAILABLE'
  /** The endpoint answered something that is not a token response (wrong `authority`?). */
  | 'OAUTH_BAD_RESPONSE'
  /** Any other refusal (`invalid_request`, `invalid_scope`, unknown tenant): a config problem. */
  | 'OAUTH_REQUEST_REJECTED'
  /** An interactive sign-in (`pophook auth`) failed or timed out. */
  | 'OAUTH_SIGN_IN_FAILED';

const TRANSIENT: Record<OAuthErrorCode, boolean> = {
  OAUTH_INVALID_CLIENT: false,
  OAUTH_INVALID_GRANT: false,
  OAUTH_CONSENT_REQUIRED: false,
  OAUTH_ENDPOINT_UNAVAILABLE: true,
  // A garbled answer from a well-known identity provider is most likely a glitch or a proxy; a wrong
  // `authority` shows up as a 404/3xx, which is classified permanent where it is detected.
  OAUTH_BAD_RESPONSE: true,
  OAUTH_REQUEST_REJECTED: false,
  OAUTH_SIGN_IN_FAILED: false,
};

/** What the provider said, for `details` (all sanitised, no secrets). */
export interface OAuthProviderError {
  /** HTTP status of the token endpoint's answer. */
  status?: number;
  /** OAuth `error`, e.g. `invalid_client`. */
  error?: string;
  /** Sanitised `error_description` without trace/correlation ids and timestamps. */
  description?: string;
  /** Microsoft `AADSTS` number, e.g. `7000215`. */
  aadsts?: string;
  /** Microsoft correlation id: quote it in a support ticket. */
  correlationId?: string;
}

/** Any failure to obtain an OAuth access or refresh token. */
export class OAuthError extends PophookError {
  declare readonly code: OAuthErrorCode;

  constructor(code: OAuthErrorCode, message: string, options: PophookErrorOptions = {}) {
    super(code, message, options, TRANSIENT[code]);
  }
}

export function isOAuthError(err: unknown, code?: OAuthErrorCode): err is OAuthError {
  return err instanceof OAuthError && (code === undefined || err.code === code);
}

/**
 * Modern auth for POP mailboxes: `createCredentialsProvider` turns any mailbox config into POP3
 * credentials (a password, or an OAuth access token from Microsoft 365 or Google, cached and refreshed),
 * the interactive flows behind `pophook auth`, and `explainAuthFailure` for `pophook check`.
 */
export {
  type CredentialsDeps,
  type CredentialsProvider,
  type CredentialsWithExpiry,
  cacheKey,
  createCredentialsProvider,
} from './credentials.js';
export { type DeviceCodeFlowOptions, runDeviceCodeFlow } from './device-code.js';
export { isOAuthError, OAuthError, type OAuthErrorCode, type OAuthProviderError } from './errors.js';
export { explainAuthFailure } from './explain.js';
export { GOOGLE_SCOPE, GOOGLE_TOKEN_URL, googleEndpoints } from './google.js';
export { LOOPBACK_TIMEOUT_MS, type LoopbackFlowOptions, runLoopbackFlow } from './loopback-flow.js';
export {
  decodeMicrosoftToken,
  MICROSOFT_APP_SCOPE,
  MICROSOFT_AUTHORITY,
  MICROSOFT_DELEGATED_DEFAULT_TENANT,
  MICROSOFT_DELEGATED_SCOPE,
  microsoftEndpoints,
  type TokenInfo,
} from './microsoft.js';
export { RefreshTokenStore, sharedRefreshTokens } from './refresh-token-store.js';
export { sharedTokenCache, TOKEN_REFRESH_MARGIN_MS, TokenCache } from './token-cache.js';
export { TOKEN_REQUEST_TIMEOUT_MS, type TokenResponse } from './token-endpoint.js';

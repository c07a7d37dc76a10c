/**
 * The POP3 client: `connect()` and the types of `./types.ts`, plus the typed errors and limits.
 * Layers (framer, connection, commands) stay internal; tests import them directly.
 */

export { FALLBACK_CAPABILITIES, parseCapabilities } from './capabilities.js';
export { connect } from './client.js';
export {
  errorFromErrReply,
  isPop3Error,
  Pop3Error,
  type Pop3ErrorCode,
  parseResponseCode,
  redactCommand,
} from './errors.js';
export {
  DEFAULT_LIMITS,
  DEFAULT_TIMEOUTS,
  MAX_COMMAND_LINE_BYTES,
  resolveLimits,
  resolveTimeouts,
} from './limits.js';
export type {
  Pop3Capabilities,
  Pop3ConnectOptions,
  Pop3Credentials,
  Pop3Limits,
  Pop3ListingEntry,
  Pop3MessageStream,
  Pop3Session,
  Pop3State,
  Pop3Timeouts,
  Pop3UidlEntry,
  TlsInfo,
  TlsMode,
} from './types.js';

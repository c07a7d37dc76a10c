/**
 * Every number the POP3 client enforces, each with the reason it has the value it has. Callers
 * override them per session through `Pop3ConnectOptions.timeouts` / `.limits`; the defaults are safe
 * for a Lambda poller talking to an untrusted server.
 */
import { ConfigError } from '../errors.js';
import type { Pop3Limits, Pop3Timeouts } from './types.js';

/** TCP connect: a reachable server answers SYN in well under a second; 15 s rides out a slow path. */
export const CONNECT_TIMEOUT_MS = 15_000;
/** Greeting: servers delay greetings under load (and tarpits delay them on purpose); 30 s is generous. */
export const GREETING_TIMEOUT_MS = 30_000;
/** TLS handshake: without one fetchmail hung for a week on a stalled handshake (CVE-2011-1947 class). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 15_000;
/** Silence while a reply is owed: long enough for a slow RETR to start, short of the 10 min autologout. */
export const IDLE_TIMEOUT_MS = 60_000;
/** Whole session: the poller passes less (the Lambda's remaining time); standalone use gets 10 min. */
export const SESSION_TIMEOUT_MS = 10 * 60_000;

export const DEFAULT_TIMEOUTS: Readonly<Pop3Timeouts> = Object.freeze({
  connectMs: CONNECT_TIMEOUT_MS,
  greetingMs: GREETING_TIMEOUT_MS,
  tlsHandshakeMs: TLS_HANDSHAKE_TIMEOUT_MS,
  idleMs: IDLE_TIMEOUT_MS,
  sessionMs: SESSION_TIMEOUT_MS,
});

/**
 * RFC 2449 §4 allows 512 octets; real servers exceed it a little. 8 KiB tolerates them while a
 * hostile 100 KB greeting still fails fast (Python poplib CVE-2013-1752 was an unbounded readline).
 */
export const MAX_STATUS_LINE_BYTES = 8 * 1024;
/**
 * Lines inside a RETR have no protocol limit and real mail breaks RFC 5322's 998 octets (unwrapped
 * base64, minified HTML). Bodies are streamed, so this only bounds how far we follow a server that
 * never sends CRLF.
 */
export const MAX_DATA_LINE_BYTES = 8 * 1024 * 1024;
/**
 * One RETR: above the config's default skip size (50 MiB by LIST) with room for LIST under-counting
 * and byte-stuffing; the poller passes its own figure.
 */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** LIST/UIDL/CAPA are buffered whole; 32 MiB is ~400k UIDL lines, far past any real maildrop. */
export const MAX_LISTING_BYTES = 32 * 1024 * 1024;
/**
 * Commands in flight with PIPELINING: enough to hide loopback and WAN round trips (Dovecot peaks at a
 * window of ~50-100), small enough that a desync is noticed before much is queued behind it.
 */
export const PIPELINE_WINDOW = 64;

export const DEFAULT_LIMITS: Readonly<Pop3Limits> = Object.freeze({
  maxStatusLineBytes: MAX_STATUS_LINE_BYTES,
  maxDataLineBytes: MAX_DATA_LINE_BYTES,
  maxMessageBytes: MAX_MESSAGE_BYTES,
  maxListingBytes: MAX_LISTING_BYTES,
  pipelineWindow: PIPELINE_WINDOW,
});

/** RFC 2449 §4: a command line, CRLF included, is at most 255 octets (decides inline SASL responses). */
export const MAX_COMMAND_LINE_BYTES = 255;

/**
 * Buffered bytes per message stream before the socket is paused: big enough that a 20 KB message
 * never pauses the socket (throughput), small enough that a slow consumer keeps memory flat.
 */
export const MESSAGE_STREAM_HIGH_WATER_MARK = 256 * 1024;

/** SASL `+` challenges we answer in one AUTH: PLAIN/XOAUTH2/OAUTHBEARER need at most two. */
export const MAX_SASL_CONTINUATIONS = 3;

/** Longest server text kept in an error or log field (`response`, `details.challenge`). */
export const MAX_ERROR_RESPONSE_CHARS = 256;

function positiveInt(name: string, value: number): number {
  // Zero is rejected, not treated as "unlimited": a 0 timeout or limit is a config mistake.
  if (!Number.isFinite(value) || !Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`POP3 ${name} must be a positive integer (got ${String(value)}).`);
  }
  return value;
}

/** Fills unset timeouts with defaults and validates the rest. */
export function resolveTimeouts(partial: Partial<Pop3Timeouts> = {}): Pop3Timeouts {
  const out = { ...DEFAULT_TIMEOUTS };
  for (const key of Object.keys(out) as (keyof Pop3Timeouts)[]) {
    const v = partial[key];
    if (v !== undefined) out[key] = positiveInt(`timeouts.${key}`, v);
  }
  return out;
}

/** Fills unset limits with defaults and validates the rest. */
export function resolveLimits(partial: Partial<Pop3Limits> = {}): Pop3Limits {
  const out = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(out) as (keyof Pop3Limits)[]) {
    const v = partial[key];
    if (v !== undefined) out[key] = positiveInt(`limits.${key}`, v);
  }
  return out;
}

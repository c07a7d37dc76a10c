/**
 * The public face of the POP3 client (`shared/pop3/`). Ingestion, `pophook check` and the benchmarks
 * use only this. Layers underneath: `framer.ts` (pure bytes -> replies), `connection.ts` (socket, TLS,
 * state machine, pipelining), `commands.ts` (one small function per command), `client.ts` (this API).
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../log.js';

export type Pop3State = 'CONNECTING' | 'AUTHORIZATION' | 'TRANSACTION' | 'UPDATE' | 'CLOSED';

export type TlsMode = 'implicit' | 'starttls' | 'none';

export interface Pop3Timeouts {
  /** TCP connect. */
  connectMs: number;
  /** From connect to a complete greeting line. */
  greetingMs: number;
  /** TLS handshake (implicit or after STLS). */
  tlsHandshakeMs: number;
  /** Longest silence while waiting for any byte of a reply. */
  idleMs: number;
  /** Whole session, from connect to QUIT. Set below the Lambda's remaining time. */
  sessionMs: number;
}

export interface Pop3Limits {
  /** Longest status line (greeting, +OK/-ERR). Longer is a protocol violation. */
  maxStatusLineBytes: number;
  /** Longest line inside a multi-line reply (real mail has long lines). */
  maxDataLineBytes: number;
  /** Largest multi-line reply (one RETR). Past it the stream errors with POP3_MESSAGE_TOO_LARGE. */
  maxMessageBytes: number;
  /** Largest LIST/UIDL/CAPA listing. */
  maxListingBytes: number;
  /** Most commands in flight when PIPELINING is on. */
  pipelineWindow: number;
}

export type Pop3Credentials =
  /** `auto`: SASL PLAIN when advertised, else USER/PASS. */
  | { mechanism: 'auto' | 'plain' | 'user'; user: string; password: string }
  /** Only when the config asks for it; never chosen automatically (MD5). */
  | { mechanism: 'apop'; user: string; password: string }
  | { mechanism: 'xoauth2' | 'oauthbearer'; user: string; accessToken: string };

export interface Pop3ConnectOptions {
  host: string;
  /** @default 995 for implicit TLS, else 110 */
  port?: number;
  /** @default 'implicit' */
  tls?: TlsMode;
  /** SNI and certificate name; defaults to `host` when it is a name. */
  servername?: string;
  /** Extra trusted CA(s), PEM. */
  ca?: string | string[];
  /** Acceptable leaf certificate SHA-256 fingerprints (hex). */
  pinSha256?: string[];
  /** Permit credentials on an unencrypted connection (local test servers only). */
  allowInsecureAuth?: boolean;
  /** Source address (tests use 127.0.0.x to dodge per-IP auth penalties). */
  localAddress?: string;
  /** Use PIPELINING when the server advertises it. @default true */
  pipelining?: boolean;
  timeouts?: Partial<Pop3Timeouts>;
  limits?: Partial<Pop3Limits>;
  logger?: Logger;
  /** Log a redacted transcript at debug level. */
  transcript?: boolean;
  /** Aborts the session (socket destroyed, pending calls reject). */
  signal?: AbortSignal;
}

export interface Pop3Capabilities {
  /** Upper-cased capability names to their arguments, e.g. `SASL -> ['PLAIN','XOAUTH2']`. */
  readonly raw: ReadonlyMap<string, readonly string[]>;
  readonly sasl: readonly string[];
  readonly pipelining: boolean;
  readonly uidl: boolean;
  readonly top: boolean;
  readonly user: boolean;
  readonly stls: boolean;
  readonly respCodes: boolean;
  /** Seconds, from `LOGIN-DELAY n`; undefined when not advertised. */
  readonly loginDelaySeconds?: number;
  /** Days, or 'NEVER', from `EXPIRE`; undefined when not advertised. */
  readonly expire?: number | 'NEVER';
  /** False when CAPA itself failed and these are assumptions. */
  readonly advertised: boolean;
}

export interface Pop3ListingEntry {
  /** Message number, valid for this session only. */
  n: number;
  size: number;
}

export interface Pop3UidlEntry {
  n: number;
  /** Kept exactly as the server sent it (may repeat, may hold odd characters). */
  uidl: string;
}

/** A RETR in progress: the bytes, unstuffed and byte-exact, as a stream. */
export interface Pop3MessageStream extends Readable {
  readonly messageNumber: number;
}

export interface TlsInfo {
  protocol: string | null;
  cipher: string;
  authorized: boolean;
  subject?: string;
  issuer?: string;
  validTo?: string;
  fingerprint256?: string;
}

export interface Pop3Session {
  readonly state: Pop3State;
  /** Greeting text, sanitised. */
  readonly greeting: string;
  readonly capabilities: Pop3Capabilities;
  readonly tls: TlsInfo | undefined;
  /** Mechanism actually used at login, e.g. `PLAIN`, `USER`, `XOAUTH2`. */
  readonly authMechanism: string | undefined;

  login(credentials: Pop3Credentials): Promise<void>;
  stat(): Promise<{ count: number; size: number }>;
  list(): Promise<Pop3ListingEntry[]>;
  uidl(): Promise<Pop3UidlEntry[]>;
  /** `TOP n lines` as a stream (headers plus `lines` body lines). */
  top(n: number, lines: number): Promise<Pop3MessageStream>;
  /** Resolves once the +OK line arrived; the stream then yields the message. */
  retr(n: number): Promise<Pop3MessageStream>;
  /**
   * Pipelined RETR of many messages in order (bounded window when PIPELINING is on, one at a time
   * otherwise). Each stream must be consumed (or destroyed) before the next is yielded.
   */
  retrMany(ns: readonly number[]): AsyncIterable<Pop3MessageStream>;
  dele(n: number): Promise<void>;
  rset(): Promise<void>;
  noop(): Promise<void>;
  /** Enters UPDATE (deletions commit) and closes. */
  quit(): Promise<void>;
  /** Drops the connection without QUIT: nothing marked for deletion is deleted (RFC 1939 §6). */
  close(): void;
}

/**
 * The event contract receivers see (versioned; JSON Schema in `docs/event.schema.json`). The poller
 * writes it to the archive beside the raw message; delivery wraps it as the Standard Webhooks body
 * `{ type, timestamp, data }`.
 */

export const EVENT_VERSION = 1;

export interface Address {
  address: string;
  name: string;
}

export interface HeaderLine {
  /** Lower-cased header name. */
  name: string;
  /** Unfolded, decoded value (RFC 2047), sanitised of control characters. */
  value: string;
}

export interface AttachmentInfo {
  /** 0-based position among attachments; part of the archive key. */
  index: number;
  filename: string | null;
  contentType: string;
  size: number;
  sha256: string;
  contentId: string | null;
  disposition: 'attachment' | 'inline' | null;
  /** Archive key of the attachment bytes. */
  key: string;
}

export interface AuthResults {
  /** The receiving server's verdicts, from `Authentication-Results` / `Received-SPF`. */
  spf?: string;
  dkim?: string;
  dmarc?: string;
  arc?: string;
  /** authserv-id of the header we trusted (the topmost). */
  authservId?: string;
}

export interface SpamInfo {
  /** From X-Spam-Flag / X-Spam-Status. */
  flagged?: boolean;
  score?: number;
  /** Raw X-Spam-* headers, sanitised. */
  headers: Record<string, string>;
}

export interface RawInfo {
  key: string;
  size: number;
  sha256: string;
}

export interface EmailReceivedData {
  version: typeof EVENT_VERSION;
  /** Stable per message: the Standard Webhooks `webhook-id` and event id. */
  eventId: string;
  messageKey: string;
  mailboxId: string;
  uidl: string | null;
  /** When pophook first saw the message on the server (ISO 8601). */
  receivedAt: string;
  /** The `Date:` header, ISO 8601, or null when missing or unparseable. */
  date: string | null;
  messageId: string | null;
  inReplyTo: string | null;
  references: string[];
  subject: string | null;
  from: Address[];
  to: Address[];
  cc: Address[];
  bcc: Address[];
  replyTo: Address[];
  text: string | null;
  textTruncated: boolean;
  html: string | null;
  htmlTruncated: boolean;
  headers: HeaderLine[];
  attachments: AttachmentInfo[];
  raw: RawInfo;
  authResults: AuthResults | null;
  spam: SpamInfo | null;
  /** Charsets that were unknown or guessed while decoding. */
  charsetWarnings: string[];
  /** Set when parsing failed or hit a limit; the raw message is still archived and delivered. */
  parseError: { code: string; message: string } | null;
}

export interface EmailSkippedData {
  version: typeof EVENT_VERSION;
  eventId: string;
  messageKey: string;
  mailboxId: string;
  uidl: string | null;
  receivedAt: string;
  size: number;
  reason: 'too-large';
  limit: number;
}

export type PophookEvent =
  | { type: 'email.received'; data: EmailReceivedData }
  | { type: 'email.skipped'; data: EmailSkippedData };

/**
 * One small function per POP3 command: build the line, say what reply shape to expect, turn the reply
 * into data or a typed error. Commands never touch the socket; the connection does.
 */
import { createHash } from 'node:crypto';
import { ConfigError } from '../errors.js';
import { FALLBACK_CAPABILITIES, MAX_CAPA_BYTES, parseCapabilities } from './capabilities.js';
import { type CommandSpec, FailedMessageStream, type Pop3Connection, type Reply } from './connection.js';
import { errorFromErrReply, Pop3Error } from './errors.js';
import { type SaslMechanism, saslExchange } from './sasl.js';
import type {
  Pop3Capabilities,
  Pop3Limits,
  Pop3ListingEntry,
  Pop3MessageStream,
  Pop3UidlEntry,
} from './types.js';

/** What every command needs: the connection, the current capabilities, the limits. */
export interface CommandContext {
  readonly conn: Pop3Connection;
  readonly caps: Pop3Capabilities;
  readonly limits: Pop3Limits;
}

function fail(ctx: CommandContext, spec: CommandSpec, reply: Reply, auth = false, details = {}): Pop3Error {
  return errorFromErrReply({
    command: spec.redacted,
    response: reply.line,
    auth,
    authRespCode: ctx.caps.raw.has('AUTH-RESP-CODE'),
    loginDelaySeconds: ctx.caps.loginDelaySeconds,
    details,
  });
}

/** Sends a single-line command; returns the status line, throws a typed error on -ERR. */
async function simple(ctx: CommandContext, spec: CommandSpec, auth = false): Promise<string> {
  const reply = await ctx.conn.send(spec);
  if (!reply.ok) throw fail(ctx, spec, reply, auth);
  return reply.line;
}

function assertMessageNumber(n: number): void {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new Pop3Error('POP3_USAGE', `POP3 message numbers are positive integers (got ${String(n)}).`);
  }
}

/** Credentials go into a command line: CR, LF or NUL would end it early (command injection). */
function assertLineSafe(what: string, value: string): void {
  if (/[\r\n\0]/.test(value)) {
    throw new ConfigError(
      `The POP3 ${what} contains a line break or NUL character, which POP3 cannot carry.`,
    );
  }
}

function protocolError(message: string, line: string, command: string): Pop3Error {
  return new Pop3Error('POP3_PROTOCOL', message, { command, response: line });
}

/** CAPA; undefined when the server answers -ERR (pre-RFC 2449), so the caller falls back. */
export async function capa(ctx: CommandContext): Promise<Pop3Capabilities | undefined> {
  const reply = await ctx.conn.send({
    line: 'CAPA',
    redacted: 'CAPA',
    kind: 'listing',
    maxBytes: MAX_CAPA_BYTES,
  });
  if (!reply.ok) return undefined;
  return parseCapabilities(reply.body ?? Buffer.alloc(0));
}

/** CAPA with the RFC 2449 fallback assumptions when it fails. */
export async function capaOrFallback(ctx: CommandContext): Promise<Pop3Capabilities> {
  return (await capa(ctx)) ?? FALLBACK_CAPABILITIES;
}

/** STLS (RFC 2595): required upgrade. -ERR aborts; nothing else is sent in the clear. */
export async function stls(ctx: CommandContext): Promise<void> {
  const spec: CommandSpec = { line: 'STLS', redacted: 'STLS', kind: 'single', barrier: true, startTls: true };
  const reply = await ctx.conn.send(spec);
  if (!reply.ok) {
    throw new Pop3Error(
      'POP3_STLS_UNAVAILABLE',
      'The server refused STLS, so the connection cannot be encrypted; no credentials were sent. Use implicit TLS (port 995) if the server offers it.',
      { command: 'STLS', response: reply.line },
    );
  }
}

/** USER + PASS (RFC 1939 §7). */
export async function userPass(ctx: CommandContext, user: string, password: string): Promise<void> {
  assertLineSafe('user name', user);
  assertLineSafe('password', password);
  await simple(
    ctx,
    { line: `USER ${user}`, redacted: `USER ${user}`, kind: 'single', barrier: true, credentials: true },
    true,
  );
  await simple(
    ctx,
    {
      line: `PASS ${password}`,
      redacted: 'PASS ***',
      kind: 'single',
      barrier: true,
      credentials: true,
      secrets: [password],
    },
    true,
  );
}

/** APOP (RFC 1939 §7): only when configured; MD5 over the greeting timestamp (CVE-2007-1558). */
export async function apop(ctx: CommandContext, user: string, password: string): Promise<void> {
  assertLineSafe('user name', user);
  const timestamp = ctx.conn.apopTimestamp;
  if (timestamp === undefined) {
    throw new Pop3Error(
      'POP3_NOT_SUPPORTED',
      'APOP needs the timestamp from the server greeting, and there is none (or it was discarded by STLS because it arrived before TLS). Use another mechanism.',
      { command: 'APOP' },
    );
  }
  const digest = createHash('md5').update(`${timestamp}${password}`, 'utf8').digest('hex');
  await simple(
    ctx,
    {
      line: `APOP ${user} ${digest}`,
      redacted: `APOP ${user} ***`,
      kind: 'single',
      barrier: true,
      credentials: true,
      secrets: [digest, password],
    },
    true,
  );
}

/** AUTH with one SASL mechanism (RFC 5034); `secrets` are scrubbed from any server text. */
export async function auth(
  ctx: CommandContext,
  mechanism: SaslMechanism,
  initialResponse: string,
  secrets: readonly string[],
): Promise<void> {
  const exchange = saslExchange(mechanism, initialResponse);
  const spec: CommandSpec = {
    line: exchange.line,
    redacted: exchange.inline ? `AUTH ${mechanism} ***` : `AUTH ${mechanism}`,
    kind: 'single',
    barrier: true,
    credentials: true,
    secrets: [initialResponse, ...secrets],
    onContinuation: (line) => exchange.onContinuation(line),
  };
  const reply = await ctx.conn.send(spec);
  if (reply.ok) return;
  const challenge = exchange.challenge;
  if (challenge === undefined) throw fail(ctx, spec, reply, true);
  // An OAuth error challenge is a credential verdict even when the final -ERR carries no [AUTH].
  throw errorFromErrReply({
    command: spec.redacted,
    response: reply.line,
    auth: true,
    authRespCode: false,
    details: { challenge: scrubDeep(challenge, [initialResponse, ...secrets]) },
  });
}

function scrubDeep(value: unknown, secrets: readonly string[]): unknown {
  const scrub = (s: string) =>
    secrets.reduce((acc, secret) => (secret ? acc.split(secret).join('***') : acc), s);
  if (typeof value === 'string') return scrub(value);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, typeof v === 'string' ? scrub(v) : v]),
    );
  }
  return value;
}

/** STAT: `+OK count size`. */
export async function stat(ctx: CommandContext): Promise<{ count: number; size: number }> {
  const line = await simple(ctx, { line: 'STAT', redacted: 'STAT', kind: 'single' });
  const m = /^\+OK\s+(\d{1,15})\s+(\d{1,15})/i.exec(line);
  if (!m) throw protocolError('The server answered STAT without a message count and size.', line, 'STAT');
  return { count: Number(m[1]), size: Number(m[2]) };
}

function listingLines(body: Buffer): string[] {
  const lines = body.toString('latin1').split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

async function listing(ctx: CommandContext, verb: 'LIST' | 'UIDL'): Promise<string[] | Reply> {
  const spec: CommandSpec = {
    line: verb,
    redacted: verb,
    kind: 'listing',
    maxBytes: ctx.limits.maxListingBytes,
  };
  const reply = await ctx.conn.send(spec);
  if (!reply.ok) return reply;
  return listingLines(reply.body ?? Buffer.alloc(0));
}

/** LIST (all messages): number and size in octets, as the server counts them. */
export async function list(ctx: CommandContext): Promise<Pop3ListingEntry[]> {
  const lines = await listing(ctx, 'LIST');
  if (!Array.isArray(lines)) throw fail(ctx, { line: 'LIST', redacted: 'LIST', kind: 'listing' }, lines);
  return lines.map((line) => {
    const m = /^\s*(\d{1,15})\s+(\d{1,15})/.exec(line);
    if (!m) throw protocolError('The server sent a malformed LIST line.', line, 'LIST');
    return { n: Number(m[1]), size: Number(m[2]) };
  });
}

/**
 * UIDL (all messages). The unique-id is everything after the first space, kept byte for byte
 * (decoded latin1, so no two byte strings collide); duplicates are returned as they come.
 * Throws POP3_NOT_SUPPORTED when the server does not do UIDL.
 */
export async function uidl(ctx: CommandContext): Promise<Pop3UidlEntry[]> {
  const lines = await listing(ctx, 'UIDL');
  if (!Array.isArray(lines)) {
    if (!ctx.caps.uidl) {
      throw new Pop3Error(
        'POP3_NOT_SUPPORTED',
        'The server does not support UIDL, so messages cannot be tracked across sessions; use a delete-after-fetch retention.',
        { command: 'UIDL', response: lines.line },
      );
    }
    throw fail(ctx, { line: 'UIDL', redacted: 'UIDL', kind: 'listing' }, lines);
  }
  return lines.map((line) => {
    const m = /^\s*(\d{1,15}) /.exec(line);
    const id = m ? line.slice(m[0].length) : '';
    if (!m || id.length === 0) throw protocolError('The server sent a malformed UIDL line.', line, 'UIDL');
    return { n: Number(m[1]), uidl: id };
  });
}

function streamSpec(ctx: CommandContext, line: string, n: number): CommandSpec {
  return { line, redacted: line, kind: 'stream', maxBytes: ctx.limits.maxMessageBytes, messageNumber: n };
}

/** RETR n: resolves at +OK with the message stream; -ERR throws (POP3_COMMAND_FAILED etc.). */
export async function retr(ctx: CommandContext, n: number): Promise<Pop3MessageStream> {
  assertMessageNumber(n);
  const spec = streamSpec(ctx, `RETR ${n}`, n);
  const reply = await ctx.conn.send(spec);
  if (!reply.ok || !reply.stream) throw fail(ctx, spec, reply);
  return reply.stream;
}

/** RETR n for retrMany: a -ERR becomes a stream that fails when read, so iteration goes on. */
export async function retrOrFailedStream(ctx: CommandContext, n: number): Promise<Pop3MessageStream> {
  assertMessageNumber(n);
  const spec = streamSpec(ctx, `RETR ${n}`, n);
  const reply = await ctx.conn.send(spec);
  if (!reply.ok || !reply.stream) return new FailedMessageStream(n, fail(ctx, spec, reply));
  return reply.stream;
}

/** TOP n lines: headers, blank line and `lines` body lines, as a stream. */
export async function top(ctx: CommandContext, n: number, lines: number): Promise<Pop3MessageStream> {
  assertMessageNumber(n);
  if (!Number.isSafeInteger(lines) || lines < 0) {
    throw new Pop3Error('POP3_USAGE', `TOP takes a non-negative line count (got ${String(lines)}).`);
  }
  const spec = streamSpec(ctx, `TOP ${n} ${lines}`, n);
  const reply = await ctx.conn.send(spec);
  if (reply.ok && reply.stream) return reply.stream;
  if (!ctx.caps.top) {
    throw new Pop3Error('POP3_NOT_SUPPORTED', 'The server does not support TOP.', {
      command: spec.redacted,
      response: reply.line,
    });
  }
  throw fail(ctx, spec, reply);
}

/** DELE n: marks for deletion; the deletion happens only at QUIT (UPDATE state). */
export async function dele(ctx: CommandContext, n: number): Promise<void> {
  assertMessageNumber(n);
  await simple(ctx, { line: `DELE ${n}`, redacted: `DELE ${n}`, kind: 'single' });
}

export async function rset(ctx: CommandContext): Promise<void> {
  await simple(ctx, { line: 'RSET', redacted: 'RSET', kind: 'single' });
}

export async function noop(ctx: CommandContext): Promise<void> {
  await simple(ctx, { line: 'NOOP', redacted: 'NOOP', kind: 'single' });
}

/** QUIT: commits deletions (UPDATE) when sent in TRANSACTION; the connection then closes. */
export async function quit(ctx: CommandContext): Promise<void> {
  const spec: CommandSpec = { line: 'QUIT', redacted: 'QUIT', kind: 'single', barrier: true, quit: true };
  const reply = await ctx.conn.send(spec);
  if (!reply.ok) {
    ctx.conn.close();
    const err = fail(ctx, spec, reply);
    throw new Pop3Error(
      err.code,
      'The server answered -ERR to QUIT: some or none of the messages marked for deletion were deleted. They will be seen again next session.',
      { command: 'QUIT', response: reply.line, details: err.details },
    );
  }
}

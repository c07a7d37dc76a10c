/**
 * The POP3 connection: owns the socket (TCP, implicit TLS or STLS), the state machine
 * (CONNECTING -> AUTHORIZATION -> TRANSACTION -> UPDATE -> CLOSED), the FIFO of commands and their
 * expected replies, pipelining within a bounded window, backpressure from message streams to the
 * socket, and every timer. It knows nothing of individual commands beyond the reply shape each one
 * expects; `commands.ts` gives the replies meaning.
 *
 * Failure is total: a timeout, a framing error, unsolicited bytes or a dropped socket destroys the
 * socket, clears every timer and fails every pending command and open message stream with one error.
 */
import net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { type Logger, silentLogger } from '../log.js';
import { sanitizeForeignText } from '../sanitize.js';
import { errorFromErrReply, isPop3Error, Pop3Error, type Pop3ErrorCode } from './errors.js';
import { type FrameExpectation, type FramerEvents, Pop3Framer, type StatusKind } from './framer.js';
import { MESSAGE_STREAM_HIGH_WATER_MARK } from './limits.js';
import type { Pop3Limits, Pop3MessageStream, Pop3State, Pop3Timeouts, TlsInfo, TlsMode } from './types.js';

/**
 * After QUIT's +OK the server closes; if it does not within this time we close our side anyway (the
 * reply already proves UPDATE ran, so nothing is lost by not waiting longer).
 */
const QUIT_LINGER_MS = 2_000;

export interface ConnectionOptions {
  host: string;
  port: number;
  tls: TlsMode;
  servername?: string;
  ca?: string | string[];
  pinSha256?: string[];
  localAddress?: string;
  allowInsecureAuth: boolean;
  timeouts: Pop3Timeouts;
  limits: Pop3Limits;
  logger?: Logger;
  transcript?: boolean;
  signal?: AbortSignal;
}

/** What a command expects back. */
export type ReplyKind = 'single' | 'listing' | 'stream';

export interface CommandSpec {
  /** The command line as sent, without CRLF. */
  line: string;
  /** The line as it may be logged or put in an error (`PASS ***`). */
  redacted: string;
  kind: ReplyKind;
  /** Body limit for `listing`/`stream` replies. */
  maxBytes?: number;
  /** Message number a `stream` reply belongs to. */
  messageNumber?: number;
  /**
   * Sent only when nothing else is in flight, and nothing is sent after it until its reply is in
   * (login steps, STLS, QUIT: commands whose outcome changes what may follow).
   */
  barrier?: boolean;
  /** The command carries credentials: refused on an unencrypted connection unless allowed. */
  credentials?: boolean;
  /** Credentials in this command: scrubbed from all later server text before it reaches a log or error. */
  secrets?: readonly string[];
  /** Answers a SASL `+` continuation with the client's next line (logged as `***`). */
  onContinuation?: (statusLine: string) => string;
  /** STLS: on +OK, upgrade the socket to TLS before the reply resolves. */
  startTls?: boolean;
  /** QUIT: on +OK the session is over (the server closes; we release everything). */
  quit?: boolean;
  /** Internal: the greeting pseudo-command. */
  greeting?: boolean;
}

export interface Reply {
  ok: boolean;
  /** The status line (latin1, unsanitised, secrets scrubbed). Empty for a `stream` +OK. */
  line: string;
  /** `listing` bodies, unstuffed. */
  body?: Buffer;
  /** `stream` bodies: resolves at +OK, the bytes follow. */
  stream?: Pop3MessageStream;
}

/** One command from the moment it is queued until its reply is complete. */
class Pending implements FrameExpectation {
  readonly multiline: boolean;
  readonly maxBytes: number;
  parts: Buffer[] = [];
  statusLine = '';
  stream: MessageStream | undefined;
  settled = false;

  constructor(
    readonly spec: CommandSpec,
    readonly resolve: (reply: Reply) => void,
    readonly reject: (err: Error) => void,
  ) {
    this.multiline = spec.kind !== 'single';
    this.maxBytes = spec.maxBytes ?? Number.MAX_SAFE_INTEGER;
  }
}

interface StreamOwner {
  streamRead(stream: MessageStream): void;
  streamDestroyed(stream: MessageStream): void;
}

/** A RETR/TOP body: unstuffed bytes, byte-exact. Destroying it early drains the rest of the reply. */
export class MessageStream extends Readable implements Pop3MessageStream {
  constructor(
    readonly messageNumber: number,
    private readonly owner: StreamOwner | undefined,
  ) {
    super({ highWaterMark: MESSAGE_STREAM_HIGH_WATER_MARK });
  }

  override _read(): void {
    this.owner?.streamRead(this);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.owner?.streamDestroyed(this);
    callback(err);
  }
}

/**
 * A stream for a message the server refused (-ERR): it fails with `err` when first read, so a
 * consumer that only destroys it never sees an unhandled 'error'.
 */
export class FailedMessageStream extends Readable implements Pop3MessageStream {
  constructor(
    readonly messageNumber: number,
    private readonly err: Error,
  ) {
    super();
  }

  override _read(): void {
    this.destroy(this.err);
  }
}

/** Destroys a stream with `err` without risking an unhandled 'error' event. */
function failStream(stream: Readable, err: Error): void {
  if (stream.destroyed) return;
  if (stream.listenerCount('error') === 0) stream.once('error', () => {});
  stream.destroy(err);
}

function scrub(text: string, secrets: readonly string[] | undefined): string {
  if (!secrets) return text;
  let out = text;
  for (const s of secrets) if (s.length > 0 && out.includes(s)) out = out.split(s).join('***');
  return out;
}

/** Hex SHA-256 fingerprint normalised for comparison (case, colons and spaces ignored). */
export function normaliseFingerprint(fp: string): string {
  return fp.replace(/[\s:]/g, '').toLowerCase();
}

/** Explains a TLS failure in terms of what to configure. */
export function tlsError(err: unknown, host: string): Pop3Error {
  const code = (err as { code?: unknown })?.code;
  const reason = typeof code === 'string' ? code : 'unknown';
  const hint: Record<string, string> = {
    DEPTH_ZERO_SELF_SIGNED_CERT:
      'the certificate is self-signed. Add it (or its CA) to the mailbox "ca" setting if you trust it',
    SELF_SIGNED_CERT_IN_CHAIN:
      'the certificate chain ends in an untrusted self-signed root. Add that root to the mailbox "ca" setting if you trust it',
    UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      'the certificate was issued by an unknown CA. Add the CA to the mailbox "ca" setting, or fix the server\'s chain',
    UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      'the certificate was issued by an unknown CA. Add the CA to the mailbox "ca" setting, or fix the server\'s chain',
    UNABLE_TO_GET_ISSUER_CERT:
      'the certificate was issued by an unknown CA. Add the CA to the mailbox "ca" setting, or fix the server\'s chain',
    ERR_TLS_CERT_ALTNAME_INVALID: `the certificate is not valid for "${host}" (hostname mismatch). Connect using a name the certificate lists, or set "servername"`,
    CERT_HAS_EXPIRED: 'the certificate has expired. The server operator must renew it',
    CERT_NOT_YET_VALID: 'the certificate is not valid yet. Check the server clock and certificate dates',
    POP3_PIN_MISMATCH:
      'the certificate does not match any "pinSha256" fingerprint. Update the pins if the server legitimately changed its certificate',
    ERR_SSL_WRONG_VERSION_NUMBER:
      'the server did not answer with TLS. Use tls: starttls (usually port 110) or the implicit-TLS port (995)',
    ERR_SSL_UNSUPPORTED_PROTOCOL: 'the server offers only TLS older than 1.2, which is refused',
    ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'the server offers only TLS older than 1.2, which is refused',
  };
  const why = hint[reason] ?? 'the TLS handshake failed';
  return new Pop3Error('POP3_TLS', `TLS to ${host} failed: ${why}.`, {
    cause: err,
    details: { tlsCode: reason },
  });
}

const noop = () => {};

function firstName(cn: string | string[] | undefined): string | undefined {
  return Array.isArray(cn) ? cn[0] : cn;
}

/** See the module comment. Created by `Pop3Connection.open`. */
export class Pop3Connection implements StreamOwner, FramerEvents<Pending> {
  private stateValue: Pop3State = 'CONNECTING';
  /** Greeting, sanitised. */
  greeting = '';
  /** APOP timestamp from the greeting; cleared by STLS (it arrived before TLS). */
  apopTimestamp: string | undefined;
  tlsInfo: TlsInfo | undefined;
  /** Pipelining is used (server advertised it and the caller allows it). */
  pipelining = false;

  private readonly logger: Logger;
  private readonly transcript: boolean;
  private socket: net.Socket;
  /** The TCP socket under TLS: destroyed with the TLS socket, so nothing is left open. */
  private readonly rawSocket: net.Socket;
  private framer: Pop3Framer<Pending>;
  private readonly queue: Pending[] = [];
  private queueHead = 0;
  private barrierInFlight: Pending | undefined;
  private upgrading = false;
  private stlsOk: Pending | undefined;
  private closed = false;
  private tcpConnected = false;
  private closeReason: Error | undefined;
  private pausedBy: MessageStream | undefined;
  private pumpScheduled = false;
  /**
   * Credentials sent on this connection: scrubbed from all server text that reaches an error or a
   * log, since a hostile server may echo them back at any point.
   */
  private readonly secrets: string[] = [];

  private connectTimer: NodeJS.Timeout | undefined;
  private greetingTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Last read (or write that makes a reply owed), for the idle timer. */
  private lastActivity = 0;
  private sessionTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private readonly onAbort = () => {
    this.fail(
      new Pop3Error('POP3_CONNECTION_CLOSED', 'The POP3 session was aborted.', {
        cause: this.options.signal?.reason,
        details: { aborted: true },
      }),
    );
  };

  private constructor(private readonly options: ConnectionOptions) {
    this.logger = options.logger ?? silentLogger;
    this.transcript = options.transcript === true;
    this.framer = this.newFramer();
    this.socket = new net.Socket();
    this.rawSocket = this.socket;
  }

  /** Connects, secures (implicit TLS) and reads the greeting. Rejects with a typed error. */
  static open(options: ConnectionOptions): Promise<Pop3Connection> {
    const conn = new Pop3Connection(options);
    return new Promise((resolve, reject) => {
      const greeting = new Pending(
        { line: '', redacted: 'greeting', kind: 'single', greeting: true },
        (reply) => {
          if (reply.ok) {
            resolve(conn);
            return;
          }
          const err = conn.greetingRefused(reply.line);
          conn.fail(err);
          reject(err);
        },
        reject,
      );
      conn.start(greeting);
    });
  }

  get state(): Pop3State {
    return this.stateValue;
  }

  /** The transport is TLS (implicit or after STLS). */
  get secure(): boolean {
    return this.tlsInfo !== undefined;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** What closed the session (a failure, an abort or close()); undefined while open or after QUIT. */
  get failure(): Error | undefined {
    return this.closeReason;
  }

  /** Moves the state machine (commands.ts decides when: login -> TRANSACTION, QUIT -> UPDATE). */
  setState(state: Pop3State): void {
    if (!this.closed) this.stateValue = state;
  }

  /** Queues a command; resolves with its reply (-ERR included), rejects only when the session fails. */
  send(spec: CommandSpec): Promise<Reply> {
    if (this.closed) return Promise.reject(this.closedError(spec.redacted));
    if (spec.credentials && !this.secure && !this.options.allowInsecureAuth) {
      // Defence in depth: the client checks first, with a better message.
      return Promise.reject(insecureAuthRefused(this.options.host));
    }
    return new Promise<Reply>((resolve, reject) => {
      this.queue.push(new Pending(spec, resolve, reject));
      if (!this.pumpScheduled) {
        // Commands queued in the same tick go out in one write.
        this.pumpScheduled = true;
        queueMicrotask(() => {
          this.pumpScheduled = false;
          this.pump();
        });
      }
    });
  }

  /** The error for using a closed session; `cause` is what closed it. */
  closedError(command?: string): Pop3Error {
    const why = this.closeReason;
    return new Pop3Error(
      'POP3_CONNECTION_CLOSED',
      why
        ? `The POP3 session is closed (${why.message}); open a new one.`
        : 'The POP3 session is closed; open a new one.',
      { command, cause: why },
    );
  }

  /** Drops the connection without QUIT (nothing marked for deletion is deleted). */
  close(): void {
    this.fail(new Pop3Error('POP3_CONNECTION_CLOSED', 'The POP3 session was closed by the client.'));
  }

  /** After QUIT's +OK: release everything; the server closes its side. */
  finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.stateValue = 'CLOSED';
    this.clearTimers();
    this.options.signal?.removeEventListener('abort', this.onAbort);
    const late = this.queue.slice(this.queueHead);
    this.queue.length = 0;
    this.queueHead = 0;
    for (const p of late) {
      p.settled = true;
      p.reject(
        new Pop3Error('POP3_CONNECTION_CLOSED', 'The POP3 session has ended (QUIT).', {
          command: p.spec.redacted,
        }),
      );
    }
    const socket = this.socket;
    const raw = this.rawSocket;
    socket.end();
    this.lingerTimer = setTimeout(() => {
      socket.destroy();
      raw.destroy();
    }, QUIT_LINGER_MS);
    this.lingerTimer.unref();
    socket.once('close', () => clearTimeout(this.lingerTimer));
  }

  /** Fails the session with `err`: socket destroyed, timers cleared, every pending command failed. */
  fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = err;
    this.stateValue = 'CLOSED';
    this.clearTimers();
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.socket.destroy();
    this.rawSocket.destroy();
    if (this.transcript || !(isPop3Error(err) && err.code === 'POP3_CONNECTION_CLOSED')) {
      this.logger.debug('pop3 session failed', { error: err });
    }
    const pending = [...this.framer.takeAll(), ...this.queue.slice(this.queueHead)];
    this.queue.length = 0;
    this.queueHead = 0;
    if (this.stlsOk) pending.push(this.stlsOk);
    this.stlsOk = undefined;
    for (const p of pending) {
      if (p.settled) {
        if (p.stream) failStream(p.stream, err);
      } else {
        p.settled = true;
        p.reject(err);
      }
    }
  }

  // ---- connect, TLS, greeting -------------------------------------------------------------------

  private start(greeting: Pending): void {
    const { options } = this;
    const { timeouts } = options;
    if (options.signal?.aborted) {
      this.closed = true;
      this.stateValue = 'CLOSED';
      greeting.reject(
        new Pop3Error('POP3_CONNECTION_CLOSED', 'The POP3 session was aborted.', {
          cause: options.signal.reason,
          details: { aborted: true },
        }),
      );
      return;
    }
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.framer.expect(greeting);
    this.sessionTimer = setTimeout(() => this.timeout('session', timeouts.sessionMs), timeouts.sessionMs);
    this.connectTimer = setTimeout(() => this.timeout('connect', timeouts.connectMs), timeouts.connectMs);

    const raw = this.socket;
    raw.on('error', (err) => this.onSocketError(err));
    raw.once('connect', () => {
      this.tcpConnected = true;
      clearTimeout(this.connectTimer);
      raw.setNoDelay(true);
      if (this.options.tls === 'implicit') {
        this.secureSocket(raw).then(() => this.ready(), noop);
      } else {
        this.attach(raw);
        this.ready();
      }
    });
    raw.connect({ host: options.host, port: options.port, localAddress: options.localAddress });
  }

  /** Transport ready: wait for the greeting. */
  private ready(): void {
    if (this.closed) return;
    const ms = this.options.timeouts.greetingMs;
    this.greetingTimer = setTimeout(() => this.timeout('greeting', ms), ms);
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', (err) => this.onSocketError(err));
  }

  /** TLS over `raw` (implicit, or after STLS). Resolves once verified; on failure the session fails. */
  private secureSocket(raw: net.Socket): Promise<void> {
    const { options } = this;
    const identity = options.servername ?? options.host;
    // RFC 6066: SNI carries names only, never IP literals.
    const sni = net.isIP(identity) === 0 ? identity : undefined;
    const extraCa = options.ca === undefined ? [] : Array.isArray(options.ca) ? options.ca : [options.ca];
    const pins = options.pinSha256?.map(normaliseFingerprint);
    const ms = options.timeouts.tlsHandshakeMs;
    return new Promise((resolve, reject) => {
      this.handshakeTimer = setTimeout(() => {
        this.timeout('tls', ms);
        reject(new Error('tls timeout'));
      }, ms);
      const secure = tls.connect({
        socket: raw,
        servername: sni,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        ca: extraCa.length > 0 ? [...tls.rootCertificates, ...extraCa] : undefined,
        checkServerIdentity: (_host, cert) => {
          const err = tls.checkServerIdentity(identity, cert);
          if (err) return err;
          if (pins && pins.length > 0 && !pins.includes(normaliseFingerprint(cert.fingerprint256))) {
            return Object.assign(new Error('certificate pin mismatch'), { code: 'POP3_PIN_MISMATCH' });
          }
          return undefined;
        },
      });
      // The TLS socket now owns the TCP handle; the raw socket keeps its error listener so a late
      // error there is never unhandled.
      const onError = (err: Error) => {
        clearTimeout(this.handshakeTimer);
        const mapped = tlsError(err, identity);
        this.fail(mapped);
        reject(mapped);
      };
      secure.on('error', onError);
      secure.once('secureConnect', () => {
        clearTimeout(this.handshakeTimer);
        secure.off('error', onError);
        if (this.closed) {
          secure.destroy();
          reject(new Error('closed'));
          return;
        }
        const cert = secure.getPeerCertificate();
        this.tlsInfo = {
          protocol: secure.getProtocol(),
          cipher: secure.getCipher().name,
          authorized: secure.authorized,
          subject: firstName(cert.subject?.CN),
          issuer: firstName(cert.issuer?.CN),
          validTo: cert.valid_to,
          fingerprint256: cert.fingerprint256,
        };
        this.attach(secure);
        resolve();
      });
      this.socket = secure;
    });
  }

  private greetingRefused(line: string): Pop3Error {
    const err = errorFromErrReply({ command: 'greeting', response: line, auth: false });
    if (err.code !== 'POP3_COMMAND_FAILED') return err;
    return new Pop3Error(
      'POP3_CONNECT_FAILED',
      `The POP3 server at ${this.options.host} refused the connection in its greeting; retry later.`,
      { command: 'greeting', response: line },
    );
  }

  // ---- timers -----------------------------------------------------------------------------------

  private timeout(phase: 'connect' | 'tls' | 'greeting' | 'idle' | 'session', ms: number): void {
    const head = this.framer.head;
    const command = head === undefined || head.spec.greeting ? undefined : head.spec.redacted;
    const what: Record<typeof phase, string> = {
      connect: `Could not connect to ${this.options.host}:${this.options.port} within ${ms} ms`,
      tls: `The TLS handshake with ${this.options.host} did not complete within ${ms} ms`,
      greeting: `The POP3 server sent no complete greeting within ${ms} ms`,
      idle: `The POP3 server sent nothing for ${ms} ms while ${command ?? 'a reply'} was pending`,
      session: `The POP3 session exceeded its ${ms} ms budget`,
    };
    this.fail(
      new Pop3Error('POP3_TIMEOUT', `${what[phase]}; the connection was dropped. Retry later.`, {
        command,
        details: { phase, timeoutMs: ms },
      }),
    );
  }

  private clearTimers(): void {
    clearTimeout(this.connectTimer);
    clearTimeout(this.greetingTimer);
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.sessionTimer);
    this.idleTimer = undefined;
  }

  /**
   * The idle timer runs while a reply is owed and we are reading; a socket paused for a slow
   * consumer is our silence, not the server's. Activity only stamps a time: re-inserting a timer on
   * every chunk costs more than framing it, so an expired timer checks the stamp and re-arms.
   */
  private refreshIdle(): void {
    this.lastActivity = Date.now();
    if (this.closed || this.framer.pending === 0 || this.pausedBy !== undefined || this.upgrading) {
      if (this.idleTimer !== undefined) {
        clearTimeout(this.idleTimer);
        this.idleTimer = undefined;
      }
      return;
    }
    if (this.idleTimer === undefined) this.armIdle(this.options.timeouts.idleMs);
  }

  private armIdle(ms: number): void {
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      const idleMs = this.options.timeouts.idleMs;
      const silent = Date.now() - this.lastActivity;
      if (silent >= idleMs) this.timeout('idle', idleMs);
      else this.armIdle(idleMs - silent);
    }, ms);
  }

  // ---- writing ----------------------------------------------------------------------------------

  private pump(): void {
    if (this.closed || this.upgrading || this.stlsOk) return;
    const window = this.pipelining ? this.options.limits.pipelineWindow : 1;
    let out = '';
    while (this.queueHead < this.queue.length && this.barrierInFlight === undefined) {
      const next = this.queue[this.queueHead] as Pending;
      const inFlight = this.framer.pending;
      if (next.spec.barrier ? inFlight > 0 : inFlight >= window) break;
      this.queueHead++;
      this.framer.expect(next);
      out += `${next.spec.line}\r\n`;
      if (this.transcript) this.logger.debug('pop3 send', { command: next.spec.redacted });
      if (next.spec.secrets) this.secrets.push(...next.spec.secrets);
      if (next.spec.barrier) this.barrierInFlight = next;
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    if (out.length > 0) {
      this.socket.write(out, 'utf8');
      this.refreshIdle();
    }
  }

  // ---- reading ----------------------------------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.framer.push(chunk);
    } catch (err) {
      this.fail(this.framingError(err));
      return;
    }
    if (this.closed) return;
    if (this.stlsOk) {
      this.beginUpgrade(this.stlsOk);
      return;
    }
    this.refreshIdle();
    this.pump();
  };

  private readonly onEnd = (): void => {
    if (!this.closed) this.fail(this.closedByServer());
  };

  private readonly onClose = (): void => {
    if (!this.closed) this.fail(this.closedByServer());
  };

  private onSocketError(err: Error): void {
    if (this.closed) return;
    if (!this.tcpConnected) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
      this.fail(
        new Pop3Error(
          'POP3_CONNECT_FAILED',
          `Could not connect to ${this.options.host}:${this.options.port} (${code}); check the host and port, or retry later.`,
          { cause: err, details: { socketCode: code } },
        ),
      );
      return;
    }
    this.fail(
      new Pop3Error('POP3_CONNECTION_CLOSED', 'The POP3 connection failed; retry later.', {
        cause: err,
        command: this.framer.head?.spec.redacted,
      }),
    );
  }

  private closedByServer(): Pop3Error {
    const head = this.framer.head;
    return new Pop3Error(
      'POP3_CONNECTION_CLOSED',
      head
        ? `The POP3 server closed the connection while ${head.spec.redacted} was pending; retry later.`
        : 'The POP3 server closed the connection; retry later.',
      { command: head?.spec.redacted },
    );
  }

  private framingError(err: unknown): Error {
    const head = this.framer.head;
    if (!isPop3Error(err)) return err instanceof Error ? err : new Error(String(err));
    const pipelined = this.pipelining && this.framer.pending > 1;
    const hint =
      pipelined && err.code === 'POP3_PROTOCOL'
        ? ' Several commands were pipelined; if this repeats, disable pipelining for this mailbox.'
        : '';
    const { command: _c, response: _r, ...details } = err.details;
    const rawLine = (err as { rawLine?: Buffer }).rawLine;
    return new Pop3Error(err.code, `${err.message}${hint}`, {
      cause: err.cause,
      command: head?.spec.redacted ?? err.command,
      response: rawLine === undefined ? err.response : scrub(rawLine.toString('latin1'), this.secrets),
      details: { ...details, pipelined },
    });
  }

  private newFramer(): Pop3Framer<Pending> {
    return new Pop3Framer<Pending>(this, {
      maxStatusLineBytes: this.options.limits.maxStatusLineBytes,
      maxDataLineBytes: this.options.limits.maxDataLineBytes,
    });
  }

  // ---- framer events ----------------------------------------------------------------------------

  status(p: Pending, kind: StatusKind, lineBuf: Buffer): void {
    const { spec } = p;
    if (kind === 'cont') {
      if (!spec.onContinuation) {
        const err = new Pop3Error(
          'POP3_PROTOCOL',
          'The server sent a "+" continuation to a command that takes none.',
        );
        Object.defineProperty(err, 'rawLine', { value: Buffer.from(lineBuf), enumerable: false });
        throw err;
      }
      if (this.transcript) this.logger.debug('pop3 recv', { response: '+ [challenge]' });
      const answer = spec.onContinuation(lineBuf.toString('latin1'));
      if (this.transcript) this.logger.debug('pop3 send', { command: '***' });
      this.socket.write(`${answer}\r\n`, 'utf8');
      return;
    }
    if (spec.greeting) {
      clearTimeout(this.greetingTimer);
      const line = lineBuf.toString('latin1');
      this.greeting = sanitizeForeignText(line);
      this.apopTimestamp = /<[^<>\s]+>/.exec(line)?.[0];
      if (this.transcript) this.logger.debug('pop3 recv', { response: this.greeting });
      if (kind === 'ok') this.stateValue = 'AUTHORIZATION';
      this.settle(p, { ok: kind === 'ok', line });
      return;
    }
    if (kind === 'ok' && p.multiline) {
      if (spec.kind === 'stream') {
        const stream = new MessageStream(spec.messageNumber ?? 0, this);
        p.stream = stream;
        if (this.transcript)
          this.logger.debug('pop3 recv', { command: spec.redacted, response: '+OK [message]' });
        this.settle(p, { ok: true, line: '', stream });
      } else {
        p.statusLine = lineBuf.toString('latin1');
      }
      return;
    }
    const line = scrub(lineBuf.toString('latin1'), this.secrets);
    if (this.transcript) {
      this.logger.debug('pop3 recv', { command: spec.redacted, response: sanitizeForeignText(line) });
    }
    if (p === this.barrierInFlight) this.barrierInFlight = undefined;
    if (kind === 'ok' && spec.startTls) {
      // Resolved only after the handshake; any byte after this line is an injection (checked next).
      this.stlsOk = p;
      p.statusLine = line;
      this.upgrading = true;
      return;
    }
    if (kind === 'ok' && spec.quit) this.finish();
    this.settle(p, { ok: kind === 'ok', line });
  }

  body(p: Pending, chunk: Buffer): void {
    const stream = p.stream;
    if (stream === undefined) {
      p.parts.push(chunk);
      return;
    }
    if (stream.destroyed) return; // consumer gave up: drain
    if (!stream.push(chunk) && this.pausedBy === undefined) {
      this.pausedBy = stream;
      this.socket.pause();
      this.refreshIdle();
    }
  }

  end(p: Pending): void {
    if (p === this.barrierInFlight) this.barrierInFlight = undefined;
    const stream = p.stream;
    if (stream !== undefined) {
      if (!stream.destroyed) stream.push(null);
      return;
    }
    const body = p.parts.length === 1 ? (p.parts[0] as Buffer) : Buffer.concat(p.parts);
    p.parts = [];
    if (this.transcript) {
      this.logger.debug('pop3 recv', {
        command: p.spec.redacted,
        response: sanitizeForeignText(p.statusLine),
        bodyBytes: body.length,
      });
    }
    this.settle(p, { ok: true, line: p.statusLine, body });
  }

  unsolicited(bytes: Buffer): void {
    if (this.stlsOk) {
      this.fail(
        new Pop3Error(
          'POP3_STLS_INJECTION',
          'The server (or something on the network path) sent data after agreeing to STLS and before TLS started: a response-injection attack (CVE-2021-39272 class). The connection was dropped and no credentials were sent.',
          { command: 'STLS', details: { injectedBytes: bytes.length } },
        ),
      );
      return;
    }
    const pipelined = this.pipelining;
    if (pipelined) this.pipelining = false; // latched off: this session is dropped anyway
    this.fail(
      new Pop3Error(
        'POP3_PROTOCOL',
        `The server sent data nobody asked for (an unsolicited line, a second +OK or an extra terminator); the connection was dropped.${pipelined ? ' If this repeats, disable pipelining for this mailbox.' : ''}`,
        {
          response: scrub(bytes.toString('latin1'), this.secrets),
          details: { unsolicitedBytes: bytes.length, pipelined },
        },
      ),
    );
  }

  private settle(p: Pending, reply: Reply): void {
    if (p.settled) return;
    p.settled = true;
    p.resolve(reply);
  }

  // ---- STLS ---------------------------------------------------------------------------------------

  private beginUpgrade(p: Pending): void {
    const raw = this.socket;
    raw.off('data', this.onData);
    raw.off('end', this.onEnd);
    raw.off('close', this.onClose);
    if (raw.readableLength > 0) {
      this.unsolicited(Buffer.alloc(raw.readableLength));
      return;
    }
    // Nothing from before TLS survives: a fresh framer, no capabilities (client re-issues CAPA), no
    // APOP timestamp (it came in the clear).
    this.framer = this.newFramer();
    this.apopTimestamp = undefined;
    this.refreshIdle();
    this.secureSocket(raw).then(() => {
      if (this.closed) return;
      this.stlsOk = undefined;
      this.upgrading = false;
      this.settle(p, { ok: true, line: p.statusLine });
      this.pump();
    }, noop);
  }

  // ---- stream backpressure --------------------------------------------------------------------------

  streamRead(stream: MessageStream): void {
    if (this.pausedBy !== stream) return;
    this.pausedBy = undefined;
    if (this.closed) return;
    this.socket.resume();
    this.refreshIdle();
  }

  streamDestroyed(stream: MessageStream): void {
    this.streamRead(stream);
  }
}

export function insecureAuthRefused(host: string): Pop3Error {
  return new Pop3Error(
    'POP3_INSECURE_AUTH_REFUSED',
    `Refusing to send credentials to ${host} over an unencrypted connection. Use tls: implicit (port 995) or starttls; allowInsecureAuth is only for local test servers.`,
  );
}

export type { Pop3ErrorCode };

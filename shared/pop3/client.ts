/**
 * The POP3 client API: `connect()` returns a `Pop3Session` in AUTHORIZATION state with capabilities
 * read (over TLS: implicit, or after a required STLS upgrade). Secure by default: certificates are
 * verified, credentials never cross an unencrypted connection unless `allowInsecureAuth`, APOP is
 * used only when asked for.
 *
 * @example
 * const session = await connect({ host: 'pop.example.com', logger });
 * await session.login({ mechanism: 'auto', user, password });
 * for await (const message of session.retrMany((await session.list()).map((e) => e.n))) {
 *   await archive(message); // consume (or destroy) each stream before the next
 * }
 * await session.quit();
 */
import { finished } from 'node:stream/promises';
import { ConfigError } from '../errors.js';
import { silentLogger } from '../log.js';
import { FALLBACK_CAPABILITIES } from './capabilities.js';
import * as commands from './commands.js';
import { insecureAuthRefused, Pop3Connection } from './connection.js';
import { Pop3Error } from './errors.js';
import { resolveLimits, resolveTimeouts } from './limits.js';
import { oauthbearerResponse, plainResponse, xoauth2Response } from './sasl.js';
import type {
  Pop3Capabilities,
  Pop3ConnectOptions,
  Pop3Credentials,
  Pop3Limits,
  Pop3ListingEntry,
  Pop3MessageStream,
  Pop3Session,
  Pop3State,
  Pop3UidlEntry,
  TlsInfo,
} from './types.js';

const noop = () => {};

/**
 * Opens a POP3 session: TCP (or implicit TLS), greeting, CAPA, and for `tls: 'starttls'` a required
 * STLS upgrade followed by a fresh CAPA. Rejects with a Pop3Error (POP3_CONNECT_FAILED, POP3_TLS,
 * POP3_TIMEOUT, POP3_STLS_UNAVAILABLE, POP3_STLS_INJECTION, ...); nothing stays open on failure.
 */
export async function connect(options: Pop3ConnectOptions): Promise<Pop3Session> {
  const tlsMode = options.tls ?? 'implicit';
  const port = options.port ?? (tlsMode === 'implicit' ? 995 : 110);
  if (!options.host) throw new ConfigError('POP3 host is required.');
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`POP3 port must be 1-65535 (got ${String(port)}).`);
  }
  const limits = resolveLimits(options.limits);
  const logger = (options.logger ?? silentLogger).child({ component: 'pop3', host: options.host, port });
  const conn = await Pop3Connection.open({
    host: options.host,
    port,
    tls: tlsMode,
    servername: options.servername,
    ca: options.ca,
    pinSha256: options.pinSha256,
    localAddress: options.localAddress,
    allowInsecureAuth: options.allowInsecureAuth === true,
    timeouts: resolveTimeouts(options.timeouts),
    limits,
    logger,
    transcript: options.transcript,
    signal: options.signal,
  });
  const session = new Session(conn, options, port, limits);
  try {
    await session.init(tlsMode);
  } catch (err) {
    // A session that failed underneath (unsolicited data, timeout) reports that root cause.
    const root = conn.failure;
    conn.close();
    throw root ?? err;
  }
  return session;
}

class Session implements Pop3Session {
  authMechanism: string | undefined;
  private caps: Pop3Capabilities = FALLBACK_CAPABILITIES;
  private loginStarted = false;

  constructor(
    private readonly conn: Pop3Connection,
    private readonly options: Pop3ConnectOptions,
    private readonly port: number,
    private readonly limits: Pop3Limits,
  ) {}

  get state(): Pop3State {
    return this.conn.state;
  }

  get greeting(): string {
    return this.conn.greeting;
  }

  get capabilities(): Pop3Capabilities {
    return this.caps;
  }

  get tls(): TlsInfo | undefined {
    return this.conn.tlsInfo;
  }

  private get ctx(): commands.CommandContext {
    return { conn: this.conn, caps: this.caps, limits: this.limits };
  }

  private setCaps(caps: Pop3Capabilities): void {
    this.caps = caps;
    this.conn.pipelining = this.options.pipelining !== false && caps.pipelining;
  }

  /** CAPA; for STLS the required upgrade and a second CAPA (pre-TLS answers are discarded). */
  async init(tlsMode: 'implicit' | 'starttls' | 'none'): Promise<void> {
    this.setCaps(await commands.capaOrFallback(this.ctx));
    if (tlsMode !== 'starttls') return;
    if (!this.caps.stls) {
      throw new Pop3Error(
        'POP3_STLS_UNAVAILABLE',
        `The server at ${this.options.host} does not advertise STLS, so the connection cannot be encrypted; no credentials were sent. Use implicit TLS (port 995) if the server offers it.`,
        { command: 'CAPA' },
      );
    }
    await commands.stls(this.ctx);
    this.setCaps(FALLBACK_CAPABILITIES);
    this.setCaps(await commands.capaOrFallback(this.ctx));
  }

  private requireState(state: Pop3State, what: string): void {
    const current = this.conn.state;
    if (current === state) return;
    if (current === 'CLOSED' || this.conn.isClosed) throw this.conn.closedError(what);
    throw new Pop3Error('POP3_USAGE', `Cannot ${what} in the ${current} state (needs ${state}).`);
  }

  async login(credentials: Pop3Credentials): Promise<void> {
    this.requireState('AUTHORIZATION', 'log in');
    if (this.loginStarted) throw new Pop3Error('POP3_USAGE', 'login() was already called on this session.');
    if (!this.conn.secure && this.options.allowInsecureAuth !== true)
      throw insecureAuthRefused(this.options.host);
    this.loginStarted = true;
    const ctx = this.ctx;
    let mechanism: string;
    switch (credentials.mechanism) {
      case 'auto':
      case 'plain':
      case 'user': {
        const { user, password } = credentials;
        const plain =
          credentials.mechanism === 'plain' ||
          (credentials.mechanism === 'auto' && this.caps.sasl.includes('PLAIN'));
        if (plain) {
          mechanism = 'PLAIN';
          await commands.auth(ctx, 'PLAIN', plainResponse(user, password), [password]);
        } else {
          mechanism = 'USER';
          await commands.userPass(ctx, user, password);
        }
        break;
      }
      case 'apop':
        mechanism = 'APOP';
        await commands.apop(ctx, credentials.user, credentials.password);
        break;
      case 'xoauth2':
        mechanism = 'XOAUTH2';
        await commands.auth(ctx, 'XOAUTH2', xoauth2Response(credentials.user, credentials.accessToken), [
          credentials.accessToken,
        ]);
        break;
      case 'oauthbearer': {
        mechanism = 'OAUTHBEARER';
        const host = this.options.servername ?? this.options.host;
        const ir = oauthbearerResponse(credentials.user, host, this.port, credentials.accessToken);
        await commands.auth(ctx, 'OAUTHBEARER', ir, [credentials.accessToken]);
        break;
      }
      default:
        throw new Pop3Error('POP3_USAGE', 'Unknown POP3 login mechanism.');
    }
    this.conn.setState('TRANSACTION');
    this.authMechanism = mechanism;
    // Capabilities may change after login (RFC 2449 §5); keep the old ones if CAPA now fails.
    const after = await commands.capa(this.ctx);
    if (after) this.setCaps(after);
  }

  async stat(): Promise<{ count: number; size: number }> {
    this.requireState('TRANSACTION', 'STAT');
    return commands.stat(this.ctx);
  }

  async list(): Promise<Pop3ListingEntry[]> {
    this.requireState('TRANSACTION', 'LIST');
    return commands.list(this.ctx);
  }

  async uidl(): Promise<Pop3UidlEntry[]> {
    this.requireState('TRANSACTION', 'UIDL');
    const entries = await commands.uidl(this.ctx);
    // Probed: a server that hid its capabilities does support UIDL.
    if (!this.caps.uidl) this.caps = { ...this.caps, uidl: true };
    return entries;
  }

  async top(n: number, lines: number): Promise<Pop3MessageStream> {
    this.requireState('TRANSACTION', 'TOP');
    return commands.top(this.ctx, n, lines);
  }

  async retr(n: number): Promise<Pop3MessageStream> {
    this.requireState('TRANSACTION', 'RETR');
    return commands.retr(this.ctx, n);
  }

  /**
   * Yields one stream per message number, in order, pipelining up to `pipelineWindow` RETRs when the
   * server allows it. A message the server refuses (-ERR) is yielded as a stream that errors when
   * read (check `messageNumber`), so the iteration goes on; a session failure throws. The next
   * stream is yielded only after the previous one ended or was destroyed. Stopping early (break)
   * drains the replies already requested.
   */
  async *retrMany(ns: readonly number[]): AsyncGenerator<Pop3MessageStream> {
    this.requireState('TRANSACTION', 'RETR');
    const lookahead = this.conn.pipelining ? this.limits.pipelineWindow : 1;
    const ahead: Promise<Pop3MessageStream>[] = [];
    let next = 0;
    const launch = () => {
      // Refill only once half the window has drained: RETRs then leave in batches, one write each.
      if (ahead.length > lookahead / 2) return;
      while (next < ns.length && ahead.length < lookahead) {
        const p = commands.retrOrFailedStream(this.ctx, ns[next++] as number);
        p.catch(noop); // awaited below; failures must not surface as unhandled meanwhile
        ahead.push(p);
      }
    };
    try {
      launch();
      for (;;) {
        const p = ahead.shift();
        if (p === undefined) return;
        const stream = await p;
        launch();
        yield stream;
        if (!stream.readableEnded && !stream.destroyed) await finished(stream).catch(noop);
      }
    } finally {
      // Replies already requested still arrive; destroying their streams drains them in order.
      for (const p of ahead.splice(0)) p.then((s) => s.destroy(), noop);
    }
  }

  async dele(n: number): Promise<void> {
    this.requireState('TRANSACTION', 'DELE');
    return commands.dele(this.ctx, n);
  }

  async rset(): Promise<void> {
    this.requireState('TRANSACTION', 'RSET');
    return commands.rset(this.ctx);
  }

  async noop(): Promise<void> {
    if (this.conn.state !== 'AUTHORIZATION') this.requireState('TRANSACTION', 'NOOP');
    return commands.noop(this.ctx);
  }

  async quit(): Promise<void> {
    if (this.conn.isClosed) return;
    if (this.conn.state === 'TRANSACTION') this.conn.setState('UPDATE');
    await commands.quit(this.ctx);
  }

  close(): void {
    this.conn.close();
  }
}

/**
 * The embedded demo POP3 server behind `pophook dev`: it serves a folder of `.eml` files on loopback as
 * one mailbox, so pophook can be tried with no mail account. It is a product feature, so it behaves like
 * a careful real server (RFC 1939 + RFC 2449 CAPA/RESP-CODES):
 *
 * - USER/PASS against a generated password; one session at a time holds the mailbox (`[IN-USE]`).
 * - The folder is read again at every login, so files dropped in appear on the next poll.
 * - UIDL is the SHA-256 of the file name and its bytes: stable across restarts, unique per file.
 * - Messages are served with CRLF line ends and dot-stuffing, streamed from disk with backpressure; the
 *   size LIST reports is the size of what RETR sends. A file that changed since login is refused, and
 *   a RETR whose bytes no longer match the UIDL is cut off before the final `.` so no client accepts it.
 * - DELE + QUIT moves files to `served/` (never destroys them); a dropped connection deletes nothing.
 * - Pipelined commands are answered in order; input, lines, connections and listings are bounded.
 */

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { constants, copyFile, link, mkdir, readdir, stat, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { listenOrExplain } from './listen.js';
import { Pop3WireEncoder } from './wire-encoder.js';

/** The one user name the demo mailbox answers to. */
export const DEMO_POP3_USER = 'demo';

/** Name of the subfolder that DELE + QUIT moves served files into. */
export const SERVED_DIR_NAME = 'served';

/** Longest command line accepted, CRLF included (RFC 2449 §4 caps commands at 255 octets). */
const MAX_COMMAND_LINE_BYTES = 255;
/** Unanswered pipelined input buffered before the socket is paused (backpressure, not a crash). */
const MAX_PENDING_INPUT_BYTES = 64 * 1024;
/** Failed logins per connection before hanging up: guessing costs a reconnect each time. */
const MAX_AUTH_FAILURES = 3;
/** Silence before a session is dropped (RFC 1939 §3: the autologout timer is at least 10 minutes). */
const IDLE_TIMEOUT_MS = 10 * 60_000;
/** Simultaneous connections; the demo has one user, so more means a runaway client. */
const MAX_CONNECTIONS = 16;
/** Messages offered per session, so listings stay bounded whatever lands in the folder. */
const MAX_MESSAGES_PER_SESSION = 10_000;
/** Read size for message files: large enough for throughput, small enough to keep memory flat. */
const FILE_READ_CHUNK_BYTES = 64 * 1024;
/** Suffixes tried when `served/` already holds a file of the same name. */
const MAX_SERVED_NAME_ATTEMPTS = 1000;

export interface DemoPop3ServerOptions {
  /** Folder of `.eml` files served as one mailbox; created when missing. */
  dir: string;
  /** Loopback address to listen on; the demo speaks no TLS, so nothing else is allowed. @default '127.0.0.1' */
  host?: string;
  /** @default 0 (a free port) */
  port?: number;
  /** @default a random password (see `password` on the returned server) */
  password?: string;
  logger?: Logger;
}

export interface DemoPop3Server {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** Absolute path of the served folder. */
  readonly dir: string;
  /** Where DELE + QUIT moves files. */
  readonly servedDir: string;
  /** Stops listening and drops open sessions (their deletions are not applied). */
  close(): Promise<void>;
}

/** A random password for the demo mailbox (URL-safe, 144 bits). */
export function generateDemoPassword(): string {
  return randomBytes(18).toString('base64url');
}

/** One message of a session's snapshot of the folder. */
export interface MailboxEntry {
  name: string;
  path: string;
  uidl: string;
  /** Octets as served (CRLF line ends, unstuffed): what LIST, STAT and `+OK n octets` report. */
  size: number;
  /** File identity at scan time; a change means the content may differ from the UIDL. */
  fileSize: number;
  mtimeMs: number;
  ino: number;
}

type ScanCache = Map<string, { uidl: string; size: number }>;

const cacheKey = (name: string, st: Stats) => `${name}\0${st.size}\0${st.mtimeMs}\0${st.ino}`;

/** Files the mailbox serves: `*.eml`, not hidden (editors and copiers write dotfiles first). */
export function isMessageFileName(name: string): boolean {
  return /\.eml$/i.test(name) && !name.startsWith('.');
}

/** Reads one file: its UIDL (sha256 of name, NUL, bytes) and its served size. */
async function measureFile(filePath: string, name: string): Promise<{ uidl: string; size: number }> {
  const hash = createHash('sha256').update(name).update('\0');
  const encoder = new Pop3WireEncoder({ dotStuff: false });
  for await (const chunk of createReadStream(filePath, { highWaterMark: FILE_READ_CHUNK_BYTES })) {
    hash.update(chunk as Buffer);
    encoder.encode(chunk as Buffer);
  }
  encoder.end();
  return { uidl: hash.digest('hex'), size: encoder.messageSize };
}

/**
 * Snapshot of the folder: regular `.eml` files (symlinks are not followed), sorted by name so message
 * numbers are predictable. Unchanged files are measured once per server lifetime.
 */
export async function scanMailbox(dir: string, cache: ScanCache, logger: Logger): Promise<MailboxEntry[]> {
  const dirents = await readdir(dir, { withFileTypes: true });
  const names = dirents
    .filter((d) => d.isFile() && isMessageFileName(d.name))
    .map((d) => d.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, MAX_MESSAGES_PER_SESSION);
  const seen = new Set<string>();
  const entries: MailboxEntry[] = [];
  for (const name of names) {
    const filePath = path.join(dir, name);
    try {
      const st = await stat(filePath);
      const key = cacheKey(name, st);
      let measured = cache.get(key);
      if (!measured) {
        measured = await measureFile(filePath, name);
        cache.set(key, measured);
      }
      seen.add(key);
      entries.push({
        name,
        path: filePath,
        ...measured,
        fileSize: st.size,
        mtimeMs: st.mtimeMs,
        ino: st.ino,
      });
    } catch (err) {
      // Removed or unreadable between readdir and read: leave it for the next login.
      logger.warn('demo pop3 file skipped', { file: name, code: (err as NodeJS.ErrnoException).code });
    }
  }
  for (const key of cache.keys()) if (!seen.has(key)) cache.delete(key);
  return entries;
}

async function unchangedSince(entry: MailboxEntry): Promise<boolean> {
  try {
    const st = await stat(entry.path);
    return st.size === entry.fileSize && st.mtimeMs === entry.mtimeMs && st.ino === entry.ino;
  } catch {
    return false;
  }
}

/**
 * Moves a served file into `served/` without overwriting anything there (link + unlink; copy + unlink
 * where hard links are unsupported). Returns false when the file changed or vanished, so it is kept.
 */
export async function moveToServed(entry: MailboxEntry, servedDir: string): Promise<boolean> {
  if (!(await unchangedSince(entry))) return false;
  await mkdir(servedDir, { recursive: true });
  const { name: stem, ext } = path.parse(entry.name);
  for (let i = 0; i < MAX_SERVED_NAME_ATTEMPTS; i++) {
    const target = path.join(servedDir, i === 0 ? entry.name : `${stem}.${i}${ext}`);
    try {
      await link(entry.path, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'ENOSYS') throw err;
      try {
        await copyFile(entry.path, target, constants.COPYFILE_EXCL);
      } catch (copyErr) {
        if ((copyErr as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw copyErr;
      }
    }
    await unlink(entry.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    return true;
  }
  return false;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1';
}

function sha256(data: Buffer | string): Buffer {
  return createHash('sha256').update(data).digest();
}

class SessionClosedError extends Error {}

interface ServerShared {
  readonly dir: string;
  readonly servedDir: string;
  readonly user: string;
  readonly passwordHash: Buffer;
  readonly cache: ScanCache;
  readonly logger: Logger;
  locked: boolean;
}

const CAPABILITIES = ['USER', 'UIDL', 'TOP', 'PIPELINING', 'RESP-CODES', 'IMPLEMENTATION pophook-demo'];

class Session {
  private state: 'AUTHORIZATION' | 'TRANSACTION' | 'CLOSED' = 'AUTHORIZATION';
  private pending: Buffer = Buffer.alloc(0);
  private processing = false;
  private userGiven: string | undefined;
  private authFailures = 0;
  private holdsLock = false;
  private messages: MailboxEntry[] = [];
  private readonly deleted = new Set<number>();

  constructor(
    private readonly socket: net.Socket,
    private readonly shared: ServerShared,
    private readonly logger: Logger,
  ) {
    socket.setNoDelay(true);
    socket.setTimeout(IDLE_TIMEOUT_MS, () => {
      this.logger.info('demo pop3 session idle timeout');
      void this.reply('-ERR autologout: idle for too long')
        .catch(() => {})
        .finally(() => socket.destroy());
    });
    socket.on('data', (chunk: Buffer) => {
      this.pending = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
      if (this.pending.length > MAX_PENDING_INPUT_BYTES) socket.pause();
      void this.pump();
    });
    socket.on('error', (err) => this.logger.debug('demo pop3 socket error', { error: err }));
    socket.on('close', () => this.release());
    void this.reply('+OK pophook demo POP3 server ready').catch(() => {});
  }

  private release(): void {
    this.state = 'CLOSED';
    if (this.holdsLock) {
      this.holdsLock = false;
      this.shared.locked = false;
    }
  }

  /** Answers buffered commands one at a time, in order (pipelining). */
  private async pump(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.state !== 'CLOSED' && !this.socket.destroyed) {
        const lf = this.pending.indexOf(0x0a);
        if (lf === -1) {
          if (this.pending.length >= MAX_COMMAND_LINE_BYTES)
            await this.closeWith('-ERR command line too long');
          break;
        }
        if (lf + 1 > MAX_COMMAND_LINE_BYTES) {
          await this.closeWith('-ERR command line too long');
          break;
        }
        const raw = this.pending.subarray(0, lf);
        this.pending = this.pending.subarray(lf + 1);
        if (this.socket.isPaused() && this.pending.length <= MAX_PENDING_INPUT_BYTES / 2)
          this.socket.resume();
        // latin1 keeps every byte as one char, so PASS compares the exact bytes sent.
        const line = raw.toString('latin1').replace(/\r$/, '');
        await this.command(line);
      }
    } catch (err) {
      if (!(err instanceof SessionClosedError)) {
        this.logger.error('demo pop3 session failed', { error: err });
        await this.closeWith('-ERR [SYS/TEMP] internal server error').catch(() => {});
      }
    } finally {
      this.processing = false;
    }
  }

  private async closeWith(message: string): Promise<void> {
    await this.reply(message).catch(() => {});
    this.state = 'CLOSED';
    this.socket.end();
  }

  private async write(data: string | Buffer): Promise<void> {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) throw new SessionClosedError();
    if (socket.write(data)) return;
    await new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        socket.off('drain', onDrain);
        socket.off('close', onClose);
      };
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = () => {
        cleanup();
        reject(new SessionClosedError());
      };
      socket.on('drain', onDrain);
      socket.on('close', onClose);
    });
  }

  private reply(line: string): Promise<void> {
    return this.write(`${line}\r\n`);
  }

  private async multiline(first: string, lines: readonly string[]): Promise<void> {
    await this.write(`${first}\r\n${lines.map((l) => `${l}\r\n`).join('')}.\r\n`);
  }

  private async command(line: string): Promise<void> {
    const space = line.indexOf(' ');
    const keyword = (space === -1 ? line : line.slice(0, space)).toUpperCase();
    const rest = space === -1 ? '' : line.slice(space + 1);
    const args = rest.split(' ').filter((a) => a.length > 0);
    this.logger.debug('demo pop3 command', { command: keyword.slice(0, 8) });

    if (keyword === 'CAPA') return this.multiline('+OK capability list follows', CAPABILITIES);
    if (keyword === 'NOOP' && this.state === 'TRANSACTION') return this.reply('+OK');
    if (keyword === 'QUIT') return this.quit();

    if (this.state === 'AUTHORIZATION') {
      switch (keyword) {
        case 'USER':
          if (args.length !== 1) return this.reply('-ERR usage: USER <name>');
          this.userGiven = args[0];
          return this.reply('+OK send PASS');
        case 'PASS':
          return this.pass(rest);
        case 'APOP':
        case 'AUTH':
        case 'STLS':
          return this.reply('-ERR not supported; use USER and PASS');
        default:
          return this.reply('-ERR unknown command or not valid before login');
      }
    }

    switch (keyword) {
      case 'STAT': {
        const live = this.live();
        return this.reply(`+OK ${live.length} ${live.reduce((sum, m) => sum + m.size, 0)}`);
      }
      case 'LIST':
      case 'UIDL': {
        const field = (m: MailboxEntry) => (keyword === 'LIST' ? String(m.size) : m.uidl);
        if (args.length === 0) {
          const lines = this.messages.flatMap((m, i) =>
            this.deleted.has(i + 1) ? [] : [`${i + 1} ${field(m)}`],
          );
          return this.multiline(keyword === 'LIST' ? `+OK ${lines.length} messages` : '+OK', lines);
        }
        if (args.length !== 1) return this.reply(`-ERR usage: ${keyword} [message number]`);
        const found = this.lookup(args[0]);
        if (typeof found === 'string') return this.reply(found);
        return this.reply(`+OK ${found.n} ${field(found.entry)}`);
      }
      case 'RETR': {
        if (args.length !== 1) return this.reply('-ERR usage: RETR <message number>');
        const found = this.lookup(args[0]);
        if (typeof found === 'string') return this.reply(found);
        return this.send(found.n, found.entry, undefined);
      }
      case 'TOP': {
        if (args.length !== 2 || !/^\d{1,9}$/.test(args[1] ?? ''))
          return this.reply('-ERR usage: TOP <message number> <number of lines>');
        const found = this.lookup(args[0]);
        if (typeof found === 'string') return this.reply(found);
        return this.send(found.n, found.entry, Number(args[1]));
      }
      case 'DELE': {
        if (args.length !== 1) return this.reply('-ERR usage: DELE <message number>');
        const found = this.lookup(args[0]);
        if (typeof found === 'string') return this.reply(found);
        this.deleted.add(found.n);
        return this.reply(`+OK message ${found.n} deleted`);
      }
      case 'RSET': {
        this.deleted.clear();
        return this.reply(`+OK maildrop has ${this.messages.length} messages`);
      }
      case 'USER':
      case 'PASS':
      case 'APOP':
      case 'AUTH':
      case 'STLS':
        return this.reply('-ERR already logged in');
      default:
        return this.reply('-ERR unknown command');
    }
  }

  private live(): MailboxEntry[] {
    return this.messages.filter((_, i) => !this.deleted.has(i + 1));
  }

  private lookup(arg: string | undefined): { n: number; entry: MailboxEntry } | string {
    if (arg === undefined || !/^[1-9]\d{0,8}$/.test(arg)) return '-ERR invalid message number';
    const n = Number(arg);
    const entry = this.messages[n - 1];
    if (!entry) return `-ERR no such message, only ${this.messages.length} in maildrop`;
    if (this.deleted.has(n)) return `-ERR message ${n} already deleted`;
    return { n, entry };
  }

  private async pass(password: string): Promise<void> {
    const user = this.userGiven;
    this.userGiven = undefined;
    if (user === undefined) return this.reply('-ERR send USER first');
    const ok =
      user === this.shared.user &&
      timingSafeEqual(sha256(Buffer.from(password, 'latin1')), this.shared.passwordHash);
    if (!ok) {
      this.authFailures++;
      this.logger.info('demo pop3 login failed');
      if (this.authFailures >= MAX_AUTH_FAILURES)
        return this.closeWith('-ERR [AUTH] invalid user name or password; too many attempts, closing');
      return this.reply('-ERR [AUTH] invalid user name or password');
    }
    if (this.shared.locked)
      return this.reply('-ERR [IN-USE] the mailbox is open in another session; try again when it ends');
    this.shared.locked = true;
    this.holdsLock = true;
    try {
      await mkdir(this.shared.dir, { recursive: true });
      this.messages = await scanMailbox(this.shared.dir, this.shared.cache, this.logger);
    } catch (err) {
      this.release();
      this.state = 'AUTHORIZATION';
      this.logger.error('demo pop3 scan failed', { error: err });
      return this.reply('-ERR [SYS/TEMP] cannot read the mailbox folder');
    }
    this.state = 'TRANSACTION';
    const total = this.messages.reduce((sum, m) => sum + m.size, 0);
    this.logger.info('demo pop3 login', { messages: this.messages.length });
    return this.reply(`+OK logged in, ${this.messages.length} messages (${total} octets)`);
  }

  /** RETR (bodyLines undefined) or TOP, streamed from disk. */
  private async send(n: number, entry: MailboxEntry, bodyLines: number | undefined): Promise<void> {
    if (!(await unchangedSince(entry)))
      return this.reply(`-ERR [SYS/TEMP] message ${n} changed or vanished since login; log in again`);
    await this.reply(bodyLines === undefined ? `+OK ${entry.size} octets` : '+OK top of message follows');
    const encoder = new Pop3WireEncoder({ dotStuff: true, bodyLines });
    const hash = createHash('sha256').update(entry.name).update('\0');
    const file = createReadStream(entry.path, { highWaterMark: FILE_READ_CHUNK_BYTES });
    try {
      for await (const chunk of file) {
        hash.update(chunk as Buffer);
        // One write per file chunk: the encoder yields many small slices, and a write each is slow.
        const pieces = encoder.encode(chunk as Buffer);
        if (pieces.length > 0)
          await this.write(pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces));
        if (encoder.finished) break;
      }
      const tail = encoder.end();
      if (tail.length > 0) await this.write(Buffer.concat(tail));
    } catch (err) {
      // The +OK is out: the only honest signal left is to drop the connection before the final dot.
      if (!(err instanceof SessionClosedError)) this.logger.error('demo pop3 read failed', { error: err });
      this.socket.destroy();
      throw new SessionClosedError();
    } finally {
      file.destroy();
    }
    if (
      bodyLines === undefined &&
      (hash.digest('hex') !== entry.uidl || encoder.messageSize !== entry.size)
    ) {
      this.logger.error('demo pop3 message changed while being served', { message: n });
      this.socket.destroy();
      throw new SessionClosedError();
    }
    await this.write('.\r\n');
  }

  private async quit(): Promise<void> {
    if (this.state !== 'TRANSACTION') return this.closeWith('+OK bye');
    let kept = 0;
    for (const n of [...this.deleted].sort((a, b) => a - b)) {
      const entry = this.messages[n - 1];
      if (!entry) continue;
      try {
        if (!(await moveToServed(entry, this.shared.servedDir))) kept++;
      } catch (err) {
        kept++;
        this.logger.error('demo pop3 move failed', { file: entry.name, error: err });
      }
    }
    const left = this.messages.length - this.deleted.size + kept;
    this.release();
    if (kept > 0)
      return this.closeWith(`-ERR [SYS/TEMP] ${kept} deleted messages were not removed; ${left} left`);
    return this.closeWith(`+OK bye, ${left} messages left`);
  }
}

/** Starts the demo server; resolves once it is listening. */
export async function startDemoPop3Server(options: DemoPop3ServerOptions): Promise<DemoPop3Server> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host))
    throw new ConfigError(
      `The demo POP3 server has no TLS, so it only listens on loopback (127.0.0.1 or ::1), not "${host}".`,
    );
  const dir = path.resolve(options.dir);
  const servedDir = path.join(dir, SERVED_DIR_NAME);
  await mkdir(dir, { recursive: true });
  const password = options.password ?? generateDemoPassword();
  const logger = (options.logger ?? silentLogger).child({ component: 'demo-pop3' });
  const shared: ServerShared = {
    dir,
    servedDir,
    user: DEMO_POP3_USER,
    passwordHash: sha256(Buffer.from(password, 'utf8')),
    cache: new Map(),
    logger,
    locked: false,
  };
  const sockets = new Set<net.Socket>();
  let nextSession = 1;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    new Session(socket, shared, logger.child({ session: nextSession++ }));
  });
  server.maxConnections = MAX_CONNECTIONS;

  await listenOrExplain(server, host, options.port, {
    code: 'DEMO_POP3_LISTEN_FAILED',
    what: 'demo POP3 server',
  });
  server.on('error', (err) => logger.error('demo pop3 server error', { error: err }));
  const address = server.address() as net.AddressInfo;
  logger.info('demo pop3 listening', { host, port: address.port, dir });

  return {
    host,
    port: address.port,
    user: DEMO_POP3_USER,
    password,
    dir,
    servedDir,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

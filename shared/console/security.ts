/**
 * Who may talk to the console. It serves private mail on a port any local process (and any web page the
 * user visits, through the browser) can reach, so:
 *
 * - An access token (32 random bytes, base64url) is printed once, in the URL, like Jupyter. A request
 *   carrying it gets a session cookie (HttpOnly, SameSite=Strict, per-port name) and is redirected to
 *   drop the token from the address bar and history. Everything else is refused with 401.
 * - Tokens and session ids are compared in constant time (SHA-256 digests, then timingSafeEqual).
 * - The Host header must name the loopback address and our port: a DNS-rebinding page (evil.example
 *   resolving to 127.0.0.1) sends `Host: evil.example` and is refused.
 * - State-changing requests are POSTs carrying the session's CSRF token, and are refused when Origin or
 *   Sec-Fetch-Site says another site sent them.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Random bytes in the access token, session ids and CSRF tokens (256 bits). */
const TOKEN_BYTES = 32;
/** Sessions kept at once; the oldest is forgotten first (a user has a tab or two, not hundreds). */
const MAX_SESSIONS = 64;
/** Notices (replay results) kept per session until shown. */
const MAX_NOTICES = 16;

export function newToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

/** Constant-time string equality (lengths may differ: digests are compared, not the strings). */
export function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(da, db);
}

export interface Session {
  id: string;
  csrf: string;
  createdAt: number;
  notices: Map<string, string>;
}

export class Sessions {
  private readonly sessions = new Map<string, Session>();
  readonly cookieName: string;

  constructor(
    private readonly accessToken: string,
    port: number,
  ) {
    // Cookies ignore ports: two consoles on one host must not overwrite each other's session.
    this.cookieName = `pophook_console_${port}`;
  }

  checkAccessToken(candidate: string): boolean {
    return safeEqual(candidate, this.accessToken);
  }

  create(now: number): Session {
    const session: Session = { id: newToken(), csrf: newToken(), createdAt: now, notices: new Map() };
    this.sessions.set(session.id, session);
    while (this.sessions.size > MAX_SESSIONS) {
      const oldest = this.sessions.keys().next().value;
      if (oldest === undefined) break;
      this.sessions.delete(oldest);
    }
    return session;
  }

  /** The session named by the request's cookie, if any. */
  fromRequest(req: IncomingMessage): Session | undefined {
    const value = readCookie(req.headers.cookie, this.cookieName);
    if (!value) return undefined;
    // Map lookup by a secret is not constant time; compare the hit again so timing reveals nothing useful.
    const session = this.sessions.get(value);
    return session && safeEqual(session.id, value) ? session : undefined;
  }

  setCookie(session: Session): string {
    return `${this.cookieName}=${session.id}; Path=/; HttpOnly; SameSite=Strict`;
  }

  addNotice(session: Session, text: string): string {
    const id = randomBytes(6).toString('base64url');
    session.notices.set(id, text);
    while (session.notices.size > MAX_NOTICES) {
      const oldest = session.notices.keys().next().value;
      if (oldest === undefined) break;
      session.notices.delete(oldest);
    }
    return id;
  }

  takeNotice(session: Session, id: string | null): string | undefined {
    if (!id) return undefined;
    const text = session.notices.get(id);
    session.notices.delete(id);
    return text;
  }
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Host header values we answer to: loopback names with our port (plus the bound host, if another). */
export function allowedHosts(boundHost: string, port: number): Set<string> {
  const hosts = new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
  const h = boundHost.includes(':') && !boundHost.startsWith('[') ? `[${boundHost}]` : boundHost;
  if (h !== '0.0.0.0' && h !== '[::]') hosts.add(`${h.toLowerCase()}:${port}`);
  return hosts;
}

/**
 * Why a state-changing request must be refused, or undefined when it may proceed: the CSRF token must
 * match the session's, and a browser's Origin / Sec-Fetch-Site must say it came from this console.
 */
export function csrfProblem(
  req: IncomingMessage,
  session: Session,
  submittedToken: string | undefined,
  host: string,
): string | undefined {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return `cross-site request (Sec-Fetch-Site: ${site})`;
  const origin = req.headers.origin;
  // With Referrer-Policy no-referrer, browsers send `Origin: null` even for our own forms; a browser's
  // Sec-Fetch-Site (which pages cannot forge) then vouches for the origin. A sandboxed frame's opaque
  // origin also says null, but its Sec-Fetch-Site is cross-site.
  const vouched = origin === 'null' && site === 'same-origin';
  if (origin !== undefined && origin !== `http://${host}` && !vouched) return 'request from another origin';
  if (!submittedToken || !safeEqual(submittedToken, session.csrf)) return 'missing or wrong CSRF token';
  return undefined;
}

/**
 * `pophook check` for one mailbox: every step from DNS to STAT, without fetching, deleting or changing
 * anything on the server (the session ends with QUIT and no DELE). Each failed step says in a plain
 * sentence what to change. Order: DNS, TCP, TLS (a separate handshake that shows the certificate even
 * when it would be refused), then a real session with the pophook POP3 client: greeting, CAPA, the
 * auth mechanism it will use and why, credentials, login, STAT, UIDL, LOGIN-DELAY, EXPIRE.
 *
 * A mailbox with tls: none and no allowInsecureAuth is checked up to CAPA; the credentials are never
 * sent (the client would refuse too: invariant 4).
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { explainAuthFailure } from '../auth/explain.js';
import type { TokenInfo } from '../auth/microsoft.js';
import type { MailboxConfig } from '../config/schema.js';
import { errorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { connect as pop3Connect } from '../pop3/client.js';
import type { Pop3Capabilities, Pop3ConnectOptions, Pop3Credentials, Pop3Session } from '../pop3/types.js';
import { sanitizeForeignText } from '../sanitize.js';
import {
  CHECK_STEP_TIMEOUT_MS,
  explainHandshakeError,
  explainTcpError,
  readLine,
  type TlsProbeResult,
  tcpConnect,
  tlsProbe,
  tlsStep,
} from './tls.js';
import { type CheckReport, type CheckStep, report } from './types.js';

/** Capabilities listed; a server advertising more is unusual and the rest add nothing. */
const MAX_CAPA_SHOWN = 20;

export interface MailboxCheckDeps {
  /** Credentials plus OAuth token details (the credentials provider's getCredentialsWithExpiry). */
  credentials: (
    mailbox: MailboxConfig,
  ) => Promise<{ credentials: Pop3Credentials; expiresAt?: number; tokenInfo?: TokenInfo }>;
  /** @default the pophook POP3 client */
  connect?: (options: Pop3ConnectOptions) => Promise<Pop3Session>;
  /** @default dns.lookup (all addresses) */
  resolve?: (host: string) => Promise<{ address: string; family: number }[]>;
  /** Source address for every connection (tests: 127.0.0.x dodges Dovecot's per-IP auth penalty). */
  localAddress?: string;
  /** Per network step. @default CHECK_STEP_TIMEOUT_MS */
  timeoutMs?: number;
  now?: () => number;
  logger?: Logger;
  signal?: AbortSignal;
}

export function defaultPort(mailbox: Pick<MailboxConfig, 'port' | 'tls'>): number {
  return mailbox.port ?? (mailbox.tls === 'implicit' ? 995 : 110);
}

/** `user @ host:port (TLS)`. */
export function mailboxTarget(mailbox: MailboxConfig): string {
  const mode =
    mailbox.tls === 'implicit' ? 'implicit TLS' : mailbox.tls === 'starttls' ? 'STARTTLS' : 'no TLS';
  return `${mailbox.user} @ ${mailbox.host}:${defaultPort(mailbox)} (${mode})`;
}

/** Which login mechanism the client will pick, and why (mirrors Pop3Client.login). */
export function explainMechanism(mailbox: MailboxConfig, caps: Pop3Capabilities): CheckStep {
  const auth = mailbox.auth;
  const apopNote =
    'not APOP: never chosen automatically (MD5, and the server must keep the password in cleartext); under TLS, PLAIN and USER are safer';
  if (auth.type === 'password') {
    if (auth.mechanism === 'apop')
      return {
        name: 'mechanism',
        ok: true,
        warning: true,
        detail: 'APOP, because the config asks for it (mechanism: apop)',
        fix: 'APOP relies on MD5 (CVE-2007-1558); prefer mechanism: auto over TLS.',
      };
    if (auth.mechanism === 'plain')
      return caps.sasl.includes('PLAIN') || !caps.advertised
        ? {
            name: 'mechanism',
            ok: true,
            detail: 'SASL PLAIN, because the config asks for it (mechanism: plain)',
          }
        : {
            name: 'mechanism',
            ok: true,
            warning: true,
            detail: 'SASL PLAIN (mechanism: plain), but the server does not advertise it',
            fix: 'Use mechanism: auto so pophook falls back to USER/PASS.',
          };
    if (auth.mechanism === 'user')
      return {
        name: 'mechanism',
        ok: true,
        detail: 'USER/PASS, because the config asks for it (mechanism: user)',
        lines: [apopNote],
      };
    return caps.sasl.includes('PLAIN')
      ? {
          name: 'mechanism',
          ok: true,
          detail: `SASL PLAIN: the server advertises it (SASL ${caps.sasl.join(' ')}); user and password go in one step`,
          lines: [apopNote],
        }
      : {
          name: 'mechanism',
          ok: true,
          detail: `USER/PASS: the server does not advertise SASL PLAIN${caps.sasl.length ? ` (SASL ${caps.sasl.join(' ')})` : ''}`,
          lines: [apopNote],
        };
  }
  const mech = auth.mechanism === 'oauthbearer' ? 'OAUTHBEARER' : 'XOAUTH2';
  if (caps.advertised && !caps.sasl.includes(mech))
    return {
      name: 'mechanism',
      ok: true,
      warning: true,
      detail: `${mech} (OAuth ${auth.type}), but the server does not advertise it (SASL ${caps.sasl.join(' ') || 'none'})`,
      fix:
        mech === 'XOAUTH2'
          ? "Check the host is the provider's POP server (outlook.office365.com, pop.gmail.com); try mechanism: oauthbearer if it lists that."
          : 'Try mechanism: xoauth2.',
    };
  return {
    name: 'mechanism',
    ok: true,
    detail: `${mech}: OAuth access token (${auth.type}); no password is sent`,
  };
}

function capaStep(caps: Pop3Capabilities): CheckStep {
  if (!caps.advertised)
    return {
      name: 'CAPA',
      ok: true,
      warning: true,
      detail: 'the server does not answer CAPA (RFC 2449); pophook assumes USER/PASS, UIDL and no pipelining',
    };
  const names = [...caps.raw.entries()]
    .slice(0, MAX_CAPA_SHOWN)
    .map(([k, v]) => sanitizeForeignText(v.length ? `${k} ${v.join(' ')}` : k, 120));
  return {
    name: 'CAPA',
    ok: true,
    detail: `${caps.raw.size} capabilities${caps.pipelining ? ', PIPELINING (fetches are pipelined)' : ''}`,
    lines: [`${names.join(', ')}${caps.raw.size > MAX_CAPA_SHOWN ? ', ...' : ''}`],
  };
}

function uidlStep(mailbox: MailboxConfig, supported: boolean): CheckStep {
  if (supported)
    return {
      name: 'UIDL',
      ok: true,
      detail:
        mailbox.retention === 'delete'
          ? 'supported: each message is recognised across polls'
          : 'supported: messages can stay on the server (retention keep / deleteAfterDays) without being fetched twice',
    };
  if (mailbox.retention !== 'delete')
    return {
      name: 'UIDL',
      ok: false,
      detail: 'not supported: pophook cannot tell new mail from old while mail stays on the server',
      fix: `Set retention: delete for mailbox "${mailbox.id}" (messages are then recognised by their content hash).`,
    };
  return {
    name: 'UIDL',
    ok: true,
    warning: true,
    detail: 'not supported: messages are recognised by content hash, which works with retention: delete only',
  };
}

function loginDelayStep(mailbox: MailboxConfig, caps: Pop3Capabilities): CheckStep {
  const delay = caps.loginDelaySeconds;
  if (delay === undefined)
    return { name: 'LOGIN-DELAY', ok: true, detail: 'none: pophook may log in as often as it likes' };
  const every = mailbox.pollEveryMinutes * 60;
  if (delay > every)
    return {
      name: 'LOGIN-DELAY',
      ok: true,
      warning: true,
      detail: `${delay} s between logins, longer than pollEveryMinutes (${mailbox.pollEveryMinutes} min): some polls will be refused (harmless, but noisy)`,
      fix: `Set pollEveryMinutes: ${Math.ceil(delay / 60)} or more for mailbox "${mailbox.id}".`,
    };
  return {
    name: 'LOGIN-DELAY',
    ok: true,
    detail: `${delay} s between logins, within pollEveryMinutes (${mailbox.pollEveryMinutes} min)`,
  };
}

function expireStep(mailbox: MailboxConfig, caps: Pop3Capabilities): CheckStep {
  const expire = caps.expire;
  if (expire === undefined)
    return {
      name: 'EXPIRE',
      ok: true,
      detail: 'not advertised: the server keeps messages until pophook deletes them',
    };
  if (expire === 'NEVER')
    return { name: 'EXPIRE', ok: true, detail: 'NEVER: the server keeps messages until deleted' };
  const r = mailbox.retention;
  const what =
    expire === 0
      ? 'deletes each message as soon as it is retrieved'
      : `deletes retrieved messages after ${expire} day${expire === 1 ? '' : 's'}`;
  if (r === 'keep' || (typeof r === 'object' && r.deleteAfterDays > expire))
    return {
      name: 'EXPIRE',
      ok: true,
      warning: true,
      detail: `${expire}: the server ${what}, whatever retention says (${typeof r === 'object' ? `deleteAfterDays ${r.deleteAfterDays}` : 'keep'})`,
      fix: 'Mail is still archived by pophook before the server removes it; the archive is your copy. Set retention: delete to make that explicit.',
    };
  return {
    name: 'EXPIRE',
    ok: true,
    detail: `${expire}: the server ${what}; fine with retention ${typeof r === 'object' ? `deleteAfterDays ${r.deleteAfterDays}` : r}`,
  };
}

function loginFailure(err: unknown, mailbox: MailboxConfig, tokenInfo?: TokenInfo): CheckStep {
  const code = errorCode(err);
  if (code === 'POP3_IN_USE')
    return {
      name: 'login',
      ok: false,
      detail: 'the server says the mailbox is in use (IN-USE): another client holds it open',
      fix: 'Close other POP3 clients on this mailbox, or wait and run check again; pophook retries such polls by itself.',
    };
  if (code === 'POP3_LOGIN_DELAY')
    return {
      name: 'login',
      ok: false,
      detail: 'the server refused the login because the last one was too recent (LOGIN-DELAY)',
      fix: 'Wait a few minutes and run check again; raise pollEveryMinutes if this keeps happening.',
    };
  const lines = explainAuthFailure(err, mailbox, tokenInfo);
  return {
    name: 'login',
    ok: false,
    detail: lines[0] ?? String(err),
    ...(lines.length > 1 ? { fix: lines.slice(1).join(' ') } : {}),
  };
}

/** Runs every check step for `mailbox`. Never throws for a network or server problem: that is a step. */
export async function checkMailbox(mailbox: MailboxConfig, deps: MailboxCheckDeps): Promise<CheckReport> {
  const steps: CheckStep[] = [];
  const done = () => report('mailbox', mailbox.id, mailboxTarget(mailbox), steps);
  const timeoutMs = deps.timeoutMs ?? CHECK_STEP_TIMEOUT_MS;
  const now = deps.now ?? Date.now;
  const host = mailbox.host;
  const port = defaultPort(mailbox);

  // DNS
  if (net.isIP(host))
    steps.push({ name: 'DNS', ok: true, detail: `${host} is an IP address; no lookup needed` });
  else {
    try {
      const addresses = await (deps.resolve ?? ((h) => lookup(h, { all: true, verbatim: true })))(host);
      if (addresses.length === 0) throw Object.assign(new Error('no addresses'), { code: 'ENODATA' });
      steps.push({
        name: 'DNS',
        ok: true,
        detail: `${host} -> ${addresses.map((a) => a.address).join(', ')}`,
      });
    } catch (err) {
      const code = errorCode(err);
      steps.push({
        name: 'DNS',
        ok: false,
        detail:
          code === 'EAI_AGAIN'
            ? `the lookup of ${host} failed temporarily (EAI_AGAIN)`
            : `${host} does not resolve (${code})`,
        fix:
          code === 'EAI_AGAIN'
            ? "Check this machine's DNS and network, then run check again."
            : `Check the spelling of "host" in mailbox "${mailbox.id}" (e.g. pop.gmail.com, outlook.office365.com).`,
      });
      return done();
    }
  }

  // TCP, then TLS over the same socket (a handshake that shows the certificate even if it is refused).
  let socket: net.Socket;
  const started = now();
  try {
    socket = await tcpConnect({
      host,
      port,
      timeoutMs,
      ...(deps.localAddress ? { localAddress: deps.localAddress } : {}),
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
  } catch (err) {
    steps.push(explainTcpError(err, host, port, timeoutMs));
    return done();
  }
  steps.push({
    name: 'TCP',
    ok: true,
    detail: `connected to ${socket.remoteAddress ?? host}:${port} in ${now() - started} ms`,
  });
  const where = `mailbox "${mailbox.id}"`;
  try {
    if (mailbox.tls === 'none') {
      socket.destroy();
      steps.push(
        mailbox.allowInsecureAuth
          ? {
              name: 'TLS',
              ok: true,
              warning: true,
              detail: 'none: the password crosses the network unencrypted (allowInsecureAuth: true)',
              fix: 'Only do this with a local test server; use tls: implicit or starttls otherwise.',
            }
          : {
              name: 'TLS',
              ok: false,
              detail:
                'none: the connection is not encrypted, so pophook will not send the credentials over it',
              fix: `Use tls: implicit (port 995) or tls: starttls (port 110) in ${where}; allowInsecureAuth: true is only for local test servers.`,
            },
      );
    } else {
      let probe: TlsProbeResult;
      try {
        if (mailbox.tls === 'starttls') {
          const greeting = await readLine(socket, timeoutMs);
          if (!greeting.startsWith('+OK'))
            throw Object.assign(new Error(`the server greeted with: ${sanitizeForeignText(greeting, 200)}`), {
              code: 'POP3_GREETING',
            });
          socket.write('STLS\r\n');
          const reply = await readLine(socket, timeoutMs);
          if (!reply.startsWith('+OK')) {
            socket.destroy();
            steps.push({
              name: 'TLS',
              ok: false,
              detail: `the server refused STLS: ${sanitizeForeignText(reply, 200)}`,
              fix: `The server does not offer STARTTLS on port ${port}: use tls: implicit with its TLS port (usually 995) in ${where}.`,
            });
            return done();
          }
        }
        probe = await tlsProbe({ socket, host, ...(mailbox.ca ? { ca: mailbox.ca } : {}), timeoutMs });
      } catch (err) {
        socket.destroy();
        const code = errorCode(err);
        if (mailbox.tls === 'starttls' && (code === 'ETIMEDOUT' || code === 'POP3_GREETING'))
          steps.push({
            name: 'greeting',
            ok: false,
            detail:
              code === 'ETIMEDOUT' ? `no POP3 greeting within ${timeoutMs / 1000} s` : (err as Error).message,
            fix: `If port ${port} is an implicit-TLS port (usually 995), set tls: implicit in ${where}.`,
          });
        else steps.push(explainHandshakeError(err, host, port));
        return done();
      }
      const step = tlsStep(probe, {
        host,
        where,
        caSetting: true,
        ...(mailbox.pinSha256 ? { pinSha256: mailbox.pinSha256 } : {}),
        opensslConnect: `openssl s_client -connect ${host}:${port}${mailbox.tls === 'starttls' ? ' -starttls pop3' : ''}`,
        now: now(),
      });
      steps.push(step);
      if (!step.ok) return done();
    }
  } finally {
    socket.destroy();
  }

  // A real session with the client pophook polls with.
  let session: Pop3Session;
  try {
    session = await (deps.connect ?? pop3Connect)({
      host,
      port,
      tls: mailbox.tls,
      ...(mailbox.ca ? { ca: mailbox.ca } : {}),
      ...(mailbox.pinSha256 ? { pinSha256: mailbox.pinSha256 } : {}),
      allowInsecureAuth: mailbox.allowInsecureAuth,
      ...(deps.localAddress ? { localAddress: deps.localAddress } : {}),
      ...(deps.signal ? { signal: deps.signal } : {}),
      logger: deps.logger ?? silentLogger,
      timeouts: {
        connectMs: timeoutMs,
        greetingMs: timeoutMs,
        tlsHandshakeMs: timeoutMs,
        idleMs: timeoutMs * 3,
        sessionMs: timeoutMs * 12,
      },
    });
  } catch (err) {
    const code = errorCode(err);
    steps.push({
      name: 'greeting',
      ok: false,
      detail: (err as Error).message,
      fix:
        code === 'POP3_TIMEOUT' && mailbox.tls !== 'implicit'
          ? `If port ${port} is an implicit-TLS port (usually 995), set tls: implicit in ${where}.`
          : code === 'POP3_STLS_UNAVAILABLE'
            ? `The server does not advertise STLS: use tls: implicit with its TLS port (usually 995) in ${where}.`
            : 'Run check again; if it persists, the server is misbehaving.',
    });
    return done();
  }
  try {
    const apop = /<[^<>@\s]+@[^<>\s]+>/.test(session.greeting);
    steps.push({
      name: 'greeting',
      ok: true,
      detail: `${sanitizeForeignText(session.greeting, 160)}${apop ? ' (offers APOP)' : ''}`,
    });
    steps.push(capaStep(session.capabilities));
    if (mailbox.tls === 'none' && !mailbox.allowInsecureAuth) {
      steps.push({
        name: 'login',
        ok: false,
        detail: 'not attempted: credentials are never sent over an unencrypted connection',
        fix: `Use tls: implicit or starttls in ${where}.`,
      });
      await session.quit().catch(() => session.close());
      return done();
    }
    steps.push(explainMechanism(mailbox, session.capabilities));

    let credentials: Pop3Credentials;
    let tokenInfo: TokenInfo | undefined;
    try {
      const got = await deps.credentials(mailbox);
      credentials = got.credentials;
      tokenInfo = got.tokenInfo;
      if (mailbox.auth.type !== 'password')
        steps.push({
          name: 'token',
          ok: true,
          detail: `access token issued${got.expiresAt ? `, valid for ${Math.round((got.expiresAt - now()) / 60_000)} min` : ''}`,
        });
    } catch (err) {
      const lines =
        mailbox.auth.type === 'password' ? [(err as Error).message] : explainAuthFailure(err, mailbox);
      steps.push({
        name: mailbox.auth.type === 'password' ? 'password' : 'token',
        ok: false,
        detail: lines[0] ?? String(err),
        ...(lines.length > 1 ? { fix: lines.slice(1).join(' ') } : {}),
      });
      session.close();
      return done();
    }

    try {
      await session.login(credentials);
    } catch (err) {
      steps.push(loginFailure(err, mailbox, tokenInfo));
      session.close();
      return done();
    }
    steps.push({
      name: 'login',
      ok: true,
      detail: `logged in as ${mailbox.user} with ${session.authMechanism ?? '?'}`,
    });

    const stat = await session.stat();
    steps.push({
      name: 'STAT',
      ok: true,
      detail: `${stat.count} message${stat.count === 1 ? '' : 's'}, ${stat.size} bytes on the server`,
    });
    let uidl = session.capabilities.uidl && session.capabilities.advertised;
    if (!uidl) {
      // Not advertised (or no CAPA): ask, since some servers support it silently.
      uidl = await session.uidl().then(
        () => true,
        () => false,
      );
    }
    steps.push(uidlStep(mailbox, uidl));
    steps.push(loginDelayStep(mailbox, session.capabilities));
    steps.push(expireStep(mailbox, session.capabilities));
    await session.quit().catch(() => session.close());
  } catch (err) {
    session.close();
    steps.push({
      name: 'session',
      ok: false,
      detail: (err as Error).message,
      fix: 'Run check again; if it persists, the server is misbehaving.',
    });
  }
  return done();
}

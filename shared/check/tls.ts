/**
 * Network probes for `pophook check`: a TCP connect and a TLS handshake that SHOWS the certificate even
 * when it would be refused (verification is done here, by hand, after the handshake), so the user sees
 * what the server presented and which setting fixes it. Nothing here is used to move mail: the real
 * POP3 client and webhook client verify strictly on their own.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { CheckStep } from './types.js';

/** Default for each network step of a check: a dropped SYN should not look like a hang. */
export const CHECK_STEP_TIMEOUT_MS = 10_000;
/** Longest greeting/STLS reply line read by the STARTTLS probe (RFC 2449: 512 octets). */
const MAX_PROBE_LINE_BYTES = 1024;

/** Fields of a certificate a person needs to decide what to trust. */
export interface CertificateSummary {
  subject: string;
  issuer: string;
  /** Names it is valid for (subjectAltName, else CN). */
  names: string[];
  validFrom: string;
  validTo: string;
  /** Colon-separated upper-case hex, as openssl prints it. */
  fingerprint256: string;
  selfSigned: boolean;
}

export interface TlsProbeResult {
  protocol: string | null;
  cipher: string;
  certificate: CertificateSummary | undefined;
  /** Chain verification error code (node/OpenSSL), e.g. DEPTH_ZERO_SELF_SIGNED_CERT. */
  authorizationError: string | undefined;
  /** Hostname mismatch reason, when the certificate does not cover `host`. */
  hostnameError: string | undefined;
}

export interface TcpProbeOptions {
  host: string;
  port: number;
  localAddress?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A connected socket, or an error whose `code` says why (ECONNREFUSED, ETIMEDOUT, ...). */
export function tcpConnect(options: TcpProbeOptions): Promise<net.Socket> {
  const timeoutMs = options.timeoutMs ?? CHECK_STEP_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: options.host,
      port: options.port,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    const fail = (err: Error) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      timeoutMs,
    );
    const onAbort = () => fail(Object.assign(new Error('aborted'), { code: 'ABORT_ERR' }));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', fail);
    socket.once('connect', () => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.off('error', fail);
      socket.on('error', () => undefined); // the caller closes it; a late reset must not throw
      resolve(socket);
    });
  });
}

/** One sentence for a failed TCP connect, with what to check. */
export function explainTcpError(err: unknown, host: string, port: number, timeoutMs: number): CheckStep {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'error';
  const where = `${host}:${port}`;
  if (code === 'ECONNREFUSED')
    return {
      name: 'TCP',
      ok: false,
      detail: `connection refused by ${where}: nothing accepts connections on port ${port} there`,
      fix: 'Check "port" (and "host"): POP3 is usually 995 with tls: implicit, or 110 with tls: starttls.',
    };
  if (code === 'ETIMEDOUT')
    return {
      name: 'TCP',
      ok: false,
      detail: `no answer from ${where} within ${timeoutMs / 1000} s`,
      fix: 'A firewall may be dropping the traffic (outbound to this port, or inbound on the server), or "host"/"port" is wrong.',
    };
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH')
    return {
      name: 'TCP',
      ok: false,
      detail: `${where} is unreachable from this machine (${code})`,
      fix: 'Check this machine has a route to the server (VPN, IPv6 without connectivity, firewall).',
    };
  if (code === 'EADDRNOTAVAIL')
    return {
      name: 'TCP',
      ok: false,
      detail: `cannot connect from the requested source address (${code})`,
      fix: 'The source address is not configured on this machine.',
    };
  return {
    name: 'TCP',
    ok: false,
    detail: `cannot connect to ${where}: ${(err as Error)?.message ?? code}`,
    fix: 'Check "host" and "port".',
  };
}

function nameOf(entity: Record<string, string | string[] | undefined> | undefined): string {
  if (!entity) return '?';
  const pick = (k: string) => {
    const v = entity[k];
    return Array.isArray(v) ? v[0] : v;
  };
  const cn = pick('CN');
  const o = pick('O');
  return [cn ? `CN=${cn}` : '', o ? `O=${o}` : ''].filter(Boolean).join(', ') || '?';
}

function summarise(cert: tls.PeerCertificate): CertificateSummary | undefined {
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const alt = cert.subjectaltname
    ? cert.subjectaltname
        .split(/,\s*/)
        .map((s) => s.replace(/^(DNS|IP Address):/, ''))
        .filter(Boolean)
    : [];
  const cn = Array.isArray(cert.subject?.CN) ? cert.subject.CN[0] : cert.subject?.CN;
  const subject = nameOf(cert.subject as unknown as Record<string, string | string[] | undefined>);
  const issuer = nameOf(cert.issuer as unknown as Record<string, string | string[] | undefined>);
  return {
    subject,
    issuer,
    names: alt.length ? alt : cn ? [cn] : [],
    validFrom: cert.valid_from,
    validTo: cert.valid_to,
    fingerprint256: cert.fingerprint256,
    selfSigned: (cert as tls.DetailedPeerCertificate).issuerCertificate === cert || subject === issuer,
  };
}

export interface TlsProbeOptions {
  /** The connected TCP socket to run TLS over (implicit TLS, or after STLS). */
  socket: net.Socket;
  /** Name the certificate must cover (a host name or an IP address). */
  host: string;
  /** Extra trusted CA(s), PEM; added to the system roots as the real clients do. */
  ca?: string | string[];
  timeoutMs?: number;
}

/**
 * Runs a TLS handshake that accepts any certificate, then verifies by hand: the chain (against the
 * system roots plus `ca`) and the hostname. Rejects only when no handshake was possible.
 */
export function tlsProbe(options: TlsProbeOptions): Promise<TlsProbeResult> {
  const timeoutMs = options.timeoutMs ?? CHECK_STEP_TIMEOUT_MS;
  const extra = options.ca === undefined ? [] : Array.isArray(options.ca) ? options.ca : [options.ca];
  const sni = net.isIP(options.host) === 0 ? options.host : undefined;
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket: options.socket,
      ...(sni ? { servername: sni } : {}),
      minVersion: 'TLSv1.2',
      // Verification is done below, by hand, so a refused certificate can still be shown.
      rejectUnauthorized: false,
      ...(extra.length ? { ca: [...tls.rootCertificates, ...extra] } : {}),
    });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(Object.assign(new Error(`no TLS handshake within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    secure.once('error', (err) => {
      clearTimeout(timer);
      secure.destroy();
      reject(err);
    });
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      const peer = secure.getPeerCertificate(true);
      const certificate = summarise(peer);
      const identity =
        peer && Object.keys(peer).length ? tls.checkServerIdentity(options.host, peer) : undefined;
      const authError = secure.authorizationError as unknown as Error | string | null | undefined;
      const result: TlsProbeResult = {
        protocol: secure.getProtocol(),
        cipher: secure.getCipher()?.name ?? '?',
        certificate,
        authorizationError:
          typeof authError === 'string'
            ? authError
            : authError
              ? ((authError as NodeJS.ErrnoException).code ?? authError.message)
              : undefined,
        hostnameError: identity ? identity.message : undefined,
      };
      secure.on('error', () => undefined);
      secure.end();
      secure.destroy();
      resolve(result);
    });
  });
}

/** Explains a handshake that could not happen at all (wrong protocol on the port, old TLS). */
export function explainHandshakeError(err: unknown, host: string, port: number): CheckStep {
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  const message = (err as Error)?.message ?? String(err);
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number|packet length too long/i.test(message))
    return {
      name: 'TLS',
      ok: false,
      detail: `${host}:${port} did not answer with TLS`,
      fix: 'This port speaks plain text first: use tls: starttls (usually port 110), or the implicit-TLS port (usually 995).',
    };
  if (/UNSUPPORTED_PROTOCOL|ALERT_PROTOCOL_VERSION/i.test(code + message))
    return {
      name: 'TLS',
      ok: false,
      detail: `${host} offers only TLS older than 1.2`,
      fix: 'pophook refuses TLS 1.0/1.1; the server must be upgraded to TLS 1.2 or later.',
    };
  if (code === 'ETIMEDOUT')
    return {
      name: 'TLS',
      ok: false,
      detail: `no TLS handshake from ${host}:${port}: ${message}`,
      fix: 'The port may expect plain text first (tls: starttls), or the server is overloaded.',
    };
  return {
    name: 'TLS',
    ok: false,
    detail: `TLS handshake with ${host}:${port} failed: ${message}`,
    fix: 'Check "port" and "tls" (implicit for 995, starttls for 110).',
  };
}

const SELF_SIGNED = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN']);
const UNKNOWN_CA = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
]);

const normalise = (fp: string) => fp.replace(/[\s:]/g, '').toLowerCase();

export interface TlsVerdictContext {
  host: string;
  /** What to call the setting holder in fixes, e.g. `mailbox "support"`. */
  where: string;
  /** Whether `ca:` can fix trust (mailboxes: yes; endpoints: the receiver must fix its certificate). */
  caSetting: boolean;
  pinSha256?: string[];
  /** How to fetch the certificate with openssl (shown in the self-signed fix). */
  opensslConnect: string;
  now: number;
}

/** The TLS step: certificate lines, and on failure what is wrong and the config change that fixes it. */
export function tlsStep(probe: TlsProbeResult, ctx: TlsVerdictContext): CheckStep {
  const c = probe.certificate;
  const lines = c
    ? [
        `certificate  ${c.subject}`,
        `issued by    ${c.issuer}${c.selfSigned ? ' (self-signed)' : ''}`,
        `valid        ${c.validFrom} to ${c.validTo}`,
        `names        ${c.names.join(', ') || '(none)'}`,
        `sha256       ${c.fingerprint256}`,
      ]
    : ['no certificate presented'];
  const base = { name: 'TLS', lines };
  const fp = c?.fingerprint256 ?? '';
  const expired = c ? Date.parse(c.validTo) < ctx.now : false;
  const err = probe.authorizationError;
  if (err === 'CERT_HAS_EXPIRED' || (expired && !err))
    return {
      ...base,
      ok: false,
      detail: `the certificate expired on ${c?.validTo}`,
      fix: "The server's administrator must renew it; pophook never accepts an expired certificate.",
    };
  if (err === 'CERT_NOT_YET_VALID')
    return {
      ...base,
      ok: false,
      detail: `the certificate is not valid before ${c?.validFrom}`,
      fix: "Check this machine's clock and the server's certificate dates.",
    };
  if (err && SELF_SIGNED.has(err))
    return {
      ...base,
      ok: false,
      detail: `the certificate is self-signed (${err === 'DEPTH_ZERO_SELF_SIGNED_CERT' ? c?.subject : 'its chain ends in an untrusted root'}), so nobody vouches for it`,
      fix: ctx.caSetting
        ? `If this is your server, trust exactly this certificate: save it with \`${ctx.opensslConnect} </dev/null | openssl x509 > server.pem\`, set ca: server.pem in ${ctx.where}, and add pinSha256: ["${fp}"] to accept only it.`
        : "The receiver must use a certificate from a public CA (e.g. Let's Encrypt).",
    };
  if (err && UNKNOWN_CA.has(err))
    return {
      ...base,
      ok: false,
      detail: `the certificate was issued by ${c?.issuer}, which this machine does not trust (${err})`,
      fix: ctx.caSetting
        ? `If that is a private CA, add its certificate (PEM, inline or a file path) as ca: in ${ctx.where}; if it should be public, the server must send its intermediate certificates.`
        : 'The receiver must send its full certificate chain (the intermediates), from a public CA.',
    };
  if (err)
    return {
      ...base,
      ok: false,
      detail: `the certificate was refused (${err})`,
      fix: ctx.caSetting
        ? `Check the server's certificate, or set ca: in ${ctx.where}.`
        : "Check the receiver's certificate.",
    };
  if (probe.hostnameError)
    return {
      ...base,
      ok: false,
      detail: `the certificate is for ${c?.names.join(', ') || c?.subject}, not ${ctx.host}`,
      fix: ctx.caSetting
        ? `Set "host" in ${ctx.where} to a name the certificate lists (${c?.names[0] ?? '?'}).`
        : "Use a URL whose host name the receiver's certificate lists.",
    };
  if (ctx.pinSha256?.length && !ctx.pinSha256.map(normalise).includes(normalise(fp)))
    return {
      ...base,
      ok: false,
      detail: `the certificate (sha256 ${fp}) matches none of pinSha256`,
      fix: `If the server changed its certificate on purpose, put its new fingerprint in pinSha256 of ${ctx.where}; otherwise something is intercepting the connection.`,
    };
  return {
    ...base,
    ok: true,
    detail: `${probe.protocol ?? 'TLS'} ${probe.cipher}; certificate for ${ctx.host} valid until ${c?.validTo}${ctx.pinSha256?.length ? ', pinned' : ''}`,
  };
}

/** Reads one CRLF-terminated line from a plain socket (the STARTTLS probe's greeting and STLS reply). */
export function readLine(socket: net.Socket, timeoutMs = CHECK_STEP_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const done = (err: Error | undefined, line?: string) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      if (err) reject(err);
      else resolve(line ?? '');
    };
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n');
      if (end >= 0) done(undefined, buffered.subarray(0, end).toString('latin1'));
      else if (buffered.length > MAX_PROBE_LINE_BYTES) done(new Error('reply line too long'));
    };
    const onClose = () =>
      done(Object.assign(new Error('the server closed the connection'), { code: 'ECONNRESET' }));
    const timer = setTimeout(
      () => done(Object.assign(new Error(`no reply within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}

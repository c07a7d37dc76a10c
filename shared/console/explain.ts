/**
 * Plain words for what the console shows: a poll outcome or error code, a delivery error class. Each
 * says what happened and what to do; the stored error message (already sanitised) is shown beside it.
 */
import type { DeliveryAttempt, PollRecord } from '../state/store.js';

const POLL_OUTCOMES: Record<PollRecord['outcome'], string> = {
  ok: 'The poll finished normally.',
  partial:
    'The poll stopped early: a per-run limit (maxMessagesPerRun or maxBytesPerRun) was reached or an error interrupted it. What was fetched is safe; the next poll continues.',
  'in-use':
    'The server said another client has the mailbox open (IN-USE). Nothing is lost; the next poll tries again. If it persists, close other mail clients using POP3 on this mailbox.',
  'login-delay':
    'The server allows a login only every so often (LOGIN-DELAY). Nothing is lost; consider a larger pollEveryMinutes.',
  'lease-held': 'Another pophook run was polling this mailbox at the time; it fetched the mail.',
  error: 'The poll failed before fetching anything. Nothing was deleted from the server.',
};

const POLL_ERRORS: Record<string, string> = {
  POP3_AUTH_FAILED:
    'The server refused the login. Check the user name and the password secret (many providers need an app password), or run "pophook check".',
  POP3_CONNECT_FAILED:
    'pophook could not connect to the server. Check host and port, and that this machine can reach it (firewall, VPN).',
  POP3_TLS:
    'The TLS handshake failed or the certificate was not trusted. Check the host name; for a private CA set "ca" in the mailbox config.',
  POP3_PIN_MISMATCH:
    'The server certificate does not match pinSha256. If the server renewed its certificate, update the pin.',
  POP3_TIMEOUT: 'The server stopped answering. Usually temporary; the next poll tries again.',
  POP3_CONNECTION_CLOSED: 'The server closed the connection mid-session. Usually temporary.',
  POP3_STLS_UNAVAILABLE:
    'The server does not offer STLS, so pophook refused to send credentials. Use tls: implicit (port 995) if the server supports it.',
  POP3_INSECURE_AUTH_REFUSED:
    'pophook refused to send credentials without TLS. Enable TLS, or set allowInsecureAuth only for a local test server.',
  POP3_SYS_TEMP: 'The server reported a temporary problem (SYS/TEMP). The next poll tries again.',
  POP3_SYS_PERM:
    'The server reported a permanent problem with the mailbox (SYS/PERM). Contact the mail provider.',
  POP3_PROTOCOL: 'The server answered something that is not valid POP3. Check that the port is a POP3 port.',
  SECRET_:
    'A secret the mailbox needs (password, client secret) could not be read. Check the secret reference and the secrets file or Secrets Manager.',
  OAUTH_: 'The identity provider refused to issue a token. Run "pophook check" for the exact cause.',
  STATE_IO: 'The local state directory could not be written. Check permissions and free space.',
  ARCHIVE_WRITE_FAILED:
    'The archive could not be written. Check permissions, free space or the S3 bucket policy.',
};

/** One or two sentences on a poll: the outcome, then the error code's meaning when known. */
export function explainPoll(poll: Pick<PollRecord, 'outcome' | 'errorCode'>): string {
  const outcome = POLL_OUTCOMES[poll.outcome] ?? '';
  const code = poll.errorCode ? errorAdvice(poll.errorCode, POLL_ERRORS) : undefined;
  return code ? `${outcome} ${code}` : outcome;
}

const DELIVERY_ERRORS: Record<string, string> = {
  TIMEOUT: 'The endpoint did not answer in time (timeoutMs). It is retried on the schedule.',
  NETWORK_ERROR: 'The connection failed (refused, reset). Is the receiver running? It is retried.',
  DNS_FAILED: 'The endpoint host name did not resolve. Check the URL.',
  TLS_FAILED: 'The TLS handshake with the endpoint failed or its certificate was not trusted.',
  SSRF_BLOCKED:
    'The endpoint resolved to a private or loopback address, which is blocked. Set allowPrivateNetwork only for local testing.',
  HTTP_REDIRECT:
    'The endpoint answered with a redirect; webhooks do not follow redirects. Use the final URL.',
  HTTP_410:
    'The receiver answered 410 Gone, which disables the endpoint. Re-enable it once the receiver is fixed.',
  HTTP_429: 'The receiver is rate limiting (429). Retried after its Retry-After.',
  RETRIES_EXHAUSTED: 'Every retry on the schedule failed; the job was dead-lettered. Replay it when fixed.',
  ENDPOINT_DISABLED:
    'The endpoint is disabled (after a 410). Re-enable it on the Endpoints page, then replay.',
  ENDPOINT_DISABLED_IN_CONFIG: 'The endpoint has enabled: false in the config.',
  SECRET_: 'A signing secret could not be resolved, so nothing was sent. Check the secret reference.',
};

/** Plain words for a delivery attempt's error class, or undefined for a success. */
export function explainAttempt(attempt: Pick<DeliveryAttempt, 'outcome' | 'errorCode' | 'status'>): string {
  if (attempt.outcome === 'delivered') return 'Delivered (2xx).';
  const text = explainCode(attempt);
  // The same error on the last scheduled attempt: nothing retries it any more.
  return attempt.outcome === 'failed'
    ? text.replace(
        /\s*(?:It is retried|Retried|Usually temporary)[^.]*\.$/,
        ' No retries are left: replay once it is fixed.',
      )
    : text;
}

function explainCode(attempt: Pick<DeliveryAttempt, 'outcome' | 'errorCode' | 'status'>): string {
  const code = attempt.errorCode;
  if (code) {
    const known = errorAdvice(code, DELIVERY_ERRORS);
    if (known) return known;
    if (/^HTTP_5\d\d$/.test(code)) return 'The receiver failed (5xx). Retried on the schedule.';
    if (/^HTTP_4\d\d$/.test(code))
      return 'The receiver rejected the request (4xx). Check its logs (signature, payload size, auth).';
  }
  return attempt.outcome === 'failed'
    ? 'The delivery failed permanently.'
    : 'The attempt failed; it is retried.';
}

function errorAdvice(code: string, table: Record<string, string>): string | undefined {
  if (table[code]) return table[code];
  const prefix = Object.keys(table).find((k) => code.startsWith(k));
  return prefix ? table[prefix] : undefined;
}

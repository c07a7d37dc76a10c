/**
 * POP3 errors: one class, stable codes. Every error carries the command it answers (redacted: never a
 * password, digest or SASL blob) and the server's reply (sanitised, capped), so the poller can decide
 * "retry later" vs "fix the config" vs "alert" from `code`/`transient` alone (RFC 2449/3206 codes).
 */
import { PophookError, type PophookErrorOptions } from '../errors.js';
import { sanitizeForeignText } from '../sanitize.js';
import { MAX_ERROR_RESPONSE_CHARS } from './limits.js';

export type Pop3ErrorCode =
  | 'POP3_PROTOCOL'
  | 'POP3_TIMEOUT'
  | 'POP3_TLS'
  | 'POP3_STLS_INJECTION'
  | 'POP3_STLS_UNAVAILABLE'
  | 'POP3_INSECURE_AUTH_REFUSED'
  | 'POP3_AUTH_FAILED'
  | 'POP3_IN_USE'
  | 'POP3_LOGIN_DELAY'
  | 'POP3_SYS_TEMP'
  | 'POP3_SYS_PERM'
  | 'POP3_COMMAND_FAILED'
  | 'POP3_MESSAGE_TOO_LARGE'
  | 'POP3_LINE_TOO_LONG'
  | 'POP3_CONNECTION_CLOSED'
  | 'POP3_CONNECT_FAILED'
  | 'POP3_NOT_SUPPORTED'
  | 'POP3_USAGE';

/** Whether retrying later (with nothing changed) can help, per code. */
const TRANSIENT: Record<Pop3ErrorCode, boolean> = {
  // A misbehaving server may be fixed or be a one-off glitch (e.g. a desynced pipeline): try again.
  POP3_PROTOCOL: true,
  POP3_TIMEOUT: true,
  POP3_TLS: false,
  // An on-path attacker may come and go, but silently retrying would hide an attack: alert instead.
  POP3_STLS_INJECTION: false,
  POP3_STLS_UNAVAILABLE: false,
  POP3_INSECURE_AUTH_REFUSED: false,
  POP3_AUTH_FAILED: false,
  POP3_IN_USE: true,
  POP3_LOGIN_DELAY: true,
  POP3_SYS_TEMP: true,
  POP3_SYS_PERM: false,
  // A bare -ERR: usually one message (deleted by another client); the session goes on.
  POP3_COMMAND_FAILED: true,
  POP3_MESSAGE_TOO_LARGE: false,
  POP3_LINE_TOO_LONG: false,
  POP3_CONNECTION_CLOSED: true,
  POP3_CONNECT_FAILED: true,
  POP3_NOT_SUPPORTED: false,
  // The caller used the API wrongly (wrong state, bad argument): a bug to fix, not a retry.
  POP3_USAGE: false,
};

export interface Pop3ErrorOptions extends PophookErrorOptions {
  /** The command this error answers, already redacted (`PASS ***`). */
  command?: string;
  /** The server's reply line; sanitised and capped here. */
  response?: string | Buffer;
}

/** Any failure of the POP3 client. `command` and `response` are also in `details` (logged, serialised). */
export class Pop3Error extends PophookError {
  declare readonly code: Pop3ErrorCode;
  readonly command: string | undefined;
  readonly response: string | undefined;

  constructor(code: Pop3ErrorCode, message: string, options: Pop3ErrorOptions = {}) {
    const { command, response: raw, ...rest } = options;
    const response = raw === undefined ? undefined : sanitizeForeignText(raw, MAX_ERROR_RESPONSE_CHARS);
    const details: Record<string, unknown> = { ...rest.details };
    if (command !== undefined) details.command = command;
    if (response !== undefined) details.response = response;
    super(code, message, { ...rest, details }, TRANSIENT[code]);
    this.command = command;
    this.response = response;
  }
}

export function isPop3Error(err: unknown, code?: Pop3ErrorCode): err is Pop3Error {
  return err instanceof Pop3Error && (code === undefined || err.code === code);
}

/**
 * The command as it may appear in logs and errors: arguments that carry secrets become `***`.
 * `PASS x` -> `PASS ***`, `APOP user digest` -> `APOP user ***`, `AUTH PLAIN <b64>` -> `AUTH PLAIN ***`.
 */
export function redactCommand(line: string): string {
  const space = line.indexOf(' ');
  const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
  if (space < 0) return verb;
  if (verb === 'PASS') return 'PASS ***';
  if (verb === 'APOP' || verb === 'AUTH') {
    const second = line.indexOf(' ', space + 1);
    return second < 0 ? line : `${line.slice(0, second)} ***`;
  }
  return line;
}

/**
 * The RFC 2449 response code of an `-ERR [CODE/SUB] text` reply, upper-cased (servers send lowercase
 * ones too), or undefined. `text` is what follows `-ERR `.
 */
export function parseResponseCode(text: string): string | undefined {
  const m = /^\s*\[([^\]\s]{1,64})\]/.exec(text);
  return m?.[1]?.toUpperCase();
}

export interface ErrReplyContext {
  /** Redacted command. */
  command: string;
  /** The whole status line (`-ERR ...`), unsanitised; sanitised by the error. */
  response: string;
  /** The command was a login step (USER, PASS, APOP, AUTH). */
  auth: boolean;
  /** Server advertised AUTH-RESP-CODE: an uncoded -ERR on login is then NOT a credential failure. */
  authRespCode?: boolean;
  /** From CAPA, for the LOGIN-DELAY message. */
  loginDelaySeconds?: number;
  details?: Record<string, unknown>;
}

/** Maps an `-ERR` reply to a typed error by its RFC 2449/3206 response code (§1.5 of the research). */
export function errorFromErrReply(ctx: ErrReplyContext): Pop3Error {
  const text = ctx.response.replace(/^-ERR\s?/i, '');
  const code = parseResponseCode(text);
  const base = { command: ctx.command, response: ctx.response, details: { ...ctx.details } };
  if (code !== undefined) base.details.responseCode = code;
  const top = code?.split('/')[0];

  if (code === 'IN-USE') {
    return new Pop3Error(
      'POP3_IN_USE',
      'The mailbox is locked by another POP3 session ([IN-USE]); retry later.',
      base,
    );
  }
  if (code === 'LOGIN-DELAY') {
    const hint =
      ctx.loginDelaySeconds === undefined
        ? ''
        : ` The server asks for at least ${ctx.loginDelaySeconds} s between logins.`;
    return new Pop3Error(
      'POP3_LOGIN_DELAY',
      `The server refused a login this soon after the previous one ([LOGIN-DELAY]); poll this mailbox less often.${hint}`,
      {
        ...base,
        details: { ...base.details, loginDelaySeconds: ctx.loginDelaySeconds },
      },
    );
  }
  if (code === 'SYS/PERM') {
    return new Pop3Error(
      'POP3_SYS_PERM',
      'The server reported a permanent problem with this account ([SYS/PERM]); check the account with the mail provider. Polling should stop until it is fixed.',
      base,
    );
  }
  if (top === 'SYS') {
    // SYS/TEMP, or an unknown SYS/... sub-code: hierarchical codes degrade to their parent.
    return new Pop3Error(
      'POP3_SYS_TEMP',
      'The server reported a temporary problem ([SYS/TEMP]); retry later.',
      base,
    );
  }
  if (ctx.auth && (code === 'AUTH' || (code === undefined && !ctx.authRespCode))) {
    return new Pop3Error(
      'POP3_AUTH_FAILED',
      `The server rejected the login (${ctx.command.split(' ')[0]}). Fix the user name and password (or OAuth token) for this mailbox; retrying will not help.`,
      base,
    );
  }
  if (ctx.auth) {
    // AUTH-RESP-CODE servers tag credential failures with [AUTH]; an untagged -ERR is something else.
    return new Pop3Error(
      'POP3_COMMAND_FAILED',
      `The server refused the login (${ctx.command.split(' ')[0]}) for a reason other than the credentials; retry later.`,
      base,
    );
  }
  return new Pop3Error('POP3_COMMAND_FAILED', `The server answered -ERR to ${ctx.command}.`, base);
}

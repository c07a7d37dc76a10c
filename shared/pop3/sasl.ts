/**
 * SASL for POP3 AUTH (RFC 5034): PLAIN (RFC 4616), XOAUTH2 (Google/Microsoft) and OAUTHBEARER
 * (RFC 7628). The initial response goes inline when the whole command line fits RFC 2449's 255
 * octets, else after the server's `+` (Microsoft's POP3 requires the two-step form for OAuth tokens).
 * A `+ <base64 JSON>` after our response is an OAuth error: we decode it, answer so the server can
 * finish (an unanswered challenge hangs the session), and attach it to the POP3_AUTH_FAILED error.
 */
import { ConfigError } from '../errors.js';
import { sanitizeForeignText } from '../sanitize.js';
import { MAX_COMMAND_LINE_BYTES, MAX_ERROR_RESPONSE_CHARS, MAX_SASL_CONTINUATIONS } from './limits.js';

export type SaslMechanism = 'PLAIN' | 'XOAUTH2' | 'OAUTHBEARER';

/** RFC 4616: `authzid NUL authcid NUL passwd`, with an empty authzid. */
export function plainResponse(user: string, password: string): string {
  if (user.includes('\0') || password.includes('\0')) {
    throw new ConfigError(
      'The POP3 user name or password contains a NUL character, which SASL PLAIN cannot carry.',
    );
  }
  return Buffer.from(`\0${user}\0${password}`, 'utf8').toString('base64');
}

/** XOAUTH2: `user=U ^A auth=Bearer T ^A ^A`. */
export function xoauth2Response(user: string, token: string): string {
  assertNoCtrlA(user, token);
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`, 'utf8').toString('base64');
}

/** RFC 7628 §3.1: `n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A`; `,` and `=` in U escaped (RFC 5801). */
export function oauthbearerResponse(user: string, host: string, port: number, token: string): string {
  assertNoCtrlA(user, token);
  const saslname = user.replace(/=/g, '=3D').replace(/,/g, '=2C');
  const gs2 = `n,a=${saslname},`;
  return Buffer.from(
    `${gs2}\x01host=${host}\x01port=${port}\x01auth=Bearer ${token}\x01\x01`,
    'utf8',
  ).toString('base64');
}

function assertNoCtrlA(user: string, token: string): void {
  if (/[\x00-\x1f]/.test(user) || /[\x00-\x20]/.test(token)) {
    throw new ConfigError('The POP3 user name or OAuth access token contains control characters or spaces.');
  }
}

/**
 * Decodes an error challenge (`+ <base64 JSON>`) into sanitised data for error details: the JSON
 * object with each string value sanitised, or the sanitised text when it is not JSON.
 */
export function decodeChallenge(base64: string): unknown {
  const text = Buffer.from(base64.trim(), 'base64').toString('utf8');
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(parsed).slice(0, 16)) {
        out[sanitizeForeignText(k, 64)] =
          typeof v === 'string'
            ? sanitizeForeignText(v, MAX_ERROR_RESPONSE_CHARS)
            : typeof v === 'number'
              ? v
              : null;
      }
      return out;
    }
  } catch {
    // not JSON: keep the text
  }
  return sanitizeForeignText(text, MAX_ERROR_RESPONSE_CHARS);
}

/** The AUTH exchange for one mechanism, as the connection layer drives it. */
export interface SaslExchange {
  /** The command line: `AUTH MECH` or `AUTH MECH <initial response>`. */
  line: string;
  /** Answers each `+` continuation line (the whole status line) with the next client line. */
  onContinuation(statusLine: string): string;
  /** The decoded error challenge, once the server sent one. */
  readonly challenge: unknown;
  /** Whether the initial response went inline. */
  readonly inline: boolean;
}

/** Plans an AUTH exchange: inline initial response when it fits 255 octets, else two-step. */
export function saslExchange(mechanism: SaslMechanism, initialResponse: string): SaslExchange {
  const inlineLine = `AUTH ${mechanism} ${initialResponse}`;
  const inline = Buffer.byteLength(inlineLine) + 2 <= MAX_COMMAND_LINE_BYTES;
  let sent = inline;
  let continuations = 0;
  let challenge: unknown;
  return {
    line: inline ? inlineLine : `AUTH ${mechanism}`,
    inline,
    get challenge() {
      return challenge;
    },
    onContinuation(statusLine: string): string {
      continuations++;
      // A server that keeps challenging gets a cancel (`*`, RFC 5034 §4), which must end in -ERR.
      if (continuations > MAX_SASL_CONTINUATIONS) return '*';
      if (!sent) {
        sent = true;
        return initialResponse;
      }
      challenge = decodeChallenge(statusLine.slice(1));
      // RFC 7628 §3.2.3: OAUTHBEARER answers an error with a single %x01; XOAUTH2 with an empty line.
      return mechanism === 'OAUTHBEARER' ? 'AQ==' : '';
    },
  };
}

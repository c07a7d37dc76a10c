/**
 * CAPA (RFC 2449 §5) parsing. Tags are case-insensitive (a server answering `top` broke Thunderbird's
 * headers-only mode, Mozilla bug 1783290), unknown tags are kept but ignored, and a server that
 * answers CAPA with -ERR gets conservative assumptions instead of a failure.
 */
import { sanitizeForeignText } from '../sanitize.js';
import type { Pop3Capabilities } from './types.js';

/** A CAPA listing larger than this is hostile: EAST's worst case (~70 mechanisms) is under 2 KiB. */
export const MAX_CAPA_BYTES = 64 * 1024;
/** Longest capability token we keep (tags and arguments are short words). */
const MAX_TOKEN_CHARS = 64;

/**
 * What we assume when CAPA itself fails (pre-RFC 2449 server): USER/PASS works, nothing is
 * pipelined, and UIDL/TOP are probed by trying them.
 */
export const FALLBACK_CAPABILITIES: Pop3Capabilities = Object.freeze({
  raw: new Map<string, readonly string[]>(),
  sasl: [],
  pipelining: false,
  uidl: false,
  top: false,
  user: true,
  stls: false,
  respCodes: false,
  advertised: false,
});

/** Parses a CAPA body (the lines between `+OK` and the terminator). */
export function parseCapabilities(body: Buffer | string): Pop3Capabilities {
  const text = typeof body === 'string' ? body : body.toString('latin1');
  const raw = new Map<string, string[]>();
  for (const line of text.split(/\r?\n/)) {
    const tokens = line
      .trim()
      .split(/[ \t]+/)
      .filter((t) => t.length > 0)
      .map((t) => sanitizeForeignText(t, MAX_TOKEN_CHARS));
    const [tag, ...args] = tokens;
    if (tag === undefined) continue;
    const name = tag.toUpperCase();
    raw.set(name, [...(raw.get(name) ?? []), ...args]);
  }
  const has = (name: string) => raw.has(name);
  const first = (name: string) => raw.get(name)?.[0];

  const loginDelay = first('LOGIN-DELAY');
  const expire = first('EXPIRE')?.toUpperCase();
  return {
    raw,
    sasl: [...new Set((raw.get('SASL') ?? []).map((m) => m.toUpperCase()))],
    pipelining: has('PIPELINING'),
    uidl: has('UIDL'),
    top: has('TOP'),
    user: has('USER'),
    stls: has('STLS'),
    respCodes: has('RESP-CODES'),
    loginDelaySeconds:
      loginDelay !== undefined && /^\d{1,9}$/.test(loginDelay) ? Number(loginDelay) : undefined,
    expire:
      expire === 'NEVER'
        ? 'NEVER'
        : expire !== undefined && /^\d{1,9}$/.test(expire)
          ? Number(expire)
          : undefined,
    advertised: true,
  };
}

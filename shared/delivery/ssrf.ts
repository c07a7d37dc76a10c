/**
 * SSRF policy for webhook targets (user-configured URLs).
 *
 * Rule (protocol-and-security.md §2.4, §3.1): never classify strings. The WHATWG URL parser normalises
 * odd numeric hosts (`2130706433`, `0x7f.1`, `127.1`, `017700000001` all become `127.0.0.1`; `[...]`
 * around a name is a parse error), then every address is parsed to bytes with ipaddr.js and checked
 * against an allow-list: only globally routable unicast passes. A name is resolved (all A/AAAA), and
 * if ANY address is blocked the whole host is refused (a name answering one public and one private
 * address is an attack, not a load balancer). The check runs inside the socket's `lookup`, so the
 * address we vetted is the address we connect to: DNS rebinding between check and connect is
 * impossible, and TLS SNI / Host still carry the hostname. A vetted answer may be reused for new
 * connections for a few seconds (VettedLookupCache): it is still an address that passed the check, and
 * the socket still connects to exactly that address; refusals and failures are never reused.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { SsrfBlockedError } from '../errors.js';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a hostname to every address (A and AAAA). Injected in tests. */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export interface SsrfPolicy {
  /** Allow `http:` URLs (local testing only). */
  allowHttp: boolean;
  /** Allow loopback, private, link-local and other non-public addresses (local testing only). */
  allowPrivateNetwork: boolean;
}

export const systemResolver: Resolver = async (hostname) => {
  const results = await dnsLookup(hostname, { all: true, verbatim: true });
  return results.map((r) => ({ address: r.address, family: r.family === 6 ? 6 : 4 }));
};

export type AddressVerdict = { allowed: true } | { allowed: false; range: string };

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');

function checkV4(addr: ipaddr.IPv4): AddressVerdict {
  // ipaddr.js names every special-purpose block (private, loopback, linkLocal, carrierGradeNat,
  // unspecified = 0/8, broadcast, multicast, reserved = 192.0.0/24, documentation, 198.18/15, 240/4,
  // as112, amt); only what is left ('unicast') is publicly routable.
  const range = addr.range();
  return range === 'unicast' ? { allowed: true } : { allowed: false, range: `ipv4-${range}` };
}

function embeddedV4(addr: ipaddr.IPv6, firstByte: number): ipaddr.IPv4 {
  const b = addr.toByteArray();
  return new ipaddr.IPv4([
    b[firstByte] ?? 0,
    b[firstByte + 1] ?? 0,
    b[firstByte + 2] ?? 0,
    b[firstByte + 3] ?? 0,
  ]);
}

function checkV6(addr: ipaddr.IPv6): AddressVerdict {
  // IPv4-mapped (::ffff:a.b.c.d) is how a v4 address reaches a dual-stack socket: judge the v4.
  if (addr.isIPv4MappedAddress()) return checkV4(addr.toIPv4Address());
  // NAT64 (RFC 6052) and 6to4 (RFC 3056) carry a v4 destination inside; judge that destination. A
  // DNS64 resolver legitimately synthesises 64:ff9b::<public v4>, so those pass.
  if (addr.match(NAT64_WELL_KNOWN)) {
    const verdict = checkV4(embeddedV4(addr, 12));
    return verdict.allowed ? verdict : { allowed: false, range: `nat64-${verdict.range}` };
  }
  const range = addr.range();
  if (range === '6to4') {
    const verdict = checkV4(embeddedV4(addr, 2));
    return verdict.allowed ? verdict : { allowed: false, range: `6to4-${verdict.range}` };
  }
  // Everything else must be plain global unicast. Teredo (2001::/32, obsolete) is refused outright
  // rather than decoded: its client address is obfuscated and no webhook receiver needs it. Outside
  // 2000::/3 lie loopback, unspecified, IPv4-compatible ::/96, ULA fc00::/7, link-local, site-local,
  // multicast, discard and the local-use NAT64 prefix: all refused.
  if (range !== 'unicast') return { allowed: false, range: `ipv6-${range}` };
  if (!addr.match(GLOBAL_UNICAST_V6)) return { allowed: false, range: 'ipv6-not-global' };
  return { allowed: true };
}

/**
 * Whether a literal address is publicly routable. Accepts any form ipaddr.js parses (including legacy
 * IPv4 like `0x7f.1`) and IPv6 with a zone; anything unparseable is refused.
 */
export function checkAddress(text: string): AddressVerdict {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(bare);
  } catch {
    return { allowed: false, range: 'unparseable' };
  }
  return addr.kind() === 'ipv4' ? checkV4(addr as ipaddr.IPv4) : checkV6(addr as ipaddr.IPv6);
}

/** True when `host` (a URL hostname, brackets allowed) is an IP literal rather than a name. */
export function isIpLiteral(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return isIP(bare) !== 0;
}

/**
 * Static checks on a webhook URL: scheme, credentials, and (for IP literals) the address. Names are
 * checked again at connect time by `guardedLookup`. Returns the parsed URL.
 */
export function checkTargetUrl(rawUrl: string, policy: SsrfPolicy): URL {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new SsrfBlockedError('Webhook URL is not a valid absolute URL; fix the endpoint url.', {
      details: { reason: 'invalid-url' },
    });
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && policy.allowHttp)) {
    throw new SsrfBlockedError(
      `Webhook URL scheme ${url.protocol} is not allowed; use https:// (allowHttp is for local testing only).`,
      { details: { reason: 'scheme', scheme: url.protocol } },
    );
  }
  if (url.username || url.password) {
    // Credentials in a URL end up in logs and configs in cleartext (invariant 4).
    throw new SsrfBlockedError(
      'Webhook URL contains credentials; remove user:password@ and authenticate with the signature instead.',
      { details: { reason: 'credentials' } },
    );
  }
  if (!policy.allowPrivateNetwork && isIpLiteral(url.hostname)) {
    const verdict = checkAddress(url.hostname);
    if (!verdict.allowed) throw blocked(url.hostname, verdict.range);
  }
  return url;
}

function blocked(host: string, range: string): SsrfBlockedError {
  return new SsrfBlockedError(
    `Webhook host ${host} resolves to a non-public address (${range}); webhooks go only to public addresses. Set allowPrivateNetwork: true only for local testing.`,
    { details: { reason: 'address', host, range } },
  );
}

/**
 * Resolves `hostname` and vets every address. Throws SsrfBlockedError if any address is blocked (or
 * none came back). With allowPrivateNetwork, returns the addresses unchecked.
 */
export async function resolveAndCheck(
  hostname: string,
  policy: Pick<SsrfPolicy, 'allowPrivateNetwork'>,
  resolver: Resolver,
): Promise<ResolvedAddress[]> {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (isIP(host) !== 0) {
    if (!policy.allowPrivateNetwork) {
      const verdict = checkAddress(host);
      if (!verdict.allowed) throw blocked(host, verdict.range);
    }
    return [{ address: host, family: isIP(host) === 6 ? 6 : 4 }];
  }
  const addresses = await resolver(host);
  if (addresses.length === 0) {
    throw new SsrfBlockedError(`Webhook host ${host} did not resolve to any address.`, {
      transient: true,
      details: { reason: 'no-address', host },
    });
  }
  if (!policy.allowPrivateNetwork) {
    for (const a of addresses) {
      const verdict = checkAddress(a.address);
      if (!verdict.allowed) throw blocked(host, verdict.range);
    }
  }
  return addresses;
}

/**
 * How long a vetted DNS answer is reused for new connections to the same host. Keep-alive makes new
 * connections rare, but a receiver that closes every connection would otherwise cost a resolution per
 * webhook. Short, so a receiver moving to new addresses is followed quickly; safe, because only answers
 * that passed the check are kept (a rebinding to a private address is seen, and refused, once this
 * expires, and until then we keep connecting to the public address we vetted).
 */
export const VETTED_LOOKUP_TTL_MS = 10_000;
/** Hosts remembered per cache (one per endpoint pool, which connects to one host): a bound, not a need. */
export const VETTED_LOOKUP_MAX_HOSTS = 16;

/** Reuses vetted answers of `resolveAndCheck` for VETTED_LOOKUP_TTL_MS; concurrent lookups share one. */
export class VettedLookupCache {
  private readonly entries = new Map<string, { at: number; addresses: Promise<ResolvedAddress[]> }>();

  constructor(
    private readonly now: () => number = Date.now,
    readonly ttlMs = VETTED_LOOKUP_TTL_MS,
  ) {}

  resolve(
    hostname: string,
    policy: Pick<SsrfPolicy, 'allowPrivateNetwork'>,
    resolver: Resolver,
  ): Promise<ResolvedAddress[]> {
    const now = this.now();
    const key = `${policy.allowPrivateNetwork ? 'p' : 's'}:${hostname}`;
    const hit = this.entries.get(key);
    if (hit && now - hit.at < this.ttlMs && now >= hit.at) return hit.addresses;
    if (!hit && this.entries.size >= VETTED_LOOKUP_MAX_HOSTS) this.entries.clear();
    const entry = { at: now, addresses: resolveAndCheck(hostname, policy, resolver) };
    this.entries.set(key, entry);
    // A refusal or a DNS failure is never reused: the next connection asks again.
    entry.addresses.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    return entry.addresses;
  }
}

/**
 * A `net`/`tls` `lookup` function that resolves through `resolver`, applies the policy, and hands the
 * socket only vetted addresses. undici passes it through `Agent({ connect: { lookup } })`, so the vetted
 * IP is the one connected to while SNI and Host keep the hostname. With `cache`, a vetted answer is
 * reused for a few seconds (see VettedLookupCache); without, every connection resolves and checks.
 */
export function guardedLookup(
  policy: Pick<SsrfPolicy, 'allowPrivateNetwork'>,
  resolver: Resolver,
  cache?: VettedLookupCache,
): LookupFunction {
  return (hostname, options, callback) => {
    const pending = cache
      ? cache.resolve(hostname, policy, resolver)
      : resolveAndCheck(hostname, policy, resolver);
    pending.then(
      (addresses) => {
        const wanted = options.family === 4 || options.family === 6 ? options.family : 0;
        const usable = wanted ? addresses.filter((a) => a.family === wanted) : addresses.slice();
        if (usable.length === 0) {
          const err = Object.assign(new Error(`No IPv${wanted} address for ${hostname}`), {
            code: 'ENOTFOUND',
          });
          callback(err, '', 0);
          return;
        }
        if (options.all) {
          (callback as unknown as (e: null, a: ResolvedAddress[]) => void)(null, usable);
        } else {
          const first = usable[0] as ResolvedAddress;
          callback(null, first.address, first.family);
        }
      },
      (err: Error) => callback(err as NodeJS.ErrnoException, '', 0),
    );
  };
}

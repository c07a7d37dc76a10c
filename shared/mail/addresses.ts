/**
 * Address headers (From, To, Cc, Bcc, Reply-To) as flat `{ address, name }` lists. Parsing is
 * mailparser's `parseAddressHeader` (nodemailer's addressparser, patched for the ReDoS, nested-group
 * and encoded-word fabrication advisories); groups are flattened into their members. Anything that is
 * not a plausible `local@domain` is kept as a name with `address: ''`, so receivers never route mail
 * to a string the sender made up, yet still see what was written (the raw header is in `headers`).
 */
import { parseAddressHeader } from 'mailparser';
import type { Address } from './event.js';
import { toSafeString } from './headers.js';
import { MAX_ADDRESSES_PER_FIELD } from './limits.js';

// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, so no real address is longer.
const MAX_ADDRESS_CHARS = 320;
// Display names are free text; a few hundred characters is already abuse.
const MAX_NAME_CHARS = 512;
// A domain (or domain literal) never contains whitespace, quotes, angle brackets, commas or parentheses.
const BAD_DOMAIN_CHARS = /[\s"<>(),;:\\@]/;

/** Parses every raw (unfolded, undecoded) value of one address header into one flat list. */
export function parseAddressList(rawValues: readonly string[], max = MAX_ADDRESSES_PER_FIELD): Address[] {
  const out: Address[] = [];
  for (const raw of rawValues) {
    let parsed: { address?: string; name?: string }[];
    try {
      parsed = plainMailboxes(raw) ?? parseAddressHeader(raw, { flatten: true }).value;
    } catch {
      // addressparser should never throw; if it does the header stays visible in `headers`.
      parsed = [];
    }
    for (const entry of parsed) {
      const address = normaliseAddress(entry.address ?? '', entry.name ?? '');
      if (address) out.push(address);
      if (out.length >= max) return out;
    }
  }
  return out;
}

// The plainest address forms, which nearly every header uses: `a@b.c`, `<a@b.c>`, `Name <a@b.c>` and
// `"Name" <a@b.c>`, comma-separated. Names are words of letters, digits and _ ' . - with single
// spaces; addresses dot-atoms of letters, digits and _ + - with no punycode. For these the hardened
// addressparser (~10 us a call) returns exactly the parts as written (addresses-plain.test proves it).
// No two parts of the pattern can match the same character, so it runs in linear time.
const PLAIN_NAME = "[A-Za-z0-9_'.-]+(?: [A-Za-z0-9_'.-]+)*";
const PLAIN_ADDRESS = '[A-Za-z0-9_+-]+(?:\\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)+';
const PLAIN_MAILBOX = new RegExp(
  `^(?:(${PLAIN_ADDRESS})|<(${PLAIN_ADDRESS})>|(?:"(${PLAIN_NAME})"|(${PLAIN_NAME}))[ \\t]*<(${PLAIN_ADDRESS})>)$`,
);
// Why: a mailbox longer than an RFC 5322 line (998 octets) is not plain; addressparser takes it.
const MAX_PLAIN_MAILBOX_CHARS = 998;

/**
 * What `parseAddressHeader(raw, { flatten: true }).value` gives for a value made only of the plainest
 * forms (see PLAIN_MAILBOX), without running addressparser; undefined for anything else.
 */
export function plainMailboxes(raw: string): { address: string; name: string }[] | undefined {
  if (raw.includes('xn--')) return undefined;
  const out: { address: string; name: string }[] = [];
  for (const part of raw.split(',')) {
    const trimmed = trimSpaceAndTab(part);
    if (trimmed.length > MAX_PLAIN_MAILBOX_CHARS) return undefined;
    const match = PLAIN_MAILBOX.exec(trimmed);
    if (!match) return undefined;
    out.push({ address: match[1] ?? match[2] ?? match[5] ?? '', name: match[3] ?? match[4] ?? '' });
  }
  return out;
}

/** Strips SP and HTAB at both ends (a loop: the regex version is quadratic on long runs of blanks). */
function trimSpaceAndTab(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text.charCodeAt(start) === 0x20 || text.charCodeAt(start) === 0x09)) start += 1;
  while (end > start && (text.charCodeAt(end - 1) === 0x20 || text.charCodeAt(end - 1) === 0x09)) end -= 1;
  return text.slice(start, end);
}

function normaliseAddress(rawAddress: string, rawName: string): Address | undefined {
  const address = toSafeString(rawAddress.trim(), { singleLine: true, maxChars: MAX_ADDRESS_CHARS + 1 });
  const name = toSafeString(rawName.trim(), { singleLine: true, maxChars: MAX_NAME_CHARS });
  if (isPlausibleAddress(address)) return { address, name };
  // Invalid: keep what was written as the name, never as an address.
  const fallbackName = name || address.slice(0, MAX_NAME_CHARS);
  return fallbackName ? { address: '', name: fallbackName } : undefined;
}

/** `local@domain` with a non-empty local part and a domain free of characters a domain cannot hold. */
export function isPlausibleAddress(address: string): boolean {
  if (address.length === 0 || address.length > MAX_ADDRESS_CHARS) return false;
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (BAD_DOMAIN_CHARS.test(domain) || domain.startsWith('.') || domain.endsWith('.')) return false;
  // A quoted local part may hold anything; an unquoted one no whitespace.
  if (local.startsWith('"') && local.endsWith('"') && local.length >= 2) return true;
  return !/[\s"<>]/.test(local) && !local.includes('@');
}

/**
 * Property tests that the per-module suites do not already have (they cover: framer round-trip under
 * random chunking, wire-encoder round-trip, private-v4 and embedded-v4 SSRF verdicts, sign/verify
 * round-trip). Added here:
 *   - framer: arbitrary bytes never raise anything but a typed Pop3Error, never emit more than the
 *     limits allow, and stop after a failure; streaming output is always a prefix of the final body;
 *     maxBytes is exact.
 *   - SSRF: the RFC 6890 special-purpose blocks the existing properties do not draw from (v4 and v6);
 *     every numeric spelling of an address in a URL (decimal, hex, octal, short forms) is judged
 *     exactly like its dotted form, so no encoding is a bypass and none over-blocks.
 *   - signatures: the exact bytes are signed (binary bodies against an independent HMAC; text against
 *     the reference library); any change to body, id or timestamp breaks verification; every rotated secret verifies alone, others never;
 *     malformed secrets always fail typed without echoing the secret.
 */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { parseSecret, signPayload, webhookHeaders } from '../../shared/delivery/sign.js';
import { checkAddress, checkTargetUrl } from '../../shared/delivery/ssrf.js';
import { SecretError, SsrfBlockedError } from '../../shared/errors.js';
import { isPop3Error } from '../../shared/pop3/errors.js';
import { type FrameExpectation, Pop3Framer } from '../../shared/pop3/framer.js';
import { multilineBody } from '../fixtures/fake-pop3.js';

// ---- POP3 framer -------------------------------------------------------------------------------

interface Exp extends FrameExpectation {
  id: number;
}

const LIMITS = { maxStatusLineBytes: 64, maxDataLineBytes: 256 };

/** Splits `buf` at the given cut points (taken modulo its length). */
function chunk(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length ? c % buf.length : 0)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) out.push(buf.subarray(from, p));
    from = Math.max(from, p);
  }
  out.push(buf.subarray(from));
  return out;
}

describe('POP3 framer under arbitrary input (property)', () => {
  const wireish = fc
    .array(
      fc.oneof(
        fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
        ...['+OK', '-ERR', '+ ', '\r\n', '.\r\n', '\r\n.\r\n', '..', '\r', '\n', '+OK x\r\n'].map((s) =>
          fc.constant(Buffer.from(s, 'latin1')),
        ),
      ),
      { maxLength: 30 },
    )
    .map((parts) => Buffer.concat(parts));

  it('throws only typed Pop3Errors, respects every limit, and stops after failing', () => {
    fc.assert(
      fc.property(
        wireish,
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.array(fc.record({ multiline: fc.boolean(), maxBytes: fc.integer({ min: 1, max: 300 }) }), {
          minLength: 1,
          maxLength: 5,
        }),
        (wire, cuts, exps) => {
          const bodies = new Map<number, number>();
          let stopped = false;
          let after = 0;
          const framer = new Pop3Framer<Exp>(
            {
              status: (_e, _k, line) => {
                if (stopped) after++;
                expect(line.length).toBeLessThanOrEqual(LIMITS.maxStatusLineBytes);
              },
              body: (e, c) => {
                if (stopped) after++;
                bodies.set(e.id, (bodies.get(e.id) ?? 0) + c.length);
                expect(bodies.get(e.id)).toBeLessThanOrEqual(e.maxBytes);
              },
              end: () => {
                if (stopped) after++;
              },
              unsolicited: () => {
                stopped = true;
              },
            },
            LIMITS,
          );
          exps.forEach((e, id) => {
            framer.expect({ ...e, id });
          });
          for (const piece of chunk(wire, cuts)) {
            try {
              framer.push(piece);
            } catch (err) {
              expect(isPop3Error(err)).toBe(true);
              stopped = true;
              break;
            }
            if (stopped) break;
          }
          expect(after).toBe(0);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('what it has emitted is always a prefix of the final body, whatever the chunking', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 20 }), (raw, cuts) => {
        const body = Buffer.from(raw);
        const want =
          body.length === 0 || body.subarray(-2).equals(Buffer.from('\r\n'))
            ? body
            : Buffer.concat([body, Buffer.from('\r\n')]);
        const wire = Buffer.concat([Buffer.from('+OK\r\n'), multilineBody(body)]);
        const got: Buffer[] = [];
        let ended = false;
        const framer = new Pop3Framer<Exp>(
          {
            status: () => {},
            body: (_e, c) => {
              got.push(Buffer.from(c));
            },
            end: () => {
              ended = true;
            },
            unsolicited: () => {
              throw new Error('unsolicited');
            },
          },
          { maxStatusLineBytes: 64, maxDataLineBytes: 1 << 20 },
        );
        framer.expect({ id: 0, multiline: true, maxBytes: 1 << 20 });
        for (const piece of chunk(wire, cuts)) {
          framer.push(piece);
          const sofar = Buffer.concat(got);
          expect(want.subarray(0, sofar.length).equals(sofar)).toBe(true);
        }
        expect(ended).toBe(true);
        expect(Buffer.concat(got).equals(want)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('maxBytes is exact: a body of L bytes passes when L <= max, fails typed when L > max', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 600 }), fc.integer({ min: 1, max: 600 }), (len, max) => {
        const body = Buffer.alloc(len, 0x61);
        const lines = Buffer.concat([body, Buffer.from('\r\n')]); // the server ends it with CRLF
        const wire = Buffer.concat([Buffer.from('+OK\r\n'), multilineBody(lines)]);
        let emitted = 0;
        let ended = false;
        const framer = new Pop3Framer<Exp>(
          {
            status: () => {},
            body: (_e, c) => {
              emitted += c.length;
            },
            end: () => {
              ended = true;
            },
            unsolicited: () => {},
          },
          { maxStatusLineBytes: 64, maxDataLineBytes: 1 << 20 },
        );
        framer.expect({ id: 0, multiline: true, maxBytes: max });
        let code: string | undefined;
        try {
          framer.push(wire);
        } catch (err) {
          code = isPop3Error(err) ? err.code : 'untyped';
        }
        if (lines.length <= max) {
          expect(code).toBeUndefined();
          expect(ended).toBe(true);
        } else {
          expect(code).toBe('POP3_MESSAGE_TOO_LARGE');
          expect(emitted).toBeLessThanOrEqual(max);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

// ---- SSRF --------------------------------------------------------------------------------------

const octet = fc.integer({ min: 0, max: 255 });
/** An address drawn uniformly from a v4 CIDR. */
function inV4(cidr: string) {
  const [base = '', bitsText = '32'] = cidr.split('/');
  const bits = Number(bitsText);
  const start = base.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  return fc.integer({ min: 0, max: 2 ** (32 - bits) - 1 }).map((off) => {
    const n = start + off;
    return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
  });
}
/** An address in a v6 prefix (prefix given as its leading hextets, prefix length a multiple of 4). */
function inV6(prefix: string, bits: number) {
  const head = prefix
    .split(':')
    .map((h) => h.padStart(4, '0'))
    .join('');
  const fixed = head.slice(0, bits / 4);
  return fc
    .array(fc.integer({ min: 0, max: 15 }), { minLength: 32 - fixed.length, maxLength: 32 - fixed.length })
    .map((nibbles) => {
      const hex = fixed + nibbles.map((n) => n.toString(16)).join('');
      return (hex.match(/.{4}/g) ?? []).join(':');
    });
}

/** RFC 6890 / IANA special-purpose blocks not drawn from by test/shared/delivery/ssrf.test.ts. */
const SPECIAL_V4 = [
  '192.0.0.0/24',
  '192.0.2.0/24',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4',
  '240.0.0.0/4',
  '255.255.255.255/32',
];
const SPECIAL_V6: Array<[string, number]> = [
  ['0000:0000:0000:0000:0000:0000:0000:0001', 128],
  ['fc00', 7 + 1], // fc00::/7 = fc00::/8 and fd00::/8
  ['fd00', 8],
  ['fe80', 12], // inside fe80::/10
  ['fec0', 12], // site-local, inside fec0::/10
  ['ff00', 8],
  ['2001:0db8', 32],
  ['2001:0000', 32], // Teredo
  ['0100:0000:0000:0000', 64], // discard-only
  ['0064:ff9b:0001', 48], // local-use NAT64
];

/** Numeric spellings the WHATWG URL parser accepts for an IPv4 host. */
function spellings(a: number, b: number, c: number, d: number): string[] {
  const n = ((a * 256 + b) * 256 + c) * 256 + d;
  return [
    `${a}.${b}.${c}.${d}`,
    String(n),
    `0x${n.toString(16)}`,
    `0${n.toString(8)}`,
    [a, b, c, d].map((o) => `0x${o.toString(16)}`).join('.'),
    [a, b, c, d].map((o) => `0${o.toString(8)}`).join('.'),
    `${a}.${(b << 16) | (c << 8) | d}`,
    `${a}.${b}.${(c << 8) | d}`,
    `[::ffff:${a}.${b}.${c}.${d}]`,
  ];
}

function urlVerdict(host: string): boolean {
  try {
    checkTargetUrl(`https://${host}/hook`, { allowHttp: false, allowPrivateNetwork: false });
    return true;
  } catch (err) {
    expect(err).toBeInstanceOf(SsrfBlockedError);
    return false;
  }
}

describe('SSRF address checks (property)', () => {
  for (const cidr of SPECIAL_V4) {
    it(`blocks every address in ${cidr}, in every numeric spelling`, () => {
      fc.assert(
        fc.property(inV4(cidr), (ip) => {
          expect(checkAddress(ip).allowed).toBe(false);
          const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number];
          for (const host of spellings(a, b, c, d)) expect(urlVerdict(host)).toBe(false);
        }),
        { numRuns: 100 },
      );
    });
  }

  for (const [prefix, bits] of SPECIAL_V6) {
    it(`blocks every address in ${prefix}::/${bits} (bare and bracketed in a URL)`, () => {
      fc.assert(
        fc.property(inV6(prefix, bits), (ip) => {
          expect(checkAddress(ip).allowed).toBe(false);
          expect(urlVerdict(`[${ip}]`)).toBe(false);
        }),
        { numRuns: 100 },
      );
    });
  }

  it('judges every numeric spelling of any v4 address exactly like its dotted form', () => {
    fc.assert(
      fc.property(octet, octet, octet, octet, (a, b, c, d) => {
        const dotted = checkAddress(`${a}.${b}.${c}.${d}`).allowed;
        for (const host of spellings(a, b, c, d)) expect([host, urlVerdict(host)]).toEqual([host, dotted]);
      }),
      { numRuns: 1500 },
    );
  });

  it('allows public unicast (no over-blocking): addresses in well-known public /8s', () => {
    fc.assert(
      fc.property(fc.constantFrom(8, 9, 23, 34, 52, 85, 151, 185, 212), octet, octet, octet, (a, b, c, d) => {
        expect(checkAddress(`${a}.${b}.${c}.${d}`)).toEqual({ allowed: true });
        expect(urlVerdict(`${a}.${b}.${c}.${d}`)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

// ---- Signatures --------------------------------------------------------------------------------

const secretArb = fc
  .uint8Array({ minLength: 24, maxLength: 64 })
  .map((k) => `whsec_${Buffer.from(k).toString('base64')}`);
const idArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,60}$/);
const tsArb = fc.integer({ min: 1_000_000_000, max: 4_000_000_000 });

/** The spec's v1 signature computed independently: HMAC-SHA256 over `id.timestamp.` and the exact bytes. */
function specSign(secret: string, id: string, ts: number, body: Buffer): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64')}`;
}

describe('Standard Webhooks signatures (property)', () => {
  it('signs the exact bytes, binary included (independent HMAC), and matches the reference library', () => {
    fc.assert(
      fc.property(
        secretArb,
        idArb,
        tsArb,
        fc.uint8Array({ maxLength: 300 }),
        fc.string({ unit: 'binary', maxLength: 200 }),
        (secret, id, ts, raw, text) => {
          const body = Buffer.from(raw);
          expect(signPayload({ id, timestamp: ts, body, secrets: [secret] })).toBe(
            specSign(secret, id, ts, body),
          );
          // The reference library decodes bodies as UTF-8, so compare with it on text bodies.
          expect(signPayload({ id, timestamp: ts, body: text, secrets: [secret] })).toBe(
            new Webhook(secret).sign(id, new Date(ts * 1000), text),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('any change to the body, the id or the timestamp fails verification', () => {
    fc.assert(
      fc.property(
        secretArb,
        idArb,
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 200 }),
        fc.nat(),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 3 }),
        (secret, id, text, at, insert) => {
          const ts = Math.floor(Date.now() / 1000);
          const body = JSON.stringify({ text });
          const headers = webhookHeaders({ id, timestamp: ts, body, secrets: [secret] });
          const verify = (b: string, h: Record<string, string>) => () =>
            new Webhook(secret).verify(b, h, { jsonParse: false });
          const i = at % (body.length + 1);
          const changed = body.slice(0, i) + insert + body.slice(i);
          expect(verify(changed, headers)).toThrow();
          expect(verify(body, { ...headers, 'webhook-id': `${id}x` })).toThrow();
          expect(verify(body, { ...headers, 'webhook-timestamp': String(ts - 1) })).toThrow();
          expect(verify(body, headers)).not.toThrow();
        },
      ),
      { numRuns: 300 },
    );
  });

  it('every rotated secret verifies on its own; a stranger secret never does', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(secretArb, { minLength: 1, maxLength: 4 }),
        secretArb,
        idArb,
        fc.string({ maxLength: 200 }),
        (secrets, stranger, id, text) => {
          fc.pre(!secrets.includes(stranger));
          const body = JSON.stringify({ text });
          const ts = Math.floor(Date.now() / 1000);
          const headers = webhookHeaders({ id, timestamp: ts, body, secrets });
          expect(headers['webhook-signature']?.split(' ')).toHaveLength(secrets.length);
          for (const s of secrets) expect(new Webhook(s).verify(body, headers)).toEqual({ text });
          expect(() => new Webhook(stranger).verify(body, headers)).toThrow();
        },
      ),
      { numRuns: 150 },
    );
  });

  it('malformed secrets fail typed and never echo the secret', () => {
    const malformed = fc.oneof(
      fc.string({ minLength: 8, maxLength: 80 }).filter((s) => !s.startsWith('whsec_')),
      fc.uint8Array({ minLength: 0, maxLength: 23 }).map((k) => `whsec_${Buffer.from(k).toString('base64')}`),
      fc
        .uint8Array({ minLength: 65, maxLength: 120 })
        .map((k) => `whsec_${Buffer.from(k).toString('base64')}`),
      fc.string({ minLength: 8, maxLength: 60 }).map((s) => `whsec_${s}!*`),
    );
    fc.assert(
      fc.property(malformed, (secret) => {
        let caught: unknown;
        try {
          parseSecret(secret, 'secrets[1]');
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(SecretError);
        expect((caught as SecretError).code).toBe('WEBHOOK_SECRET_INVALID');
        const tail = secret.slice(6);
        if (tail.length >= 6) expect((caught as Error).message).not.toContain(tail);
      }),
      { numRuns: 500 },
    );
  });
});

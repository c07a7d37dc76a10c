import type { LookupAddress } from 'node:dns';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebhookHttp } from '../../../shared/delivery/http.js';
import {
  checkAddress,
  checkTargetUrl,
  guardedLookup,
  type Resolver,
  resolveAndCheck,
  VETTED_LOOKUP_TTL_MS,
  VettedLookupCache,
} from '../../../shared/delivery/ssrf.js';
import { SsrfBlockedError } from '../../../shared/errors.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import { localEndpoint, testClock } from './helpers.js';

const strict = { allowHttp: false, allowPrivateNetwork: false };

const BLOCKED = [
  '127.0.0.1',
  '127.255.255.254',
  '10.1.2.3',
  '172.16.0.1',
  '172.31.255.255',
  '192.168.1.1',
  '169.254.169.254',
  '169.254.170.2',
  '100.64.0.1',
  '100.127.255.255',
  '0.0.0.0',
  '0.1.2.3',
  '255.255.255.255',
  '224.0.0.1',
  '239.255.255.250',
  '192.0.2.1',
  '198.51.100.7',
  '203.0.113.9',
  '198.18.0.1',
  '240.0.0.1',
  '192.0.0.8',
  '::1',
  '::',
  'fe80::1',
  'fe80::1%eth0',
  'fc00::1',
  'fd00:ec2::254',
  'ff02::1',
  'fec0::1',
  '::7f00:1',
  '::ffff:127.0.0.1',
  '::ffff:10.0.0.1',
  '::ffff:169.254.169.254',
  '0:0:0:0:0:ffff:7f00:1',
  '64:ff9b::7f00:1',
  '64:ff9b::a00:1',
  '64:ff9b:1::1',
  '2002:7f00:1::1',
  '2002:a00:1::1',
  '2001:0:4136:e378:8000:63bf:3fff:fdd2',
  '2001:db8::1',
  '3fff::1',
  '100::1',
];
const ALLOWED = [
  '8.8.8.8',
  '1.1.1.1',
  '93.184.216.34',
  '172.32.0.1',
  '100.128.0.1',
  '2606:4700:4700::1111',
  '2a00:1450:4001::200e',
  '::ffff:8.8.8.8',
  '64:ff9b::808:808',
  '2002:808:808::1',
];

describe('checkAddress', () => {
  it.each(BLOCKED)('blocks %s', (a) => {
    expect(checkAddress(a).allowed).toBe(false);
  });
  it.each(ALLOWED)('allows %s', (a) => {
    expect(checkAddress(a)).toEqual({ allowed: true });
  });
  it('refuses what it cannot parse', () => {
    expect(checkAddress('example.com').allowed).toBe(false);
    expect(checkAddress('').allowed).toBe(false);
  });

  const octet = fc.integer({ min: 0, max: 255 });
  const privateV4 = fc.oneof(
    fc.tuple(fc.constant(10), octet, octet, octet),
    fc.tuple(fc.constant(172), fc.integer({ min: 16, max: 31 }), octet, octet),
    fc.tuple(fc.constant(192), fc.constant(168), octet, octet),
    fc.tuple(fc.constant(127), octet, octet, octet),
    fc.tuple(fc.constant(169), fc.constant(254), octet, octet),
    fc.tuple(fc.constant(100), fc.integer({ min: 64, max: 127 }), octet, octet),
    fc.tuple(fc.constant(0), octet, octet, octet),
  );
  const hex4 = (a: number, b: number) => ((a << 8) | b).toString(16);

  it('always blocks random v4 in private, loopback, link-local, CGNAT and 0/8 ranges (property)', () => {
    fc.assert(
      fc.property(privateV4, ([a, b, c, d]) => {
        const v4 = `${a}.${b}.${c}.${d}`;
        expect(checkAddress(v4).allowed).toBe(false);
        expect(checkAddress(`::ffff:${v4}`).allowed).toBe(false);
        expect(checkAddress(`::ffff:${hex4(a, b)}:${hex4(c, d)}`).allowed).toBe(false);
        expect(checkAddress(`64:ff9b::${v4}`).allowed).toBe(false);
        expect(checkAddress(`2002:${hex4(a, b)}:${hex4(c, d)}::1`).allowed).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('judges mapped, NAT64 and 6to4 forms exactly like the embedded v4 (property)', () => {
    fc.assert(
      fc.property(octet, octet, octet, octet, (a, b, c, d) => {
        const v4 = checkAddress(`${a}.${b}.${c}.${d}`).allowed;
        expect(checkAddress(`::ffff:${a}.${b}.${c}.${d}`).allowed).toBe(v4);
        expect(checkAddress(`0:0:0:0:0:ffff:${hex4(a, b)}:${hex4(c, d)}`).allowed).toBe(v4);
        expect(checkAddress(`64:ff9b::${hex4(a, b)}:${hex4(c, d)}`).allowed).toBe(v4);
        expect(checkAddress(`2002:${hex4(a, b)}:${hex4(c, d)}::1`).allowed).toBe(v4);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('checkTargetUrl', () => {
  it.each([
    'https://127.0.0.1/hook',
    'https://2130706433/',
    'https://0x7f.1/',
    'https://127.1/',
    'https://017700000001/',
    'https://012.1.2.3/',
    'https://0.0.0.0/',
    'https://[::1]/',
    'https://[::ffff:127.0.0.1]/',
    'https://[0:0:0:0:0:ffff:7f00:1]/',
    'https://169.254.169.254/latest/meta-data/',
    'https://[fd00:ec2::254]/',
    'https://10.0.0.1/',
    'https://[example.com]/',
    'http://example.com/',
    'file:///etc/passwd',
    'gopher://example.com/',
    'https://user:pass@example.com/',
    'not a url',
  ])('refuses %s', (url) => {
    expect(() => checkTargetUrl(url, strict)).toThrow(SsrfBlockedError);
  });

  it('accepts public https URLs and names (names are checked at connect time)', () => {
    expect(checkTargetUrl('https://hooks.example.com/x?y=1', strict).hostname).toBe('hooks.example.com');
    expect(checkTargetUrl('https://8.8.8.8/', strict).hostname).toBe('8.8.8.8');
  });

  it('allowHttp and allowPrivateNetwork opt out, separately', () => {
    expect(() =>
      checkTargetUrl('http://127.0.0.1:8080/', { allowHttp: true, allowPrivateNetwork: false }),
    ).toThrow(SsrfBlockedError);
    expect(
      checkTargetUrl('http://127.0.0.1:8080/', { allowHttp: true, allowPrivateNetwork: true }).port,
    ).toBe('8080');
  });
});

describe('resolveAndCheck', () => {
  const resolverFor =
    (table: Record<string, string[]>): Resolver =>
    async (host) =>
      (table[host] ?? []).map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

  it('blocks a host that resolves to one public and one private address', async () => {
    const resolver = resolverFor({ 'mixed.test': ['93.184.216.34', '10.0.0.5'] });
    await expect(resolveAndCheck('mixed.test', strict, resolver)).rejects.toThrow(SsrfBlockedError);
  });

  it('blocks names resolving to loopback or mapped loopback', async () => {
    const resolver = resolverFor({ localhost: ['127.0.0.1', '::1'], 'mapped.test': ['::ffff:127.0.0.1'] });
    await expect(resolveAndCheck('localhost', strict, resolver)).rejects.toThrow(/non-public/);
    await expect(resolveAndCheck('mapped.test', strict, resolver)).rejects.toThrow(SsrfBlockedError);
  });

  it('passes public names and, with allowPrivateNetwork, private ones', async () => {
    const resolver = resolverFor({
      'ok.test': ['93.184.216.34', '2606:4700::1'],
      'lan.test': ['192.168.1.2'],
    });
    await expect(resolveAndCheck('ok.test', strict, resolver)).resolves.toHaveLength(2);
    await expect(resolveAndCheck('lan.test', { allowPrivateNetwork: true }, resolver)).resolves.toEqual([
      { address: '192.168.1.2', family: 4 },
    ]);
  });

  it('re-checks on every connection: a rebinding answer is refused, not connected to', async () => {
    const answers = [['93.184.216.34'], ['127.0.0.1']];
    let calls = 0;
    const resolver: Resolver = async () => {
      const list = answers[Math.min(calls++, answers.length - 1)] ?? [];
      return list.map((address) => ({ address, family: 4 as const }));
    };
    const lookup = guardedLookup({ allowPrivateNetwork: false }, resolver);
    const run = () =>
      new Promise<{ err: Error | null; addresses: LookupAddress[] }>((resolve) =>
        lookup('rebind.test', { all: true }, (err, addresses) =>
          resolve({ err, addresses: addresses as unknown as LookupAddress[] }),
        ),
      );
    const first = await run();
    expect(first.err).toBeNull();
    expect(first.addresses).toEqual([{ address: '93.184.216.34', family: 4 }]);
    const second = await run();
    expect(second.err).toBeInstanceOf(SsrfBlockedError);
  });
});

describe('VettedLookupCache (a vetted answer reused for a few seconds)', () => {
  /** A resolver whose answer the test changes, counting calls. */
  function switchable(first: string[]) {
    let answer = first;
    const state = {
      calls: 0,
      set: (next: string[]) => {
        answer = next;
      },
      resolver: (async () => {
        state.calls++;
        return answer.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }) as const);
      }) as Resolver,
    };
    return state;
  }
  const lookupOnce = (lookup: ReturnType<typeof guardedLookup>, host: string) =>
    new Promise<{ err: Error | null; addresses: LookupAddress[] }>((resolve) =>
      lookup(host, { all: true }, (err, addresses) =>
        resolve({ err, addresses: addresses as unknown as LookupAddress[] }),
      ),
    );

  it('reuses a vetted answer within the TTL; a changed answer to a private IP is refused after it', async () => {
    const clock = testClock(1_000_000);
    const dns = switchable(['93.184.216.34']);
    const lookup = guardedLookup(
      { allowPrivateNetwork: false },
      dns.resolver,
      new VettedLookupCache(clock.now),
    );
    expect((await lookupOnce(lookup, 'rebind.test')).addresses).toEqual([
      { address: '93.184.216.34', family: 4 },
    ]);
    dns.set(['10.0.0.7']);
    clock.advance(VETTED_LOOKUP_TTL_MS - 1);
    // Still the vetted public address (not the new private one), without asking DNS again.
    const cached = await lookupOnce(lookup, 'rebind.test');
    expect(cached.err).toBeNull();
    expect(cached.addresses).toEqual([{ address: '93.184.216.34', family: 4 }]);
    expect(dns.calls).toBe(1);
    clock.advance(1);
    const after = await lookupOnce(lookup, 'rebind.test');
    expect(after.err).toBeInstanceOf(SsrfBlockedError);
    expect(after.addresses ?? []).toHaveLength(0);
    expect(dns.calls).toBe(2);
  });

  it('never reuses a refusal or a failure: the next connection asks DNS again', async () => {
    const clock = testClock(1_000_000);
    const dns = switchable(['127.0.0.1']);
    const lookup = guardedLookup(
      { allowPrivateNetwork: false },
      dns.resolver,
      new VettedLookupCache(clock.now),
    );
    expect((await lookupOnce(lookup, 'flip.test')).err).toBeInstanceOf(SsrfBlockedError);
    expect((await lookupOnce(lookup, 'flip.test')).err).toBeInstanceOf(SsrfBlockedError);
    expect(dns.calls).toBe(2);
    dns.set([]);
    expect((await lookupOnce(lookup, 'flip.test')).err).toBeInstanceOf(SsrfBlockedError);
    dns.set(['93.184.216.34']);
    expect((await lookupOnce(lookup, 'flip.test')).err).toBeNull();
    expect(dns.calls).toBe(4);
  });

  it('keeps policies apart: an answer vetted with allowPrivateNetwork is not reused under a strict policy', async () => {
    const clock = testClock(1_000_000);
    const dns = switchable(['192.168.1.2']);
    const cache = new VettedLookupCache(clock.now);
    const lan = guardedLookup({ allowPrivateNetwork: true }, dns.resolver, cache);
    const strictLookup = guardedLookup({ allowPrivateNetwork: false }, dns.resolver, cache);
    expect((await lookupOnce(lan, 'lan.test')).err).toBeNull();
    expect((await lookupOnce(strictLookup, 'lan.test')).err).toBeInstanceOf(SsrfBlockedError);
  });

  it('concurrent connections share one resolution', async () => {
    const dns = switchable(['93.184.216.34']);
    const lookup = guardedLookup({ allowPrivateNetwork: false }, dns.resolver, new VettedLookupCache());
    const results = await Promise.all([1, 2, 3].map(() => lookupOnce(lookup, 'busy.test')));
    expect(results.every((r) => r.err === null)).toBe(true);
    expect(dns.calls).toBe(1);
  });
});

describe('connect-time guard through the HTTP client', () => {
  let receiver: Receiver;
  let tlsReceiver: Receiver;
  let target: Receiver;
  beforeAll(async () => {
    receiver = await startReceiver();
    tlsReceiver = await startReceiver({ https: true });
    target = await startReceiver();
  });
  afterAll(async () => {
    await Promise.all([receiver.close(), tlsReceiver.close(), target.close()]);
  });

  it('refuses 127.0.0.1 by default and sends nothing; allowPrivateNetwork lets it through', async () => {
    const http = createWebhookHttp();
    try {
      const before = receiver.requests.length;
      const blocked = await http.post({
        endpoint: localEndpoint('strict', receiver.url, { allowPrivateNetwork: false }),
        headers: {},
        body: '{}',
      });
      expect(blocked.errorCode).toBe('SSRF_BLOCKED');
      expect(receiver.requests.length).toBe(before);
      const ok = await http.post({ endpoint: localEndpoint('lan', receiver.url), headers: {}, body: '{}' });
      expect(ok.status).toBe(200);
    } finally {
      await http.close();
    }
  });

  it('refuses a name that resolves to 127.0.0.1 at connect time', async () => {
    const resolver: Resolver = async () => [{ address: '127.0.0.1', family: 4 }];
    const http = createWebhookHttp({ resolver });
    try {
      const before = receiver.requests.length;
      const res = await http.post({
        endpoint: localEndpoint('named', `http://evil.test:${receiver.port}/hook`, {
          allowPrivateNetwork: false,
        }),
        headers: {},
        body: '{}',
      });
      expect(res.errorCode).toBe('SSRF_BLOCKED');
      expect(receiver.requests.length).toBe(before);
    } finally {
      await http.close();
    }
  });

  it('connects to the vetted IP while TLS SNI and Host keep the hostname', async () => {
    let calls = 0;
    const resolver: Resolver = async (host) => {
      calls++;
      expect(host).toBe('hooks.test');
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const http = createWebhookHttp({ resolver, ca: tlsReceiver.ca as string });
    try {
      const res = await http.post({
        endpoint: localEndpoint('tls', `https://hooks.test:${tlsReceiver.port}/hook`),
        headers: {},
        body: '{"a":1}',
      });
      expect(res.status).toBe(200);
      expect(calls).toBe(1);
      expect(tlsReceiver.requests.at(-1)?.headers.host).toBe(`hooks.test:${tlsReceiver.port}`);
    } finally {
      await http.close();
    }
  });

  it('resolves once per TTL while connections churn, and again after it', async () => {
    const clock = testClock(1_000_000);
    let calls = 0;
    const resolver: Resolver = async () => {
      calls++;
      return [{ address: '127.0.0.1', family: 4 }];
    };
    // The receiver closes every connection, so each POST needs a new one (and a lookup).
    receiver.respond({ kind: 'status', status: 200, headers: { connection: 'close' }, body: '{}' });
    const http = createWebhookHttp({ resolver, clock });
    try {
      const endpoint = localEndpoint('churn', `http://hooks.test:${receiver.port}/hook`);
      const connectionsBefore = receiver.connections;
      expect((await http.post({ endpoint, headers: {}, body: '{}' })).status).toBe(200);
      expect((await http.post({ endpoint, headers: {}, body: '{}' })).status).toBe(200);
      expect(receiver.connections - connectionsBefore).toBe(2);
      expect(calls).toBe(1);
      clock.advance(VETTED_LOOKUP_TTL_MS);
      expect((await http.post({ endpoint, headers: {}, body: '{}' })).status).toBe(200);
      expect(calls).toBe(2);
    } finally {
      receiver.respond({ kind: 'status', status: 200, body: '{"ok":true}' });
      await http.close();
    }
  });

  it('fails a certificate it cannot verify (no bypass)', async () => {
    const http = createWebhookHttp();
    try {
      const res = await http.post({
        endpoint: localEndpoint('selfsigned', tlsReceiver.url),
        headers: {},
        body: '{}',
      });
      expect(res.status).toBeUndefined();
      expect(res.errorCode).toBe('TLS_FAILED');
    } finally {
      await http.close();
    }
  });

  it('does not follow a redirect to 127.0.0.1', async () => {
    receiver.script({ kind: 'redirect', status: 301, location: target.url });
    const http = createWebhookHttp();
    try {
      const res = await http.post({
        endpoint: localEndpoint('redir', receiver.url),
        headers: {},
        body: '{}',
      });
      expect(res.status).toBe(301);
      expect(target.requests).toHaveLength(0);
    } finally {
      await http.close();
    }
  });
});

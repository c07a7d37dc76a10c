import { describe, expect, it } from 'vitest';
import {
  extractAuthResults,
  parseAuthenticationResults,
  parseReceivedSpf,
} from '../../../shared/mail/auth-results.js';

describe('parseAuthenticationResults (RFC 8601)', () => {
  it('reads a Gmail-style header with comments and properties', () => {
    expect(
      parseAuthenticationResults(
        'mx.google.com; dkim=pass header.i=@example.com header.s=s1 header.b=AbC; ' +
          'spf=pass (google.com: domain of x@example.com designates 192.0.2.1 as permitted sender) ' +
          'smtp.mailfrom=x@example.com; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com; arc=none',
      ),
    ).toEqual({ authservId: 'mx.google.com', dkim: 'pass', spf: 'pass', dmarc: 'pass', arc: 'none' });
  });

  it('reads an authserv-id with a version and results with method versions', () => {
    expect(
      parseAuthenticationResults('example.org 1; spf/1=fail smtp.mailfrom=a@b; dkim/1 = neutral'),
    ).toEqual({
      authservId: 'example.org',
      spf: 'fail',
      dkim: 'neutral',
    });
  });

  it('reads the "none" no-result form', () => {
    expect(parseAuthenticationResults('example.com; none')).toEqual({ authservId: 'example.com' });
    expect(parseAuthenticationResults('example.com')).toEqual({ authservId: 'example.com' });
  });

  it('reads Microsoft headers that omit the authserv-id', () => {
    expect(
      parseAuthenticationResults(
        'spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.com; dkim=none (message not signed) ' +
          'header.d=none;dmarc=none action=none header.from=example.com;compauth=pass reason=100',
      ),
    ).toEqual({ spf: 'pass', dkim: 'none', dmarc: 'none' });
  });

  it('prefers pass among several results for one method, else the first', () => {
    expect(parseAuthenticationResults('mx; dkim=fail header.d=a; dkim=pass header.d=b')).toMatchObject({
      dkim: 'pass',
    });
    expect(parseAuthenticationResults('mx; dkim=fail header.d=a; dkim=neutral')).toMatchObject({
      dkim: 'fail',
    });
  });

  it('lower-cases results, ignores unknown methods, quoted ids and semicolons in quotes and comments', () => {
    expect(
      parseAuthenticationResults(
        '"mx;quoted.example"; SPF=PASS; iprev=pass; auth=pass (x;y); dmarc=Fail reason="a;b"',
      ),
    ).toEqual({ authservId: 'mx;quoted.example', spf: 'pass', dmarc: 'fail' });
  });

  it('does not choke on garbage', () => {
    expect(parseAuthenticationResults('')).toEqual({});
    expect(parseAuthenticationResults(';;;===;;(((')).toEqual({});
    expect(parseAuthenticationResults(`mx; spf=${'x'.repeat(5000)}`)).toEqual({
      authservId: 'mx',
      spf: 'x'.repeat(32),
    });
  });
});

describe('parseReceivedSpf and extractAuthResults', () => {
  it('reads the result keyword of Received-SPF', () => {
    expect(
      parseReceivedSpf('Pass (mybox.example.org: domain of a@b designates 192.0.2.1) client-ip=192.0.2.1'),
    ).toBe('pass');
    expect(parseReceivedSpf('(comment first) softfail')).toBe('softfail');
    expect(parseReceivedSpf('')).toBeUndefined();
  });

  it('trusts only the topmost Authentication-Results, with Received-SPF as SPF fallback', () => {
    const headers = [
      { name: 'received-spf', value: 'softfail (example.org: transitioning) client-ip=192.0.2.1' },
      { name: 'authentication-results', value: 'mx.example.org; dkim=pass; dmarc=fail' },
      { name: 'authentication-results', value: 'attacker.example; spf=pass; dkim=pass; dmarc=pass' },
    ];
    expect(extractAuthResults(headers)).toEqual({
      authservId: 'mx.example.org',
      dkim: 'pass',
      dmarc: 'fail',
      spf: 'softfail',
    });
  });

  it('keeps the Authentication-Results SPF verdict over Received-SPF', () => {
    expect(
      extractAuthResults([
        { name: 'authentication-results', value: 'mx; spf=fail' },
        { name: 'received-spf', value: 'pass' },
      ]),
    ).toEqual({ authservId: 'mx', spf: 'fail' });
  });

  it('uses Received-SPF alone, and returns null without either header', () => {
    expect(extractAuthResults([{ name: 'received-spf', value: 'None (no SPF record)' }])).toEqual({
      spf: 'none',
    });
    expect(extractAuthResults([{ name: 'subject', value: 'spf=pass' }])).toBeNull();
  });
});

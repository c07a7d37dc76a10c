import { describe, expect, it } from 'vitest';
import {
  compilePattern,
  MAX_MATCH_INPUT_CHARS,
  routeEvent,
  validateRoutes,
} from '../../../shared/delivery/route.js';
import { ConfigError } from '../../../shared/errors.js';
import type { PophookEvent } from '../../../shared/mail/event.js';
import { localEndpoint, receivedEvent } from './helpers.js';

const ep = (id: string, match: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  localEndpoint(id, 'https://example.com/hook', { match, ...extra });

describe('compilePattern', () => {
  it('globs are anchored, case-insensitive, with * and ?', () => {
    const m = compilePattern('*@example.com');
    expect(m('bob@EXAMPLE.com')).toBe(true);
    expect(m('bob@example.com.evil')).toBe(false);
    expect(compilePattern('inv?ice*')('Invoice 42')).toBe(true);
    expect(compilePattern('a.b')('axb')).toBe(false);
    expect(compilePattern('(x)[y]{1}+|z')('(x)[y]{1}+|z')).toBe(true);
  });

  it('regexes keep their flags unless forced case-insensitive', () => {
    expect(compilePattern('/^Invoice \\d+$/')('invoice 7')).toBe(false);
    expect(compilePattern('/^Invoice \\d+$/i')('invoice 7')).toBe(true);
    expect(compilePattern('/^bob@/', true)('BOB@x')).toBe(true);
  });

  it('rejects bad regexes, stateful flags and over-long patterns', () => {
    expect(() => compilePattern('/(/')).toThrow(ConfigError);
    expect(() => compilePattern('/a/g')).toThrow(ConfigError);
    expect(() => compilePattern('x'.repeat(600))).toThrow(ConfigError);
  });

  it('caps the input a careless regex runs over', () => {
    const m = compilePattern('/^(a+)+$/');
    const started = Date.now();
    expect(m(`${'a'.repeat(MAX_MATCH_INPUT_CHARS * 50)}!`)).toBe(true); // cut before the "!"
    expect(m(`${'a'.repeat(20)}!`)).toBe(false);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('routeEvent', () => {
  const event = receivedEvent({
    mailboxId: 'billing',
    subject: 'Invoice 42',
    from: [{ address: 'Billing@Example.com', name: 'B' }],
    to: [{ address: 'me@example.org', name: '' }],
    cc: [{ address: 'audit@corp.test', name: '' }],
    headers: [{ name: 'x-priority', value: 'HIGH' }],
  });

  it('requires every given field to match, any-of within a field', () => {
    const endpoints = [
      ep('all', {}),
      ep('from', { from: '*@example.com' }),
      ep('to-cc', { to: ['nobody@x', 'audit@*'] }),
      ep('both', { from: '*@example.com', subject: '/^invoice/i' }),
      ep('miss', { from: '*@example.com', subject: 'Receipt*' }),
      ep('mailbox', { mailbox: ['support', 'BILL*'] }),
      ep('header', { header: { 'X-Priority': 'high' } }),
      ep('header-miss', { header: { 'x-spam': '*' } }),
      ep('off', {}, { enabled: false }),
    ];
    expect(routeEvent(event, endpoints)).toEqual(['all', 'from', 'to-cc', 'both', 'mailbox', 'header']);
  });

  it('routes skipped notices by mailbox only', () => {
    const skipped: PophookEvent = {
      type: 'email.skipped',
      data: {
        version: 1,
        eventId: 'msg_x',
        messageKey: 'x',
        mailboxId: 'billing',
        uidl: null,
        receivedAt: '2025-01-01T00:00:00Z',
        size: 1e9,
        reason: 'too-large',
        limit: 1e6,
      },
    };
    const endpoints = [ep('from', { from: '*@example.com' }), ep('other-box', { mailbox: 'support' })];
    expect(routeEvent(skipped, endpoints)).toEqual(['from']);
  });

  it('validateRoutes names bad patterns', () => {
    expect(validateRoutes([ep('bad', { subject: '/[/' }), ep('good', {})])).toEqual([
      expect.stringContaining('endpoints.bad.match'),
    ]);
  });
});

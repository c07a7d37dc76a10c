import { describe, expect, it } from 'vitest';
import { closest, explainConfigIssues, knownKeysAt } from '../../cli/config-issues.js';
import { PophookConfig } from '../../shared/config/schema.js';

function explain(raw: unknown): string[] {
  const result = PophookConfig.safeParse(raw);
  if (result.success) return [];
  return explainConfigIssues(result.error.issues, raw);
}

const mailbox = {
  id: 'm',
  host: 'pop.example.com',
  user: 'u',
  auth: { type: 'password', password: { secret: 'p' } },
};

describe('config problem lines', () => {
  it('never echoes a password typed inline, and says secrets are references', () => {
    const lines = explain({
      version: 1,
      mailboxes: [{ ...mailbox, auth: { type: 'password', password: 'hunter2' } }],
    });
    expect(lines).toEqual([expect.stringContaining('mailboxes[0].auth.password: secrets are references')]);
    expect(lines.join('\n')).not.toContain('hunter2');
  });

  it('suggests the field or value that was probably meant', () => {
    const lines = explain({
      version: 1,
      mailboxes: [{ ...mailbox, tls: 'startls', pollEveryMinute: 5 }],
    });
    expect(lines).toContain(
      'mailboxes[0].pollEveryMinute: unknown field; remove it or fix the spelling (did you mean "pollEveryMinutes"?)',
    );
    expect(lines).toContain(
      'mailboxes[0].tls: use one of "implicit", "starttls", "none" (got the text "startls") (did you mean "starttls"?)',
    );
  });

  it('reports missing fields and ranges with the value received', () => {
    const lines = explain({ version: 1, mailboxes: [{ ...mailbox, host: undefined, port: 0 }] });
    expect(lines).toEqual([
      'mailboxes[0].host: required field is missing; add it (expected string)',
      'mailboxes[0].port: must be at least 1 (got the number 0)',
    ]);
  });

  it('knows the allowed keys through arrays, defaults and unions', () => {
    expect(knownKeysAt(['mailboxes', 0, 'auth'])).toEqual(
      expect.arrayContaining(['password', 'tenantId', 'refreshToken']),
    );
    expect(knownKeysAt(['endpoints', 3, 'match'])).toContain('subject');
    expect(closest('mailbox', ['mailboxes', 'endpoints'])).toBe('mailboxes');
    expect(closest('zzz', ['mailboxes'])).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { explainAttempt, explainPoll } from '../../shared/console/explain.js';

describe('plain-words explanations', () => {
  it('explains poll outcomes and error codes, most specific first', () => {
    expect(explainPoll({ outcome: 'ok' })).toBe('The poll finished normally.');
    const auth = explainPoll({ outcome: 'error', errorCode: 'POP3_AUTH_FAILED' });
    expect(auth).toContain('Nothing was deleted');
    expect(auth).toContain('app password');
    expect(explainPoll({ outcome: 'error', errorCode: 'SECRET_NOT_FOUND' })).toContain('secret');
    expect(explainPoll({ outcome: 'in-use' })).toContain('IN-USE');
    expect(explainPoll({ outcome: 'error', errorCode: 'SOMETHING_NEW' })).toBe(
      'The poll failed before fetching anything. Nothing was deleted from the server.',
    );
  });

  it('explains delivery error classes and says when no retry is left', () => {
    expect(explainAttempt({ outcome: 'delivered', status: 200 })).toBe('Delivered (2xx).');
    expect(explainAttempt({ outcome: 'retry', errorCode: 'HTTP_502' })).toContain('Retried on the schedule');
    expect(explainAttempt({ outcome: 'failed', errorCode: 'HTTP_502' })).toContain('No retries are left');
    expect(explainAttempt({ outcome: 'failed', errorCode: 'TIMEOUT' })).not.toContain(
      'retried on the schedule',
    );
    expect(explainAttempt({ outcome: 'disabled', errorCode: 'HTTP_410' })).toContain('Re-enable');
    expect(explainAttempt({ outcome: 'retry', errorCode: 'HTTP_422' })).toContain('rejected');
  });
});

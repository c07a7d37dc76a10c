import fc from 'fast-check';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { parseSecret, signPayload, webhookHeaders } from '../../../shared/delivery/sign.js';
import { SecretError } from '../../../shared/errors.js';
import { newSecret } from './helpers.js';

const now = () => Math.floor(Date.now() / 1000);

function verify(secret: string, body: string, headers: Record<string, string>): unknown {
  return new Webhook(secret).verify(body, headers);
}

describe('signPayload (Standard Webhooks v1)', () => {
  it('reproduces the reference library test vector', () => {
    // From the standard-webhooks reference libraries' tests.
    const sig = signPayload({
      id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      timestamp: 1614265330,
      body: '{"test": 2432232314}',
      secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
    });
    expect(sig).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('verifies with the standardwebhooks library', () => {
    const secret = newSecret();
    const body = JSON.stringify({
      type: 'email.received',
      timestamp: '2025-01-01T00:00:00Z',
      data: { a: 'é' },
    });
    const headers = webhookHeaders({ id: 'msg_abc', timestamp: now(), body, secrets: [secret] });
    expect(verify(secret, body, headers)).toEqual(JSON.parse(body));
  });

  it('fails verification when body, id or timestamp is tampered with', () => {
    const secret = newSecret();
    const body = '{"type":"email.received","data":{"n":1}}';
    const ts = now();
    const headers = webhookHeaders({ id: 'msg_abc', timestamp: ts, body, secrets: [secret] });
    expect(() => verify(secret, body.replace('1', '2'), headers)).toThrow(/signature/i);
    expect(() => verify(secret, body, { ...headers, 'webhook-id': 'msg_abd' })).toThrow(/signature/i);
    expect(() => verify(secret, body, { ...headers, 'webhook-timestamp': String(ts - 1) })).toThrow(
      /signature/i,
    );
    expect(() => verify(newSecret(), body, headers)).toThrow(/signature/i);
  });

  it('imported keys are cached per secret: a rotation in progress and after it signs with the right keys', () => {
    const oldSecret = newSecret();
    const newer = newSecret();
    const body = Buffer.from('{"rotation":true}');
    const text = body.toString();
    const sign = (secrets: string[]) => webhookHeaders({ id: 'msg_rot2', timestamp: now(), body, secrets });
    // Before, during and after the overlap, with the keys already cached from earlier deliveries.
    for (let round = 0; round < 2; round++) {
      const before = sign([oldSecret]);
      expect(verify(oldSecret, text, before)).toEqual({ rotation: true });
      expect(() => verify(newer, text, before)).toThrow(/signature/i);
      const during = sign([oldSecret, newer]);
      expect(during['webhook-signature']?.split(' ')).toHaveLength(2);
      expect(verify(oldSecret, text, during)).toEqual({ rotation: true });
      expect(verify(newer, text, during)).toEqual({ rotation: true });
      const after = sign([newer]);
      expect(verify(newer, text, after)).toEqual({ rotation: true });
      expect(() => verify(oldSecret, text, after)).toThrow(/signature/i);
    }
  });

  it('a key handed out by parseSecret cannot change what later deliveries are signed with', () => {
    const secret = newSecret();
    const body = '{"n":1}';
    const first = webhookHeaders({ id: 'msg_k', timestamp: 1_700_000_000, body, secrets: [secret] });
    parseSecret(secret).fill(0);
    const again = webhookHeaders({ id: 'msg_k', timestamp: 1_700_000_000, body, secrets: [secret] });
    expect(again['webhook-signature']).toBe(first['webhook-signature']);
  });

  it('signs with every secret during rotation; either verifies', () => {
    const oldSecret = newSecret();
    const newer = newSecret(48);
    const body = '{"x":1}';
    const headers = webhookHeaders({ id: 'msg_rot', timestamp: now(), body, secrets: [oldSecret, newer] });
    expect(headers['webhook-signature']?.split(' ')).toHaveLength(2);
    expect(verify(oldSecret, body, headers)).toEqual({ x: 1 });
    expect(verify(newer, body, headers)).toEqual({ x: 1 });
    expect(() => verify(newSecret(), body, headers)).toThrow();
  });

  it('round-trips for arbitrary bodies, ids and secrets (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 300 }),
        fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/),
        fc.uint8Array({ minLength: 24, maxLength: 64 }),
        (text, id, key) => {
          const secret = `whsec_${Buffer.from(key).toString('base64')}`;
          const body = JSON.stringify({ text });
          const headers = webhookHeaders({ id, timestamp: now(), body, secrets: [secret] });
          expect(verify(secret, body, headers)).toEqual({ text });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('rejects malformed secrets with a clear error that never echoes the secret', () => {
    const cases = [
      'not-a-secret-at-all-but-long-enough',
      'whsec_!!!!not base64!!!!',
      `whsec_${Buffer.alloc(8).toString('base64')}`,
      `whsec_${Buffer.alloc(100).toString('base64')}`,
    ];
    for (const secret of cases) {
      let caught: unknown;
      try {
        parseSecret(secret, 'secrets[0]');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(SecretError);
      expect((caught as SecretError).code).toBe('WEBHOOK_SECRET_INVALID');
      expect((caught as Error).message).toContain('secrets[0]');
      expect((caught as Error).message).not.toContain(secret.slice(6, 20));
    }
  });

  it('refuses ids that could shift the signed fields', () => {
    expect(() => signPayload({ id: 'a.b', timestamp: 1, body: '', secrets: [newSecret()] })).toThrow(
      SecretError,
    );
    expect(() => signPayload({ id: 'ok', timestamp: 1.5, body: '', secrets: [newSecret()] })).toThrow(
      SecretError,
    );
    expect(() => signPayload({ id: 'ok', timestamp: 1, body: '', secrets: [] })).toThrow(SecretError);
  });
});

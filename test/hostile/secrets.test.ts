/**
 * Secrets never leak, end to end: the whole local pipeline (poll + deliver) against a real Dovecot
 * (implicit TLS) and a local receiver, with recognisable secrets everywhere a secret goes:
 *   - a POP3 password used with SASL PLAIN and with USER/PASS, and a wrong one (auth failure path);
 *   - an OAuth client secret, exchanged at a token endpoint for access tokens used with XOAUTH2;
 *   - two webhook signing secrets (rotation) and a malformed one (signing failure path).
 * Captured: every log line at debug level with the POP3 transcript on, twice (unscrubbed, to see what
 * the code passed in, and through createMemoryLogger, what would be written), every poll result and
 * error, every file the run left (archived mail and events, state, queue, attempt log), and every
 * delivered body and header set. None may contain a secret, its base64 form or a SASL blob built from
 * it (the PLAIN and XOAUTH2 initial responses).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config/load.js';
import type { PollResult } from '../../shared/ingest/poll.js';
import { createMemoryLogger, type Logger } from '../../shared/log.js';
import { createLocalRuntime, deliverDue, pollLocal } from '../../shared/runtime/local.js';
import { type Dovecot, dovecotAvailable, requireDovecot, startDovecot } from '../fixtures/dovecot.js';
import { makeMessage } from '../fixtures/messages.js';
import { type Receiver, startReceiver } from '../fixtures/receiver.js';
import { startTokenEndpoint, type TokenEndpoint } from '../fixtures/token-endpoint.js';
import { createRawLogger, findLeaks, readTree } from './helpers.js';

requireDovecot();

const PASSWORD = 'PopPw-Secret-5d1f0c9e7b';
const WRONG_PASSWORD = 'WrongPw-Secret-a81c33d0';
const CLIENT_SECRET = 'OAuthClient-Secret-4e2b9a71c0';
const SIGNING_A = `whsec_${Buffer.from('SigningKeyA-Secret-0123456789ab').toString('base64')}`;
const SIGNING_B = `whsec_${Buffer.from('SigningKeyB-Secret-ba9876543210-rotation').toString('base64')}`;
const BROKEN_SIGNING = 'whsec_BrokenSigning-Secret-!!not-base64!!';
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** Every form a secret could leak in. */
function forms(user: string, issuedTokens: readonly string[]): string[] {
  const out = [PASSWORD, WRONG_PASSWORD, CLIENT_SECRET, SIGNING_A, SIGNING_B, BROKEN_SIGNING];
  for (const pw of [PASSWORD, WRONG_PASSWORD]) {
    out.push(b64(pw), b64(`\0${user}\0${pw}`), b64(`${user}\0${user}\0${pw}`));
  }
  out.push(b64(CLIENT_SECRET), encodeURIComponent(CLIENT_SECRET));
  for (const s of [SIGNING_A, SIGNING_B]) {
    const key = s.slice('whsec_'.length);
    out.push(key, Buffer.from(key, 'base64').toString('latin1'));
  }
  out.push('BrokenSigning-Secret');
  for (const t of issuedTokens) out.push(t, b64(`user=${user}\x01auth=Bearer ${t}\x01\x01`));
  return out;
}

/** Sends every line to both loggers. */
function tee(a: Logger, b: Logger): Logger {
  const both =
    (level: 'debug' | 'info' | 'warn' | 'error') => (message: string, fields?: Record<string, unknown>) => {
      a[level](message, fields);
      b[level](message, fields);
    };
  return {
    debug: both('debug'),
    info: both('info'),
    warn: both('warn'),
    error: both('error'),
    child: (fields) => tee(a.child(fields), b.child(fields)),
  };
}

describe.runIf(dovecotAvailable())('secrets never leak (poll + deliver, real Dovecot)', () => {
  const tokens: Record<string, string> = {};
  let dovecot: Dovecot;
  let endpoint: TokenEndpoint;
  let receiver: Receiver;
  const raw = createRawLogger();
  const memory = createMemoryLogger('debug');
  const results: PollResult[] = [];
  const thrown: unknown[] = [];
  let dataDir: string;
  let files: { path: string; bytes: Buffer }[] = [];

  beforeAll(async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    dovecot = await startDovecot({
      password: PASSWORD,
      oauth: { tokens },
      messages: [1, 2, 3].map((index) => makeMessage({ index, size: 3000 + index * 1000 })),
    });
    endpoint = await startTokenEndpoint({
      clientSecret: CLIENT_SECRET,
      onAccessToken: (t) => {
        tokens[t] = dovecot.user;
      },
    });
    receiver = await startReceiver();
    // The first delivery fails, so the retry path logs too.
    receiver.script({ kind: 'status', status: 500, body: 'nope' });
    dataDir = await mkdtemp(join(tmpdir(), 'pophook-secrets-'));
    const tlsMailbox = {
      host: dovecot.host,
      port: dovecot.tlsPort,
      tls: 'implicit',
      ca: dovecot.caPem,
      user: dovecot.user,
      retention: 'keep',
    };
    const config = parseConfig({
      version: 1,
      mailboxes: [
        {
          ...tlsMailbox,
          id: 'plain',
          auth: { type: 'password', password: { secret: 'pop' }, mechanism: 'plain' },
        },
        {
          ...tlsMailbox,
          id: 'userpass',
          auth: { type: 'password', password: { secret: 'pop' }, mechanism: 'user' },
        },
        {
          ...tlsMailbox,
          id: 'oauth',
          auth: {
            type: 'oauth2-microsoft-app',
            tenantId: 'tenant-1',
            clientId: 'app-1',
            clientSecret: { secret: 'app' },
            authority: endpoint.url,
            mechanism: 'xoauth2',
          },
        },
        {
          ...tlsMailbox,
          id: 'wrong',
          auth: { type: 'password', password: { secret: 'wrong' }, mechanism: 'plain' },
        },
      ],
      endpoints: [
        {
          id: 'good',
          url: receiver.url,
          secrets: [{ secret: 'hook-a' }, { secret: 'hook-b' }],
          allowHttp: true,
          allowPrivateNetwork: true,
          timeoutMs: 2000,
        },
        {
          id: 'broken',
          url: receiver.url,
          secrets: [{ secret: 'hook-broken' }],
          allowHttp: true,
          allowPrivateNetwork: true,
          match: { mailbox: 'plain' },
        },
      ],
      delivery: { retryScheduleSeconds: [1] },
      local: { dataDir },
    });
    const runtime = await createLocalRuntime(config, {
      env: {
        POPHOOK_SECRET_POP: PASSWORD,
        POPHOOK_SECRET_WRONG: WRONG_PASSWORD,
        POPHOOK_SECRET_APP: CLIENT_SECRET,
        POPHOOK_SECRET_HOOK_A: SIGNING_A,
        POPHOOK_SECRET_HOOK_B: SIGNING_B,
        POPHOOK_SECRET_HOOK_BROKEN: BROKEN_SIGNING,
      },
      logger: tee(raw, memory),
    });
    try {
      for (const id of ['plain', 'userpass', 'oauth', 'wrong']) {
        const got = await pollLocal(runtime, [id], {
          // The failing login comes from its own address so Dovecot's auth penalty touches no one else.
          connectOptions: { transcript: true, ...(id === 'wrong' ? { localAddress: '127.0.0.9' } : {}) },
        }).catch((err: unknown) => {
          thrown.push(err);
          return [];
        });
        results.push(...got);
      }
      // Deliver until the good endpoint has every message (after its first 500) and the broken one
      // has run out of its one retry.
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        await deliverDue(runtime).catch((err: unknown) => thrown.push(err));
        const depth = await runtime.queue.depth();
        if (depth.ready + depth.delayed + depth.inflight === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await runtime.close();
    }
    files = await readTree(dataDir);
  }, 60_000);

  afterAll(async () => {
    await receiver?.close();
    await endpoint?.close();
    await dovecot?.stop();
    if (dataDir) await (await import('node:fs/promises')).rm(dataDir, { recursive: true, force: true });
  });

  it('exercised every path: three logins, one refused, deliveries, a retry and a signing failure', () => {
    expect(thrown).toEqual([]);
    expect(results.map((r) => [r.mailboxId, r.outcome, r.fetched])).toEqual([
      ['plain', 'ok', 3],
      ['userpass', 'ok', 3],
      ['oauth', 'ok', 3],
      ['wrong', 'error', 0],
    ]);
    expect(results[3]?.error?.code).toBe('POP3_AUTH_FAILED');
    expect(endpoint.issued.length).toBeGreaterThan(0);
    const transcript = raw.lines.filter((l) => l.includes('"pop3 send"')).join('\n');
    expect(transcript).toMatch(/AUTH PLAIN \*\*\*/);
    expect(transcript).toMatch(/PASS \*\*\*/);
    expect(transcript).toMatch(/AUTH XOAUTH2 \*\*\*/);
    // 9 messages to 'good' (one retried), none sent to 'broken' (it cannot sign).
    const ids = new Set(receiver.requests.map((r) => r.headers['webhook-id']));
    expect(ids.size).toBe(9);
    expect(receiver.requests.length).toBe(10);
    expect(files.some((f) => f.path.startsWith('queue/dead/'))).toBe(true);
  });

  it('no secret in any log line (unscrubbed, and as written)', () => {
    const secrets = forms(dovecot.user, endpoint.issued);
    expect(raw.lines.length).toBeGreaterThan(50);
    expect(
      findLeaks(
        secrets,
        raw.lines.map((text, i) => ({ where: `raw log ${i}`, text })),
      ),
    ).toEqual([]);
    expect(
      findLeaks(
        secrets,
        memory.lines.map((text, i) => ({ where: `log ${i}`, text })),
      ),
    ).toEqual([]);
  });

  it('no secret in any poll result, error or file the run left (archive, events, state, queue)', () => {
    const secrets = forms(dovecot.user, endpoint.issued);
    expect(files.filter((f) => f.path.endsWith('.json') && f.path.startsWith('archive/raw/')).length).toBe(9);
    expect(
      findLeaks(secrets, [
        { where: 'poll results', text: JSON.stringify(results) },
        { where: 'thrown', text: JSON.stringify(thrown.map(String)) },
        ...files.map((f) => ({ where: f.path, text: f.bytes })),
      ]),
    ).toEqual([]);
  });

  it('no secret in any delivered body or header', () => {
    const secrets = forms(dovecot.user, endpoint.issued);
    expect(
      findLeaks(
        secrets,
        receiver.requests.flatMap((r, i) => [
          { where: `request ${i} body`, text: r.body },
          { where: `request ${i} headers`, text: JSON.stringify(r.headers) },
        ]),
      ),
    ).toEqual([]);
  });
});

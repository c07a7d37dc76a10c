import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../../shared/clock.js';
import { parseConfig } from '../../../shared/config/load.js';
import type { PophookConfig } from '../../../shared/config/schema.js';
import { LEASE_TTL_MS, type PollHooks, type PollStep } from '../../../shared/ingest/poll.js';
import { createMemoryLogger } from '../../../shared/log.js';
import type { DeliveryJob } from '../../../shared/queue/queue.js';
import { createLocalRuntime, pollLocal } from '../../../shared/runtime/local.js';
import { type Dovecot, dovecotAvailable, requireDovecot, startDovecot } from '../../fixtures/dovecot.js';
import { makeMessage } from '../../fixtures/messages.js';

requireDovecot();
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

class ManualClock implements Clock {
  constructor(public t = Date.parse('2026-11-28T10:00:00Z')) {}
  now() {
    return this.t;
  }
}

function configFor(d: Dovecot, dataDir: string, retention: PophookConfig['mailboxes'][number]['retention']) {
  return parseConfig({
    version: 1,
    mailboxes: [
      {
        id: 'inbox',
        host: d.host,
        port: d.port,
        tls: 'none',
        allowInsecureAuth: true,
        user: d.user,
        auth: { type: 'password', password: { secret: 'pop' }, mechanism: 'user' },
        retention,
      },
    ],
    endpoints: [
      {
        id: 'a',
        url: 'http://127.0.0.1:9/a',
        secrets: [{ secret: 'hook' }],
        allowHttp: true,
        allowPrivateNetwork: true,
      },
      {
        id: 'b',
        url: 'http://127.0.0.1:9/b',
        secrets: [{ secret: 'hook' }],
        allowHttp: true,
        allowPrivateNetwork: true,
        match: { subject: '*even*' },
      },
    ],
    local: { dataDir },
  });
}

const MESSAGES = Array.from({ length: 6 }, (_, i) =>
  makeMessage({
    index: i + 1,
    size: i === 3 ? 300_000 : 3000 + i * 500,
    subject: i % 2 ? 'odd one' : 'even one',
  }),
);

describe.runIf(dovecotAvailable())('pollMailbox against real Dovecot with the local adapters', () => {
  let dovecot: Dovecot;
  let dataDir: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    dovecot = await startDovecot({});
  });
  afterAll(async () => {
    await dovecot?.stop();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  async function freshMailbox(messages: Buffer[] = MESSAGES) {
    for (const m of await dovecot.listMessages()) await rm(m.path, { force: true });
    await dovecot.addMessages(messages);
    dataDir = await mkdtemp(join(tmpdir(), 'pophook-poll-'));
    dirs.push(dataDir);
  }

  async function runtimeFor(
    retention: PophookConfig['mailboxes'][number]['retention'],
    clock = new ManualClock(),
  ) {
    const logger = createMemoryLogger('debug');
    const runtime = await createLocalRuntime(configFor(dovecot, dataDir, retention), {
      env: {
        POPHOOK_SECRET_POP: dovecot.password,
        POPHOOK_SECRET_HOOK: `whsec_${Buffer.alloc(24, 7).toString('base64')}`,
      },
      logger,
      clock,
    });
    return { runtime, logger, clock };
  }

  async function archived(runtime: Awaited<ReturnType<typeof runtimeFor>>['runtime']) {
    const { items } = await runtime.archive.list('raw/', { limit: 10_000 });
    const raws = items.filter((i) => i.key.endsWith('.eml'));
    return Promise.all(raws.map(async (r) => ({ key: r.key, bytes: await runtime.archive.getBytes(r.key) })));
  }

  async function jobs(runtime: Awaited<ReturnType<typeof runtimeFor>>['runtime']): Promise<DeliveryJob[]> {
    const got = await runtime.queue.receive(10_000, 60_000);
    return got.map((g) => JSON.parse(g.body) as DeliveryJob);
  }

  /** The three invariants, checked after any sequence of polls. */
  async function assertInvariants(
    runtime: Awaited<ReturnType<typeof runtimeFor>>['runtime'],
    expectDrained: boolean,
  ) {
    const raws = await archived(runtime);
    const hashes = raws.map((r) => sha(r.bytes));
    // Exactly one archive object per message, byte-exact.
    expect(hashes.sort()).toEqual(MESSAGES.map(sha).sort());
    const queued = await jobs(runtime);
    const byKey = new Map<string, Set<string>>();
    for (const j of queued) {
      const ids = byKey.get(j.messageKey) ?? new Set();
      ids.add(j.webhookId);
      byKey.set(j.messageKey, ids);
    }
    // Every message has at least one job, and all of a message's jobs share one webhook-id.
    expect(byKey.size).toBe(MESSAGES.length);
    for (const ids of byKey.values()) expect(ids.size).toBe(1);
    // Every job's event exists in the archive and names the same id.
    for (const j of queued) {
      const event = JSON.parse((await runtime.archive.getBytes(j.eventKey)).toString('utf8'));
      expect(event.data.eventId).toBe(j.webhookId);
    }
    if (expectDrained) expect(await dovecot.messageCount()).toBe(0);
  }

  it('archives every message byte-exact, enqueues one job per matching endpoint, then nothing new', async () => {
    await freshMailbox();
    const { runtime } = await runtimeFor('keep');
    const [first] = await pollLocal(runtime, undefined);
    expect(first).toMatchObject({ outcome: 'ok', fetched: 6, deleted: 0, remaining: 6 });
    const raws = await archived(runtime);
    expect(raws.map((r) => sha(r.bytes)).sort()).toEqual(MESSAGES.map(sha).sort());
    expect(raws.every((r) => /^raw\/inbox\/2026\/11\/28\/[0-9a-f]{32}\.eml$/.test(r.key))).toBe(true);
    const queued = await jobs(runtime);
    expect(queued.filter((j) => j.endpointId === 'a')).toHaveLength(6);
    expect(queued.filter((j) => j.endpointId === 'b')).toHaveLength(3);
    const event = JSON.parse((await runtime.archive.getBytes(queued[0]?.eventKey ?? '')).toString('utf8'));
    expect(event.type).toBe('email.received');
    expect(event.data.raw.sha256).toMatch(/^[0-9a-f]{64}$/);

    const [second] = await pollLocal(runtime, undefined);
    expect(second).toMatchObject({ outcome: 'ok', fetched: 0, deleted: 0, remaining: 6 });
    expect(await runtime.queue.depth()).toMatchObject({ ready: 0 });
    expect(await dovecot.messageCount()).toBe(6);
    await runtime.close();
  });

  it('retention delete removes messages only after they are archived and enqueued', async () => {
    await freshMailbox();
    const { runtime } = await runtimeFor('delete');
    const [result] = await pollLocal(runtime, undefined);
    expect(result).toMatchObject({ outcome: 'ok', fetched: 6, deleted: 6, remaining: 0 });
    await assertInvariants(runtime, true);
    await runtime.close();
  });

  it('retention deleteAfterDays keeps mail until it is old enough', async () => {
    await freshMailbox();
    const clock = new ManualClock();
    const { runtime } = await runtimeFor({ deleteAfterDays: 2 }, clock);
    expect((await pollLocal(runtime, undefined))[0]).toMatchObject({ fetched: 6, deleted: 0 });
    clock.t += 86_400_000;
    expect((await pollLocal(runtime, undefined))[0]).toMatchObject({ fetched: 0, deleted: 0 });
    clock.t += 86_400_000 + 1000;
    expect((await pollLocal(runtime, undefined))[0]).toMatchObject({ fetched: 0, deleted: 6 });
    expect(await dovecot.messageCount()).toBe(0);
    await runtime.close();
  });

  it('stores every attachment before the event that names it, though attachments are written in the background', async () => {
    await freshMailbox();
    const { runtime } = await runtimeFor('keep');
    const stored = new Set<string>();
    const early: string[] = [];
    const put = runtime.archive.put.bind(runtime.archive);
    runtime.archive.put = async (key, body, options) => {
      if (key.startsWith('attachments/')) {
        await new Promise((r) => setTimeout(r, 50)); // a slow store: the parser has moved on by now
        const r = await put(key, body, options);
        stored.add(key);
        return r;
      }
      if (key.endsWith('.json')) {
        const text = Buffer.isBuffer(body) || typeof body === 'string' ? String(body) : '';
        const named = (JSON.parse(text) as { data: { attachments: { key: string }[] } }).data.attachments;
        for (const a of named) if (!stored.has(a.key)) early.push(a.key);
      }
      return put(key, body, options);
    };
    const [result] = await pollLocal(runtime, undefined);
    expect(result?.outcome).toBe('ok');
    expect(early).toEqual([]);
    expect(stored.size).toBeGreaterThan(0);
    await runtime.close();
  });

  it('two polls started together: one holds the lease, the other skips; no duplicates', async () => {
    await freshMailbox();
    const a = await runtimeFor('delete');
    const b = await runtimeFor('delete');
    const results = await Promise.all([pollLocal(a.runtime, undefined), pollLocal(b.runtime, undefined)]);
    const outcomes = results.map((r) => r[0]?.outcome).sort();
    expect(outcomes).toEqual(['lease-held', 'ok']);
    await assertInvariants(a.runtime, true);
    await a.runtime.close();
    await b.runtime.close();
  });

  const steps: PollStep[] = [
    'after-connect',
    'after-seen',
    'after-archive',
    'after-parse',
    'after-enqueue',
    'after-dele',
    'after-quit',
  ];
  for (const step of steps) {
    for (const how of ['throw', 'drop-connection'] as const) {
      it(`crash at ${step} (${how}) then a clean poll: nothing lost, nothing duplicated`, async () => {
        await freshMailbox();
        const { runtime } = await runtimeFor('delete');
        let fired = 0;
        const hooks: PollHooks = {
          at(at, ctx) {
            // Fire on the 2nd occurrence of the step where possible, so some messages are already safe.
            if (at !== step) return;
            fired++;
            if (fired !== 2 && !(fired === 1 && ['after-connect', 'after-seen', 'after-quit'].includes(step)))
              return;
            if (how === 'drop-connection') ctx.session?.close();
            throw new Error(`injected crash at ${step}`);
          },
        };
        const [crashed] = await pollLocal(runtime, undefined, { hooks });
        expect(fired).toBeGreaterThan(0);
        expect(crashed?.outcome === 'ok').toBe(false);
        // Nothing left the server that is not archived.
        const onServer = new Set((await dovecot.listMessages()).map((m) => sha(m.bytes)));
        const inArchive = new Set((await archived(runtime)).map((r) => sha(r.bytes)));
        for (const m of MESSAGES) expect(onServer.has(sha(m)) || inArchive.has(sha(m))).toBe(true);

        const [clean] = await pollLocal(runtime, undefined);
        expect(clean?.outcome).toBe('ok');
        await assertInvariants(runtime, true);
        await runtime.close();
      });
    }
  }

  it('a failure mid-upload leaves no partial object and the next poll archives it once', async () => {
    await freshMailbox();
    const { runtime } = await runtimeFor('delete');
    let n = 0;
    const hooks: PollHooks = {
      wrapRetr(stream) {
        if (++n !== 3) return stream;
        return Readable.from(
          (async function* () {
            let seen = 0;
            for await (const chunk of stream as AsyncIterable<Buffer>) {
              seen += chunk.length;
              if (seen > 1000) throw new Error('injected archive failure mid-upload');
              yield chunk;
            }
          })(),
        );
      },
    };
    const [crashed] = await pollLocal(runtime, undefined, { hooks });
    expect(crashed?.outcome).not.toBe('ok');
    expect(await runtime.archive.pendingTempFiles()).toEqual([]);
    expect(await dovecot.messageCount()).toBe(6);
    const [clean] = await pollLocal(runtime, undefined);
    expect(clean?.outcome).toBe('ok');
    await assertInvariants(runtime, true);
    await runtime.close();
  });

  it('a killed run (lease never released) blocks until the lease expires, then resumes', async () => {
    await freshMailbox();
    const clock = new ManualClock();
    const { runtime } = await runtimeFor('delete', clock);
    const release = runtime.state.releaseLease.bind(runtime.state);
    runtime.state.releaseLease = async () => {}; // the process died: nobody releases
    await pollLocal(runtime, undefined, {
      hooks: {
        at(step) {
          if (step === 'after-enqueue') throw new Error('SIGKILL');
        },
      },
    });
    runtime.state.releaseLease = release;
    expect((await pollLocal(runtime, undefined))[0]?.outcome).toBe('lease-held');
    clock.t += LEASE_TTL_MS + 1;
    expect((await pollLocal(runtime, undefined))[0]?.outcome).toBe('ok');
    await assertInvariants(runtime, true);
    await runtime.close();
  });
});

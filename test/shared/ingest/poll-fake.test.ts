import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../shared/config/load.js';
import type { Retention } from '../../../shared/config/schema.js';
import { MAX_MESSAGE_FAILURES } from '../../../shared/ingest/plan.js';
import { createMemoryLogger } from '../../../shared/log.js';
import type { DeliveryJob } from '../../../shared/queue/queue.js';
import { createLocalRuntime, pollLocal } from '../../../shared/runtime/local.js';
import { type FakePop3Script, type FakePop3Server, startFakePop3 } from '../../fixtures/fake-pop3.js';
import { makeMessage } from '../../fixtures/messages.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MESSAGES = [1, 2, 3].map((index) => makeMessage({ index, size: 2500 }));

/** Server behaviour Dovecot cannot produce: refused RETRs, no UIDL at all. */
describe('pollMailbox against a scripted POP3 server', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0)) await fn();
  });

  async function setup(script: FakePop3Script, retention: Retention) {
    const server: FakePop3Server = await startFakePop3({ messages: MESSAGES, ...script });
    const dataDir = await mkdtemp(join(tmpdir(), 'pophook-fake-'));
    const logger = createMemoryLogger();
    const runtime = await createLocalRuntime(
      parseConfig({
        version: 1,
        mailboxes: [
          {
            id: 'fake',
            host: '127.0.0.1',
            port: server.port,
            tls: 'none',
            allowInsecureAuth: true,
            user: 'user',
            auth: { type: 'password', password: { secret: 'pop' }, mechanism: 'user' },
            retention,
          },
        ],
        endpoints: [
          {
            id: 'a',
            url: 'http://127.0.0.1:9/',
            secrets: [{ secret: 'h' }],
            allowHttp: true,
            allowPrivateNetwork: true,
          },
        ],
        local: { dataDir },
      }),
      { env: { POPHOOK_SECRET_POP: 'secret' }, logger },
    );
    cleanup.push(
      () => server.close(),
      () => runtime.close(),
      () => rm(dataDir, { recursive: true, force: true }),
    );
    return { server, runtime, logger };
  }

  async function archivedHashes(runtime: Awaited<ReturnType<typeof setup>>['runtime']) {
    const { items } = await runtime.archive.list('raw/', { limit: 1000 });
    return Promise.all(
      items
        .filter((i) => i.key.endsWith('.eml'))
        .map(async (i) => sha(await runtime.archive.getBytes(i.key))),
    );
  }

  it('skips a message whose RETR the server refuses and keeps the session going', async () => {
    const { runtime, server } = await setup(
      {
        handlers: {
          RETR: (conn, line, args) =>
            args[0] === '2' ? conn.line('-ERR message is locked') : conn.defaults.RETR?.(conn, line, args),
        },
      },
      'delete',
    );
    const [result] = await pollLocal(runtime, undefined);
    expect(result).toMatchObject({ outcome: 'ok', fetched: 2, deleted: 2 });
    expect((await archivedHashes(runtime)).sort()).toEqual(
      [sha(MESSAGES[0] as Buffer), sha(MESSAGES[2] as Buffer)].sort(),
    );
    // Message 2 was never deleted: it was not archived.
    expect(server.expunged.sort()).toEqual([1, 3]);
  });

  const noUidl: FakePop3Script = {
    capa: ['USER', 'TOP', 'PIPELINING', 'RESP-CODES'],
    handlers: { UIDL: (conn) => conn.line('-ERR unknown command') },
  };

  it('refuses keep mode on a server without UIDL, with a message saying what to change', async () => {
    const { runtime } = await setup(noUidl, 'keep');
    const [result] = await pollLocal(runtime, undefined);
    expect(result?.outcome).toBe('error');
    expect(result?.error?.code).toBe('CONFIG_INVALID');
    expect(result?.error?.message).toMatch(/does not support UIDL.*retention: delete/);
    expect(await archivedHashes(runtime)).toEqual([]);
  });

  it('works in delete mode without UIDL, identifying messages by content across a crash', async () => {
    const { runtime, server } = await setup(noUidl, 'delete');
    let n = 0;
    const [crashed] = await pollLocal(runtime, undefined, {
      hooks: {
        at(step) {
          if (step === 'after-enqueue' && ++n === 2) throw new Error('crash');
        },
      },
    });
    expect(crashed?.outcome).not.toBe('ok');
    expect(server.expunged).toEqual([]);
    // The fake server forgets nothing between sessions: every message is listed again.
    const [clean] = await pollLocal(runtime, undefined);
    expect(clean?.outcome).toBe('ok');
    expect((await archivedHashes(runtime)).sort()).toEqual(MESSAGES.map(sha).sort());
    expect(server.expunged.sort()).toEqual([1, 2, 3]);
    const jobs = (await runtime.queue.receive(100, 60_000)).map((r) => JSON.parse(r.body) as DeliveryJob);
    const idsPerMessage = new Map<string, Set<string>>();
    for (const j of jobs)
      idsPerMessage.set(j.messageKey, (idsPerMessage.get(j.messageKey) ?? new Set()).add(j.webhookId));
    expect(idsPerMessage.size).toBe(3);
    for (const ids of idsPerMessage.values()) expect(ids.size).toBe(1);
    // A third poll of the same (undeleted, since the fake keeps them) messages archives nothing new.
    await pollLocal(runtime, undefined);
    expect(await archivedHashes(runtime)).toHaveLength(3);
  });

  it('sets a poison message aside after repeated failures so later mail still arrives, never deleting it', async () => {
    const lines = Buffer.from(`${'x'.repeat(76)}\r\n`.repeat(30_000)); // ~2.3 MB, far over its LIST size
    const { runtime, server } = await setup(
      {
        handlers: {
          LIST: (conn, line, args) =>
            args.length
              ? conn.defaults.LIST?.(conn, line, args)
              : conn.multi('+OK', '1 100\r\n2 2500\r\n3 2500\r\n'),
          RETR: (conn, line, args) =>
            args[0] === '1' ? conn.multi('+OK', lines) : conn.defaults.RETR?.(conn, line, args),
        },
      },
      'delete',
    );
    const outcomes: string[] = [];
    for (let i = 0; i < MAX_MESSAGE_FAILURES; i++)
      outcomes.push((await pollLocal(runtime, undefined))[0]?.outcome ?? '');
    expect(outcomes.every((o) => o !== 'ok')).toBe(true);
    const [after] = await pollLocal(runtime, undefined);
    expect(after).toMatchObject({ outcome: 'ok', fetched: 2, deleted: 2 });
    expect(server.expunged.sort()).toEqual([2, 3]);
    const poison = (await runtime.state.listMessages('fake')).find((r) => r.failures);
    expect(poison).toMatchObject({ failures: MAX_MESSAGE_FAILURES, lastError: 'POP3_PROTOCOL' });
  });
});

import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../shared/config/load.js';
import { type DemoPop3Server, startDemoPop3Server } from '../../../shared/demo/pop3-server.js';
import { createMemoryLogger } from '../../../shared/log.js';
import type { DeliveryJob } from '../../../shared/queue/queue.js';
import { createLocalRuntime, pollLocal } from '../../../shared/runtime/local.js';
import { makeMessage } from '../../fixtures/messages.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Edge cases that need a server whose UIDLs we control: the embedded demo server derives each UIDL
 * from the file name, so renaming every file is a wholesale UIDL reset, like a Dovecot migration.
 */
describe('pollMailbox edge cases (embedded demo POP3 server)', () => {
  let root: string;
  let inbox: string;
  let server: DemoPop3Server;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'pophook-edge-'));
    inbox = join(root, 'inbox');
    await mkdir(inbox, { recursive: true });
    server = await startDemoPop3Server({ dir: inbox, password: 'demo-pass-1234' });
  });
  afterAll(async () => {
    await server?.close();
    await rm(root, { recursive: true, force: true });
  });

  async function runtime(dataDir: string, retention: 'keep' | 'delete', maxMessageBytes = 10_000_000) {
    const config = parseConfig({
      version: 1,
      mailboxes: [
        {
          id: 'demo',
          host: server.host,
          port: server.port,
          tls: 'none',
          allowInsecureAuth: true,
          user: server.user,
          auth: { type: 'password', password: { secret: 'pop' }, mechanism: 'user' },
          retention,
          limits: { maxMessageBytes, maxMessagesPerRun: 500, maxBytesPerRun: 1e9 },
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
    });
    return createLocalRuntime(config, {
      env: { POPHOOK_SECRET_POP: 'demo-pass-1234' },
      logger: createMemoryLogger(),
    });
  }

  async function jobs(rt: Awaited<ReturnType<typeof runtime>>) {
    return (await rt.queue.receive(1000, 60_000)).map((r) => JSON.parse(r.body) as DeliveryJob);
  }

  it('deduplicates a wholesale UIDL reset by content hash instead of re-delivering', async () => {
    const messages = Array.from({ length: 8 }, (_, i) => makeMessage({ index: 100 + i, size: 2000 }));
    for (const [i, m] of messages.entries()) await writeFile(join(inbox, `m${i}.eml`), m);
    const dataDir = join(root, 'reset');
    const rt = await runtime(dataDir, 'keep');
    expect((await pollLocal(rt, undefined))[0]).toMatchObject({ outcome: 'ok', fetched: 8 });
    expect(await jobs(rt)).toHaveLength(8);

    // The server renumbers every message (new UIDLs, same bytes).
    for (const name of await readdir(inbox)) await rename(join(inbox, name), join(inbox, `renamed-${name}`));
    const [after] = await pollLocal(rt, undefined);
    expect(after?.uidlResetSuspected).toBe(true);
    expect(await jobs(rt)).toHaveLength(0);
    const { items } = await rt.archive.list('raw/', { limit: 1000 });
    expect(items.filter((i) => i.key.endsWith('.eml'))).toHaveLength(8);
    // And the renumbered messages are now known: the next poll does nothing at all.
    expect((await pollLocal(rt, undefined))[0]).toMatchObject({ fetched: 0, uidlResetSuspected: false });
    await rt.close();
    for (const name of await readdir(inbox)) await rm(join(inbox, name), { recursive: true, force: true });
  });

  it('skips an oversize message, reports it once as email.skipped, and never deletes it', async () => {
    const small = makeMessage({ index: 1, size: 3000 });
    const big = makeMessage({ index: 2, size: 200_000 });
    await writeFile(join(inbox, 'a-small.eml'), small);
    await writeFile(join(inbox, 'b-big.eml'), big);
    const rt = await runtime(join(root, 'oversize'), 'delete', 100_000);
    const [first] = await pollLocal(rt, undefined);
    expect(first).toMatchObject({ outcome: 'ok', fetched: 1, skipped: 1, deleted: 1 });
    const queued = await jobs(rt);
    expect(queued.map((j) => j.type).sort()).toEqual(['email.received', 'email.skipped']);
    const skipped = queued.find((j) => j.type === 'email.skipped') as DeliveryJob;
    const event = JSON.parse((await rt.archive.getBytes(skipped.eventKey)).toString('utf8'));
    expect(event.data).toMatchObject({ reason: 'too-large', limit: 100_000, mailboxId: 'demo' });
    expect((await pollLocal(rt, undefined))[0]).toMatchObject({ fetched: 0, skipped: 0, deleted: 0 });
    expect(await jobs(rt)).toHaveLength(0);
    const left = (await readdir(inbox)).filter((n) => n.endsWith('.eml'));
    expect(left).toEqual(['b-big.eml']);
    const { items } = await rt.archive.list('raw/', { limit: 1000 });
    const raws = items.filter((i) => i.key.endsWith('.eml'));
    expect(raws).toHaveLength(1);
    expect(sha(await rt.archive.getBytes(raws[0]?.key ?? ''))).toBe(sha(small));
    await rt.close();
  });
});

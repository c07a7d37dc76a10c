/**
 * LocalStateStore-specific behaviour (the shared behaviour is in store-contract.test.ts): durability
 * across re-opening, lease exclusion between real OS processes, and hostile ids.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StateError } from '../../../shared/errors.js';
import { LocalStateStore } from '../../../shared/state/local-state.js';

const REPO = resolve(import.meta.dirname, '../../..');
const MODULE = pathToFileURL(join(REPO, 'shared/state/local-state.ts')).href;
/** Processes racing for one lease; more than 2 to exercise more than a pairwise race on 2 cores. */
const RACERS = 4;

let tmp: string;
let script: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'pophook-local-state-'));
  // The child waits for "go" on stdin so all racers start together, whatever their startup time.
  script = join(tmp, 'race.mts');
  await writeFile(
    script,
    `import { LocalStateStore } from ${JSON.stringify(MODULE)};
const [dir, owner] = process.argv.slice(2);
const store = new LocalStateStore({ dir });
process.stdout.write('ready\\n');
process.stdin.once('data', async () => {
  const lease = await store.acquireLease('shared-mbx', owner, 60_000);
  process.stdout.write(JSON.stringify({ owner, won: lease !== undefined }) + '\\n');
  process.exit(0);
});
`,
  );
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function startRacer(
  dir: string,
  owner: string,
): { child: ChildProcess; ready: Promise<void>; result: Promise<{ owner: string; won: boolean }> } {
  const child = spawn(process.execPath, ['--import', 'tsx', script, dir, owner], {
    cwd: REPO,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => {
    onReady = r;
  });
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.startsWith('ready\n')) onReady();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const result = new Promise<{ owner: string; won: boolean }>((resolvePromise, reject) => {
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code === 0 && line) resolvePromise(JSON.parse(line));
      else reject(new Error(`racer ${owner} exited ${code}: ${err.slice(-500)}`));
    });
  });
  return { child, ready, result };
}

async function race(dir: string): Promise<Array<{ owner: string; won: boolean }>> {
  const racers = Array.from({ length: RACERS }, (_, i) => startRacer(dir, `proc-${i}`));
  await Promise.all(racers.map((r) => r.ready));
  for (const r of racers) r.child.stdin?.write('go\n');
  return Promise.all(racers.map((r) => r.result));
}

describe('LocalStateStore across processes', () => {
  it('grants a free lease to exactly one of several racing processes', async () => {
    const dir = join(tmp, 'race-fresh');
    const results = await race(dir);
    expect(results.filter((r) => r.won)).toHaveLength(1);
  });

  it('lets exactly one racing process take over an expired lease', async () => {
    const dir = join(tmp, 'race-stale');
    const past = { now: () => Date.now() - 3_600_000 };
    expect(
      await new LocalStateStore({ dir, clock: past }).acquireLease('shared-mbx', 'crashed-run', 1_000),
    ).toBeDefined();
    const results = await race(dir);
    expect(results.filter((r) => r.won)).toHaveLength(1);
    // And the winner's lease is what a newcomer now sees.
    expect(await new LocalStateStore({ dir }).acquireLease('shared-mbx', 'newcomer', 1_000)).toBeUndefined();
  });
});

describe('LocalStateStore on disk', () => {
  it('survives re-opening: records, leases, polls and endpoint state are read back', async () => {
    const dir = join(tmp, 'reopen');
    const first = new LocalStateStore({ dir });
    const lease = await first.acquireLease('m', 'run-1', 60_000);
    await first.createMessage({
      mailboxId: 'm',
      uidl: 'u1',
      occurrence: 0,
      messageKey: 'm/k1',
      status: 'archived',
      firstSeenAt: '2025-03-01T12:00:00.000Z',
      updatedAt: '2025-03-01T12:00:00.000Z',
      sha256: 'cd'.repeat(32),
    });
    await first.setEndpointState({ endpointId: 'ep', disabled: true });

    const second = new LocalStateStore({ dir });
    expect(lease).toBeDefined();
    expect(await second.acquireLease('m', 'run-2', 60_000)).toBeUndefined();
    expect((await second.getMessage('m', 'u1', 0))?.status).toBe('archived');
    expect((await second.findByMessageKey('m/k1'))?.uidl).toBe('u1');
    expect(await second.findBySha256('m', 'cd'.repeat(32))).toHaveLength(1);
    expect(await second.getEndpointState('ep')).toEqual({ endpointId: 'ep', disabled: true });
  });

  it('leaves no temp files behind and prunes old lease generations', async () => {
    const dir = join(tmp, 'tidy');
    const store = new LocalStateStore({ dir });
    const lease = await store.acquireLease('m', 'run', 60_000);
    if (!lease) throw new Error('no lease');
    for (let i = 0; i < 20; i++) expect(await store.renewLease(lease, 60_000)).toBe(true);
    const generations = await readdir(join(dir, 'leases', 'm'));
    expect(generations.length).toBeLessThanOrEqual(2);
    expect(generations.filter((n) => n.startsWith('.tmp'))).toEqual([]);
  });

  it('refuses ids that are not safe file names, as a permanent StateError', async () => {
    const store = new LocalStateStore({ dir: join(tmp, 'ids') });
    for (const id of ['../escape', 'a/b', '', '.hidden']) {
      const err = await store.listMessages(id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateError);
      expect(err).toMatchObject({ code: 'STATE_INVALID_ID', transient: false });
    }
  });

  it('reports a corrupt record file by path and says what to do', async () => {
    const dir = join(tmp, 'corrupt');
    const store = new LocalStateStore({ dir });
    await mkdir(join(dir, 'endpoints'), { recursive: true });
    await writeFile(join(dir, 'endpoints', 'ep.json'), '{"endpointId": "ep", "disab');
    await expect(store.getEndpointState('ep')).rejects.toMatchObject({
      code: 'STATE_CORRUPT',
      message: expect.stringContaining('ep.json'),
    });
  });

  it('reports an unwritable directory as STATE_IO naming the directory', async () => {
    const file = join(tmp, 'not-a-dir');
    await writeFile(file, 'x');
    const store = new LocalStateStore({ dir: file });
    await expect(store.setEndpointState({ endpointId: 'ep', disabled: false })).rejects.toMatchObject({
      code: 'STATE_IO',
      message: expect.stringContaining(file),
    });
  });
});

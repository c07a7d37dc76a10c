/**
 * `pophook poll` killed with SIGKILL in the middle of a mailbox of 150 x 50 KB messages, then run again: every message is
 * archived exactly once and none is lost (sha256 multiset of the archive = the Maildir originals). The
 * second run also proves the dead process's lease is released at once instead of after 16 minutes.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PIPELINE_CONCURRENCY } from '../../../shared/ingest/poll.js';
import { type Dovecot, requireDovecot, startDovecot } from '../../fixtures/dovecot.js';
import { makeMessage } from '../../fixtures/messages.js';
import { cli, sleep, spawnCli } from '../helpers.js';

requireDovecot();

/**
 * 300 x 50 KB, killed after 100: enough left after the kill that the re-fetch bound below (the messages
 * not archived plus the background tasks in flight) is below the whole mailbox.
 */
const COUNT = 300;
const SIZE = 50 * 1024;
const KILL_AFTER = 100;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function archivedFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith('.eml')) found.push(p);
    }
  };
  await walk(dir);
  return found;
}

describe('pophook poll killed mid-mailbox, then run again', () => {
  let dovecot: Dovecot;
  let dir: string;
  const originals = Array.from({ length: COUNT }, (_, i) =>
    makeMessage({ index: i + 1, size: SIZE, subject: `bulk ${i + 1}`, attachments: 0 }),
  );

  beforeAll(async () => {
    dovecot = await startDovecot({ messages: originals });
    dir = await mkdtemp(path.join(os.tmpdir(), 'pophook-cli-kill-'));
    await writeFile(path.join(dir, 'secrets.json'), JSON.stringify({ pop: dovecot.password }), {
      mode: 0o600,
    });
    await writeFile(
      path.join(dir, 'pophook.yaml'),
      [
        'version: 1',
        'mailboxes:',
        '  - id: bulk',
        `    host: ${dovecot.host}`,
        `    port: ${dovecot.port}`,
        '    tls: none',
        '    allowInsecureAuth: true',
        `    user: ${dovecot.user}`,
        '    auth: { type: password, password: { secret: pop } }',
        'local: { dataDir: data, secretsFile: secrets.json }',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await dovecot?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('archives every message exactly once and loses none', async () => {
    const rawDir = path.join(dir, 'data', 'archive', 'raw', 'bulk');
    const child = spawnCli(['poll', '-c', 'pophook.yaml'], { cwd: dir });
    let atKill = 0;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && child.process.exitCode === null) {
      atKill = (await archivedFiles(rawDir)).length;
      if (atKill >= KILL_AFTER) break;
      await sleep(5);
    }
    child.process.kill('SIGKILL');
    expect(await child.exited).toBe('SIGKILL');
    expect(atKill).toBeGreaterThanOrEqual(KILL_AFTER);
    const afterKill = (await archivedFiles(rawDir)).length;
    expect(afterKill).toBeLessThan(COUNT); // the kill really landed mid-mailbox
    expect(COUNT - afterKill + PIPELINE_CONCURRENCY).toBeLessThan(COUNT); // so the bound below can fail
    // No DELE was committed (no QUIT): the server still has everything.
    expect(await dovecot.messageCount()).toBe(COUNT);

    const second = await cli(['poll', '-c', 'pophook.yaml'], { cwd: dir });
    expect(second.stderr.text).toMatch(
      /released the lease on bulk left by pophook process \d+, which is no longer running/,
    );
    // Messages archived but not yet marked so are fetched again: create-only keeps their one copy.
    const fetched = Number(
      new RegExp(`^bulk: (\\d+) new .*, ${COUNT} deleted from the server$`, 'm').exec(
        second.stdout.text,
      )?.[1],
    );
    expect(fetched).toBeGreaterThanOrEqual(COUNT - afterKill);
    // Plus at most the background tasks in flight: their 'archived' records may not have landed.
    expect(fetched).toBeLessThanOrEqual(COUNT - afterKill + PIPELINE_CONCURRENCY);
    expect(second.code).toBe(0);

    const files = await archivedFiles(rawDir);
    const archived = await Promise.all(files.map(async (f) => sha(await readFile(f))));
    expect(archived.sort()).toEqual(originals.map(sha).sort());
    expect(await dovecot.messageCount()).toBe(0);
    // No temp file was left behind by the killed run that a later list would trip over.
    const listed = await cli(['list', '-c', 'pophook.yaml', '--limit', '1000', '--json'], { cwd: dir });
    const rows = listed.stdout.text.trim().split('\n');
    expect(rows).toHaveLength(COUNT);
    expect(rows.every((r) => (JSON.parse(r) as { status: string }).status === 'deleted')).toBe(true);
  }, 90_000);
});

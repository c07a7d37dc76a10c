import { mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DEV_SECRET_NAMES,
  type DevEnvironment,
  ensureDevSecrets,
  prepareDevEnvironment,
  runDev,
} from '../../../cli/commands/dev.js';
import { createCliLogger, createOutput } from '../../../cli/output.js';
import type { ReceivedDelivery } from '../../../shared/demo/receiver.js';
import { RawPop3 } from '../../shared/demo/raw-pop3.js';
import { capture } from '../capture.js';
import { spawnCli } from '../helpers.js';

let cwd: string;
const envs: DevEnvironment[] = [];
beforeEach(async () => {
  cwd = await mkdtemp(path.join(os.tmpdir(), 'pophook-dev-'));
});
afterEach(async () => {
  await Promise.all(envs.splice(0).map((e) => e.close()));
  await rm(cwd, { recursive: true, force: true });
});

describe('pophook dev setup', () => {
  it('seeds the inbox, writes a private secrets file, and wires a config the demo parts accept', async () => {
    const deliveries: ReceivedDelivery[] = [];
    const env = await prepareDevEnvironment({
      cwd,
      dataDir: '.pophook',
      onDelivery: (d) => deliveries.push(d),
    });
    envs.push(env);
    expect(env.seeded).toHaveLength(6);
    expect((await readdir(env.paths.inbox)).filter((n) => n.endsWith('.eml'))).toHaveLength(6);
    expect((await stat(env.paths.secretsFile)).mode & 0o777).toBe(0o600);
    const secrets = JSON.parse(await readFile(env.paths.secretsFile, 'utf8')) as Record<string, string>;

    const [mailbox] = env.config.mailboxes;
    expect(mailbox).toMatchObject({
      id: 'demo',
      host: '127.0.0.1',
      port: env.pop3.port,
      tls: 'none',
      allowInsecureAuth: true,
    });
    expect(mailbox?.auth).toMatchObject({
      type: 'password',
      password: { secret: DEV_SECRET_NAMES.pop3Password },
    });
    const [endpoint] = env.config.endpoints;
    expect(endpoint).toMatchObject({ url: env.receiver.url, allowHttp: true, allowPrivateNetwork: true });
    expect(env.config.local).toEqual({
      dataDir: path.join(cwd, '.pophook'),
      secretsFile: env.paths.secretsFile,
    });

    // The password in the secrets file opens the demo mailbox.
    const client = await RawPop3.connect(env.pop3.port);
    expect(await client.login(secrets[DEV_SECRET_NAMES.pop3Password] as string)).toMatch(
      /^\+OK logged in, 6 messages/,
    );
    client.close();

    // The signing secret in the secrets file is the one the receiver checks.
    const body = '{"type":"webhook.test","data":{}}';
    const now = new Date();
    const signer = new Webhook(secrets[DEV_SECRET_NAMES.webhookSecret] as string);
    const res = await fetch(env.receiver.url, {
      method: 'POST',
      body,
      headers: {
        'webhook-id': 'msg_1',
        'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
        'webhook-signature': signer.sign('msg_1', now, body),
      },
    });
    expect(res.status).toBe(200);
    expect(deliveries[0]?.verified).toBe(true);
  });

  it('does not seed again once the demo has run, keeps its secrets, and seeds on request', async () => {
    const first = await prepareDevEnvironment({ cwd, dataDir: 'data' });
    await first.close();
    const before = await readFile(first.paths.secretsFile, 'utf8');
    // Simulate pophook having fetched everything: the inbox is empty, served/ holds the files.
    const second = await prepareDevEnvironment({ cwd, dataDir: 'data' });
    envs.push(second);
    const secrets = await ensureDevSecrets(first.paths.secretsFile);
    const client = await RawPop3.connect(second.pop3.port);
    await client.login(secrets.pop3Password);
    for (let n = 1; n <= 6; n++) await client.command(`DELE ${n}`);
    expect(await client.command('QUIT')).toMatch(/^\+OK/);
    await client.waitClosed();
    await Promise.all(envs.splice(0).map((e) => e.close()));

    const again = await prepareDevEnvironment({ cwd, dataDir: 'data' });
    envs.push(again);
    expect(again.seeded).toEqual([]);
    expect(await readFile(again.paths.secretsFile, 'utf8')).toBe(before);
    await again.close();
    envs.pop();

    const reseeded = await prepareDevEnvironment({ cwd, dataDir: 'data', seed: true });
    envs.push(reseeded);
    expect(reseeded.seeded).toHaveLength(6);
  });

  it('prints the banner, then stops everything when the loop ends', async () => {
    const stderr = capture();
    const out = createOutput({ stdout: capture(), stderr, env: {} });
    const ctx = {
      out,
      logger: createCliLogger(out, 'warn'),
      cwd,
      env: {},
      debug: false,
      signal: AbortSignal.abort(),
    };
    // Ctrl-C already pressed: the loop returns at once, and both servers are stopped.
    expect(await runDev({ dataDir: '.pophook', pop3Port: 0, receiverPort: 0 }, ctx)).toBe(0);
    expect(stderr.text).toContain('Drop .eml files into');
    expect(stderr.text).toContain(path.join('.pophook', 'demo', 'inbox'));
    const port = Number(/127\.0\.0\.1:(\d+) \(user demo/.exec(stderr.text)?.[1]);
    const refused = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.on('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  });
});

describe('pophook dev, the real binary', () => {
  it('delivers a dropped .eml to the built-in receiver, archives it byte-exact, and stops cleanly on Ctrl-C', async () => {
    const child = spawnCli(['dev', '--data-dir', 'data', '--interval', '0.3'], { cwd });
    try {
      await child.waitFor(/Drop \.eml files into/);
      // Let the seeded samples go through first, so the dropped file is fetched on its own.
      await child.waitFor(/demo: 6 new/);
      const body = [
        'From: Dev Test <dev@example.test>',
        'To: demo@pophook.local',
        'Subject: dropped by the dev test',
        'Message-ID: <dev-test-1@example.test>',
        'Date: Tue, 03 Mar 2026 10:00:00 +0000',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'LF line endings on disk; the demo server serves CRLF.',
        '',
      ].join('\n');
      const inbox = path.join(cwd, 'data', 'demo', 'inbox');
      await writeFile(path.join(inbox, '.dropped.tmp'), body);
      await rename(path.join(inbox, '.dropped.tmp'), path.join(inbox, 'dropped.eml'));
      const delivered = await child.waitFor(
        /email\.received {2}verified: yes\n {2}webhook-id {2}(msg_[0-9a-f]+)\n(?: {2}.*\n)*? {2}subject {5}dropped by the dev test/,
      );
      const messageKey = (delivered[1] as string).slice('msg_'.length);
      const served = Buffer.from(body.replace(/\n/g, '\r\n'));
      const archived = await findFile(path.join(cwd, 'data', 'archive', 'raw', 'demo'), `${messageKey}.eml`);
      expect((await readFile(archived)).equals(served)).toBe(true);
    } finally {
      child.process.kill('SIGINT');
    }
    expect(await child.exited).toBe(0);
    expect(child.stderr).toContain('stopped');
    expect(child.stderr).not.toMatch(/error/i);
    // The lease was released: its newest generation says so.
    const leaseDir = path.join(cwd, 'data', 'state', 'leases', 'demo');
    const newest = (await readdir(leaseDir)).sort().at(-1) as string;
    expect(JSON.parse(await readFile(path.join(leaseDir, newest), 'utf8'))).toMatchObject({ released: true });
  }, 30_000);
});

async function findFile(dir: string, name: string): Promise<string> {
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile() && entry.name === name) return path.join(entry.parentPath, entry.name);
  throw new Error(`${name} not found under ${dir}`);
}

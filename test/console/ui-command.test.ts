import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { capture } from '../cli/capture.js';
import { fillDataDir } from './helpers.js';

const CONFIG = `version: 1
mailboxes:
  - id: inbox
    host: 127.0.0.1
    port: 9
    tls: none
    allowInsecureAuth: true
    user: inbox
    auth: { type: password, password: { secret: pop } }
local:
  dataDir: data
`;

async function waitFor(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('pophook ui', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pophook-ui-'));
    await writeFile(join(dir, 'pophook.yaml'), CONFIG);
    await fillDataDir(join(dir, 'data'), 3, { mailboxes: ['inbox'] });
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('prints the link with the token once, serves the config data, and stops on Ctrl-C', async () => {
    const stdout = capture();
    const stderr = capture();
    const controller = new AbortController();
    const run = main(['ui', '--port', '0'], { stdout, stderr, env: {}, cwd: dir, signal: controller.signal });
    try {
      await waitFor(() => stdout.text.includes('?token='));
      const link = /http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{43}/.exec(stdout.text)?.[0];
      expect(link).toBeDefined();
      expect(stdout.text.match(/token=/g)).toHaveLength(1);
      expect(stderr.text).toContain('Ctrl-C');
      const login = await fetch(link as string, { redirect: 'manual' });
      expect(login.status).toBe(303);
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
      const page = await fetch(new URL('/messages', link), { headers: { cookie } });
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('Order 0 invoice');
      expect(html).toContain('data-total="3"');
      controller.abort();
      expect(await run).toBe(0);
      await expect(fetch(new URL('/messages', link))).rejects.toThrow();
    } finally {
      controller.abort();
      await run;
    }
  });

  it('says which port is taken', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as AddressInfo).port;
    try {
      const stdout = capture();
      const stderr = capture();
      const code = await main(['ui', '--port', String(port)], {
        stdout,
        stderr,
        env: {},
        cwd: dir,
        signal: new AbortController().signal,
      });
      expect(code).toBe(2);
      expect(stderr.text).toContain(`Port ${port} is in use`);
      expect(stdout.text).not.toContain('token=');
    } finally {
      await new Promise<void>((resolve) => busy.close(() => resolve()));
    }
  });
});

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { capture } from './capture.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const bin = path.join(repo, 'bin/pophook.mjs');
const fixture = (name: string) => path.join(repo, 'test/fixtures/config', name);
const STACK_LINE = /^\s+at .+[:(]/m;

let elsewhere: string;
beforeAll(async () => {
  elsewhere = await mkdtemp(path.join(os.tmpdir(), 'pophook-cli-'));
});
afterAll(async () => {
  await rm(elsewhere, { recursive: true, force: true });
});

/** Runs the real bin from a directory outside the repo, as a user would. */
function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: elsewhere,
      env: { ...process.env, NO_COLOR: '1', POPHOOK_CONFIG: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe.concurrent('the pophook binary (child process, run from another directory)', () => {
  it('--help lists the commands and exits 0', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    for (const command of [
      'dev',
      'check',
      'poll',
      'list',
      'show',
      'replay',
      'auth',
      'listen',
      'ui',
      'config',
    ])
      expect(stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
    expect(stdout).not.toContain('demo-server');
    expect(stdout).toContain('Exit codes');
  });

  it('config validate: a valid file exits 0 with a summary', async () => {
    const { code, stdout, stderr } = await run(['config', 'validate', '--config', fixture('valid.yaml')]);
    expect(stdout).toMatch(/^OK .*valid\.yaml is valid\n/);
    expect(stdout).toMatch(/mailboxes\s+2/);
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('config validate: a malformed file exits 2, naming each field, with no stack trace', async () => {
    const { code, stdout, stderr } = await run(['config', 'validate', '-c', fixture('invalid.yaml')]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain('mailboxes[0].port: expected a number (got the text "abc")');
    expect(stderr).toContain('mailboxes[0].retension: unknown field');
    expect(stderr).toContain('did you mean "retention"');
    expect(stderr).not.toMatch(STACK_LINE);
  });

  it('an unknown command exits 2', async () => {
    const { code, stderr } = await run(['frobnicate']);
    expect(code).toBe(2);
    expect(stderr).toContain("unknown command 'frobnicate'");
  });

  it('config schema prints the JSON Schema', async () => {
    const { code, stdout } = await run(['config', 'schema']);
    expect(code).toBe(0);
    const schema = JSON.parse(stdout) as Record<string, unknown>;
    expect(schema.$schema).toContain('json-schema.org');
    expect(stdout).toBe(await readFile(path.join(repo, 'docs/config.schema.json'), 'utf8'));
  });
});

async function inProcess(
  args: string[],
  options: { signal?: AbortSignal; env?: Record<string, string> } = {},
) {
  const stdout = capture();
  const stderr = capture();
  const code = await main(args, {
    stdout,
    stderr,
    env: options.env ?? {},
    cwd: elsewhere,
    signal: options.signal ?? new AbortController().signal,
  });
  return { code, stdout, stderr };
}

describe('main (in-process)', () => {
  it('prints one sentence for a failure, and the stack only with --debug', async () => {
    const plain = await inProcess(['config', 'validate', '-c', repo]); // a directory: EISDIR
    expect(plain.code).toBe(2);
    expect(plain.stderr.text).toMatch(/^error: Cannot read .+ \(EISDIR\)\.\n$/);
    const debug = await inProcess(['--debug', 'config', 'validate', '-c', repo]);
    expect(debug.stderr.text).toMatch(STACK_LINE);
    expect(debug.stderr.text).toContain('cause:');
  });

  it('reads the config path from POPHOOK_CONFIG, and says how to fix a missing one', async () => {
    const fromEnv = await inProcess(['config', 'validate'], {
      env: { POPHOOK_CONFIG: fixture('valid.yaml') },
    });
    expect(fromEnv.code).toBe(0);
    const missing = await inProcess(['config', 'validate']);
    expect(missing.code).toBe(2);
    expect(missing.stderr.text).toContain('No config file found: pass --config FILE');
  });

  it('ui without a config says how to get one (exit 2)', async () => {
    const { code, stderr } = await inProcess(['ui']);
    expect(code).toBe(2);
    expect(stderr.text).toContain('No config file found: pass --config FILE');
  });

  it('a malformed config names the field; an unknown mailbox lists the known ones; no stack trace', async () => {
    for (const command of [
      ['poll'],
      ['list'],
      ['check'],
      ['replay', '--failed'],
      ['show', 'abcdef'],
      ['dev'],
    ]) {
      const { code, stderr, stdout } = await inProcess([...command, '-c', fixture('invalid.yaml')]);
      expect(code, command[0]).toBe(2);
      expect(stdout.text).toBe('');
      expect(stderr.text).toContain('invalid.yaml has 2 problems');
      expect(stderr.text).toContain('mailboxes[0].port: expected a number (got the text "abc")');
      expect(stderr.text).toContain('did you mean "retention"');
      expect(stderr.text).not.toMatch(STACK_LINE);
    }
    const unknown = await inProcess(['poll', '-m', 'sales', '-c', fixture('valid.yaml')]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.text).toBe(
      'error: No mailbox "sales" in the config (mailboxes: support, billing).\n',
    );
    const missing = await inProcess(['list', '-c', 'nope.yaml']);
    expect(missing.stderr.text).toBe(
      'error: Config file nope.yaml does not exist; check the path given to --config.\n',
    );
  });

  it('a data directory that is a file: one clear line and exit 2, for every local command', async () => {
    const notADir = path.join(elsewhere, 'data-is-a-file');
    await writeFile(notADir, 'x');
    const config = path.join(elsewhere, 'file-data.yaml');
    await writeFile(
      config,
      (await readFile(fixture('valid.yaml'), 'utf8')).replace(
        '$schema',
        `local: { dataDir: ${notADir} }\n$schema`,
      ),
    );
    for (const command of [['poll'], ['list'], ['show', 'abcdef'], ['replay', '--failed']]) {
      const { code, stderr } = await inProcess([...command, '-c', config]);
      expect(code, command[0]).toBe(2);
      expect(stderr.text).toBe(
        'error: The data directory data-is-a-file is a file, not a directory; set local.dataDir in the config to a directory.\n',
      );
    }
    const dev = await inProcess(['dev', '--data-dir', path.join(notADir, 'sub')]);
    expect(dev.code).toBe(2);
    expect(dev.stderr.text).toMatch(
      /^error: The data directory .+ cannot be used \(part of its path is a file\); /,
    );
  });

  it('rejects bad option values with exit 2', async () => {
    const { code, stderr } = await inProcess(['listen', '--port', '70000']);
    expect(code).toBe(2);
    expect(stderr.text).toContain('expected a whole number from 0 to 65535');
    expect((await inProcess(['listen', '--secret', 'hunter2', '--port', '0'])).code).toBe(2);
  });

  it('listen verifies and prints deliveries until Ctrl-C', async () => {
    const controller = new AbortController();
    const stdout = capture();
    const stderr = capture();
    const done = main(['listen', '--port', '0'], {
      stdout,
      stderr,
      env: {},
      cwd: elsewhere,
      signal: controller.signal,
    });
    const deadline = Date.now() + 5000;
    while (!/signing secret/.test(stderr.text) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(stderr.text)?.[1];
    const secret = /(whsec_\S+)/.exec(stderr.text)?.[1];
    expect(url).toBeDefined();
    expect(secret).toBeDefined();
    const body = JSON.stringify({ type: 'webhook.test', timestamp: new Date().toISOString(), data: {} });
    const now = new Date();
    const res = await fetch(url as string, {
      method: 'POST',
      body,
      headers: {
        'webhook-id': 'msg_test',
        'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
        'webhook-signature': new Webhook(secret as string).sign('msg_test', now, body),
      },
    });
    expect(res.status).toBe(200);
    controller.abort();
    expect(await done).toBe(0);
    expect(stdout.text).toContain('webhook.test');
    expect(stdout.text).toContain('verified: yes');
    expect(stderr.text).toContain('stopped after 1 delivery (1 verified)');
  });
});

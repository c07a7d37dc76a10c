import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runAuth, runAuthCommand } from '../../../cli/commands/auth.js';
import type { CliContext } from '../../../cli/context.js';
import { createOutput } from '../../../cli/output.js';
import { createCredentialsProvider } from '../../../shared/auth/credentials.js';
import { PophookConfig } from '../../../shared/config/schema.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { LocalSecretResolver } from '../../../shared/secrets/local-secrets.js';
import { LocalSecretWriter } from '../../../shared/secrets/writer.js';
import { startTokenEndpoint, type TokenEndpoint } from '../../fixtures/token-endpoint.js';
import { expectNoSecrets, mapResolver, rand, rejection } from './helpers.js';

let ep: TokenEndpoint;
let dir: string;
let secretsFile: string;
const clientSecret = rand('gcs');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pophook-auth-cmd-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  ep = await startTokenEndpoint();
  secretsFile = join(dir, `${rand('s')}.json`);
  await writeFile(secretsFile, JSON.stringify({ unrelated: 'stays', 'google-client': clientSecret }), {
    mode: 0o600,
  });
});
afterEach(async () => {
  await ep.close();
});

function config(authority: string) {
  return PophookConfig.parse({
    version: 1,
    mailboxes: [
      {
        id: 'gmail',
        host: 'pop.gmail.com',
        user: 'bob@gmail.example',
        auth: {
          type: 'oauth2-google',
          clientId: 'desktop-1',
          clientSecret: { secret: 'google-client' },
          refreshToken: { secret: 'google-rt' },
          authority,
        },
      },
      {
        id: 'm365-user',
        host: 'outlook.office365.com',
        user: 'alice@contoso.example',
        auth: {
          type: 'oauth2-microsoft-delegated',
          clientId: 'public-1',
          tenantId: 'contoso.example',
          refreshToken: { secret: 'm365', field: 'refreshToken' },
          authority,
        },
      },
      {
        id: 'app',
        host: 'outlook.office365.com',
        user: 'x@contoso.example',
        auth: { type: 'oauth2-microsoft-app', tenantId: 't', clientId: 'c', clientSecret: { secret: 'x' } },
      },
      {
        id: 'isp',
        host: 'pop.isp.example',
        user: 'u',
        auth: { type: 'password', password: { secret: 'p' } },
      },
    ],
    local: { secretsFile },
  });
}

/** Plays the browser: signs in at the fixture and follows the redirect with the right state. */
function browser(endpoint: TokenEndpoint) {
  return async (url: string) => {
    const u = new URL(url);
    const code = endpoint.issueCode({
      codeChallenge: u.searchParams.get('code_challenge') ?? '',
      redirectUri: u.searchParams.get('redirect_uri') ?? '',
      clientId: u.searchParams.get('client_id') ?? '',
    });
    const back = new URL(u.searchParams.get('redirect_uri') ?? '');
    back.searchParams.set('code', code);
    back.searchParams.set('state', u.searchParams.get('state') ?? '');
    await (await fetch(back)).text();
  };
}

describe('runAuthCommand', () => {
  it('Google: loopback sign-in, stores the refresh token in the local secrets file, prints where (not what)', async () => {
    const printed: string[] = [];
    const result = await runAuthCommand({
      config: config(ep.url),
      mailboxId: 'gmail',
      secrets: new LocalSecretResolver({ file: secretsFile, env: {} }),
      secretWriter: new LocalSecretWriter({ file: secretsFile }),
      print: (l) => printed.push(l),
      openUrl: browser(ep),
    });
    const stored = JSON.parse(await readFile(secretsFile, 'utf8')) as Record<string, string>;
    const rt = stored['google-rt'] ?? '';
    expect(rt).toMatch(/^rt-/);
    expect(stored.unrelated).toBe('stays');
    expect(result).toMatchObject({ mailboxId: 'gmail', stored: { secret: 'google-rt' }, outcome: 'written' });
    expect(printed).toContain(
      `Stored the refresh token for "gmail" in secret "google-rt" in the local secrets file ${secretsFile}.`,
    );
    expectNoSecrets(printed.join('\n'), [rt, clientSecret, ...ep.issued]);

    // The stored token works for polling.
    const creds = await createCredentialsProvider({
      secrets: new LocalSecretResolver({ file: secretsFile, env: {} }),
    })(config(ep.url).mailboxes[0] ?? ({} as never));
    expect(creds).toEqual({ mechanism: 'xoauth2', user: 'bob@gmail.example', accessToken: ep.issued[1] });
    expect(ep.requests.at(-1)?.form.refresh_token).toBe(rt);
  });

  it('Microsoft delegated: device-code sign-in, stores the token in a field of a JSON secret', async () => {
    const printed: string[] = [];
    await runAuthCommand({
      config: config(ep.url),
      mailboxId: 'm365-user',
      secrets: mapResolver({}),
      secretWriter: new LocalSecretWriter({ file: secretsFile }),
      print: (l) => printed.push(l),
      sleep: async () => undefined,
    });
    expect(ep.requestsTo('/devicecode')[0]?.path).toBe('/contoso.example/oauth2/v2.0/devicecode');
    const stored = JSON.parse(await readFile(secretsFile, 'utf8')) as { m365: { refreshToken: string } };
    expect(stored.m365.refreshToken).toMatch(/^rt-/);
    expect(printed.join('\n')).toMatch(/enter the code ABCD-EFGH/);
    expect(printed.join('\n')).toMatch(/field "refreshToken" of secret "m365"/);
  });

  it('refuses unknown, password and app-only mailboxes with a usage error', async () => {
    const opts = {
      config: config(ep.url),
      secrets: mapResolver({}),
      secretWriter: new LocalSecretWriter({ file: secretsFile }),
      print: () => undefined,
    };
    expect((await rejection(runAuthCommand({ ...opts, mailboxId: 'nope' }))).message).toMatch(
      /No mailbox "nope".*gmail, m365-user/,
    );
    expect((await rejection(runAuthCommand({ ...opts, mailboxId: 'isp' }))).message).toMatch(
      /uses a password/,
    );
    const app = await rejection(runAuthCommand({ ...opts, mailboxId: 'app' }));
    expect(app.code).toBe('CLI_USAGE');
    expect(app.message).toMatch(/app-only/);
    expect(ep.requests).toHaveLength(0);
  });
});

describe('runAuth (CLI action)', () => {
  it('loads the config file, writes the local secrets file, prints to stdout', async () => {
    const configFile = join(dir, `${rand('c')}.json`);
    await writeFile(configFile, JSON.stringify({ ...config(ep.url), local: { secretsFile } }));
    let stdout = '';
    const visit = browser(ep);
    const pending: Promise<void>[] = [];
    const out = createOutput({
      stdout: {
        write: (chunk: string) => {
          stdout += chunk;
          // Play the browser as soon as the URL is printed (what --no-browser users do by hand).
          const m = /^(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)$/m.exec(chunk);
          if (m?.[1]) pending.push(visit(m[1]));
          return true;
        },
      },
      stderr: { write: () => true },
      env: {},
    });
    const ctx: CliContext = {
      out,
      logger: createMemoryLogger(),
      cwd: dir,
      env: {},
      debug: false,
      signal: new AbortController().signal,
    };
    expect(await runAuth({ config: configFile, mailbox: 'gmail', browser: false }, ctx)).toBe(0);
    await Promise.all(pending);
    expect(stdout).toMatch(/Stored the refresh token for "gmail"/);
    expect(JSON.parse(await readFile(secretsFile, 'utf8'))['google-rt']).toMatch(/^rt-/);
  });
});

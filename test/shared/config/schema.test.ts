/**
 * The config schema is written with zod/mini (smaller Lambda bundles); these pin what it must keep from
 * the classic-zod schema it replaced: the parsed defaults and every issue's path, code and message (the
 * expectations were produced by the classic schema). A differential run over ~19,000 mutated configs
 * found no difference either; this file keeps the cases a person reads in a config error.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../shared/config/parse.js';
import { MailboxConfig, PophookConfig } from '../../../shared/config/schema.js';
import { ConfigError } from '../../../shared/errors.js';

const mb = {
  id: 'support',
  host: 'pop.example.com',
  user: 'u@example.com',
  auth: { type: 'password', password: { secret: 'p' } },
};
const ep = { id: 'hook', url: 'https://hooks.example.com/x', secrets: [{ secret: 's' }] };

const CASES: Record<string, unknown> = {
  'not an object': 'hello',
  'missing version and mailboxes': {},
  'wrong version, empty mailboxes': { version: 2, mailboxes: [] },
  'bad id, port, tls, unknown key': {
    version: 1,
    mailboxes: [{ ...mb, id: 'Bad_Id', port: 70000, tls: 'ssl', hots: 'x' }],
  },
  'non-integer limits and bad retention': {
    version: 1,
    mailboxes: [
      { ...mb, pollEveryMinutes: 1.5, retention: { deleteAfterDays: 0 }, limits: { maxMessageBytes: 0 } },
    ],
  },
  'unknown auth type': { version: 1, mailboxes: [{ ...mb, auth: { type: 'kerberos' } }] },
  'oauth without refresh token, bad authority': {
    version: 1,
    mailboxes: [{ ...mb, auth: { type: 'oauth2-google', clientId: 'c', authority: 'not a url' } }],
  },
  'inline password instead of a secret ref': {
    version: 1,
    mailboxes: [{ ...mb, auth: { type: 'password', password: 'hunter2' } }],
  },
  'duplicate ids and http endpoint': {
    version: 1,
    mailboxes: [mb, mb],
    endpoints: [{ ...ep, url: 'http://hooks.example.com/x' }, ep],
  },
  'endpoint: no secrets, bad url, bad match, timeout': {
    version: 1,
    mailboxes: [mb],
    endpoints: [
      { ...ep, url: 'nope', secrets: [], match: { from: [], header: { 'x-a': '' } }, timeoutMs: 999 },
    ],
  },
  'delivery and parse bounds': {
    version: 1,
    mailboxes: [mb],
    delivery: { retryScheduleSeconds: [], maxBodyBytes: 10, linkExpirySeconds: 604801 },
    parse: { maxBodyChars: 10, timeoutMs: 'slow' },
  },
  'aws: bad email and transition days': {
    version: 1,
    mailboxes: [mb],
    aws: { alarmEmail: 'ops@', archive: { transitionToInfrequentAccessDays: 7 } },
  },
};

/** What the classic-zod schema reported for each case: `path code: message`. */
const EXPECTED: Record<string, string[]> = {
  'not an object': ['[] invalid_type: Invalid input: expected object, received string'],
  'missing version and mailboxes': [
    '["version"] invalid_value: Invalid input: expected 1',
    '["mailboxes"] invalid_type: Invalid input: expected array, received undefined',
  ],
  'wrong version, empty mailboxes': [
    '["version"] invalid_value: Invalid input: expected 1',
    '["mailboxes"] too_small: Too small: expected array to have >=1 items',
  ],
  'bad id, port, tls, unknown key': [
    '["mailboxes",0,"id"] invalid_format: use 1-48 lowercase letters, digits and dashes, starting with a letter or digit',
    '["mailboxes",0,"port"] too_big: Too big: expected number to be <=65535',
    '["mailboxes",0,"tls"] invalid_value: Invalid option: expected one of "implicit"|"starttls"|"none"',
    '["mailboxes",0] unrecognized_keys: Unrecognized key: "hots"',
  ],
  'non-integer limits and bad retention': [
    '["mailboxes",0,"retention","deleteAfterDays"] too_small: Too small: expected number to be >=1',
    '["mailboxes",0,"pollEveryMinutes"] invalid_type: Invalid input: expected int, received number',
    '["mailboxes",0,"limits","maxMessageBytes"] too_small: Too small: expected number to be >=1',
  ],
  'unknown auth type': [
    "[\"mailboxes\",0,\"auth\",\"type\"] invalid_union: Invalid discriminator value. Expected 'password' | 'oauth2-microsoft-app' | 'oauth2-microsoft-delegated' | 'oauth2-google'",
  ],
  'oauth without refresh token, bad authority': [
    '["mailboxes",0,"auth","refreshToken"] invalid_type: Invalid input: expected object, received undefined',
    '["mailboxes",0,"auth","authority"] invalid_format: Invalid URL',
  ],
  'inline password instead of a secret ref': [
    '["mailboxes",0,"auth","password"] invalid_type: Invalid input: expected object, received string',
  ],
  'duplicate ids and http endpoint': [
    '["mailboxes",1,"id"] custom: duplicate mailbox id "support"',
    '["endpoints",0,"url"] custom: webhook URLs must be https; set allowHttp: true only for local testing',
    '["endpoints",1,"id"] custom: duplicate endpoint id "hook"',
  ],
  'endpoint: no secrets, bad url, bad match, timeout': [
    '["endpoints",0,"url"] invalid_format: Invalid URL',
    '["endpoints",0,"secrets"] too_small: Too small: expected array to have >=1 items',
    '["endpoints",0,"match","from"] too_small: Too small: expected array to have >=1 items',
    '["endpoints",0,"match","header","x-a"] too_small: Too small: expected string to have >=1 characters',
    '["endpoints",0,"timeoutMs"] too_small: Too small: expected number to be >=1000',
  ],
  'delivery and parse bounds': [
    '["delivery","retryScheduleSeconds"] too_small: Too small: expected array to have >=1 items',
    '["delivery","maxBodyBytes"] too_small: Too small: expected number to be >=16384',
    '["delivery","linkExpirySeconds"] too_big: Too big: expected number to be <=604800',
    '["parse","maxBodyChars"] too_small: Too small: expected number to be >=1024',
    '["parse","timeoutMs"] invalid_type: Invalid input: expected number, received string',
  ],
  'aws: bad email and transition days': [
    '["aws","archive","transitionToInfrequentAccessDays"] too_small: Too small: expected number to be >=30',
    '["aws","alarmEmail"] invalid_format: Invalid email address',
  ],
};

const issuesOf = (input: unknown): string[] => {
  const r = PophookConfig.safeParse(input);
  return r.success ? ['OK'] : r.error.issues.map((i) => `${JSON.stringify(i.path)} ${i.code}: ${i.message}`);
};

describe('config schema (zod/mini)', () => {
  it.each(Object.keys(CASES))('reports the same issues as before: %s', (name) => {
    expect(issuesOf(CASES[name])).toEqual(EXPECTED[name]);
  });

  it('fills the same defaults', () => {
    expect(PophookConfig.parse({ version: 1, mailboxes: [mb], endpoints: [ep] })).toEqual({
      version: 1,
      mailboxes: [
        {
          ...mb,
          tls: 'implicit',
          allowInsecureAuth: false,
          auth: { ...mb.auth, mechanism: 'auto' },
          retention: 'delete',
          pollEveryMinutes: 5,
          limits: { maxMessageBytes: 52428800, maxMessagesPerRun: 500, maxBytesPerRun: 1073741824 },
        },
      ],
      endpoints: [
        {
          ...ep,
          match: {},
          payload: 'full',
          allowHttp: false,
          allowPrivateNetwork: false,
          timeoutMs: 15000,
          maxConcurrency: 10,
          enabled: true,
        },
      ],
      delivery: {
        retryScheduleSeconds: [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
        maxBodyBytes: 262144,
        inlineAttachmentMaxBytes: 0,
        linkExpirySeconds: 21600,
      },
      parse: {
        maxBodyChars: 131072,
        maxParts: 1000,
        maxDepth: 20,
        maxHeaderBytes: 1048576,
        timeoutMs: 30000,
      },
      local: { dataDir: '.pophook' },
      aws: {
        archive: { versioned: false, accessLogging: false, retainOnDelete: true },
        staticEgressIp: false,
      },
    });
  });

  it('hands out fresh default objects (a caller mutating one does not change the next parse)', () => {
    const a = MailboxConfig.parse(mb);
    a.limits.maxMessagesPerRun = 1;
    expect(MailboxConfig.parse(mb).limits.maxMessagesPerRun).toBe(500);
  });

  it('parseConfig lists every problem in one ConfigError', () => {
    const parse = () => parseConfig(CASES['duplicate ids and http endpoint'], 'CONFIG_JSON');
    expect(parse).toThrow(ConfigError);
    expect(parse).toThrow(
      'CONFIG_JSON is invalid:\n' +
        '  - mailboxes[1].id: duplicate mailbox id "support"\n' +
        '  - endpoints[0].url: webhook URLs must be https; set allowHttp: true only for local testing\n' +
        '  - endpoints[1].id: duplicate endpoint id "hook"',
    );
  });

  it('speaks English in a process that loads no classic zod (as the Lambda bundles do)', () => {
    const parseModule = fileURLToPath(new URL('../../../shared/config/parse.ts', import.meta.url));
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { parseConfig } = await import(${JSON.stringify(parseModule)});
         try { parseConfig({ version: 1, mailboxes: [] }, 'x'); } catch (err) { process.stdout.write(err.message); }`,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('x is invalid:\n  - mailboxes: Too small: expected array to have >=1 items');
  }, 40_000);
});

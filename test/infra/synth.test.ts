/**
 * The two slow infra tests: real esbuild bundling, and `npx cdk synth` through the CLI with no network
 * and no AWS credentials.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { App } from 'aws-cdk-lib';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLE_FILE, PROJECT_ROOT, RUNTIME_PROVIDED_EXTERNALS } from '../../infra/constructs/bundling.js';
import { PophookStack } from '../../infra/pophook-stack.js';
import { parseConfig } from '../../shared/config/load.js';
import { unusedPort } from '../fixtures/ports.js';

const run = promisify(execFile);
const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;
const functionsOf = (resources: Resources) =>
  Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::Function');
const assetDirOf = (outdir: string, fn: { Properties: Record<string, unknown> }) =>
  join(outdir, `asset.${String((fn.Properties.Code as { S3Key: string }).S3Key).replace(/\.zip$/, '')}`);

/** Values CloudFormation fills in at deploy time. */
const DEPLOY_ENV = {
  ARCHIVE_BUCKET: 'pophook-archive',
  QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/111122223333/pophook-delivery',
  STATE_TABLE: 'pophook-state',
  AWS_REGION: 'us-east-1',
  NODE_NO_WARNINGS: '1',
};

describe('bundling (real esbuild)', () => {
  it('emits self-contained CommonJS bundles (the AWS SDK inside) with source maps and a bundled config', async () => {
    const outdir = tempDir('pophook-bundle-');
    const config = parseConfig({
      version: 1,
      mailboxes: [
        {
          id: 'bundled-mailbox',
          host: 'pop.example.com',
          user: 'u@example.com',
          auth: { type: 'password', password: { secret: 'pophook/p' } },
        },
      ],
      endpoints: [{ id: 'hook', url: 'https://hooks.example.com/x', secrets: [{ secret: 'pophook/hook' }] }],
    });
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    const stack = new PophookStack(app, 'Bundled', { config, options: { configDelivery: 'bundle' } });
    const assembly = app.synth();
    const fns = functionsOf(assembly.getStackByName(stack.stackName).template.Resources as Resources);
    expect(fns).toHaveLength(2);
    // No node_modules beside the assembly: loading needs nothing the Lambda runtime would provide.
    const port = await unusedPort();
    for (const fn of fns) {
      const env = (fn.Properties.Environment as { Variables: Record<string, string> }).Variables;
      expect(Object.keys(env)).not.toContain('CONFIG_JSON');
      const dir = assetDirOf(assembly.directory, fn);
      const code = readFileSync(join(dir, BUNDLE_FILE), 'utf8');
      expect(code).toMatch(/\bmodule\.exports\s*=/);
      // The SDK clients are bundled. Only Node built-ins and the credential providers Lambda never
      // reaches stay outside, and those through require (it follows the runtime's NODE_PATH; an ESM
      // import() would not), never import().
      const outside = new Set([...code.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1] as string));
      const builtin = (id: string) => id.startsWith('node:') || builtinModules.includes(id);
      // signature-v4-crt: an optional peer the SDK tries inside try/catch, for SigV4a only.
      const allowed = new Set<string>([...RUNTIME_PROVIDED_EXTERNALS, '@aws-sdk/signature-v4-crt']);
      expect([...outside].filter((id) => !builtin(id) && !allowed.has(id))).toEqual([]);
      expect(code).not.toMatch(/\bimport\(/);
      expect(code).toMatch(/DynamoDBClient/);
      expect(code).not.toMatch(/require\("\.\.?\//); // one self-contained file
      if (fn.Properties.Description === 'pophook poller') {
        // --charset=utf8 took effect: iconv-lite's CJK tables are raw text, not \uXXXX escapes.
        expect(code).toMatch(/[\u0080-\uffff]/);
        // One libmime, not its CommonJS and ESM builds both (its MIME type table, once).
        expect(code.split('"x-conference/x-cooltalk":').length - 1).toBe(1);
      }
      const map = JSON.parse(readFileSync(join(dir, `${BUNDLE_FILE}.map`), 'utf8')) as {
        sourcesContent?: unknown;
      };
      expect(map.sourcesContent).toBeUndefined();
      // Load it like Lambda does (require, for index.js with no "type": "module" above it): the
      // injected module sets CONFIG_JSON before the handler reads it.
      const probe = spawnSync(
        process.execPath,
        [
          '--enable-source-maps',
          '--input-type=commonjs',
          '-e',
          `const m = require(${JSON.stringify(join(dir, BUNDLE_FILE))});
           if (typeof m.handler !== 'function') throw new Error('no handler');
           process.stdout.write(JSON.parse(process.env.CONFIG_JSON).mailboxes[0].id);`,
        ],
        { env: { ...process.env, ...env, ...DEPLOY_ENV }, encoding: 'utf8', timeout: 60_000 },
      );
      expect(probe.stderr).toBe('');
      expect(probe.stdout).toBe('bundled-mailbox');

      // A first invocation with the credentials Lambda sets in the environment: the SDK's credential
      // chain stops at its bundled first link (nothing missing is required), and the call gets as far
      // as the network (AWS endpoints on a closed port, one attempt).
      const job = {
        v: 1,
        webhookId: 'msg_synth',
        type: 'email.received',
        mailboxId: 'bundled-mailbox',
        messageKey: 'k',
        endpointId: 'hook',
        eventKey: 'events/k.json',
      };
      const event =
        fn.Properties.Description === 'pophook poller'
          ? { mailboxId: 'bundled-mailbox' }
          : {
              Records: [{ messageId: 'm1', receiptHandle: 'r1', body: JSON.stringify(job), attributes: {} }],
            };
      const first = spawnSync(
        process.execPath,
        [
          '--enable-source-maps',
          '--input-type=commonjs',
          '-e',
          `require(${JSON.stringify(join(dir, BUNDLE_FILE))})
             .handler(JSON.parse(process.env.PROBE_EVENT), { awsRequestId: 'synth', getRemainingTimeInMillis: () => 30000 })
             .then((r) => console.log('RESULT', JSON.stringify(r)), (e) => console.log('FAILED', e.message));`,
        ],
        {
          env: {
            ...process.env,
            ...env,
            ...DEPLOY_ENV,
            AWS_ACCESS_KEY_ID: 'ASIASYNTHTEST',
            AWS_SECRET_ACCESS_KEY: 'synth-test-secret',
            AWS_SESSION_TOKEN: 'synth-test-token',
            AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
            AWS_MAX_ATTEMPTS: '1',
            LOG_LEVEL: 'error',
            PROBE_EVENT: JSON.stringify(event),
          },
          encoding: 'utf8',
          timeout: 60_000,
        },
      );
      const output = first.stdout + first.stderr; // the handler logs its failure to stderr
      expect(output).not.toMatch(/Cannot find module|MODULE_NOT_FOUND|CredentialsProviderError/);
      expect(output).toMatch(/ECONNREFUSED/);
    }
  }, 120_000);
});

/** `unshare -n` (root only) leaves the command a network namespace with nothing but loopback. */
function offlineWrapper(): string[] {
  const probe = spawnSync('unshare', ['-n', 'true']);
  return probe.status === 0 ? ['unshare', '-n'] : [];
}

describe('infra/app.ts', () => {
  it('explains a missing config file in one line and exits 1', async () => {
    const missing = join(tempDir('pophook-noconfig-'), 'nope.yaml');
    const error = await run('npx', ['tsx', 'infra/app.ts'], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, POPHOOK_CONFIG: missing, CDK_OUTDIR: tempDir('pophook-out-') },
      timeout: 110_000,
    }).then(
      () => undefined,
      (err: { code?: number; stderr?: string }) => err,
    );
    expect(error?.code).toBe(1);
    expect(error?.stderr?.trim()).toBe(`Cannot read config file ${missing}: ENOENT`);
  }, 120_000);
});

describe('npx cdk synth', () => {
  it('runs offline without AWS credentials and passes cdk-nag', async () => {
    const outdir = tempDir('pophook-synth-');
    const home = tempDir('pophook-home-');
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith('AWS_') && !k.startsWith('CDK_')) env[k] = v;
    Object.assign(env, {
      CDK_DISABLE_VERSION_CHECK: '1',
      CDK_DISABLE_CLI_TELEMETRY: 'true',
      AWS_EC2_METADATA_DISABLED: 'true',
      // No profile files either: nothing to find credentials in.
      AWS_CONFIG_FILE: join(home, 'missing-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'missing-credentials'),
    });
    const cdk = [
      'npx',
      'cdk',
      'synth',
      '--no-notices',
      '-q',
      '-o',
      outdir,
      '-c',
      'config=examples/pophook.config.yaml',
    ];
    const [command, ...args] = [...offlineWrapper(), ...cdk] as [string, ...string[]];
    const result = await run(command, args, {
      cwd: PROJECT_ROOT,
      env,
      timeout: 290_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    expect(result.stderr).not.toMatch(/AwsSolutions-|Serverless-/);
    const template = JSON.parse(readFileSync(join(outdir, 'Pophook.template.json'), 'utf8')) as {
      Resources: Resources;
    };
    const fns = functionsOf(template.Resources);
    expect(fns.map((f) => f.Properties.Runtime)).toEqual(['nodejs24.x', 'nodejs24.x']);
    for (const fn of fns) expect(existsSync(join(assetDirOf(outdir, fn), BUNDLE_FILE))).toBe(true);
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
      pluginReports: { violations?: unknown[] }[];
    };
    expect(report.pluginReports.flatMap((r) => r.violations ?? [])).toEqual([]);
    expect(readdirSync(outdir)).toContain('manifest.json');
  }, 300_000);
});

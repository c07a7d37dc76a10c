/**
 * The two slow infra tests: real esbuild bundling, and `npx cdk synth` through the CLI with no network
 * and no AWS credentials.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { App } from 'aws-cdk-lib';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLE_FILE, PROJECT_ROOT } from '../../infra/constructs/bundling.js';
import { PophookStack } from '../../infra/pophook-stack.js';
import { parseConfig } from '../../shared/config/load.js';

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
  it('emits CommonJS bundles with source maps, requires the SDK, and embeds a bundled config', () => {
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
    });
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    const stack = new PophookStack(app, 'Bundled', { config, options: { configDelivery: 'bundle' } });
    const assembly = app.synth();
    const fns = functionsOf(assembly.getStackByName(stack.stackName).template.Resources as Resources);
    expect(fns).toHaveLength(2);
    // The bundle must resolve the runtime-provided @aws-sdk/* like Lambda does.
    symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(outdir, 'node_modules'), 'dir');
    for (const fn of fns) {
      const env = (fn.Properties.Environment as { Variables: Record<string, string> }).Variables;
      expect(Object.keys(env)).not.toContain('CONFIG_JSON');
      const dir = assetDirOf(assembly.directory, fn);
      const code = readFileSync(join(dir, BUNDLE_FILE), 'utf8');
      expect(code).toMatch(/\bmodule\.exports\s*=/);
      // The runtime-provided SDK goes through require (fast), never through an ESM import of CommonJS.
      expect(code).toMatch(/require\("@aws-sdk\/client-dynamodb"\)/);
      expect(code).not.toMatch(/from\s*"@aws-sdk\/|import\("@aws-sdk\//);
      expect(code).not.toMatch(/require\("\.\.?\//); // one self-contained file
      // --charset=utf8 took effect: iconv-lite's CJK tables (poller) are raw text, not \uXXXX escapes.
      if (fn.Properties.Description === 'pophook poller') expect(code).toMatch(/[\u0080-\uffff]/);
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

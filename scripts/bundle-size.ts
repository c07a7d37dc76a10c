/**
 * Bundle size and cold-import time of the two Lambda handlers.
 *
 *   npx tsx scripts/bundle-size.ts [--runs 20]
 *
 * Builds the real `PophookStack` (example config) with bundling on, so the artefacts are exactly what
 * `cdk deploy` uploads: same esbuild options, banner and externals. Then, per function, prints the
 * minified size, its gzip size (close to the zip Lambda stores) and the source map size, and imports the
 * bundle in a fresh `node` process `--runs` times with the Lambda environment, reporting the median
 * time of the `import()` alone and of the whole process. The output directory sits under `cdk.out/` in
 * the repository so the external `@aws-sdk/*` packages resolve from node_modules, as they resolve from
 * the runtime on Lambda. Measured on this machine's Node, not Lambda's.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { App } from 'aws-cdk-lib';
import { PROJECT_ROOT } from '../infra/constructs/bundling.js';
import { EXAMPLE_CONFIG_PATH, PophookStack } from '../infra/pophook-stack.js';
import { loadConfigFile } from '../shared/config/load.js';

const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 20;

/** Stand-ins for the values CloudFormation fills in at deploy time. */
const DEPLOY_TIME_ENV: Record<string, string> = {
  ARCHIVE_BUCKET: 'pophook-archive-bucket',
  QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/111122223333/pophook-delivery',
  STATE_TABLE: 'pophook-state',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'bundle-size',
  AWS_SECRET_ACCESS_KEY: 'bundle-size',
  NODE_NO_WARNINGS: '1',
};

const IMPORT_PROBE = `
const t0 = performance.now();
const mod = await import(process.env.BUNDLE_URL);
if (typeof mod.handler !== 'function') throw new Error('no handler export');
process.stdout.write(String(performance.now() - t0));
`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

async function main(): Promise<void> {
  const config = await loadConfigFile(join(PROJECT_ROOT, EXAMPLE_CONFIG_PATH));
  const base = join(PROJECT_ROOT, 'cdk.out');
  mkdirSync(base, { recursive: true });
  const outdir = mkdtempSync(join(base, 'bundle-size-'));
  try {
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    const stack = new PophookStack(app, 'BundleSize', { config });
    const assembly = app.synth();
    const template = assembly.getStackByName(stack.stackName).template as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const rows: string[] = [];
    for (const [, resource] of Object.entries(template.Resources)) {
      if (resource.Type !== 'AWS::Lambda::Function') continue;
      const p = resource.Properties;
      const name = String(p.Description).replace(/^pophook /, '');
      const key = String((p.Code as { S3Key: string }).S3Key).replace(/\.zip$/, '');
      const dir = join(assembly.directory, `asset.${key}`);
      const file = join(dir, 'index.mjs');
      const code = readFileSync(file);
      const mapBytes = statSync(`${file}.map`).size;
      const env = {
        ...process.env,
        ...((p.Environment as { Variables: Record<string, string> }).Variables ?? {}),
        ...DEPLOY_TIME_ENV,
        BUNDLE_URL: pathToFileURL(file).href,
      };
      const importMs: number[] = [];
      const processMs: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const started = performance.now();
        const child = spawnSync(
          process.execPath,
          ['--enable-source-maps', '--input-type=module', '-e', IMPORT_PROBE],
          { env, encoding: 'utf8' },
        );
        processMs.push(performance.now() - started);
        if (child.status !== 0)
          throw new Error(`importing the ${name} bundle failed:\n${child.stderr.slice(0, 2000)}`);
        importMs.push(Number(child.stdout));
      }
      rows.push(
        [
          name.padEnd(9),
          kib(code.length).padStart(11),
          kib(gzipSync(code).length).padStart(11),
          kib(mapBytes).padStart(11),
          `${median(importMs).toFixed(1)} ms`.padStart(12),
          `${median(processMs).toFixed(1)} ms`.padStart(12),
        ].join('  '),
      );
    }
    process.stdout.write(
      `Node ${process.version}, ${RUNS} fresh processes per function (Lambda runs nodejs24.x on arm64)\n` +
        `${['function'.padEnd(9), 'minified'.padStart(11), 'gzip'.padStart(11), 'source map'.padStart(11), 'import p50'.padStart(12), 'process p50'.padStart(12)].join('  ')}\n` +
        `${rows.join('\n')}\n`,
    );
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

await main();

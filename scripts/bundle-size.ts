/**
 * Bundle size and cold-import time of the two Lambda handlers.
 *
 *   npx tsx scripts/bundle-size.ts [--runs 20]
 *
 * Builds the real `PophookStack` (example config) with bundling on, so the artefacts are exactly what
 * `cdk deploy` uploads: same esbuild options and externals. Then, per function, prints the minified
 * size, its gzip size (close to the zip Lambda stores) and the source map size, and loads the bundle in
 * a fresh `node` process `--runs` times with the Lambda environment, the way the Lambda runtime does
 * (`require` for `index.js`, `import()` for `index.mjs`), reporting the median time of the load alone
 * and of the whole process.
 *
 * Two baselines are measured in the same run, interleaved with the bundles so machine load hits all
 * rows alike: `empty-esm` (an empty ES module: Node's own start-up and loader cost) and `aws-sdk` (just
 * the `@aws-sdk/*` packages the bundles require, which Lambda's runtime provides: the part of the
 * import no bundling option can remove). A CPU-time table follows: it moves less than wall time when
 * other processes compete for the cores.
 *
 * The assembly is written to a temporary directory outside the repository, with a `node_modules`
 * symlink, so the external `@aws-sdk/*` packages resolve from node_modules as they resolve from the
 * runtime on Lambda, and no `package.json` of ours (`"type": "module"`) changes how `index.js` loads.
 * Measured on this machine's Node, not Lambda's.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { App } from 'aws-cdk-lib';
import { BUNDLE_FILE, PROJECT_ROOT } from '../infra/constructs/bundling.js';
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

/**
 * Loads PROBE_TARGETS (JSON list of absolute paths or package names) and prints the wall and CPU
 * milliseconds of that alone. `.mjs` is imported; anything else is required, as Lambda's runtime does
 * for an `index.js` with no `"type": "module"` above it.
 */
const PROBE = `
import { createRequire } from 'node:module';
const targets = JSON.parse(process.env.PROBE_TARGETS);
const req = createRequire(process.env.PROBE_BASE);
const c0 = process.cpuUsage();
const t0 = performance.now();
let mod;
for (const t of targets) mod = t.endsWith('.mjs') ? await import(new URL('file://' + t).href) : req(t);
const wall = performance.now() - t0;
const cpu = process.cpuUsage(c0);
if (process.env.PROBE_HANDLER && typeof mod.handler !== 'function') throw new Error('no handler export');
process.stdout.write(JSON.stringify({ wall, cpu: (cpu.user + cpu.system) / 1000 }));
`;

interface Target {
  name: string;
  files: string[];
  env: NodeJS.ProcessEnv;
  sizes?: { minified: number; gzip: number; map: number };
  wall: number[];
  cpu: number[];
  process: number[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const ms = (value: number) => `${value.toFixed(1)} ms`;

/** The `@aws-sdk/*` packages a bundle loads at run time (they are external). */
function sdkPackagesOf(code: string): string[] {
  const names = new Set<string>();
  for (const m of code.matchAll(/(?:require\(|from\s*|import\()\s*["'](@aws-sdk\/[a-z0-9-]+)["']/g))
    names.add(m[1] as string);
  return [...names].sort();
}

function probe(target: Target, base: string, handler: boolean): void {
  const started = performance.now();
  const child = spawnSync(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', PROBE], {
    env: {
      ...target.env,
      PROBE_TARGETS: JSON.stringify(target.files),
      PROBE_BASE: base,
      ...(handler ? { PROBE_HANDLER: '1' } : {}),
    },
    encoding: 'utf8',
  });
  target.process.push(performance.now() - started);
  if (child.status !== 0) throw new Error(`loading ${target.name} failed:\n${child.stderr.slice(0, 2000)}`);
  const { wall, cpu } = JSON.parse(child.stdout) as { wall: number; cpu: number };
  target.wall.push(wall);
  target.cpu.push(cpu);
}

async function main(): Promise<void> {
  const config = await loadConfigFile(join(PROJECT_ROOT, EXAMPLE_CONFIG_PATH));
  const outdir = mkdtempSync(join(tmpdir(), 'pophook-bundle-size-'));
  try {
    symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(outdir, 'node_modules'), 'dir');
    const emptyModule = join(outdir, 'empty.mjs');
    writeFileSync(emptyModule, 'export {};\n');
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    const stack = new PophookStack(app, 'BundleSize', { config });
    const assembly = app.synth();
    const template = assembly.getStackByName(stack.stackName).template as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const bundles: Target[] = [];
    const sdk = new Set<string>();
    for (const [, resource] of Object.entries(template.Resources)) {
      if (resource.Type !== 'AWS::Lambda::Function') continue;
      const p = resource.Properties;
      const name = String(p.Description).replace(/^pophook /, '');
      const key = String((p.Code as { S3Key: string }).S3Key).replace(/\.zip$/, '');
      const file = join(assembly.directory, `asset.${key}`, BUNDLE_FILE);
      const code = readFileSync(file);
      for (const pkg of sdkPackagesOf(code.toString('utf8'))) sdk.add(pkg);
      bundles.push({
        name,
        files: [file],
        env: {
          ...process.env,
          ...((p.Environment as { Variables: Record<string, string> }).Variables ?? {}),
          ...DEPLOY_TIME_ENV,
        },
        sizes: { minified: code.length, gzip: gzipSync(code).length, map: statSync(`${file}.map`).size },
        wall: [],
        cpu: [],
        process: [],
      });
    }
    const env = { ...process.env, ...DEPLOY_TIME_ENV };
    const baselines: Target[] = [
      { name: 'empty-esm', files: [emptyModule], env, wall: [], cpu: [], process: [] },
      { name: 'aws-sdk', files: [...sdk], env, wall: [], cpu: [], process: [] },
    ];
    const base = `file://${join(outdir, 'probe.mjs')}`;
    const load = loadavg()[0] as number;
    // Interleaved, so a burst of load from elsewhere lands on every row rather than on one.
    for (let i = 0; i < RUNS; i++) {
      for (const t of bundles) probe(t, base, true);
      for (const t of baselines) probe(t, base, false);
    }
    const header = [
      'function'.padEnd(9),
      'minified'.padStart(11),
      'gzip'.padStart(11),
      'source map'.padStart(11),
      'import p50'.padStart(12),
      'process p50'.padStart(12),
    ].join('  ');
    const row = (t: Target) =>
      [
        t.name.padEnd(9),
        (t.sizes ? kib(t.sizes.minified) : '-').padStart(11),
        (t.sizes ? kib(t.sizes.gzip) : '-').padStart(11),
        (t.sizes ? kib(t.sizes.map) : '-').padStart(11),
        ms(median(t.wall)).padStart(12),
        ms(median(t.process)).padStart(12),
      ].join('  ');
    const all = [...bundles, ...baselines];
    process.stdout.write(
      `Node ${process.version}, ${RUNS} fresh processes per row, interleaved (Lambda runs nodejs24.x on arm64); ` +
        `load average ${load.toFixed(2)} at start, ${(loadavg()[0] as number).toFixed(2)} at end\n` +
        `${header}\n${bundles.map(row).join('\n')}\n` +
        `baselines: empty-esm = an empty ES module; aws-sdk = only ${[...sdk].join(', ')} (provided by the Lambda runtime)\n` +
        `${baselines.map(row).join('\n')}\n` +
        `import CPU time p50 (user + system)\n` +
        `${all.map((t) => `  ${t.name.padEnd(9)}  ${ms(median(t.cpu)).padStart(10)}`).join('\n')}\n`,
    );
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

await main();

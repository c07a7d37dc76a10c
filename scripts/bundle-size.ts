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
 * and of the whole process. Every row runs with the functions' NODE_OPTIONS: a V8 heap flag such as
 * --max-semi-space-size changes V8's flag hash, so Node's embedded code cache for its own modules is
 * rejected and they compile from source (~45 ms more per load here). Lambda's bootstrap passes heap
 * flags to every Node function anyway, so that cost is real there whatever NODE_OPTIONS says.
 *
 * Two baselines are measured in the same run, interleaved with the bundles so machine load hits all
 * rows alike: `empty-esm` (an empty ES module: Node's own start-up and loader cost) and `aws-sdk` (the
 * `@aws-sdk/*` packages in package.json, required from node_modules as the Lambda runtime would serve
 * them: what the SDK alone cost the bundles before they bundled it). A CPU-time table follows: it
 * moves less than wall time when other processes compete for the cores.
 *
 * Then the first invocation, in the same process right after the load, so that work deferred from the
 * import to the first call cannot hide: each handler gets a typical event (a scheduled poll of the
 * first mailbox; an SQS batch of one delivery job) with every AWS endpoint on a closed local port and
 * one attempt per call, so each AWS call fails at once after the SDK has done everything a real first
 * call does before the network (credentials, endpoint rules, signing, the HTTP handler).
 *
 * The assembly is written to a temporary directory outside the repository, with a `node_modules`
 * symlink, so the baseline's `@aws-sdk/*` packages (and the few modules the bundles leave to the
 * runtime) resolve from node_modules as they resolve from the runtime on Lambda, and no `package.json`
 * of ours (`"type": "module"`) changes how `index.js` loads.
 * Measured on this machine's Node, not Lambda's.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';

import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { App } from 'aws-cdk-lib';
import { BUNDLE_FILE, PROJECT_ROOT } from '../infra/constructs/bundling.js';
import { LAMBDA_NODE_OPTIONS } from '../infra/constructs/pophook.js';
import { EXAMPLE_CONFIG_PATH, PophookStack } from '../infra/pophook-stack.js';
import { loadConfigFile } from '../shared/config/load.js';
import type { PophookConfig } from '../shared/config/schema.js';
import type { DeliveryJob } from '../shared/queue/queue.js';
import { unusedPort } from '../test/fixtures/ports.js';

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
 * Loads PROBE_TARGETS (JSON list of absolute paths or package names) and reports the wall and CPU
 * milliseconds of that alone. `.mjs` is imported; anything else is required, as Lambda's runtime does
 * for an `index.js` with no `"type": "module"` above it. With PROBE_EVENT it then calls the handler
 * once with that event and reports that call's wall and CPU time too (it may fail: its AWS calls go
 * to a closed port). The result is the last line, after whatever the handler logged.
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
const result = { wall, cpu: (cpu.user + cpu.system) / 1000 };
if (process.env.PROBE_EVENT) {
  if (typeof mod.handler !== 'function') throw new Error('no handler export');
  const context = { awsRequestId: 'bundle-size', getRemainingTimeInMillis: () => 60000 };
  const c1 = process.cpuUsage();
  const t1 = performance.now();
  await mod.handler(JSON.parse(process.env.PROBE_EVENT), context).catch(() => undefined);
  const firstCpu = process.cpuUsage(c1);
  Object.assign(result, { firstWall: performance.now() - t1, firstCpu: (firstCpu.user + firstCpu.system) / 1000 });
}
process.stdout.write('\\n' + JSON.stringify(result) + '\\n');
`;

interface Target {
  name: string;
  files: string[];
  env: NodeJS.ProcessEnv;
  sizes?: { minified: number; gzip: number; map: number };
  /** The event of the first invocation (bundles only). */
  event?: unknown;
  wall: number[];
  cpu: number[];
  process: number[];
  firstWall: number[];
  firstCpu: number[];
}

const samples = () => ({ wall: [], cpu: [], process: [], firstWall: [], firstCpu: [] });

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const ms = (value: number) => `${value.toFixed(1)} ms`;

/**
 * The `@aws-sdk/*` packages the code uses (package.json dependencies): the SDK-alone baseline loads
 * them from node_modules, as the Lambda runtime provides them.
 */
function sdkPackages(): string[] {
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  return Object.keys(pkg.dependencies)
    .filter((name) => name.startsWith('@aws-sdk/'))
    .sort();
}

/** The first invocation's event: a scheduled poll of one mailbox, or an SQS batch of one job. */
function eventFor(name: string, config: PophookConfig): unknown {
  if (name === 'poller') return { mailboxId: config.mailboxes[0]?.id };
  const job: DeliveryJob = {
    v: 1,
    webhookId: 'msg_bundlesize',
    type: 'email.received',
    mailboxId: config.mailboxes[0]?.id ?? 'mailbox',
    messageKey: 'bundle-size',
    endpointId: config.endpoints[0]?.id ?? 'endpoint',
    eventKey: 'events/bundle-size.json',
  };
  const record = {
    messageId: '00000000-0000-4000-8000-000000000000',
    receiptHandle: 'bundle-size',
    body: JSON.stringify(job),
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(Date.now()) },
    messageAttributes: {},
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:111122223333:pophook-delivery',
    awsRegion: 'us-east-1',
  };
  return { Records: [record] };
}

function probe(target: Target, base: string): void {
  const started = performance.now();
  const child = spawnSync(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', PROBE], {
    env: {
      ...target.env,
      PROBE_TARGETS: JSON.stringify(target.files),
      PROBE_BASE: base,
      ...(target.event ? { PROBE_EVENT: JSON.stringify(target.event) } : {}),
    },
    encoding: 'utf8',
  });
  const elapsed = performance.now() - started;
  if (child.status !== 0) throw new Error(`loading ${target.name} failed:\n${child.stderr.slice(0, 2000)}`);
  const last = child.stdout.trimEnd().split('\n').at(-1) ?? '';
  const r = JSON.parse(last) as { wall: number; cpu: number; firstWall?: number; firstCpu?: number };
  // The process column stays "start-up + import + exit": the first invocation is reported apart.
  target.process.push(elapsed - (r.firstWall ?? 0));
  target.wall.push(r.wall);
  target.cpu.push(r.cpu);
  if (r.firstWall !== undefined) target.firstWall.push(r.firstWall);
  if (r.firstCpu !== undefined) target.firstCpu.push(r.firstCpu);
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
    const sdk = sdkPackages();
    // Nothing listens there: AWS calls of the first invocation are refused at once.
    const port = await unusedPort();
    for (const [, resource] of Object.entries(template.Resources)) {
      if (resource.Type !== 'AWS::Lambda::Function') continue;
      const p = resource.Properties;
      const name = String(p.Description).replace(/^pophook /, '');
      const key = String((p.Code as { S3Key: string }).S3Key).replace(/\.zip$/, '');
      const file = join(assembly.directory, `asset.${key}`, BUNDLE_FILE);
      const code = readFileSync(file);
      bundles.push({
        name,
        files: [file],
        env: {
          ...process.env,
          ...((p.Environment as { Variables: Record<string, string> }).Variables ?? {}),
          ...DEPLOY_TIME_ENV,
          AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
          AWS_MAX_ATTEMPTS: '1',
          LOG_LEVEL: 'error',
        },
        sizes: { minified: code.length, gzip: gzipSync(code).length, map: statSync(`${file}.map`).size },
        event: eventFor(name, config),
        ...samples(),
      });
    }
    // The baselines run with the functions' NODE_OPTIONS too (Lambda applies them to everything the
    // process loads): the heap flag in them alone adds ~45 ms to any load (see the module comment).
    const env = { ...process.env, ...DEPLOY_TIME_ENV, NODE_OPTIONS: LAMBDA_NODE_OPTIONS };
    const baselines: Target[] = [
      { name: 'empty-esm', files: [emptyModule], env, ...samples() },
      { name: 'aws-sdk', files: sdk, env, ...samples() },
    ];
    const base = `file://${join(outdir, 'probe.mjs')}`;
    const load = loadavg()[0] as number;
    // Interleaved, so a burst of load from elsewhere lands on every row rather than on one.
    for (let i = 0; i < RUNS; i++) {
      for (const t of [...bundles, ...baselines]) probe(t, base);
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
        `baselines: empty-esm = an empty ES module; aws-sdk = only ${sdk.join(', ')} from node_modules (as the Lambda runtime provides them)\n` +
        `${baselines.map(row).join('\n')}\n` +
        `import CPU time p50 (user + system)\n` +
        `${all.map((t) => `  ${t.name.padEnd(9)}  ${ms(median(t.cpu)).padStart(10)}`).join('\n')}\n` +
        `first invocation after the import, same process (AWS endpoints on a closed local port, 1 attempt): p50 wall, CPU; import + first invocation wall\n` +
        `${bundles
          .map(
            (t) =>
              `  ${t.name.padEnd(9)}  ${ms(median(t.firstWall)).padStart(10)}  ${ms(median(t.firstCpu)).padStart(10)}  ${ms(median(t.wall.map((w, i) => w + (t.firstWall[i] ?? 0)))).padStart(10)}`,
          )
          .join('\n')}\n`,
    );
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

await main();

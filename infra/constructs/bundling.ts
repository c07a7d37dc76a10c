/**
 * How the two Lambda handlers are built. One place, so the construct and `scripts/bundle-size.ts`
 * measure the same artefact.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';

/** Repository root: entries, package-lock.json and tsconfig.json are resolved from here. */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Handler entry points, relative to the project root. */
export const HANDLER_ENTRIES = {
  poller: 'functions/poller.ts',
  delivery: 'functions/delivery.ts',
} as const;
export type HandlerName = keyof typeof HANDLER_ENTRIES;

/** cdk-nag AwsSolutions-L1 wants the newest Node.js runtime this aws-cdk-lib knows. */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;
export const ESBUILD_TARGET = 'node24';

/**
 * The handler file the bundle is written to. CommonJS, not ESM: the few packages left external (see
 * RUNTIME_PROVIDED_EXTERNALS) are CommonJS, and `require()` loads CommonJS about 2.5 times faster than
 * `import` does (an ESM import runs Node's export lexer over it and wraps it in a module record; ~400
 * ms vs ~160 ms CPU for the five runtime-provided SDK packages, measured with `scripts/bundle-size.ts`
 * on this repository's dev machine). The handlers use neither top-level await nor `import.meta`, so
 * nothing is lost, and `require` needs no banner shim for the CommonJS dependencies (mailparser,
 * iconv-lite, ...). Lambda loads `index.js` with `require` when no package.json says otherwise.
 */
export const BUNDLE_FILE = 'index.js';

/**
 * Lambda caps the whole environment (keys and values) at 4 KB. Values that are tokens at synth time
 * (bucket, queue URL, table) are not known yet, so this much is kept free for them.
 */
export const LAMBDA_ENV_LIMIT_BYTES = 4096;
export const TOKEN_VALUES_RESERVE_BYTES = 512;

/**
 * The only modules left out of the bundles: the links of the AWS SDK's default credential chain that
 * `@aws-sdk/credential-provider-node` loads with a dynamic `import()` only after the environment
 * provider found no keys. Lambda always sets the execution role's AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, so the chain stops at its first (bundled) link and
 * these are never loaded there; if they ever were, the Lambda Node.js runtime provides them. Leaving
 * them out saves ~120 KiB per bundle (the SSO, STS and SSO-OIDC clients they carry), which the poller
 * needs to stay under the 1.5 MB budget.
 */
export const RUNTIME_PROVIDED_EXTERNALS = [
  '@aws-sdk/credential-provider-http',
  '@aws-sdk/credential-provider-ini',
  '@aws-sdk/credential-provider-process',
  '@aws-sdk/credential-provider-sso',
  '@aws-sdk/credential-provider-web-identity',
  '@smithy/credential-provider-imds',
] as const;

/**
 * libmime ships CommonJS and ESM builds, and mailparser's dependencies reach it both ways
 * (@zone-eu/mailsplit `require`s it, mailparser `import`s it), so esbuild bundled both: ~90 KiB twice
 * (mostly its MIME type table). Aliasing both to the CommonJS build keeps one copy (ESM importers get
 * its `module.exports` as the default export, which is what the ESM build exports). Resolved here to an
 * absolute path, as esbuild would resolve a relative alias against its working directory; bundling is
 * local (`forceDockerBundling: false`, esbuild is a devDependency).
 */
const ONE_LIBMIME = createRequire(import.meta.url).resolve('libmime');

/**
 * Bundling options shared by both functions. `inject` adds modules that run before the handler.
 *
 * The AWS SDK is bundled, not left to the copy the Lambda runtime provides: that copy (client-s3,
 * -dynamodb, -sqs, -secrets-manager, s3-request-presigner and the ~70 `@smithy`/`@aws-sdk` packages
 * under them, each resolved, read and compiled file by file) took longer to load on its own than the
 * whole 200 ms cold-start budget. Tree-shaken and minified into the bundle, the same clients add ~430
 * KiB, and a whole handler loads in about the time the runtime's SDK alone took (`scripts/bundle-size.ts`
 * measures both in one run: the `aws-sdk` baseline). It also pins the SDK to the lockfile's version
 * instead of whatever the runtime ships that month.
 */
export function pophookBundling(inject: readonly string[] = []): nodejs.BundlingOptions {
  return {
    format: nodejs.OutputFormat.CJS,
    target: ESBUILD_TARGET,
    minify: true,
    sourceMap: true,
    // Source text in the map would double the artefact; stack traces only need names and lines.
    sourcesContent: false,
    externalModules: [...RUNTIME_PROVIDED_EXTERNALS],
    // ESM-first resolution so tree shaking works on dual packages.
    mainFields: ['module', 'main'],
    forceDockerBundling: false,
    esbuildArgs: {
      // Non-ASCII text as is, not as \uXXXX escapes: iconv-lite's CJK tables shrink by half (the
      // poller bundle by ~250 KiB). Node reads modules as UTF-8, so the strings are the same. (Passed
      // as an argument: this aws-cdk-lib declares `charset` but does not hand it to esbuild.)
      '--charset': 'utf8',
      '--alias': `libmime=${ONE_LIBMIME}`,
      // `import()` becomes `require()`: the credential chain reaches the RUNTIME_PROVIDED_EXTERNALS
      // through `import()`, and an ESM import ignores NODE_PATH, which is how the Lambda runtime makes
      // its SDK copy resolvable; `require` follows it.
      '--supported:dynamic-import': 'false',
    },
    ...(inject.length ? { inject: [...inject] } : {}),
  };
}

/**
 * Writes a module that sets `process.env.CONFIG_JSON` before any handler code runs, for configs too
 * large for Lambda's 4 KB environment. The handler reads the variable exactly as it would otherwise.
 * The file name carries a content hash, so a config change changes the bundle and its asset hash.
 */
export function writeConfigModule(dir: string, handler: HandlerName, configJson: string): string {
  mkdirSync(dir, { recursive: true });
  const hash = createHash('sha256').update(configJson).digest('hex').slice(0, 16);
  const file = join(dir, `pophook-config-${handler}-${hash}.mjs`);
  writeFileSync(
    file,
    '// Generated by the Pophook construct: the config is too large for the Lambda environment.\n' +
      `process.env.CONFIG_JSON ??= ${JSON.stringify(configJson)};\n`,
  );
  return file;
}

/** Byte size of an environment as Lambda counts it (keys plus values, serialised). */
export function environmentBytes(env: Readonly<Record<string, string>>): number {
  return Buffer.byteLength(JSON.stringify(env), 'utf8');
}

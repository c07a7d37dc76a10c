/**
 * CDK app entry (`cdk.json`: `npx tsx infra/app.ts`). The one place in infra that reads the process
 * environment. Context: `-c config=PATH` (else POPHOOK_CONFIG, else pophook.yaml),
 * `-c stackName=NAME` (default Pophook; its lowercase form is the metrics' service name).
 */
import { existsSync } from 'node:fs';
import { Annotations, App } from 'aws-cdk-lib';
import { loadConfigFile } from '../shared/config/load.js';
import { PophookError } from '../shared/errors.js';
import { addPophookChecks, PophookStack, resolveConfigPath } from './pophook-stack.js';

try {
  const app = new App();
  const { path, isExample } = resolveConfigPath({
    context: app.node.tryGetContext('config'),
    env: process.env.POPHOOK_CONFIG,
    ci: Boolean(process.env.CI && process.env.CI !== 'false'),
    exists: existsSync,
  });
  const config = await loadConfigFile(path);
  const stackName = String(app.node.tryGetContext('stackName') ?? 'Pophook');
  const region = config.aws.region ?? process.env.CDK_DEFAULT_REGION;
  const account = process.env.CDK_DEFAULT_ACCOUNT;
  const stack = new PophookStack(app, stackName, {
    config,
    // The metrics' `service` dimension: two stacks in one account and Region must not share it.
    options: { serviceName: stackName.toLowerCase() },
    ...(account || region ? { env: { ...(account ? { account } : {}), ...(region ? { region } : {}) } } : {}),
  });
  if (isExample)
    Annotations.of(stack).addWarningV2(
      'pophook:example-config',
      `Synthesised from ${path}: its mailboxes and endpoints are examples. Do not deploy this.`,
    );
  addPophookChecks(app);
  app.synth();
} catch (err) {
  // Config problems are for people: print the message, not a stack trace.
  if (err instanceof PophookError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  throw err;
}

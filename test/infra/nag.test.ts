import { App, CfnResource, Stack, Validations } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { Pophook } from '../../infra/constructs/pophook.js';
import { addPophookChecks, PophookStack } from '../../infra/pophook-stack.js';
import { loadConfigFile, parseConfig } from '../../shared/config/load.js';
import type { PophookConfig } from '../../shared/config/schema.js';

function newApp(): App {
  return new App({ context: { 'aws:cdk:bundling-stacks': [] }, builtinCloudFormationValidation: false });
}

/** Every feature switched on: customer archive key, access logs, versioning, expiry, alarms, static egress. */
async function everythingConfig(): Promise<PophookConfig> {
  const example = await loadConfigFile('examples/pophook.config.yaml');
  return parseConfig({
    ...example,
    aws: {
      alarmEmail: 'ops@example.com',
      staticEgressIp: true,
      archive: {
        versioned: true,
        accessLogging: true,
        kmsKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        transitionToInfrequentAccessDays: 30,
        transitionToGlacierDays: 90,
        expireDays: 730,
        retainOnDelete: true,
      },
    },
  });
}

/** Acknowledgements recorded anywhere in the tree: where, which rule, and why. */
function acknowledgements(root: IConstruct): { path: string; id: string; reason: string }[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) =>
        Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({
          path: c.node.path,
          id,
          reason,
        })),
      ),
  );
}

describe('cdk-nag AwsSolutions + Serverless', () => {
  it('passes the example config with zero unacknowledged findings', async () => {
    const app = newApp();
    new PophookStack(app, 'Example', { config: await loadConfigFile('examples/pophook.config.yaml') });
    addPophookChecks(app);
    expect(() => app.synth()).not.toThrow();
  });

  it('passes with every feature on (KMS, access logs, alarm topic, static egress, tracing)', async () => {
    const app = newApp();
    new PophookStack(app, 'Everything', {
      config: await everythingConfig(),
      options: { tracing: true },
      env: { region: 'eu-west-1' },
    });
    addPophookChecks(app);
    expect(() => app.synth()).not.toThrow();
  });

  it('passes with a customer key for everything and an unreserved poller', async () => {
    const app = newApp();
    const stack = new Stack(app, 'CustomerKey');
    const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
    const config = await loadConfigFile('examples/pophook.config.yaml');
    new Pophook(stack, 'Pophook', {
      config: { ...config, aws: { ...config.aws, alarmEmail: 'ops@example.com' } },
      encryptionKey: key,
      pollConcurrency: false,
    });
    addPophookChecks(app);
    expect(() => app.synth()).not.toThrow();
  });

  it('fails synthesis on an unacknowledged finding (the checks really run)', async () => {
    const app = newApp();
    const stack = new PophookStack(app, 'Failing', {
      config: await loadConfigFile('examples/pophook.config.yaml'),
    });
    new sqs.Queue(stack, 'Unsafe', { encryption: sqs.QueueEncryption.UNENCRYPTED });
    addPophookChecks(app);
    let report = '';
    try {
      app.synth();
    } catch (err) {
      report = (err as Error).message;
    }
    expect(report).toMatch(/AwsSolutions-SQS2[\s\S]*AwsSolutions-SQS4[\s\S]*Serverless-SQSRedrivePolicy/);
    // Only the foreign queue is reported: everything pophook creates is clean.
    expect(report).toContain('Failing/Unsafe/Resource');
    expect(report).not.toContain('Failing/Pophook/');
  });

  it('acknowledges only on resources inside the construct, each with a written reason', async () => {
    const app = newApp();
    const stack = new PophookStack(app, 'Acks', {
      config: await everythingConfig(),
      options: { tracing: true },
      env: { region: 'eu-west-1' },
    });
    // aws-cdk-lib acknowledges some of its own CloudFormation-Validate rules; only cdk-nag's are ours.
    const acks = acknowledgements(app).filter((a) => /AwsSolutions-|Serverless-/.test(a.id));
    expect(acks.length).toBeGreaterThan(10);
    for (const ack of acks) {
      expect(ack.path.startsWith(`${stack.node.path}/Pophook/`), ack.path).toBe(true);
      expect(ack.reason.length, `${ack.id} at ${ack.path}`).toBeGreaterThan(40);
      // Each acknowledgement sits on a resource (or its L2 wrapper), never on a whole subtree of them.
      const scope = app.node.findAll().find((c) => c.node.path === ack.path);
      const resources = scope?.node.findAll().filter((c) => c instanceof CfnResource) ?? [];
      expect(resources.length, ack.path).toBeLessThanOrEqual(3);
    }
  });
});

/**
 * The deployable stack around the `Pophook` construct, the cdk-nag checks every synth runs, and how
 * the app finds its config. `infra/app.ts` only wires these to the process (argv, env).
 */
import { type App, CfnOutput, Stack, type StackProps, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, ServerlessChecks } from 'cdk-nag';
import type { Construct } from 'constructs';
import type { PophookConfig } from '../shared/config/schema.js';
import { ConfigError } from '../shared/errors.js';
import { Pophook, type PophookProps } from './constructs/pophook.js';

export interface PophookStackProps extends StackProps {
  /** The validated config. */
  readonly config: PophookConfig;
  /**
   * Construct options beyond the config.
   * @default - the construct's defaults
   */
  readonly options?: Omit<PophookProps, 'config'>;
}

/** One pophook deployment: the construct plus the outputs the CLI and operators need. */
export class PophookStack extends Stack {
  public readonly pophook: Pophook;

  constructor(scope: Construct, id: string, props: PophookStackProps) {
    super(scope, id, { description: 'pophook: POP3 mailboxes to signed webhooks', ...props });
    const p = new Pophook(this, 'Pophook', { ...props.options, config: props.config });
    this.pophook = p;
    const out = (name: string, value: string, description: string) =>
      new CfnOutput(this, name, { value, description });
    out('ArchiveBucketName', p.archiveBucket.bucketName, 'S3 bucket with raw messages and parsed events');
    out('DeliveryQueueName', p.deliveryQueue.queueName, 'SQS queue of webhook delivery jobs');
    out('DeliveryQueueUrl', p.deliveryQueue.queueUrl, 'URL of the delivery queue (replay sends here)');
    out('DeliveryDlqName', p.deliveryDlq.queueName, 'Delivery jobs that exhausted their retries');
    out('DeliveryDlqUrl', p.deliveryDlq.queueUrl, 'URL of the delivery DLQ (redrive from here)');
    out('PollDlqUrl', p.pollDlq.queueUrl, 'Scheduled polls that could not run');
    out('StateTableName', p.stateTable.tableName, 'DynamoDB table with leases, UIDLs and delivery state');
    out('DashboardName', p.dashboard.dashboardName, 'CloudWatch dashboard');
    if (p.alarmTopic) out('AlarmTopicArn', p.alarmTopic.topicArn, 'SNS topic alarms notify');
    if (p.egressIp) out('EgressIp', p.egressIp.attrPublicIp, 'The one public IP all outbound traffic uses');
  }
}

/**
 * Registers cdk-nag's AwsSolutions and Serverless packs (cdk-nag 3.x API). Any finding that is not
 * acknowledged on its resource, with a reason, makes synthesis fail.
 */
export function addPophookChecks(app: App): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app), new ServerlessChecks(app));
}

export const DEFAULT_CONFIG_PATH = 'pophook.yaml';
export const EXAMPLE_CONFIG_PATH = 'examples/pophook.config.yaml';

export interface ConfigPathInputs {
  /** `-c config=PATH`. */
  readonly context?: unknown;
  /** POPHOOK_CONFIG. */
  readonly env?: string;
  /** True under CI, where synth may fall back to the example config. */
  readonly ci: boolean;
  readonly exists: (path: string) => boolean;
}

/**
 * Picks the config file: `-c config=PATH`, then POPHOOK_CONFIG, then `pophook.yaml`. Only in CI
 * (or with `-c config=examples/pophook.config.yaml`) does a missing default fall back to the example,
 * so nobody deploys example.com mailboxes by accident.
 */
export function resolveConfigPath(inputs: ConfigPathInputs): { path: string; isExample: boolean } {
  const explicit =
    typeof inputs.context === 'string' && inputs.context ? inputs.context : inputs.env || undefined;
  if (explicit) return { path: explicit, isExample: explicit === EXAMPLE_CONFIG_PATH };
  if (inputs.exists(DEFAULT_CONFIG_PATH)) return { path: DEFAULT_CONFIG_PATH, isExample: false };
  if (inputs.ci) return { path: EXAMPLE_CONFIG_PATH, isExample: true };
  throw new ConfigError(
    `No ${DEFAULT_CONFIG_PATH} here. Copy ${EXAMPLE_CONFIG_PATH} to ${DEFAULT_CONFIG_PATH} and edit it, ` +
      'or pass -c config=PATH (or set POPHOOK_CONFIG).',
  );
}

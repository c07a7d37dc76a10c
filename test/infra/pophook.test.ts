import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  LAMBDA_NODE_OPTIONS,
  Pophook,
  type PophookProps,
  validatePophookProps,
} from '../../infra/constructs/pophook.js';
import {
  DEFAULT_CONFIG_PATH,
  EXAMPLE_CONFIG_PATH,
  PophookStack,
  resolveConfigPath,
} from '../../infra/pophook-stack.js';
import { parseConfig } from '../../shared/config/load.js';
import type { PophookConfig } from '../../shared/config/schema.js';
import { requiredMaxReceiveCount } from '../../shared/delivery/retry.js';
import { ConfigError } from '../../shared/errors.js';
import { STATE_TABLE_SCHEMA } from '../../shared/state/dynamo-state.js';

type Json = Record<string, unknown>;
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Sid?: string };

/** A config with every kind of secret reference: password, OAuth app, refresh token, endpoint secrets. */
function rawConfig(overrides: Json = {}): Json {
  return {
    version: 1,
    mailboxes: [
      {
        id: 'support',
        host: 'pop.example.com',
        user: 'support@example.com',
        auth: { type: 'password', password: { secret: 'pophook/support-password' } },
        pollEveryMinutes: 5,
      },
      {
        id: 'sales',
        host: 'pop.gmail.com',
        user: 'sales@example.com',
        auth: {
          type: 'oauth2-google',
          clientId: 'client-id',
          clientSecret: { secret: 'pophook/google-client' },
          refreshToken: { secret: 'pophook/sales-refresh' },
        },
        pollEveryMinutes: 15,
      },
      {
        id: 'm365',
        host: 'outlook.office365.com',
        user: 'ops@example.com',
        auth: {
          type: 'oauth2-microsoft-app',
          tenantId: 'tenant',
          clientId: 'client',
          clientSecret: {
            secret: 'arn:aws:secretsmanager:us-east-1:111122223333:secret:pophook/m365-AbCdEf',
          },
        },
        pollEveryMinutes: 1,
      },
    ],
    endpoints: [
      {
        id: 'helpdesk',
        url: 'https://hooks.example.com/in',
        secrets: [{ secret: 'pophook/helpdesk-signing' }, { secret: 'pophook/helpdesk-signing-next' }],
      },
      { id: 'crm', url: 'https://crm.example.com/hook', secrets: [{ secret: 'pophook/crm-signing' }] },
    ],
    ...overrides,
  };
}

function config(overrides: Json = {}): PophookConfig {
  return parseConfig(rawConfig(overrides), 'test config');
}

/** Fast synth: no esbuild, no built-in CloudFormation schema validation (the CLI test runs both). */
function newApp(): App {
  return new App({ context: { 'aws:cdk:bundling-stacks': [] }, builtinCloudFormationValidation: false });
}

function build(props: Partial<PophookProps> & { config?: PophookConfig } = {}) {
  const stack = new Stack(newApp(), 'Test');
  const pophook = new Pophook(stack, 'Pophook', { ...props, config: props.config ?? config() });
  return { stack, pophook, template: Template.fromStack(stack) };
}

function resourcesOf(template: Template, type: string): [string, Json][] {
  return Object.entries(template.findResources(type)) as [string, Json][];
}

function props(resource: Json): Json {
  return resource.Properties as Json;
}

/** Every statement of every identity policy we create (inline policies and role default policies). */
function ourStatements(template: Template): Statement[] {
  return resourcesOf(template, 'AWS::IAM::Policy').flatMap(
    ([, r]) => (props(r).PolicyDocument as { Statement: Statement[] }).Statement,
  );
}

function functionId(template: Template, description: string): string {
  const hit = resourcesOf(template, 'AWS::Lambda::Function').find(
    ([, r]) => props(r).Description === description,
  );
  if (!hit) throw new Error(`no function ${description}`);
  return hit[0];
}

function policyOfRoleOf(template: Template, fnDescription: string): Statement[] {
  const fn = template.toJSON().Resources[functionId(template, fnDescription)] as Json;
  const roleId = ((props(fn).Role as Json)['Fn::GetAtt'] as string[])[0];
  const policy = resourcesOf(template, 'AWS::IAM::Policy').find(([, r]) =>
    (props(r).Roles as Json[]).some((ref) => ref.Ref === roleId),
  );
  if (!policy) throw new Error(`no policy for ${fnDescription}`);
  return (props(policy[1]).PolicyDocument as { Statement: Statement[] }).Statement;
}

const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const secretStatements = (statements: Statement[]) =>
  statements.filter((s) => actionsOf(s).some((a) => a.startsWith('secretsmanager:')));
const resourceText = (s: Statement) => JSON.stringify(s.Resource);

describe('Pophook construct, default settings', () => {
  let template: Template;
  let pophook: Pophook;
  beforeAll(() => {
    ({ template, pophook } = build());
  });

  it('encrypts the archive, table and every queue with service-managed keys', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
    });
    template.hasResourceProperties('AWS::DynamoDB::Table', { SSESpecification: { SSEEnabled: true } });
    const queues = resourcesOf(template, 'AWS::SQS::Queue');
    expect(queues).toHaveLength(3);
    for (const [, q] of queues) expect(props(q).SqsManagedSseEnabled).toBe(true);
  });

  it('denies non-TLS access on the bucket and every queue', () => {
    const insecureDeny = Match.objectLike({
      Effect: 'Deny',
      Condition: { Bool: { 'aws:SecureTransport': 'false' } },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([insecureDeny]) },
    });
    const queuePolicies = resourcesOf(template, 'AWS::SQS::QueuePolicy');
    expect(queuePolicies).toHaveLength(3);
    for (const [, p] of queuePolicies)
      expect(props(p).PolicyDocument).toMatchObject({
        Statement: expect.arrayContaining([
          expect.objectContaining({
            Effect: 'Deny',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      });
  });

  it('blocks public access, enforces bucket-owner ownership and retains the archive', () => {
    template.hasResource('AWS::S3::Bucket', {
      Properties: Match.objectLike({
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      }),
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  it('aborts incomplete multipart uploads after one day', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' }),
        ]),
      },
    });
  });

  it('gives the delivery queue a DLQ with the receive count the retry schedule needs, and 14-day DLQ retention', () => {
    const schedule = config().delivery.retryScheduleSeconds;
    template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('DeliveryDlq'), 'Arn'] },
        maxReceiveCount: requiredMaxReceiveCount(schedule),
      },
    });
    // Never fewer than one receive per attempt (first + every retry); the default schedule's 14-24 h
    // delays each take extra 12 h visibility steps, plus slack for throttling.
    expect(requiredMaxReceiveCount(schedule)).toBeGreaterThanOrEqual(schedule.length + 1);
    expect(requiredMaxReceiveCount(schedule)).toBe(19);
    const dlq = resourcesOf(template, 'AWS::SQS::Queue').find(([id]) => id.includes('DeliveryDlq'));
    expect(props(dlq?.[1] ?? {}).MessageRetentionPeriod).toBe(14 * 86_400);
  });

  it('sets the delivery queue visibility timeout to at least 6x the delivery function timeout', () => {
    const fn = template.toJSON().Resources[functionId(template, 'pophook delivery')] as Json;
    const timeout = props(fn).Timeout as number;
    const queue = resourcesOf(template, 'AWS::SQS::Queue').find(([id]) => id.includes('DeliveryQueue'));
    const visibility = props(queue?.[1] ?? {}).VisibilityTimeout as number;
    expect(timeout).toBe(60);
    expect(visibility).toBeGreaterThanOrEqual(6 * timeout);
    // The queue keeps jobs longer than the whole retry schedule takes.
    const retrySum = config().delivery.retryScheduleSeconds.reduce((a, b) => a + b, 0);
    expect(props(queue?.[1] ?? {}).MessageRetentionPeriod as number).toBeGreaterThan(retrySum);
  });

  it('consumes the delivery queue with partial batch responses, batch size and a concurrency cap', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 10,
      ScalingConfig: { MaximumConcurrency: 10 },
      FunctionName: { Ref: functionId(template, 'pophook delivery') },
    });
  });

  it('creates one schedule per mailbox at its own rate, with a retry policy and a DLQ', () => {
    const schedules = resourcesOf(template, 'AWS::Scheduler::Schedule');
    expect(schedules).toHaveLength(3);
    const byMailbox = new Map(
      schedules.map(([, s]) => {
        const target = props(s).Target as Json;
        return [JSON.parse(target.Input as string).mailboxId as string, { s: props(s), target }];
      }),
    );
    expect([...byMailbox.keys()].sort()).toEqual(['m365', 'sales', 'support']);
    expect(byMailbox.get('support')?.s.ScheduleExpression).toBe('rate(5 minutes)');
    expect(byMailbox.get('sales')?.s.ScheduleExpression).toBe('rate(15 minutes)');
    expect(byMailbox.get('m365')?.s.ScheduleExpression).toBe('rate(1 minute)');
    for (const { target } of byMailbox.values()) {
      expect(target.Arn).toEqual({ 'Fn::GetAtt': [functionId(template, 'pophook poller'), 'Arn'] });
      expect(target.RetryPolicy).toMatchObject({ MaximumRetryAttempts: 3 });
      expect(target.DeadLetterConfig).toEqual({
        Arn: { 'Fn::GetAtt': [expect.stringMatching(/PollDlq/), 'Arn'] },
      });
    }
    // Jitter is at most half the interval; a 1-minute poll gets none.
    expect(byMailbox.get('sales')?.s.FlexibleTimeWindow).toEqual({
      Mode: 'FLEXIBLE',
      MaximumWindowInMinutes: 7,
    });
    expect(byMailbox.get('m365')?.s.FlexibleTimeWindow).toEqual({ Mode: 'OFF' });
    expect(Object.keys(pophook.schedules).sort()).toEqual(['m365', 'sales', 'support']);
  });

  it('lets only this account and schedule group assume the scheduler role', () => {
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Principal: { Service: 'scheduler.amazonaws.com' },
            Condition: {
              StringEquals: {
                'aws:SourceAccount': { Ref: 'AWS::AccountId' },
                'aws:SourceArn': { 'Fn::GetAtt': [Match.stringLikeRegexp('Schedules'), 'Arn'] },
              },
            },
          }),
        ],
      },
    });
  });

  it('builds both functions for Node 24 on arm64 with explicit memory, timeout, log groups and env', () => {
    const expected = {
      'pophook poller': { MemorySize: 1024, Timeout: 600 },
      'pophook delivery': { MemorySize: 256, Timeout: 60 },
    };
    for (const [description, sizing] of Object.entries(expected)) {
      const fn = props(template.toJSON().Resources[functionId(template, description)] as Json);
      expect(fn).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        ...sizing,
        LoggingConfig: { LogGroup: { Ref: expect.stringMatching(/Logs/) } },
      });
      const env = (fn.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(Object.keys(env).sort()).toEqual(
        [
          'ARCHIVE_BUCKET',
          'CONFIG_JSON',
          'NODE_OPTIONS',
          'POWERTOOLS_METRICS_NAMESPACE',
          'POWERTOOLS_SERVICE_NAME',
          'QUEUE_URL',
          'STATE_TABLE',
        ].sort(),
      );
      expect(env).toMatchObject({
        POWERTOOLS_METRICS_NAMESPACE: 'Pophook',
        POWERTOOLS_SERVICE_NAME: 'pophook',
        NODE_OPTIONS: LAMBDA_NODE_OPTIONS,
      });
      // The config travels as references only, and round-trips through the schema.
      const parsed = parseConfig(JSON.parse(env.CONFIG_JSON as string));
      expect(parsed).toEqual(config());
      expect(env.CONFIG_JSON).not.toMatch(/whsec_|password"\s*:\s*"/);
    }
    for (const [, lg] of resourcesOf(template, 'AWS::Logs::LogGroup'))
      expect(props(lg).RetentionInDays).toBe(30);
  });

  it('caps poller concurrency and sends its async failures to the poll DLQ without Lambda retries', () => {
    const poller = functionId(template, 'pophook poller');
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: 'pophook poller',
      ReservedConcurrentExecutions: 10,
    });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: poller },
      MaximumRetryAttempts: 0,
      MaximumEventAgeInSeconds: 15 * 60,
      DestinationConfig: {
        OnFailure: { Destination: { 'Fn::GetAtt': [Match.stringLikeRegexp('PollDlq'), 'Arn'] } },
      },
    });
  });

  it('creates the state table the DynamoDB store expects (STATE_TABLE_SCHEMA)', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: STATE_TABLE_SCHEMA.partitionKey.name, KeyType: 'HASH' },
        { AttributeName: STATE_TABLE_SCHEMA.sortKey.name, KeyType: 'RANGE' },
      ],
      BillingMode: STATE_TABLE_SCHEMA.billingMode,
      TimeToLiveSpecification: { AttributeName: STATE_TABLE_SCHEMA.timeToLiveAttribute, Enabled: true },
    });
  });

  it('creates the state table with pk/sk, on-demand billing, PITR and TTL on `ttl`', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: Match.objectLike({
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      }),
      DeletionPolicy: 'Retain',
    });
  });

  it('lets the poller read only mailbox secrets and write back only the refresh token', () => {
    const statements = secretStatements(policyOfRoleOf(template, 'pophook poller'));
    const reads = statements.filter((s) => actionsOf(s).includes('secretsmanager:GetSecretValue'));
    const readTargets = reads.map(resourceText).sort();
    expect(readTargets).toHaveLength(4);
    expect(readTargets.join()).toContain(':secret:pophook/support-password-??????');
    expect(readTargets.join()).toContain(':secret:pophook/google-client-??????');
    expect(readTargets.join()).toContain(':secret:pophook/sales-refresh-??????');
    // A complete ARN is used exactly, without a wildcard suffix.
    expect(readTargets).toContain(
      JSON.stringify('arn:aws:secretsmanager:us-east-1:111122223333:secret:pophook/m365-AbCdEf'),
    );
    expect(readTargets.join()).not.toMatch(/signing/);
    for (const s of reads)
      expect(actionsOf(s).sort()).toEqual(['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']);
    const writes = statements.filter((s) => actionsOf(s).includes('secretsmanager:PutSecretValue'));
    expect(writes).toHaveLength(1);
    expect(actionsOf(writes[0] as Statement)).toEqual(['secretsmanager:PutSecretValue']);
    expect(resourceText(writes[0] as Statement)).toContain(':secret:pophook/sales-refresh-??????');
  });

  it('lets the delivery function read only the endpoint signing secrets', () => {
    const statements = secretStatements(policyOfRoleOf(template, 'pophook delivery'));
    const targets = statements.map(resourceText).join();
    expect(statements).toHaveLength(3);
    for (const name of ['helpdesk-signing', 'helpdesk-signing-next', 'crm-signing'])
      expect(targets).toContain(`:secret:pophook/${name}-??????`);
    expect(targets).not.toMatch(/password|refresh|google|m365/);
    expect(statements.flatMap(actionsOf)).not.toContain('secretsmanager:PutSecretValue');
  });

  it('scopes S3, DynamoDB and SQS grants to this bucket, table and queue with listed actions', () => {
    const poller = policyOfRoleOf(template, 'pophook poller');
    const delivery = policyOfRoleOf(template, 'pophook delivery');
    const s3Of = (ss: Statement[]) => ss.filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')));
    for (const s of [...s3Of(poller), ...s3Of(delivery)]) {
      expect(resourceText(s)).toMatch(/ArchiveBucket/);
      expect(actionsOf(s).every((a) => !a.includes('*'))).toBe(true);
    }
    expect(s3Of(delivery).flatMap(actionsOf)).toEqual(['s3:GetObject']);
    expect(s3Of(poller).flatMap(actionsOf)).not.toContain('s3:DeleteObject');
    for (const s of [...poller, ...delivery].filter((s) =>
      actionsOf(s).some((a) => a.startsWith('dynamodb:')),
    ))
      expect(resourceText(s)).toMatch(/StateTable/);
    const deliveryQueue = delivery.find((s) => actionsOf(s).includes('sqs:ChangeMessageVisibility'));
    expect(deliveryQueue && resourceText(deliveryQueue)).toMatch(/DeliveryQueue/);
  });

  it('has no Resource "*" in any policy we create', () => {
    const star = ourStatements(template).filter(
      (s) => resourceText(s) === '"*"' || resourceText(s).includes('"*"'),
    );
    expect(star).toEqual([]);
    // Logs go only to the function's own log group, not through AWSLambdaBasicExecutionRole.
    for (const [, role] of resourcesOf(template, 'AWS::IAM::Role'))
      expect(props(role).ManagedPolicyArns).toBeUndefined();
  });

  it('alarms on the DLQ, poll failures, function errors, backlog, disabled endpoints and missed polls', () => {
    const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm').map(([, a]) => props(a));
    expect(alarms).toHaveLength(5 + 2 + 3);
    expect(Object.keys(pophook.alarms).sort()).toEqual(
      [
        'deliveryBacklog',
        'deliveryDlqNotEmpty',
        'deliveryErrors',
        'endpointDisabled:crm',
        'endpointDisabled:helpdesk',
        'missedPolls:m365',
        'missedPolls:sales',
        'missedPolls:support',
        'pollFailures',
        'pollerErrors',
      ].sort(),
    );
    expect(alarms).toContainEqual(
      expect.objectContaining({
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Namespace: 'AWS/SQS',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      }),
    );
    expect(alarms).toContainEqual(
      expect.objectContaining({ MetricName: 'ApproximateAgeOfOldestMessage', Threshold: 30 * 60 }),
    );
    expect(alarms).toContainEqual(
      expect.objectContaining({
        Namespace: 'Pophook',
        MetricName: 'EndpointDisabled',
        Dimensions: [
          { Name: 'EndpointId', Value: 'helpdesk' },
          { Name: 'service', Value: 'pophook' },
        ],
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
      }),
    );
    // Not polled for 3 intervals of 15 minutes; no data at all counts as not polled.
    expect(alarms).toContainEqual(
      expect.objectContaining({
        Namespace: 'Pophook',
        MetricName: 'PollSucceeded',
        Dimensions: [
          { Name: 'MailboxId', Value: 'sales' },
          { Name: 'service', Value: 'pophook' },
        ],
        Statistic: 'Sum',
        Period: 45 * 60,
        EvaluationPeriods: 1,
        ComparisonOperator: 'LessThanThreshold',
        Threshold: 1,
        TreatMissingData: 'breaching',
      }),
    );
    // No topic without an email: alarms exist but notify no one.
    template.resourceCountIs('AWS::SNS::Topic', 0);
    for (const a of alarms) expect(a.AlarmActions).toBeUndefined();
  });

  it('builds a dashboard with the custom metrics and the queue and function metrics', () => {
    const body = JSON.stringify(
      props(resourcesOf(template, 'AWS::CloudWatch::Dashboard')[0]?.[1] ?? {}).DashboardBody,
    );
    for (const metric of [
      'PollSucceeded',
      'MessagesFetched',
      'BytesFetched',
      'Deliveries',
      'DeliveryLatency',
      'RetryDepth',
      'EndpointDisabled',
      'ApproximateAgeOfOldestMessage',
      'ConcurrentExecutions',
    ])
      expect(body).toContain(metric);
  });
});

describe('Pophook construct, options', () => {
  it('uses a customer KMS key for archive, table and queues, and grants only key use', () => {
    const stack = new Stack(newApp(), 'Kms');
    const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
    new Pophook(stack, 'Pophook', { config: config(), encryptionKey: key });
    const template = Template.fromStack(stack);
    const keyArn = { 'Fn::GetAtt': [Match.stringLikeRegexp('^Key'), 'Arn'] };
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: keyArn },
            BucketKeyEnabled: true,
          },
        ],
      },
    });
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: keyArn },
    });
    for (const [, q] of resourcesOf(template, 'AWS::SQS::Queue'))
      expect(props(q).KmsMasterKeyId).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^Key/), 'Arn'] });
    expect(ourStatements(template).filter((s) => resourceText(s).includes('"*"'))).toEqual([]);
  });

  it('imports the archive key from config and applies lifecycle transitions, expiry and versioning', () => {
    const { template } = build({
      config: config({
        aws: {
          archive: {
            versioned: true,
            kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
            transitionToInfrequentAccessDays: 30,
            transitionToGlacierDays: 90,
            expireDays: 365,
            accessLogging: true,
            retainOnDelete: false,
          },
        },
      }),
    });
    template.hasResource('AWS::S3::Bucket', {
      Properties: Match.objectLike({
        VersioningConfiguration: { Status: 'Enabled' },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [
            Match.objectLike({
              ServerSideEncryptionByDefault: {
                SSEAlgorithm: 'aws:kms',
                KMSMasterKeyID: 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
              },
            }),
          ],
        },
        LifecycleConfiguration: {
          Rules: Match.arrayWith([
            Match.objectLike({
              Id: 'archive-retention',
              ExpirationInDays: 365,
              NoncurrentVersionExpiration: { NoncurrentDays: 365 },
              Transitions: [
                { StorageClass: 'STANDARD_IA', TransitionInDays: 30 },
                { StorageClass: 'GLACIER_IR', TransitionInDays: 90 },
              ],
            }),
          ]),
        },
        LoggingConfiguration: {
          DestinationBucketName: { Ref: Match.stringLikeRegexp('AccessLogBucket') },
          LogFilePrefix: 'archive/',
        },
      }),
      DeletionPolicy: 'Delete',
    });
    // The access-log bucket: SSE-S3 (log delivery cannot use KMS), SSL-only, expiring logs.
    template.resourceCountIs('AWS::S3::Bucket', 2);
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 90 })]) },
    });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
            Resource: 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
          }),
        ]),
      },
    });
  });

  it('creates an encrypted, SSL-only alarm topic with the email subscription and wires every alarm to it', () => {
    const { template } = build({ config: config({ aws: { alarmEmail: 'ops@example.com' } }) });
    template.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('AlarmTopicKey'), 'Arn'] },
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
    template.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          }),
        ]),
      },
    });
    for (const [, a] of resourcesOf(template, 'AWS::CloudWatch::Alarm'))
      expect(props(a).AlarmActions).toEqual([{ Ref: expect.stringMatching(/AlarmTopic/) }]);
  });

  it('puts the functions behind one NAT gateway with an Elastic IP when static egress is on', () => {
    const app = newApp();
    const stack = new PophookStack(app, 'Egress', { config: config({ aws: { staticEgressIp: true } }) });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::EC2::VPC', 1);
    template.resourceCountIs('AWS::EC2::NatGateway', 1);
    template.resourceCountIs('AWS::EC2::EIP', 1);
    template.resourceCountIs('AWS::EC2::Subnet', 2);
    template.hasResourceProperties('AWS::EC2::NatGateway', {
      AllocationId: { 'Fn::GetAtt': [Match.stringLikeRegexp('EgressIp'), 'AllocationId'] },
    });
    // Archive and state traffic skips the NAT's per-GB charge.
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 2);
    for (const [, fn] of resourcesOf(template, 'AWS::Lambda::Function'))
      expect(props(fn).VpcConfig).toMatchObject({ SubnetIds: [{ Ref: expect.stringMatching(/private/) }] });
    template.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: [
        {
          'Fn::Join': [
            '',
            [
              'arn:',
              { Ref: 'AWS::Partition' },
              ':iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole',
            ],
          ],
        },
      ],
    });
    template.hasOutput('EgressIp', {
      Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('EgressIp'), 'PublicIp'] },
    });
  });

  it('adds only the X-Ray statements on "*" when tracing is on', () => {
    const { template } = build({ tracing: true });
    for (const [, fn] of resourcesOf(template, 'AWS::Lambda::Function'))
      expect(props(fn).TracingConfig).toEqual({ Mode: 'Active' });
    const star = ourStatements(template).filter((s) => resourceText(s).includes('"*"'));
    expect(star.length).toBeGreaterThan(0);
    for (const s of star) expect(actionsOf(s).every((a) => a.startsWith('xray:'))).toBe(true);
  });

  it('derives queue settings from the retry schedule and the construct options', () => {
    const { template } = build({
      config: config({ delivery: { retryScheduleSeconds: [10, 60, 3600] } }),
      deliveryTimeout: Duration.seconds(120),
      deliveryConcurrency: 50,
      deliveryBatchSize: 5,
      pollConcurrency: false,
      mailboxAlarms: false,
      serviceName: 'pophook-staging',
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 720,
      RedrivePolicy: Match.objectLike({ maxReceiveCount: requiredMaxReceiveCount([10, 60, 3600]) }),
    });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 5,
      ScalingConfig: { MaximumConcurrency: 50 },
    });
    for (const [, fn] of resourcesOf(template, 'AWS::Lambda::Function')) {
      expect(props(fn).ReservedConcurrentExecutions).toBeUndefined();
      expect(props(fn).Environment).toMatchObject({
        Variables: { POWERTOOLS_SERVICE_NAME: 'pophook-staging' },
      });
    }
    const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm').map(([, a]) => props(a));
    expect(alarms.filter((a) => a.MetricName === 'PollSucceeded')).toEqual([]);
    expect(alarms.find((a) => a.MetricName === 'EndpointDisabled')?.Dimensions).toContainEqual({
      Name: 'service',
      Value: 'pophook-staging',
    });
  });

  it('moves a config too large for the Lambda environment into the bundle', () => {
    const many = Array.from({ length: 12 }, (_, i) => ({
      id: `mailbox-${i}`,
      host: `pop${i}.example.com`,
      user: `user${i}@example.com`,
      auth: { type: 'password', password: { secret: `pophook/mailbox-${i}` } },
    }));
    const big = config({ mailboxes: many });
    const { pophook, template } = build({ config: big });
    expect(pophook.configDelivery).toBe('bundle');
    for (const [, fn] of resourcesOf(template, 'AWS::Lambda::Function'))
      expect(Object.keys((props(fn).Environment as { Variables: Json }).Variables)).not.toContain(
        'CONFIG_JSON',
      );
    template.resourceCountIs('AWS::Scheduler::Schedule', 12);
    expect(() => build({ config: big, configDelivery: 'environment' })).toThrow(/Lambda environment/);
  });
});

describe('Pophook validation', () => {
  it('reports every problem at once', () => {
    const bad = config({
      endpoints: [
        { id: 'slow', url: 'https://slow.example.com/', secrets: [{ secret: 'x' }], timeoutMs: 120_000 },
      ],
      delivery: { retryScheduleSeconds: Array.from({ length: 15 }, () => 86_400) },
      aws: {
        archive: {
          kmsKeyArn: 'alias/mine',
          transitionToInfrequentAccessDays: 60,
          transitionToGlacierDays: 70,
          expireDays: 50,
        },
      },
    });
    const problems = validatePophookProps({
      config: bad,
      pollConcurrency: 0,
      deliveryConcurrency: 1,
      deliveryBatchSize: 11,
      pollerMemoryMiB: 64,
    });
    const text = problems.join('\n');
    for (const fragment of [
      'pollerMemoryMiB',
      'pollConcurrency',
      'deliveryConcurrency',
      'deliveryBatchSize',
      'endpoints[0].timeoutMs',
      'delivery.retryScheduleSeconds',
      'aws.archive.kmsKeyArn',
      'aws.archive.transitionToGlacierDays',
      'aws.archive.expireDays',
    ])
      expect(text).toContain(fragment);
    expect(problems).toHaveLength(9);
    const stack = new Stack(newApp(), 'Bad');
    let error: unknown;
    try {
      new Pophook(stack, 'Pophook', { config: bad, pollConcurrency: 0 });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/pollConcurrency[\s\S]*endpoints\[0\]\.timeoutMs/);
  });

  it('rejects malformed secret references and too many mailboxes for one stack', () => {
    const mailboxes = Array.from({ length: 230 }, (_, i) => ({
      id: `m${i}`,
      host: 'pop.example.com',
      user: 'u',
      auth: { type: 'password', password: { secret: i === 0 ? 'arn:aws:s3:::not-a-secret' : 'bad name!' } },
    }));
    const problems = validatePophookProps({ config: config({ mailboxes }) });
    expect(problems.find((p) => p.startsWith('mailboxes[0].auth.password.secret'))).toMatch(
      /not a Secrets Manager secret ARN/,
    );
    expect(problems.find((p) => p.startsWith('mailboxes[1].auth.password.secret'))).toMatch(
      /not a valid Secrets Manager name/,
    );
    expect(problems.find((p) => p.startsWith('mailboxes: 230'))).toMatch(/mailboxAlarms: false/);
    expect(validatePophookProps({ config: config(), deliveryTimeout: Duration.minutes(20) })).toEqual([
      'deliveryTimeout: use 10 seconds to 15 minutes',
    ]);
  });
});

describe('PophookStack and config path', () => {
  it('outputs the bucket, queue, DLQ and table names', () => {
    const stack = new PophookStack(newApp(), 'Outputs', { config: config() });
    const template = Template.fromStack(stack);
    for (const name of [
      'ArchiveBucketName',
      'DeliveryQueueName',
      'DeliveryQueueUrl',
      'DeliveryDlqName',
      'StateTableName',
    ])
      template.hasOutput(name, {});
  });

  it('prefers -c config, then POPHOOK_CONFIG, then the default; the example only in CI', () => {
    const none = () => false;
    expect(resolveConfigPath({ context: 'a.yaml', env: 'b.yaml', ci: false, exists: none })).toEqual({
      path: 'a.yaml',
      isExample: false,
    });
    expect(resolveConfigPath({ env: 'b.yaml', ci: false, exists: none }).path).toBe('b.yaml');
    expect(resolveConfigPath({ ci: false, exists: (p) => p === DEFAULT_CONFIG_PATH }).path).toBe(
      DEFAULT_CONFIG_PATH,
    );
    expect(resolveConfigPath({ ci: true, exists: none })).toEqual({
      path: EXAMPLE_CONFIG_PATH,
      isExample: true,
    });
    expect(() => resolveConfigPath({ ci: false, exists: none })).toThrow(
      /Copy examples\/pophook.config.yaml/,
    );
  });
});

/**
 * `Pophook`: the whole AWS deployment as one construct, secure by default.
 *
 *   EventBridge Scheduler (one schedule per mailbox, its own rate)
 *     -> poller Lambda (reserved concurrency = max parallel POP3 sessions)
 *        -> S3 archive (raw .eml + parsed event JSON) and DynamoDB state (leases, UIDLs, deliveries)
 *        -> SQS delivery queue -> delivery Lambda (partial batch responses) -> webhook endpoints
 *                              -> delivery DLQ after every retry
 *
 * Scaling: one schedule per mailbox is right up to a few hundred mailboxes. For about 1,000:
 * - Scheduler itself is not the limit (a million schedules per account per Region by default), and
 *   overlapping or duplicate invocations are harmless because the poller takes a per-mailbox lease.
 * - `pollConcurrency` (the poller's reserved concurrency) bounds parallel POP3 sessions; size it to
 *   mailboxes x average poll duration / interval (1,000 mailboxes, 20 s polls, every 5 min: about 67).
 *   Throttled invocations wait in Lambda's async queue up to the longest interval, then go to the poll DLQ.
 * - CloudFormation allows 500 resources per stack and each mailbox adds a schedule and an alarm:
 *   past about 200 mailboxes turn `mailboxAlarms` off (the dashboard still shows every mailbox) and
 *   past about 450 split mailboxes across stacks (one `Pophook` per stack, each with its slice of the
 *   config) or move the schedules into nested stacks.
 * - The config no longer fits Lambda's 4 KB environment past about seven mailboxes; `configDelivery`
 *   `auto` then embeds it in the code bundle (same CONFIG_JSON variable for the handlers).
 *
 * Static egress (`config.aws.staticEgressIp`): a VPC with one public and one private subnet, a NAT
 * gateway with an Elastic IP, and both functions in the private subnet, so mail servers and webhook
 * receivers can allow-list one address. Off by default because it costs about USD 32.85/month for the
 * NAT gateway (0.045/h) plus 3.65/month for the public IPv4 address (0.005/h), plus 0.045 per GB
 * processed (us-east-1 prices). S3 and DynamoDB traffic bypasses the NAT through free gateway endpoints.
 */

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CfnElement, Duration, RemovalPolicy, Stack, Stage, Token, Validations } from 'aws-cdk-lib';
import type * as cw from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { PophookConfig } from '../../shared/config/schema.js';
import { JITTER_FRACTION, requiredMaxReceiveCount } from '../../shared/delivery/retry.js';
import { ConfigError } from '../../shared/errors.js';
import {
  environmentBytes,
  HANDLER_ENTRIES,
  type HandlerName,
  LAMBDA_ENV_LIMIT_BYTES,
  LAMBDA_RUNTIME,
  PROJECT_ROOT,
  pophookBundling,
  TOKEN_VALUES_RESERVE_BYTES,
  writeConfigModule,
} from './bundling.js';
import { METRICS_NAMESPACE, PophookMonitoring } from './monitoring.js';
import { collectSecretUses, grantSecretAccess, type SecretUse, validateSecretUses } from './secrets.js';

/** SQS keeps a message at most 14 days; the DLQ gets the maximum so nothing expires before triage. */
const SQS_MAX_RETENTION = Duration.days(14);
/** Lambda's guidance: visibility timeout at least 6x the function timeout, so throttled retries fit. */
const VISIBILITY_TIMEOUT_FACTOR = 6;
/** SQS caps visibility timeout at 12 hours. */
const SQS_MAX_VISIBILITY = Duration.hours(12);
/** Delivery jobs are thin (ids and keys, bodies live in S3); 256 KiB is SQS's classic limit and plenty. */
const DELIVERY_MESSAGE_MAX_BYTES = 256 * 1024;
/** Time inside a delivery invocation that is not the HTTP request: S3 read, signing, state writes. */
const DELIVERY_OVERHEAD = Duration.seconds(10);
/** Scheduler retries a failed invoke (throttled API, Lambda unavailable) this often before the DLQ. */
const SCHEDULER_RETRY_ATTEMPTS = 3;
/** Flexible windows spread polls over time so many mailboxes on one provider do not log in together. */
const MAX_SCHEDULE_JITTER_MINUTES = 15;
/** CloudFormation refuses stacks with more resources; leave room for everything that is not per mailbox. */
const CFN_RESOURCE_LIMIT = 500;
const FIXED_RESOURCES_ESTIMATE = 60;
/** Access logs are for incident forensics; a quarter is enough and bounds their cost. */
const ACCESS_LOG_EXPIRY = Duration.days(90);
/** S3 refuses a Glacier transition less than 30 days after a Standard-IA transition in the same rule. */
const IA_TO_GLACIER_MIN_DAYS = 30;

/** Where the validated config reaches the handlers. */
export type ConfigDelivery = 'auto' | 'environment' | 'bundle';

/** Properties of {@link Pophook}. Everything but `config` is optional and has a secure default. */
export interface PophookProps {
  /** The validated config (`loadConfigFile` / `parseConfig`). Secrets in it are references only. */
  readonly config: PophookConfig;
  /**
   * Existing SNS topic for alarm notifications.
   * @default - a KMS-encrypted topic is created when an alarm email is set; otherwise alarms have no action
   */
  readonly alarmTopic?: sns.ITopic;
  /**
   * Email address subscribed to the alarm topic (the recipient must confirm the subscription).
   * @default config.aws.alarmEmail
   */
  readonly alarmEmail?: string;
  /**
   * Customer managed KMS key for the archive, state table, queues and alarm topic.
   * @default - archive: `config.aws.archive.kmsKeyArn` if set, else SSE-S3; table: the AWS managed key;
   * queues: SQS-managed SSE; alarm topic: a dedicated key with rotation
   */
  readonly encryptionKey?: kms.IKey;
  /**
   * Retention of both functions' log groups.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Poller memory in MiB (also buys CPU for TLS and MIME parsing).
   * @default 1024
   */
  readonly pollerMemoryMiB?: number;
  /**
   * Poller timeout. POP3 servers log idle sessions out after 10 minutes; the poller budgets inside it.
   * @default Duration.minutes(10)
   */
  readonly pollerTimeout?: Duration;
  /**
   * Delivery memory in MiB.
   * @default 256
   */
  readonly deliveryMemoryMiB?: number;
  /**
   * Delivery timeout; must exceed every endpoint's `timeoutMs` plus 10 s of overhead.
   * @default Duration.seconds(60)
   */
  readonly deliveryTimeout?: Duration;
  /**
   * Reserved concurrency of the poller: the most POP3 sessions at once across all mailboxes. `false`
   * leaves it unreserved, for accounts whose concurrency quota is below 110 (Lambda keeps 100 unreserved).
   * @default 10
   */
  readonly pollConcurrency?: number | false;
  /**
   * Most delivery invocations at once (the SQS event source's maximum concurrency, 2-1000).
   * @default 10
   */
  readonly deliveryConcurrency?: number;
  /**
   * Delivery jobs per invocation (1-10).
   * @default 10
   */
  readonly deliveryBatchSize?: number;
  /**
   * X-Ray active tracing. Off by default: the handlers do not use the X-Ray SDK, and tracing needs an
   * `xray:Put*` grant on `*` (X-Ray has no resource-level permissions).
   * @default false
   */
  readonly tracing?: boolean;
  /**
   * One "not polled successfully" alarm per mailbox (USD 0.10/month each).
   * @default true
   */
  readonly mailboxAlarms?: boolean;
  /**
   * How many poll intervals without a successful poll raise a mailbox's alarm.
   * @default 3
   */
  readonly missedPollIntervals?: number;
  /**
   * Alarm when the oldest delivery job is older than this.
   * @default - 30 minutes, or longer when the first two retry delays add up to more
   */
  readonly deliveryBacklogAge?: Duration;
  /**
   * POWERTOOLS_SERVICE_NAME of both functions, and so the `service` dimension of every custom metric.
   * Give each deployment in one account and Region its own.
   * @default 'pophook'
   */
  readonly serviceName?: string;
  /**
   * Run the functions behind a NAT gateway with one Elastic IP (about USD 36.50/month plus data).
   * @default config.aws.staticEgressIp
   */
  readonly staticEgressIp?: boolean;
  /**
   * How CONFIG_JSON reaches the handlers: `environment` (a Lambda environment variable, visible in
   * the console, 4 KB limit for all variables), `bundle` (a module that sets the variable before the
   * handler loads, embedded in the code bundle), or `auto` (environment when it fits).
   * @default 'auto'
   */
  readonly configDelivery?: ConfigDelivery;
  /**
   * Keep the state table when the stack is deleted (it holds the UIDLs already fetched; losing it
   * means mailboxes with `retention: keep` are delivered again).
   * @default true
   */
  readonly retainStateOnDelete?: boolean;
}

interface ResolvedProps {
  config: PophookConfig;
  alarmEmail?: string;
  logRetention: logs.RetentionDays;
  pollerMemoryMiB: number;
  pollerTimeout: Duration;
  deliveryMemoryMiB: number;
  deliveryTimeout: Duration;
  pollConcurrency: number | false;
  deliveryConcurrency: number;
  deliveryBatchSize: number;
  tracing: boolean;
  mailboxAlarms: boolean;
  missedPollIntervals: number;
  deliveryBacklogAge: Duration;
  serviceName: string;
  staticEgressIp: boolean;
  configDelivery: ConfigDelivery;
  retainStateOnDelete: boolean;
}

/** Resolves every default in one place. */
export function resolvePophookProps(props: PophookProps): ResolvedProps {
  const { config } = props;
  const retry = config.delivery.retryScheduleSeconds;
  // A job received twice waits retry[0] + retry[1] before its third receive; until then it counts
  // towards ApproximateAgeOfOldestMessage, so the alarm must allow for it.
  const retryAge = Duration.seconds((retry[0] ?? 0) + (retry[1] ?? 0) + 15 * 60);
  const backlogDefault = Duration.minutes(Math.max(30, Math.ceil(retryAge.toSeconds() / 60)));
  return {
    config,
    alarmEmail: props.alarmEmail ?? config.aws.alarmEmail,
    logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
    pollerMemoryMiB: props.pollerMemoryMiB ?? 1024,
    pollerTimeout: props.pollerTimeout ?? Duration.minutes(10),
    deliveryMemoryMiB: props.deliveryMemoryMiB ?? 256,
    deliveryTimeout: props.deliveryTimeout ?? Duration.seconds(60),
    pollConcurrency: props.pollConcurrency ?? 10,
    deliveryConcurrency: props.deliveryConcurrency ?? 10,
    deliveryBatchSize: props.deliveryBatchSize ?? 10,
    tracing: props.tracing ?? false,
    mailboxAlarms: props.mailboxAlarms ?? true,
    missedPollIntervals: props.missedPollIntervals ?? 3,
    deliveryBacklogAge: props.deliveryBacklogAge ?? backlogDefault,
    serviceName: props.serviceName ?? 'pophook',
    staticEgressIp: props.staticEgressIp ?? config.aws.staticEgressIp,
    configDelivery: props.configDelivery ?? 'auto',
    retainStateOnDelete: props.retainStateOnDelete ?? true,
  };
}

const isInt = (n: number, min: number, max: number) => Number.isInteger(n) && n >= min && n <= max;

/** Every problem with the props, each a line that names the setting and what to do. Empty when valid. */
export function validatePophookProps(props: PophookProps): string[] {
  const r = resolvePophookProps(props);
  const { config } = r;
  const problems: string[] = [];
  const seconds = (d: Duration) => (Token.isUnresolved(d) ? Number.NaN : d.toSeconds());

  if (!isInt(r.pollerMemoryMiB, 128, 10_240)) problems.push('pollerMemoryMiB: use 128 to 10240');
  if (!isInt(r.deliveryMemoryMiB, 128, 10_240)) problems.push('deliveryMemoryMiB: use 128 to 10240');
  const pollerTimeout = seconds(r.pollerTimeout);
  if (!(pollerTimeout >= 60 && pollerTimeout <= 900))
    problems.push('pollerTimeout: use 1 to 15 minutes (Lambda allows at most 15)');
  const deliveryTimeout = seconds(r.deliveryTimeout);
  if (!(deliveryTimeout >= 10 && deliveryTimeout <= 900))
    problems.push('deliveryTimeout: use 10 seconds to 15 minutes');
  else if (deliveryTimeout * VISIBILITY_TIMEOUT_FACTOR > SQS_MAX_VISIBILITY.toSeconds())
    problems.push('deliveryTimeout: 6x it must fit SQS visibility timeout (12 hours)');
  if (r.pollConcurrency !== false && !isInt(r.pollConcurrency, 1, 1000))
    problems.push('pollConcurrency: use 1 to 1000, or false to leave the poller unreserved');
  if (!isInt(r.deliveryConcurrency, 2, 1000))
    problems.push('deliveryConcurrency: use 2 to 1000 (SQS event source maximum concurrency)');
  if (!isInt(r.deliveryBatchSize, 1, 10)) problems.push('deliveryBatchSize: use 1 to 10');
  if (!isInt(r.missedPollIntervals, 1, 100)) problems.push('missedPollIntervals: use 1 to 100');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(r.serviceName))
    problems.push('serviceName: use 1-64 letters, digits, dot, dash or underscore');

  for (const [i, e] of config.endpoints.entries()) {
    if (
      Number.isFinite(deliveryTimeout) &&
      e.timeoutMs / 1000 + DELIVERY_OVERHEAD.toSeconds() > deliveryTimeout
    )
      problems.push(
        `endpoints[${i}].timeoutMs: ${e.timeoutMs} ms plus ${DELIVERY_OVERHEAD.toSeconds()} s overhead exceeds ` +
          `the delivery function timeout (${deliveryTimeout} s); lower timeoutMs or raise deliveryTimeout`,
      );
  }

  const retrySpan = retryScheduleSpanSeconds(config.delivery.retryScheduleSeconds);
  // The last attempt must still find the job in the queue; leave a day for backlog and outages.
  if (retrySpan + 86_400 > SQS_MAX_RETENTION.toSeconds())
    problems.push(
      `delivery.retryScheduleSeconds: the delays add up to ${(retrySpan / 86_400).toFixed(1)} days with ` +
        'jitter; SQS keeps a job at most 14 days, so keep the total under about 11.8 days',
    );

  const archive = config.aws.archive;
  if (
    archive.kmsKeyArn &&
    !/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(archive.kmsKeyArn)
  )
    problems.push(
      'aws.archive.kmsKeyArn: expected arn:aws:kms:REGION:ACCOUNT:key/KEY-ID (aliases are not accepted)',
    );
  const ia = archive.transitionToInfrequentAccessDays;
  const glacier = archive.transitionToGlacierDays;
  if (ia !== undefined && glacier !== undefined && glacier < ia + IA_TO_GLACIER_MIN_DAYS)
    problems.push(
      `aws.archive.transitionToGlacierDays: must be at least ${IA_TO_GLACIER_MIN_DAYS} days after ` +
        `transitionToInfrequentAccessDays (${ia}); S3 rejects the lifecycle rule otherwise`,
    );
  const lastTransition = Math.max(ia ?? 0, glacier ?? 0);
  if (archive.expireDays !== undefined && archive.expireDays <= lastTransition)
    problems.push(
      `aws.archive.expireDays: must be later than every transition (day ${lastTransition}); S3 rejects it otherwise`,
    );

  problems.push(...validateSecretUses(collectSecretUses(config)));

  const perMailbox = 1 + (r.mailboxAlarms ? 1 : 0);
  const estimate = FIXED_RESOURCES_ESTIMATE + config.mailboxes.length * perMailbox + config.endpoints.length;
  if (estimate > CFN_RESOURCE_LIMIT)
    problems.push(
      `mailboxes: ${config.mailboxes.length} mailboxes need about ${estimate} CloudFormation resources (limit ` +
        `${CFN_RESOURCE_LIMIT}); set mailboxAlarms: false or split the mailboxes across several stacks`,
    );

  if (r.configDelivery === 'environment') {
    const bytes = environmentBytes(staticEnvironment(config, r.serviceName)) + TOKEN_VALUES_RESERVE_BYTES;
    if (bytes > LAMBDA_ENV_LIMIT_BYTES)
      problems.push(
        `configDelivery: the config needs about ${bytes} bytes of Lambda environment (limit ` +
          `${LAMBDA_ENV_LIMIT_BYTES}); use configDelivery 'bundle' or 'auto'`,
      );
  }
  return problems;
}

/** Longest time from first attempt to last retry: every delay at its maximum jitter. */
function retryScheduleSpanSeconds(schedule: readonly number[]): number {
  return Math.ceil(schedule.reduce((a, b) => a + b, 0) * (1 + JITTER_FRACTION));
}

/** The CloudFormation logical id of a construct's main resource, as cdk-nag prints it. */
function logicalId(construct: Construct): string {
  const cfn = construct.node.defaultChild as CfnElement;
  return Stack.of(construct).resolve(cfn.logicalId) as string;
}

/** Exact KMS actions on one key (CDK's grantEncryptDecrypt adds ReEncrypt* and GenerateDataKey*). */
function grantKeyUse(key: kms.IKey, grantee: iam.IGrantable, actions: string[]): void {
  iam.Grant.addToPrincipal({ grantee, actions, resourceArns: [key.keyArn] });
}

/**
 * Node flags both functions run with (bench/memory.ts runs its poll with the same). A 4 MB young
 * generation semi-space (V8's default is 16 MB) keeps a poll streaming a 200 MB message near 130 MB
 * RSS instead of 150: streams make short-lived chunks, and a smaller nursery frees them sooner.
 */
export const LAMBDA_NODE_OPTIONS = '--enable-source-maps --max-semi-space-size=4';

/** The part of the functions' environment known at synth time. */
function staticEnvironment(config: PophookConfig, serviceName: string): Record<string, string> {
  return {
    CONFIG_JSON: JSON.stringify(config),
    POWERTOOLS_SERVICE_NAME: serviceName,
    POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    NODE_OPTIONS: LAMBDA_NODE_OPTIONS,
  };
}

/**
 * Turns POP3 mailboxes into signed webhooks: schedules, poller, archive, state, delivery queue and
 * function, alarms and a dashboard. See the module comment for the architecture and scaling notes.
 *
 * @example
 * const config = await loadConfigFile('pophook.yaml');
 * new Pophook(stack, 'Pophook', { config });
 */
export class Pophook extends Construct {
  /** Raw messages and parsed events. Retained on stack deletion unless `aws.archive.retainOnDelete: false`. */
  public readonly archiveBucket: s3.Bucket;
  /** Server access logs of the archive, when `aws.archive.accessLogging` is on. */
  public readonly accessLogBucket?: s3.Bucket;
  /** Delivery jobs, one per (message, endpoint). */
  public readonly deliveryQueue: sqs.Queue;
  /** Delivery jobs that exhausted `delivery.retryScheduleSeconds`. */
  public readonly deliveryDlq: sqs.Queue;
  /** Scheduled polls that could not run (Scheduler invoke failures and poller async failures). */
  public readonly pollDlq: sqs.Queue;
  /** Leases, message records, poll records, delivery attempts, endpoint state (pk/sk, TTL `ttl`). */
  public readonly stateTable: dynamodb.Table;
  public readonly pollerFunction: nodejs.NodejsFunction;
  public readonly deliveryFunction: nodejs.NodejsFunction;
  public readonly pollerLogGroup: logs.LogGroup;
  public readonly deliveryLogGroup: logs.LogGroup;
  /** One schedule per mailbox, keyed by mailbox id. */
  public readonly schedules: Readonly<Record<string, scheduler.Schedule>>;
  public readonly scheduleGroup: scheduler.ScheduleGroup;
  public readonly dashboard: cw.Dashboard;
  /** Alarms by name (`deliveryDlqNotEmpty`, `missedPolls:<mailbox>`, `endpointDisabled:<endpoint>`...). */
  public readonly alarms: Readonly<Record<string, cw.Alarm>>;
  /** Where alarms notify, if anywhere. */
  public readonly alarmTopic?: sns.ITopic;
  /** Secrets the functions may read, imported by name or ARN. */
  public readonly secrets: readonly SecretUse[];
  /** The VPC, when static egress is on. */
  public readonly vpc?: ec2.Vpc;
  /** The Elastic IP all outbound traffic leaves from, when static egress is on. */
  public readonly egressIp?: ec2.CfnEIP;
  /** Where CONFIG_JSON ended up (`auto` resolved). */
  public readonly configDelivery: Exclude<ConfigDelivery, 'auto'>;

  constructor(scope: Construct, id: string, props: PophookProps) {
    super(scope, id);
    // Deterministic whatever the app's feature flags: access-log delivery by bucket policy, not ACLs.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);

    const problems = validatePophookProps(props);
    if (problems.length)
      throw new ConfigError(`Pophook settings are invalid:\n  - ${problems.join('\n  - ')}`, {
        details: { issues: problems },
      });
    const r = resolvePophookProps(props);
    const { config } = r;
    const archiveConfig = config.aws.archive;
    const key = props.encryptionKey;

    // --- Archive ---------------------------------------------------------------------------------
    const archiveKey =
      key ??
      (archiveConfig.kmsKeyArn ? kms.Key.fromKeyArn(this, 'ArchiveKey', archiveConfig.kmsKeyArn) : undefined);
    if (archiveConfig.accessLogging) {
      // SSE-S3 only: S3 server access logging cannot deliver to a bucket encrypted with SSE-KMS.
      this.accessLogBucket = new s3.Bucket(this, 'AccessLogBucket', {
        encryption: s3.BucketEncryption.S3_MANAGED,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        enforceSSL: true,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycleRules: [
          {
            id: 'expire-access-logs',
            expiration: ACCESS_LOG_EXPIRY,
            abortIncompleteMultipartUploadAfter: Duration.days(1),
          },
        ],
        removalPolicy: archiveConfig.retainOnDelete ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
      });
      Validations.of(this.accessLogBucket).acknowledge({
        id: 'AwsSolutions-S1',
        reason: 'This is the access-log bucket itself; logging it into itself would loop.',
      });
    }
    const lifecycleRules: s3.LifecycleRule[] = [
      // Interrupted streaming uploads (a poller killed mid-message) would otherwise be billed forever.
      { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
    ];
    const transitions: s3.Transition[] = [];
    if (archiveConfig.transitionToInfrequentAccessDays !== undefined)
      transitions.push({
        storageClass: s3.StorageClass.INFREQUENT_ACCESS,
        transitionAfter: Duration.days(archiveConfig.transitionToInfrequentAccessDays),
      });
    if (archiveConfig.transitionToGlacierDays !== undefined)
      // Instant Retrieval keeps old mail readable for `show` and replay without a restore step.
      transitions.push({
        storageClass: s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
        transitionAfter: Duration.days(archiveConfig.transitionToGlacierDays),
      });
    if (transitions.length || archiveConfig.expireDays !== undefined)
      lifecycleRules.push({
        id: 'archive-retention',
        ...(transitions.length ? { transitions } : {}),
        ...(archiveConfig.expireDays !== undefined
          ? {
              expiration: Duration.days(archiveConfig.expireDays),
              ...(archiveConfig.versioned
                ? { noncurrentVersionExpiration: Duration.days(archiveConfig.expireDays) }
                : {}),
            }
          : {}),
      });
    this.archiveBucket = new s3.Bucket(this, 'ArchiveBucket', {
      ...(archiveKey
        ? { encryption: s3.BucketEncryption.KMS, encryptionKey: archiveKey, bucketKeyEnabled: true }
        : { encryption: s3.BucketEncryption.S3_MANAGED }),
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: archiveConfig.versioned,
      lifecycleRules,
      ...(this.accessLogBucket
        ? { serverAccessLogsBucket: this.accessLogBucket, serverAccessLogsPrefix: 'archive/' }
        : {}),
      removalPolicy: archiveConfig.retainOnDelete ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });
    if (!this.accessLogBucket)
      Validations.of(this.archiveBucket).acknowledge({
        id: 'AwsSolutions-S1',
        reason:
          'Server access logging is opt-in (aws.archive.accessLogging: true) because it doubles request costs; ' +
          'the functions are the only writers and readers, and CloudTrail data events are the alternative.',
      });

    // --- State -----------------------------------------------------------------------------------
    // Table (not TableV2): TableV2 cannot render a customer key in a Region-agnostic stack.
    this.stateTable = new dynamodb.Table(this, 'StateTable', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: 'ttl',
      ...(key
        ? { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: key }
        : { encryption: dynamodb.TableEncryption.AWS_MANAGED }),
      removalPolicy: r.retainStateOnDelete ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });

    // --- Queues ----------------------------------------------------------------------------------
    const queueEncryption: Pick<sqs.QueueProps, 'encryption' | 'encryptionMasterKey'> = key
      ? { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: key }
      : { encryption: sqs.QueueEncryption.SQS_MANAGED };
    const retry = config.delivery.retryScheduleSeconds;
    const retrySpan = retryScheduleSpanSeconds(retry);
    this.deliveryDlq = new sqs.Queue(this, 'DeliveryDlq', {
      ...queueEncryption,
      enforceSSL: true,
      retentionPeriod: SQS_MAX_RETENTION,
    });
    this.deliveryQueue = new sqs.Queue(this, 'DeliveryQueue', {
      ...queueEncryption,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(r.deliveryTimeout.toSeconds() * VISIBILITY_TIMEOUT_FACTOR),
      // Long enough for the whole retry schedule plus a day of backlog, and at least the SQS default.
      retentionPeriod: Duration.seconds(
        Math.min(SQS_MAX_RETENTION.toSeconds(), Math.max(4 * 86_400, retrySpan + 86_400)),
      ),
      maxMessageSizeBytes: DELIVERY_MESSAGE_MAX_BYTES,
      // One receive per attempt, plus one per extra 12 h visibility step of a long delay, plus slack for
      // throttling (the delivery code's own count; retry.length + 1 would dead-letter long schedules early).
      deadLetterQueue: { queue: this.deliveryDlq, maxReceiveCount: requiredMaxReceiveCount(retry) },
    });
    this.pollDlq = new sqs.Queue(this, 'PollDlq', {
      ...queueEncryption,
      enforceSSL: true,
      retentionPeriod: SQS_MAX_RETENTION,
    });
    Validations.of(this.deliveryDlq).acknowledge({
      id: 'Serverless-SQSRedrivePolicy',
      reason: 'This is the delivery dead-letter queue; its messages are redriven or replayed by an operator.',
    });
    Validations.of(this.pollDlq).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is a dead-letter queue: the EventBridge Scheduler DLQ and the poller on-failure destination. ' +
        'cdk-nag only recognises DLQs referenced by another queue redrive policy.',
    });
    Validations.of(this.pollDlq).acknowledge({
      id: 'Serverless-SQSRedrivePolicy',
      reason: 'Dead-letter queue for Scheduler and the poller; a DLQ of a DLQ would only move the problem.',
    });

    // --- Network (optional static egress) ---------------------------------------------------------
    let network: Pick<lambda.FunctionProps, 'vpc' | 'vpcSubnets' | 'securityGroups'> = {};
    if (r.staticEgressIp) {
      this.egressIp = new ec2.CfnEIP(this, 'EgressIp', { domain: 'vpc' });
      const flowLogGroup = new logs.LogGroup(this, 'FlowLogs', { retention: r.logRetention });
      this.vpc = new ec2.Vpc(this, 'Vpc', {
        ipAddresses: ec2.IpAddresses.cidr('10.42.0.0/24'),
        maxAzs: 1,
        natGateways: 1,
        natGatewayProvider: ec2.NatProvider.gateway({ eipAllocationIds: [this.egressIp.attrAllocationId] }),
        subnetConfiguration: [
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 26 },
          { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 26 },
        ],
        // Free gateway endpoints keep archive and state traffic off the NAT's per-GB charge.
        gatewayEndpoints: {
          S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
          DynamoDB: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
        },
        // Nothing uses the default security group; restricting it needs a custom-resource Lambda.
        restrictDefaultSecurityGroup: false,
        flowLogs: {
          rejected: {
            trafficType: ec2.FlowLogTrafficType.REJECT,
            destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
          },
        },
      });
      const securityGroup = new ec2.SecurityGroup(this, 'FunctionsSecurityGroup', {
        vpc: this.vpc,
        description: 'pophook functions: no inbound; outbound to POP3 servers and webhook endpoints',
        // POP3 and webhook ports are whatever the config says, so outbound cannot be narrowed here.
        allowAllOutbound: true,
      });
      network = {
        vpc: this.vpc,
        vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
        securityGroups: [securityGroup],
      };
    }

    // --- Functions -------------------------------------------------------------------------------
    const staticEnv = staticEnvironment(config, r.serviceName);
    const envFits = environmentBytes(staticEnv) + TOKEN_VALUES_RESERVE_BYTES <= LAMBDA_ENV_LIMIT_BYTES;
    this.configDelivery =
      r.configDelivery === 'auto' ? (envFits ? 'environment' : 'bundle') : r.configDelivery;
    const { CONFIG_JSON: configJson = '', ...envWithoutConfig } = staticEnv;
    const environmentFor = (handler: HandlerName): { env: Record<string, string>; inject: string[] } => {
      const env = {
        ...envWithoutConfig,
        ARCHIVE_BUCKET: this.archiveBucket.bucketName,
        QUEUE_URL: this.deliveryQueue.queueUrl,
        STATE_TABLE: this.stateTable.tableName,
      };
      if (this.configDelivery === 'environment')
        return { env: { CONFIG_JSON: configJson, ...env }, inject: [] };
      // Beside the cloud assembly: generated input for esbuild, not part of the repository.
      const dir = join(Stage.of(this)?.outdir ?? tmpdir(), '.pophook-config');
      return { env, inject: [writeConfigModule(dir, handler, configJson)] };
    };

    const makeFunction = (
      handler: HandlerName,
      memorySize: number,
      timeout: Duration,
      extra: Pick<lambda.FunctionProps, 'reservedConcurrentExecutions'> = {},
    ) => {
      const name = handler === 'poller' ? 'Poller' : 'Delivery';
      const role = new iam.Role(this, `${name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `pophook ${handler} function`,
      });
      const logGroup = new logs.LogGroup(this, `${name}Logs`, {
        retention: r.logRetention,
        removalPolicy: RemovalPolicy.RETAIN,
      });
      // Only its own log group: no AWSLambdaBasicExecutionRole (which allows every log group).
      logGroup.grantWrite(role);
      if (network.vpc) {
        // Lambda creates the function's network interfaces with the execution role; CDK attaches this
        // policy only to roles it creates itself.
        const vpcPolicy = 'service-role/AWSLambdaVPCAccessExecutionRole';
        role.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName(vpcPolicy));
        Validations.of(role).acknowledge({
          id: `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/${vpcPolicy}]`,
          reason:
            'The AWS-maintained minimum for a Lambda function in a VPC (create/describe/delete its ENIs); ' +
            'ec2:Describe* has no resource-level permissions, so a hand-written copy would still need "*".',
        });
      }
      const { env, inject } = environmentFor(handler);
      const fn = new nodejs.NodejsFunction(this, name, {
        entry: join(PROJECT_ROOT, HANDLER_ENTRIES[handler]),
        handler: 'handler',
        projectRoot: PROJECT_ROOT,
        depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
        runtime: LAMBDA_RUNTIME,
        architecture: lambda.Architecture.ARM_64,
        memorySize,
        timeout,
        role,
        logGroup,
        environment: env,
        bundling: pophookBundling(inject),
        tracing: r.tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
        description: `pophook ${handler}`,
        ...network,
        ...extra,
      });
      return { fn, role, logGroup };
    };

    const maxInterval = Math.max(...config.mailboxes.map((m) => m.pollEveryMinutes));
    const poller = makeFunction(
      'poller',
      r.pollerMemoryMiB,
      r.pollerTimeout,
      r.pollConcurrency === false ? {} : { reservedConcurrentExecutions: r.pollConcurrency },
    );
    this.pollerFunction = poller.fn;
    this.pollerLogGroup = poller.logGroup;
    // The next scheduled poll is the retry: Lambda's own async retries would only stack up sessions.
    this.pollerFunction.configureAsyncInvoke({
      retryAttempts: 0,
      // While throttled, a poll job waits in Lambda's async queue up to the longest interval (a stale job
      // still polls; the lease turns duplicates into no-ops), then goes to the poll DLQ. Lambda: 60 s-6 h.
      maxEventAge: Duration.seconds(Math.min(6 * 3600, Math.max(60, maxInterval * 60))),
      onFailure: new destinations.SqsDestination(this.pollDlq),
    });

    Validations.of(this.pollerFunction).acknowledge({
      id: 'Serverless-LambdaDLQ',
      reason:
        'Asynchronous failures go to an on-failure destination (the poll DLQ), which records the error and ' +
        'request context; a DeadLetterConfig as well would duplicate it.',
    });

    const delivery = makeFunction('delivery', r.deliveryMemoryMiB, r.deliveryTimeout);
    this.deliveryFunction = delivery.fn;
    this.deliveryLogGroup = delivery.logGroup;
    const eventSource = new SqsEventSource(this.deliveryQueue, {
      batchSize: r.deliveryBatchSize,
      reportBatchItemFailures: true,
      maxConcurrency: r.deliveryConcurrency,
    });
    this.deliveryFunction.addEventSource(eventSource);
    Validations.of(this.deliveryFunction).acknowledge(
      {
        id: 'Serverless-LambdaDLQ',
        reason:
          'Only the SQS event source invokes this function, synchronously; failed jobs go to the delivery ' +
          'queue redrive DLQ after maxReceiveCount receives. A function DLQ applies to async invokes only.',
      },
      {
        id: 'Serverless-LambdaEventSourceMappingDestination',
        reason:
          'SQS event source mappings do not support on-failure destinations; the delivery queue redrive policy ' +
          '(maxReceiveCount = retries + 1) moves failed jobs to the delivery DLQ.',
      },
    );
    if (r.tracing)
      for (const role of [poller.role, delivery.role])
        Validations.of(role).acknowledge({
          id: 'AwsSolutions-IAM5[Resource::*]',
          reason:
            'Only xray:PutTraceSegments and xray:PutTelemetryRecords (added by active tracing) use "*": X-Ray ' +
            'has no resource-level permissions for them.',
        });
    if (!r.tracing)
      for (const fn of [this.pollerFunction, this.deliveryFunction])
        Validations.of(fn).acknowledge({
          id: 'Serverless-LambdaTracing',
          reason:
            'Tracing is opt-in (tracing: true): the handlers do not use the X-Ray SDK, so traces would show only ' +
            'the Lambda segment, and X-Ray needs a Resource "*" grant. Logs and EMF metrics carry correlation ids.',
        });

    // --- Least-privilege grants ------------------------------------------------------------------
    // Archive: the poller writes raw mail and events (create-only keys, no deletes; retention is the
    // lifecycle rule's job) and reads them back to verify; delivery reads events and signs links.
    const objects = this.archiveBucket.arnForObjects('*');
    poller.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ArchiveWrite',
        actions: [
          's3:PutObject',
          's3:PutObjectTagging',
          's3:GetObject',
          's3:AbortMultipartUpload',
          's3:ListMultipartUploadParts',
        ],
        resources: [objects],
      }),
    );
    poller.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ArchiveList',
        // Without it a HEAD on a missing key is 403 instead of 404.
        actions: ['s3:ListBucket'],
        resources: [this.archiveBucket.bucketArn],
      }),
    );
    delivery.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ArchiveRead', actions: ['s3:GetObject'], resources: [objects] }),
    );
    if (archiveKey) {
      // SSE-KMS: writing needs a data key, reading (and multipart completion) needs Decrypt.
      grantKeyUse(archiveKey, poller.role, ['kms:GenerateDataKey', 'kms:Decrypt']);
      grantKeyUse(archiveKey, delivery.role, ['kms:Decrypt']);
    }
    this.stateTable.grantReadWriteData(poller.role);
    this.stateTable.grantReadWriteData(delivery.role);
    this.deliveryQueue.grantSendMessages(poller.role);
    // The event source grants receive/delete/ChangeMessageVisibility; the handler also changes
    // visibility itself to schedule retries, which that grant already covers.
    this.secrets = collectSecretUses(config);
    grantSecretAccess(this, this.secrets, { poller: poller.role, delivery: delivery.role });
    if (key)
      for (const role of [poller.role, delivery.role])
        for (const action of ['kms:ReEncrypt*', 'kms:GenerateDataKey*'])
          Validations.of(role).acknowledge({
            id: `AwsSolutions-IAM5[Action::${action}]`,
            reason:
              'Added by the CDK table and queue grants for the customer key; the statement names that one key ' +
              'and DynamoDB/SQS need data-key generation and re-encryption under it.',
          });
    const objectWildcard = `AwsSolutions-IAM5[Resource::<${logicalId(this.archiveBucket)}.Arn>/*]`;
    for (const role of [poller.role, delivery.role])
      Validations.of(role).acknowledge({
        id: objectWildcard,
        reason:
          'Archive object keys are generated per message (raw/<mailbox>/<uidl hash>/<sha256>.eml, events, ' +
          'attachments), so the grant covers objects in this one bucket; the actions are listed, not wildcarded.',
      });

    // --- Schedules -------------------------------------------------------------------------------
    this.scheduleGroup = new scheduler.ScheduleGroup(this, 'Schedules', {
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const stack = Stack.of(this);
    const schedulerRole = new iam.Role(this, 'SchedulerRole', {
      description: 'EventBridge Scheduler invokes the pophook poller',
      // Confused-deputy guard: only schedules in this account and this group may assume it.
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: {
            'aws:SourceAccount': stack.account,
            'aws:SourceArn': this.scheduleGroup.scheduleGroupArn,
          },
        },
      }),
    });
    if (key) grantKeyUse(key, schedulerRole, ['kms:GenerateDataKey', 'kms:Decrypt']); // KMS-encrypted poll DLQ
    Validations.of(schedulerRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${logicalId(this.pollerFunction)}.Arn>:*]`,
      reason:
        'Added by the Scheduler Lambda target (grantInvoke): versions and aliases of this one poller function; ' +
        'no other function is reachable.',
    });
    const schedules: Record<string, scheduler.Schedule> = {};
    for (const mailbox of config.mailboxes) {
      const every = mailbox.pollEveryMinutes;
      // Jitter up to half the interval (at most 15 min) so polls of many mailboxes spread out.
      const jitter = Math.min(MAX_SCHEDULE_JITTER_MINUTES, Math.floor(every / 2));
      schedules[mailbox.id] = new scheduler.Schedule(this, `Poll-${mailbox.id}`, {
        description: `pophook: poll mailbox ${mailbox.id} every ${every} min`,
        schedule: scheduler.ScheduleExpression.rate(Duration.minutes(every)),
        scheduleGroup: this.scheduleGroup,
        timeWindow:
          jitter >= 1 ? scheduler.TimeWindow.flexible(Duration.minutes(jitter)) : scheduler.TimeWindow.off(),
        target: new targets.LambdaInvoke(this.pollerFunction, {
          input: scheduler.ScheduleTargetInput.fromObject({ mailboxId: mailbox.id }),
          role: schedulerRole,
          retryAttempts: SCHEDULER_RETRY_ATTEMPTS,
          // Retrying past the next tick is pointless (Scheduler minimum 60 s).
          maxEventAge: Duration.seconds(Math.min(86_400, Math.max(60, every * 60))),
          deadLetterQueue: this.pollDlq,
        }),
      });
    }
    this.schedules = schedules;

    // --- Alarms and dashboard --------------------------------------------------------------------
    let alarmTopic = props.alarmTopic;
    if (!alarmTopic && r.alarmEmail) {
      // CloudWatch can only publish to an encrypted topic whose key policy lets it use the key; the
      // AWS managed aws/sns key cannot be changed, so the topic gets its own key (USD 1/month).
      const topicKey =
        key ??
        new kms.Key(this, 'AlarmTopicKey', {
          description: 'pophook alarm topic',
          enableKeyRotation: true,
          removalPolicy: RemovalPolicy.DESTROY,
          pendingWindow: Duration.days(7),
        });
      topicKey.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'AllowCloudWatchAlarms',
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          resources: ['*'], // in a key policy "*" means this key
          conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
        }),
      );
      alarmTopic = new sns.Topic(this, 'AlarmTopic', {
        displayName: 'pophook alarms',
        masterKey: topicKey,
        enforceSSL: true,
      });
    }
    if (alarmTopic && r.alarmEmail) {
      const sub = new sns.Subscription(this, 'AlarmEmail', {
        topic: alarmTopic,
        protocol: sns.SubscriptionProtocol.EMAIL,
        endpoint: r.alarmEmail,
      });
      Validations.of(sub).acknowledge({
        id: 'Serverless-SNSRedrivePolicy',
        reason:
          'Email subscription: SNS retries email itself, and a DLQ of alarm notifications would be read by no one; ' +
          'alarm state stays visible in CloudWatch and on the dashboard.',
      });
    }
    this.alarmTopic = alarmTopic;
    const monitoring = new PophookMonitoring(this, 'Monitoring', {
      config,
      serviceName: r.serviceName,
      pollerFunction: this.pollerFunction,
      deliveryFunction: this.deliveryFunction,
      deliveryQueue: this.deliveryQueue,
      deliveryDlq: this.deliveryDlq,
      pollDlq: this.pollDlq,
      missedPollIntervals: r.missedPollIntervals,
      deliveryBacklogAge: r.deliveryBacklogAge,
      mailboxAlarms: r.mailboxAlarms,
      ...(alarmTopic ? { alarmAction: new cwActions.SnsAction(alarmTopic) } : {}),
    });
    this.alarms = monitoring.alarms;
    this.dashboard = monitoring.dashboard;
  }
}

/**
 * Alarms and the dashboard. Custom metrics come from the handlers through Powertools (EMF log lines, so
 * no cloudwatch:PutMetricData permission): namespace `Pophook`, and every metric carries Powertools'
 * `service` dimension (POWERTOOLS_SERVICE_NAME) next to the dimension named here. Alarms match the
 * exact dimension set, so the handlers must emit:
 *   PollSucceeded {service, MailboxId}   1 per completed poll (ok or partial)
 *   EndpointDisabled {service, EndpointId}   1 when an endpoint is (or stays) disabled
 *   Deliveries {service, Outcome}, MessagesFetched, BytesFetched, DeliveryLatency, RetryDepth
 * The dashboard graphs use SEARCH, so they show those metrics whatever extra dimensions they carry.
 */
import { Duration } from 'aws-cdk-lib';
import * as cw from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { PophookConfig } from '../../shared/config/schema.js';

export const METRICS_NAMESPACE = 'Pophook';

/** Standard resolution: CloudWatch aggregates custom EMF metrics per minute; 5 min smooths spikes. */
const ALARM_PERIOD = Duration.minutes(5);
/** CloudWatch refuses an alarm whose period x evaluation periods exceeds 7 days. */
const MAX_ALARM_WINDOW_MINUTES = 7 * 24 * 60;

export interface MonitoringProps {
  readonly config: PophookConfig;
  readonly serviceName: string;
  readonly pollerFunction: lambda.IFunction;
  readonly deliveryFunction: lambda.IFunction;
  readonly deliveryQueue: sqs.IQueue;
  readonly deliveryDlq: sqs.IQueue;
  readonly pollDlq: sqs.IQueue;
  readonly missedPollIntervals: number;
  readonly deliveryBacklogAge: Duration;
  readonly mailboxAlarms: boolean;
  readonly alarmAction?: cw.IAlarmAction;
}

/** The window after which a mailbox counts as "not polled": N intervals, and never over the CloudWatch cap. */
export function missedPollWindowMinutes(pollEveryMinutes: number, intervals: number): number {
  return Math.min(pollEveryMinutes * intervals, MAX_ALARM_WINDOW_MINUTES);
}

/** Alarms (exposed by name) and one dashboard. */
export class PophookMonitoring extends Construct {
  public readonly alarms: Readonly<Record<string, cw.Alarm>>;
  public readonly dashboard: cw.Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { config, serviceName } = props;
    const custom = (
      metricName: string,
      dimensions: Record<string, string>,
      statistic: string,
      period: Duration,
    ) =>
      new cw.Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: { service: serviceName, ...dimensions },
        statistic,
        period,
      });

    const alarms: Record<string, cw.Alarm> = {};
    const add = (name: string, alarm: cw.Alarm) => {
      if (props.alarmAction) {
        alarm.addAlarmAction(props.alarmAction);
        alarm.addOkAction(props.alarmAction);
      }
      alarms[name] = alarm;
    };

    add(
      'deliveryDlqNotEmpty',
      props.deliveryDlq
        .metricApproximateNumberOfMessagesVisible({ period: ALARM_PERIOD, statistic: 'Maximum' })
        .createAlarm(this, 'DeliveryDlqNotEmpty', {
          alarmDescription:
            'Webhook deliveries exhausted every retry and are parked in the delivery DLQ. Fix the endpoint, ' +
            'then redrive the DLQ to the delivery queue (SQS console "Start DLQ redrive") or replay.',
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cw.TreatMissingData.NOT_BREACHING,
        }),
    );
    add(
      'pollFailures',
      props.pollDlq
        .metricNumberOfMessagesSent({ period: ALARM_PERIOD, statistic: 'Sum' })
        .createAlarm(this, 'PollFailures', {
          alarmDescription:
            'A scheduled poll could not run (Scheduler could not invoke the poller, the poller failed, or the ' +
            'event expired while throttled). Read the messages in the poll DLQ; if throttled, raise pollConcurrency.',
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cw.TreatMissingData.NOT_BREACHING,
        }),
    );
    add(
      'pollerErrors',
      props.pollerFunction
        .metricErrors({ period: ALARM_PERIOD, statistic: 'Sum' })
        .createAlarm(this, 'PollerErrors', {
          alarmDescription:
            'The poller threw (mailbox problems are reported as metrics, not thrown, so this is a bug or an AWS ' +
            'outage). See the poller log group.',
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cw.TreatMissingData.NOT_BREACHING,
        }),
    );
    add(
      'deliveryErrors',
      props.deliveryFunction
        .metricErrors({ period: ALARM_PERIOD, statistic: 'Sum' })
        .createAlarm(this, 'DeliveryErrors', {
          alarmDescription:
            'The delivery function threw, so its whole batch will be retried. See the delivery log group.',
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cw.TreatMissingData.NOT_BREACHING,
        }),
    );
    add(
      'deliveryBacklog',
      props.deliveryQueue
        .metricApproximateAgeOfOldestMessage({ period: ALARM_PERIOD, statistic: 'Maximum' })
        .createAlarm(this, 'DeliveryBacklog', {
          alarmDescription:
            `Delivery jobs wait longer than ${props.deliveryBacklogAge.toMinutes()} minutes: delivery is falling ` +
            'behind (concurrency cap reached, slow endpoints, or the function failing).',
          threshold: props.deliveryBacklogAge.toSeconds(),
          evaluationPeriods: 1,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
          treatMissingData: cw.TreatMissingData.NOT_BREACHING,
        }),
    );
    for (const endpoint of config.endpoints) {
      add(
        `endpointDisabled:${endpoint.id}`,
        custom('EndpointDisabled', { EndpointId: endpoint.id }, 'Maximum', ALARM_PERIOD).createAlarm(
          this,
          `EndpointDisabled-${endpoint.id}`,
          {
            alarmDescription: `Endpoint ${endpoint.id} was disabled after repeated failures; deliveries to it stop. Fix it and re-enable it.`,
            threshold: 0,
            evaluationPeriods: 1,
            comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treatMissingData: cw.TreatMissingData.NOT_BREACHING,
          },
        ),
      );
    }
    if (props.mailboxAlarms) {
      for (const mailbox of config.mailboxes) {
        const window = missedPollWindowMinutes(mailbox.pollEveryMinutes, props.missedPollIntervals);
        add(
          `missedPolls:${mailbox.id}`,
          // One evaluation period as long as the whole window: "no successful poll in N intervals".
          custom('PollSucceeded', { MailboxId: mailbox.id }, 'Sum', Duration.minutes(window)).createAlarm(
            this,
            `MissedPolls-${mailbox.id}`,
            {
              alarmDescription:
                `Mailbox ${mailbox.id} has not been polled successfully for ${window} minutes ` +
                `(${props.missedPollIntervals} intervals). Check its last poll (pophook status) and the poller logs.`,
              threshold: 1,
              evaluationPeriods: 1,
              comparisonOperator: cw.ComparisonOperator.LESS_THAN_THRESHOLD,
              // No data at all means nothing polled: that is exactly what this alarm is for.
              treatMissingData: cw.TreatMissingData.BREACHING,
            },
          ),
        );
      }
    }
    this.alarms = alarms;
    this.dashboard = this.buildDashboard(props);
  }

  private buildDashboard(props: MonitoringProps): cw.Dashboard {
    const period = ALARM_PERIOD;
    // SEARCH draws one line per dimension set (mailbox, endpoint, outcome), whatever the handlers add.
    const search = (metricName: string, statistic: string, label?: string) =>
      new cw.MathExpression({
        expression: `SEARCH('Namespace="${METRICS_NAMESPACE}" MetricName="${metricName}"', '${statistic}', ${period.toSeconds()})`,
        usingMetrics: {},
        period,
        ...(label ? { label } : {}),
      });
    const graph = (title: string, left: cw.IMetric[], width = 8) =>
      new cw.GraphWidget({ title, left, width, height: 6 });
    const p = props;
    const dashboard = new cw.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(24),
    });
    dashboard.addWidgets(
      new cw.AlarmStatusWidget({ title: 'Alarms', alarms: Object.values(this.alarms), width: 24, height: 4 }),
    );
    dashboard.addWidgets(
      graph('Successful polls per mailbox', [search('PollSucceeded', 'Sum')]),
      graph('Messages fetched', [search('MessagesFetched', 'Sum')]),
      graph('Bytes fetched', [search('BytesFetched', 'Sum')]),
    );
    dashboard.addWidgets(
      graph('Failed and skipped polls, skipped messages, parse errors', [
        search('PollFailed', 'Sum'),
        search('PollSkipped', 'Sum'),
        search('MessagesSkipped', 'Sum'),
        search('ParseErrors', 'Sum'),
      ]),
      graph('Messages deleted from servers', [search('MessagesDeleted', 'Sum')]),
      graph('Poll DLQ depth', [
        p.pollDlq.metricApproximateNumberOfMessagesVisible({
          period,
          statistic: 'Maximum',
          label: 'Failed polls kept',
        }),
      ]),
    );
    dashboard.addWidgets(
      graph('Deliveries by outcome', [search('Deliveries', 'Sum')]),
      graph('Delivery latency (p50, p99)', [
        search('DeliveryLatency', 'p50', 'p50'),
        search('DeliveryLatency', 'p99', 'p99'),
      ]),
      graph('Retry depth (max) and disabled endpoints', [
        search('RetryDepth', 'Maximum'),
        search('EndpointDisabled', 'Maximum'),
      ]),
    );
    dashboard.addWidgets(
      graph('Delivery queue', [
        p.deliveryQueue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }),
        p.deliveryQueue.metricApproximateNumberOfMessagesNotVisible({ period, statistic: 'Maximum' }),
        p.deliveryDlq.metricApproximateNumberOfMessagesVisible({
          period,
          statistic: 'Maximum',
          label: 'In DLQ',
        }),
      ]),
      graph('Oldest delivery job (s)', [
        p.deliveryQueue.metricApproximateAgeOfOldestMessage({ period, statistic: 'Maximum' }),
      ]),
      graph('Poll failures (poll DLQ)', [
        p.pollDlq.metricNumberOfMessagesSent({ period, statistic: 'Sum', label: 'Failed polls' }),
      ]),
    );
    const fnWidgets = (fn: lambda.IFunction, name: string) => [
      graph(`${name}: invocations, errors, throttles`, [
        fn.metricInvocations({ period }),
        fn.metricErrors({ period }),
        fn.metricThrottles({ period }),
      ]),
      graph(`${name}: duration (p50, p99, max)`, [
        fn.metricDuration({ period, statistic: 'p50' }),
        fn.metricDuration({ period, statistic: 'p99' }),
        fn.metricDuration({ period, statistic: 'Maximum' }),
      ]),
    ];
    dashboard.addWidgets(
      ...fnWidgets(p.pollerFunction, 'Poller'),
      graph('Poller concurrency', [
        p.pollerFunction.metric('ConcurrentExecutions', { period, statistic: 'Maximum' }),
      ]),
    );
    dashboard.addWidgets(...fnWidgets(p.deliveryFunction, 'Delivery'));
    return dashboard;
  }
}

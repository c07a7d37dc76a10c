/**
 * A tiny metrics port: Powertools EMF in Lambda (`functions/`), a no-op or an in-memory recorder
 * locally and in tests. Names are the CloudWatch metric names the CDK alarms and dashboard use.
 */
export type MetricName =
  | 'PollSucceeded'
  | 'PollFailed'
  | 'PollSkipped'
  | 'MessagesFetched'
  | 'BytesFetched'
  | 'MessagesSkipped'
  | 'MessagesDeleted'
  | 'ParseErrors'
  | 'Deliveries'
  | 'DeliveryLatency'
  | 'RetryDepth'
  | 'EndpointDisabled';

export interface Metrics {
  add(name: MetricName, value: number, dimensions?: Record<string, string>): void;
}

export const noopMetrics: Metrics = { add() {} };

export function createMemoryMetrics(): Metrics & {
  values: { name: MetricName; value: number; dimensions?: Record<string, string> }[];
  sum(name: MetricName): number;
} {
  const values: { name: MetricName; value: number; dimensions?: Record<string, string> }[] = [];
  return {
    values,
    add(name, value, dimensions) {
      values.push({ name, value, ...(dimensions ? { dimensions } : {}) });
    },
    sum(name) {
      return values.filter((v) => v.name === name).reduce((a, v) => a + v.value, 0);
    },
  };
}

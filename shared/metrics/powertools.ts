/**
 * Metrics port on Powertools for AWS Lambda (EMF): every figure becomes a CloudWatch metric in the
 * `Pophook` namespace without API calls. Each data point is flushed as its own EMF record so that
 * per-mailbox and per-endpoint dimensions never mix.
 */
import { MetricUnit, Metrics as PowertoolsMetrics } from '@aws-lambda-powertools/metrics';
import type { MetricName, Metrics } from './metrics.js';

const UNITS: Partial<Record<MetricName, (typeof MetricUnit)[keyof typeof MetricUnit]>> = {
  BytesFetched: MetricUnit.Bytes,
  DeliveryLatency: MetricUnit.Milliseconds,
};

export function createPowertoolsMetrics(options: { namespace?: string } = {}): Metrics & {
  flush(): void;
} {
  // serviceName comes from POWERTOOLS_SERVICE_NAME (set by the construct): the alarms match on the
  // `service` dimension it adds to every data point.
  const metrics = new PowertoolsMetrics({ namespace: options.namespace ?? 'Pophook' });
  return {
    add(name, value, dimensions) {
      const single = metrics.singleMetric();
      for (const [k, v] of Object.entries(dimensions ?? {})) single.addDimension(k, v);
      single.addMetric(name, UNITS[name] ?? MetricUnit.Count, value);
    },
    flush() {
      metrics.publishStoredMetrics();
    },
  };
}

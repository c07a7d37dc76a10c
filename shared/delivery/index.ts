/**
 * Webhook delivery: routing, payloads, Standard Webhooks signing, SSRF-guarded HTTP, retries, the SQS
 * batch handler, the local worker and replay. `deliverJob` is the one core both runtimes call.
 */
export {
  type DeliverDeps,
  type DeliverOutcome,
  type DeliverResult,
  DeliveryJobSchema,
  deliverJob,
  parseJob,
  type QueuedJob,
} from './deliver.js';
export {
  createWebhookHttp,
  Semaphore,
  type WebhookHttp,
  type WebhookHttpOptions,
  type WebhookRequest,
  type WebhookResponse,
} from './http.js';
export { type BuiltPayload, buildPayload, type Omission, type PayloadOptions } from './payload.js';
export { type ReplayDeps, type ReplayOptions, type ReplayResult, replay } from './replay.js';
export {
  classify,
  maxAttempts,
  nextDelayMs,
  parseRetryAfter,
  requiredMaxReceiveCount,
  visibilityStepSeconds,
} from './retry.js';
export { compileMatch, compilePattern, routeEvent, validateRoutes } from './route.js';
export { parseSecret, signingKey, signPayload, webhookHeaders } from './sign.js';
export { handleSqsBatch, runKeyed, type SqsBatchDeps } from './sqs-batch.js';
export {
  checkAddress,
  checkTargetUrl,
  type Resolver,
  resolveAndCheck,
  systemResolver,
  VettedLookupCache,
} from './ssrf.js';
export {
  drainOnce,
  type LocalJobConsumer,
  type LocalQueueMessage,
  runWorker,
  type WorkerDeps,
} from './worker.js';

/**
 * The chaos run's worker process: the real local pipeline (createLocalRuntime, pollLocal, the local
 * delivery worker with localDeliver) with seeded faults injected into its archive, queue and state
 * store. The orchestrator (chaos/run.ts) SIGKILLs it at random and starts a new one on the same data
 * directory, so every crash point of the pipeline is hit sooner or later.
 *
 * Injected faults (about 1-3 % per call, times an intensity drawn per incarnation; decisions from a PRNG
 * seeded by run seed + incarnation + site):
 *   archive.putStreamCreateOnly  throw before reading / fail mid-stream / throw after the object exists
 *   archive.put, archive.getBytes, queue.send (before or after sending), queue.ack,
 *   state.putMessage, state.recordAttempt (after the POST: the next attempt re-sends, same webhook-id)
 *
 * Time compression (the only deviations from `pophook dev`, each because a killed process is the norm
 * here): the mailbox lease TTL is seconds, not 16 min (one worker runs at a time, so the lease only
 * matters after a SIGKILL); received jobs stay invisible 8 s, not 5 min; parked jobs wait at most 3 s;
 * archive temp files left by a killed predecessor are removed at start (cleanupTemp).
 *
 * Protocol: argv[2] is a JSON file (WorkerSpec). stdout carries JSON lines: {t:'ready'},
 * {t:'fault', site, kind}, {t:'poll', ...}, {t:'temps', removed}. SIGTERM stops it gracefully.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../shared/config/load.js';
import { drainOnce, type LocalJobConsumer } from '../shared/delivery/worker.js';
import { ArchiveError, QueueError, StateError } from '../shared/errors.js';
import { createJsonLogger } from '../shared/log.js';
import { createLocalRuntime, localDeliver, pollLocal } from '../shared/runtime/local.js';
import { Prng } from './prng.js';

export interface WorkerSpec {
  seed: number;
  incarnation: number;
  faults: boolean;
  dataDir: string;
  pop: { host: string; port: number; user: string; password: string };
  receiverUrl: string;
  hookSecret: string;
  /** Worker log (warn and up), for diagnosing a failed run. */
  logFile: string;
}

/** One worker at a time: a lease only has to outlive a poll, and must expire soon after a SIGKILL. */
const CHAOS_LEASE_TTL_MS = 2500;
/** Longer than any one delivery attempt (endpoint timeout 1 s), short enough to recover fast. */
const CHAOS_VISIBILITY_MS = 8000;
/** Retry delays and error back-offs are capped so a short run drains. */
const CHAOS_MAX_PARK_MS = 3000;
/** Pause between polls: polls run back to back, like a busy deployment. */
const POLL_PAUSE_MS = 200;
const DELIVERY_IDLE_MS = 100;

const emit = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`);

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as WorkerSpec;
  const root = new Prng(spec.seed, `chaos-${spec.seed}`).fork(`worker-${spec.incarnation}`);
  const logger = createJsonLogger({
    level: 'warn',
    write: (line) => appendFileSync(spec.logFile, `${line}\n`),
    fields: { worker: spec.incarnation },
  });
  const config = parseConfig({
    version: 1,
    mailboxes: [
      {
        id: 'chaos',
        host: spec.pop.host,
        port: spec.pop.port,
        tls: 'none',
        allowInsecureAuth: true,
        user: spec.pop.user,
        auth: { type: 'password', password: { secret: 'pop' }, mechanism: 'user' },
        retention: 'delete',
      },
    ],
    endpoints: [
      {
        id: 'hook',
        url: spec.receiverUrl,
        secrets: [{ secret: 'hook' }],
        allowHttp: true,
        allowPrivateNetwork: true,
        timeoutMs: 1000,
      },
    ],
    // 13 attempts: at the receiver's fault rate a message exhausting them is vanishingly unlikely.
    delivery: { retryScheduleSeconds: [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3] },
    parse: { timeoutMs: 5000 },
    local: { dataDir: spec.dataDir },
  });
  const runtime = await createLocalRuntime(config, {
    env: { POPHOOK_SECRET_POP: spec.pop.password, POPHOOK_SECRET_HOOK: spec.hookSecret },
    logger,
  });
  const { archive, queue, state } = runtime;
  emit({ t: 'temps', removed: await archive.cleanupTemp(0) });

  const fault = (site: string, kind: string) => emit({ t: 'fault', site, kind });
  const on = spec.faults;
  // Weather: some incarnations see a storm, some a drizzle, so polls both fail often and complete often.
  const intensity = root.fork('intensity').weighted([
    [0.3, 1],
    [1, 2],
    [2.5, 1],
  ] as const);
  emit({ t: 'intensity', intensity });

  // ---- archive ----
  const putRaw = archive.putStreamCreateOnly.bind(archive);
  const rawPrng = root.fork('archive.putStreamCreateOnly');
  archive.putStreamCreateOnly = async (key, body, opts) => {
    const kind = on
      ? rawPrng.weighted([
          ['none', 1 - 0.035 * intensity],
          ['before', 0.01 * intensity],
          ['midstream', 0.015 * intensity],
          ['after', 0.01 * intensity],
        ] as const)
      : 'none';
    if (kind === 'none') return putRaw(key, body, opts);
    fault('archive.putStreamCreateOnly', kind);
    if (kind === 'before') throw new ArchiveError('ARCHIVE_WRITE_FAILED', 'chaos: archive refused the write');
    if (kind === 'after') {
      await putRaw(key, body, opts);
      throw new ArchiveError('ARCHIVE_WRITE_FAILED', 'chaos: archive wrote but reported failure');
    }
    const limit = rawPrng.int(0, 20_000);
    // Pulled lazily by the archive's own pipeline, so the failure surfaces inside the write.
    const broken = Readable.from(
      (async function* () {
        let seen = 0;
        for await (const chunk of body as AsyncIterable<Buffer>) {
          seen += chunk.length;
          if (seen > limit) throw new Error('chaos: archive stream broke mid-write');
          yield chunk;
        }
      })(),
    );
    return putRaw(key, broken, opts);
  };
  const put = archive.put.bind(archive);
  const putPrng = root.fork('archive.put');
  archive.put = async (key, body, opts) => {
    if (on && putPrng.chance(0.01 * intensity)) {
      fault('archive.put', 'throw');
      if (body instanceof Readable) body.destroy();
      throw new ArchiveError('ARCHIVE_WRITE_FAILED', 'chaos: archive put failed');
    }
    return put(key, body, opts);
  };
  const getBytes = archive.getBytes.bind(archive);
  const getPrng = root.fork('archive.getBytes');
  archive.getBytes = async (key) => {
    if (on && getPrng.chance(0.015 * intensity)) {
      fault('archive.getBytes', 'throw');
      throw new ArchiveError('ARCHIVE_READ_FAILED', 'chaos: archive read failed');
    }
    return getBytes(key);
  };

  // ---- queue ----
  const send = queue.send.bind(queue);
  const sendPrng = root.fork('queue.send');
  queue.send = async (items) => {
    const kind = on
      ? sendPrng.weighted([
          ['none', 1 - 0.03 * intensity],
          ['before', 0.015 * intensity],
          ['after', 0.015 * intensity],
        ] as const)
      : 'none';
    if (kind === 'none') return send(items);
    fault('queue.send', kind);
    if (kind === 'after') await send(items);
    throw new QueueError('QUEUE_SEND_FAILED', `chaos: queue send failed (${kind})`, { transient: true });
  };
  const ack = queue.ack.bind(queue);
  const ackPrng = root.fork('queue.ack');
  queue.ack = async (receipt) => {
    if (on && ackPrng.chance(0.02 * intensity)) {
      fault('queue.ack', 'throw');
      throw new QueueError('QUEUE_IO_FAILED', 'chaos: queue ack failed', { transient: true });
    }
    return ack(receipt);
  };

  // ---- state ----
  const acquire = state.acquireLease.bind(state);
  state.acquireLease = (mailboxId, owner) => acquire(mailboxId, owner, CHAOS_LEASE_TTL_MS);
  const renew = state.renewLease.bind(state);
  state.renewLease = (lease) => renew(lease, CHAOS_LEASE_TTL_MS);
  const putMessage = state.putMessage.bind(state);
  const putMessagePrng = root.fork('state.putMessage');
  state.putMessage = async (record) => {
    if (on && putMessagePrng.chance(0.005 * intensity)) {
      fault('state.putMessage', 'throw');
      throw new StateError('STATE_IO_FAILED', 'chaos: state write failed', { transient: true });
    }
    return putMessage(record);
  };
  const recordAttempt = state.recordAttempt.bind(state);
  const attemptPrng = root.fork('state.recordAttempt');
  state.recordAttempt = async (attempt) => {
    if (on && attemptPrng.chance(0.02 * intensity)) {
      fault('state.recordAttempt', 'throw');
      throw new StateError('STATE_IO_FAILED', 'chaos: attempt log write failed', { transient: true });
    }
    return recordAttempt(attempt);
  };

  const abort = new AbortController();
  const { signal } = abort;
  process.once('SIGTERM', () => abort.abort());

  const pollLoop = async () => {
    while (!signal.aborted) {
      const pollStarted = Date.now();
      const results = await pollLocal(runtime, undefined, {
        signal,
        connectOptions: {
          timeouts: {
            connectMs: 2000,
            greetingMs: 2000,
            tlsHandshakeMs: 2000,
            idleMs: 2000,
            sessionMs: 60_000,
          },
        },
      }).catch((err: unknown) => {
        emit({ t: 'poll', outcome: 'threw', error: String((err as Error)?.message ?? err).slice(0, 200) });
        return [];
      });
      for (const r of results) {
        emit({
          t: 'poll',
          ms: Date.now() - pollStarted,
          outcome: r.outcome,
          fetched: r.fetched,
          deleted: r.deleted,
          ...(r.error ? { error: r.error.code } : {}),
        });
      }
      await sleep(POLL_PAUSE_MS, undefined, { signal }).catch(() => {});
    }
  };

  const consumer: LocalJobConsumer = {
    receive: (max) => queue.receive(max, CHAOS_VISIBILITY_MS),
    ack: (receipt) => queue.ack(receipt),
    retryLater: (receipt, delayMs) => queue.retryLater(receipt, Math.min(delayMs, CHAOS_MAX_PARK_MS)),
    deadLetter: (receipt, reason) => queue.deadLetter(receipt, reason),
  };
  const deliveryLoop = async () => {
    const deliver = localDeliver(runtime);
    while (!signal.aborted) {
      const stats = await drainOnce({ queue: consumer, deliver, logger }).catch((err: unknown) => {
        logger.error('chaos delivery loop failed', { err });
        return undefined;
      });
      if (!stats || stats.received === 0)
        await sleep(DELIVERY_IDLE_MS, undefined, { signal }).catch(() => {});
    }
  };

  emit({ t: 'ready' });
  await Promise.all([pollLoop(), deliveryLoop()]);
  await runtime.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`chaos worker failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(2);
  },
);

/**
 * Retrieval throughput: every message fetched and written to disk, side by side, against one real
 * Dovecot per dataset. Contenders run interleaved (one run of each per round) so background noise hits
 * them alike; `sync` runs before each timed run so no contender pays for another's dirty pages.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Dovecot, startDovecot } from '../test/fixtures/dovecot.js';
import { makeMessage } from '../test/fixtures/messages.js';
import { fmt, MB, median, progress, table, tempDir } from './lib.js';
import { clientRun, type FetchRun, type Pop3Target, pipelineRun, rawRun } from './ours.js';
import { type Peer, runPeer } from './peers.js';
import { startSlowProxy } from './slow-proxy.js';

export interface Dataset {
  id: string;
  label: string;
  count: number;
  size: number;
}

export type Contender = 'pophook pipeline' | 'pophook client' | Peer | 'server limit';
export type Transport = 'plain' | 'tls';

export interface RetrievalRow {
  dataset: string;
  label: string;
  transport: Transport;
  contender: Contender;
  /** Seconds of each run. */
  runs: number[];
  messages: number;
  octets: number;
  seconds: number;
  msgPerS: number;
  mbPerS: number;
  /** pophook pipeline msg/s divided by this contender's (above 1: the pipeline is faster). */
  pipelineVs: number;
  /** Runs that failed and were left out of the median. */
  failedRuns: number;
  /** Set when no run succeeded. */
  error?: string;
  /** The last failure's message when some runs failed but others succeeded. */
  lastFailure?: string;
}

// A contender that failed this many runs of one dataset is not run again for it.
const MAX_FAILED_RUNS = 2;
// Messages generated and delivered per batch, so a 200 MB dataset is never held in memory at once.
const DELIVER_BATCH = 50;
// Above this, messages are streamed into the Maildir by the fixture instead of generated in memory.
const LARGE_MESSAGE_BYTES = 10 * 1024 * 1024;

/** A Dovecot holding `ds`; returns it with the exact total of message bytes. */
export async function dovecotWith(ds: Dataset): Promise<{ dovecot: Dovecot; octets: number }> {
  const dovecot = await startDovecot({});
  let octets = 0;
  try {
    if (ds.size >= LARGE_MESSAGE_BYTES) {
      for (let i = 1; i <= ds.count; i++) octets += (await dovecot.addLargeMessage(ds.size, i)).size;
    } else {
      for (let i = 0; i < ds.count; i += DELIVER_BATCH) {
        const batch = Array.from({ length: Math.min(DELIVER_BATCH, ds.count - i) }, (_, k) =>
          makeMessage({ index: i + k + 1, size: ds.size }),
        );
        octets += batch.reduce((a, m) => a + m.length, 0);
        await dovecot.addMessages(batch);
      }
    }
  } catch (err) {
    await dovecot.stop();
    throw err;
  }
  return { dovecot, octets };
}

export function targetOf(d: Dovecot, tls: boolean, port?: number): Pop3Target {
  return {
    host: d.host,
    port: port ?? (tls ? d.tlsPort : d.port),
    tls,
    user: d.user,
    password: d.password,
    caPem: d.caPem,
  };
}

/** One timed run of `contender`; everything it writes goes to a fresh temp dir, removed afterwards. */
export async function runContender(
  contender: Contender,
  target: Pop3Target,
  caFile: string,
  expected: number,
): Promise<FetchRun> {
  const dir = await tempDir(contender.replace(/\W+/g, '-'));
  try {
    execFileSync('sync');
    let r: FetchRun;
    if (contender === 'pophook pipeline') r = await pipelineRun(target, dir.path);
    else if (contender === 'pophook client') r = await clientRun(target);
    else if (contender === 'server limit') r = await rawRun(target);
    else {
      const p = await runPeer(
        contender,
        { port: target.port, tls: target.tls, user: target.user, password: target.password, caFile },
        dir.path,
        expected,
      );
      r = { ...p, bytes: 0 };
    }
    if (r.messages !== expected) throw new Error(`${contender} fetched ${r.messages}/${expected} messages`);
    return r;
  } finally {
    await dir.cleanup();
  }
}

export async function benchRetrieval(opts: {
  datasets: readonly Dataset[];
  transports: readonly Transport[];
  runs: number;
  contenders: (ds: Dataset, transport: Transport) => Contender[];
  /** Overrides `transports` per dataset. */
  transportsFor?: (ds: Dataset) => readonly Transport[];
  /** Route every connection through a proxy adding this delay each way (the slow-link benchmark). */
  delayMs?: number;
}): Promise<RetrievalRow[]> {
  const rows: RetrievalRow[] = [];
  for (const ds of opts.datasets) {
    progress(`retrieval ${ds.label}: generating the Maildir`);
    const { dovecot, octets } = await dovecotWith(ds);
    const certDir = await tempDir('ca');
    const caFile = join(certDir.path, 'cert.pem');
    writeFileSync(caFile, dovecot.caPem);
    try {
      for (const transport of opts.transportsFor?.(ds) ?? opts.transports) {
        const tls = transport === 'tls';
        const proxy = opts.delayMs
          ? await startSlowProxy(tls ? dovecot.tlsPort : dovecot.port, opts.delayMs)
          : undefined;
        const target = targetOf(dovecot, tls, proxy?.port);
        try {
          // Warm-up: Dovecot builds its index on first access and the page cache fills.
          await rawRun(target);
          const contenders = opts.contenders(ds, transport);
          const times = new Map<Contender, number[]>(contenders.map((c) => [c, []]));
          const errors = new Map<Contender, string>();
          const failed = new Map<Contender, number>();
          for (let r = 0; r < opts.runs; r++) {
            for (const c of contenders) {
              // A peer that keeps failing is given up on; a single flaky run (getmail loses a SIGCHLD
              // now and then under load and aborts) only drops that run.
              if ((failed.get(c) ?? 0) >= MAX_FAILED_RUNS) continue;
              try {
                const res = await runContender(c, target, caFile, ds.count);
                times.get(c)?.push(res.seconds);
              } catch (err) {
                failed.set(c, (failed.get(c) ?? 0) + 1);
                errors.set(c, (err as Error).message.slice(0, 300));
                progress(`  ${c} ${transport} run failed: ${(err as Error).message.slice(0, 300)}`);
              }
            }
            progress(`  ${ds.label} ${transport}: round ${r + 1}/${opts.runs} done`);
          }
          const pipelineRate = ds.count / median(times.get('pophook pipeline') ?? []);
          for (const c of contenders) {
            const runs = times.get(c) ?? [];
            const seconds = median(runs);
            const msgPerS = ds.count / seconds;
            rows.push({
              dataset: ds.id,
              label: ds.label,
              transport,
              contender: c,
              runs,
              messages: ds.count,
              octets,
              seconds,
              msgPerS,
              mbPerS: octets / MB / seconds,
              pipelineVs: pipelineRate / msgPerS,
              failedRuns: failed.get(c) ?? 0,
              ...(runs.length === 0 ? { error: errors.get(c) ?? 'no successful run' } : {}),
              ...(runs.length > 0 && errors.has(c) ? { lastFailure: errors.get(c) } : {}),
            });
          }
        } finally {
          await proxy?.close();
        }
      }
    } finally {
      await dovecot.stop();
      await certDir.cleanup();
    }
  }
  return rows;
}

export function retrievalTable(rows: readonly RetrievalRow[]): string {
  const notes: string[] = [];
  const body = table(
    ['dataset', 'transport', 'contender', 'msg/s', 'MB/s', 'median s', 'pipeline vs'],
    rows.map((r) => {
      let name: string = r.contender;
      if (r.failedRuns && !r.error) {
        name += ` (${r.failedRuns} failed run${r.failedRuns > 1 ? 's' : ''} left out)`;
        if (r.lastFailure) notes.push(`${r.label} ${r.transport} ${r.contender}: ${r.lastFailure}`);
      }
      if (r.error) notes.push(`${r.label} ${r.transport} ${r.contender}: ${r.error}`);
      return [
        r.label,
        r.transport === 'tls' ? 'TLS' : 'plain',
        name,
        r.error ? 'n/a' : fmt.rate(r.msgPerS),
        r.error ? 'n/a' : fmt.f1(r.mbPerS),
        r.error ? 'n/a' : fmt.f2(r.seconds),
        r.error ? 'failed' : fmt.x(r.pipelineVs),
      ];
    }),
  );
  return notes.length ? `${body}\n${notes.map((n) => `  note: ${n}`).join('\n')}` : body;
}

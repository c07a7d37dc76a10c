/**
 * Chaos run: `npm run chaos -- --seed S --minutes M`.
 *
 * Real Dovecot; the local pipeline in a worker child process (chaos/worker.ts) that is SIGKILLed at
 * random and restarted; POP3 through a fault proxy (drops, resets and stalls mid-reply, latency, QUIT
 * lost); archive, queue and state faults inside the worker; a receiver answering 500/503/429, resets,
 * hangs and slow replies; a generator delivering new mail all along. Retention is `delete`, so a message
 * deleted before it was archived would show.
 *
 * After M minutes: faults off, generator stopped, one last SIGKILL, then a clean worker drains until the
 * Maildir is empty and the queue has nothing ready, delayed or in flight. Then the checks (chaos/check.ts
 * explains how deletion-before-archive is caught at the QUIT itself):
 *   - every generated message is archived exactly once, byte-exact (SHA-256), and nothing else is;
 *   - every one reached the receiver with a valid signature (verified with `standardwebhooks`), and
 *     all requests for one message carried one webhook-id;
 *   - nothing was deleted from Dovecot before its bytes were in the archive;
 *   - no archive temp files, no queued, in-flight or dead jobs remain;
 *   - no worker died on its own (a crash of the pipeline under faults, as opposed to our SIGKILL).
 * Prints exactly one line on stdout:
 *   chaos: seed S, messages N, faults F, lost 0, duplicate archives 0, id mismatches 0
 * and exits 1 on any violation (details on stderr; the run directory is kept for inspection).
 * `--verbose` narrates on stderr.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LocalJobQueue } from '../shared/queue/local-queue.js';
import { LocalArchive } from '../shared/storage/local-archive.js';
import { type Dovecot, startDovecot } from '../test/fixtures/dovecot.js';
import { ArchiveIndex, DeletionWatch } from './check.js';
import { MailGenerator } from './generator.js';
import { Prng } from './prng.js';
import { type ProxyFault, startFaultProxy } from './proxy.js';
import { startChaosReceiver } from './receiver.js';
import type { WorkerSpec } from './worker.js';

const CHAOS_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(CHAOS_DIR, '..');
/** Upper bound for the clean drain after the faults stop (retries are capped at seconds). */
const DRAIN_TIMEOUT_MS = 150_000;
/** Seconds between SIGKILLs of the worker. */
const KILL_EVERY_S: [number, number] = [2, 10];
/** How long a killed worker stays dead before its successor starts. */
const RESTART_DELAY_MS: [number, number] = [0, 800];
const GRACEFUL_STOP_MS = 15_000;
/** Maildir and queue empty this long with deliveries still missing: they are not coming. */
const DRAIN_IDLE_GIVE_UP_MS = 15_000;

const args = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    minutes: { type: 'string', default: '1' },
    verbose: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
  strict: true,
});
const seed = Number(args.values.seed);
const minutes = Number(args.values.minutes);
if (!Number.isSafeInteger(seed) || seed < 0 || !(minutes > 0)) {
  process.stderr.write('usage: npm run chaos -- --seed <non-negative integer> --minutes <number > 0>\n');
  process.exit(2);
}
const verbose = args.values.verbose;
const say = (text: string) => {
  if (verbose) process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
};

/** Bundles the worker once (esbuild) so a restart costs ~0.3 s, not a TypeScript compile. */
async function bundleWorker(outDir: string): Promise<string> {
  const { build } = await import('esbuild');
  const outfile = join(outDir, 'worker.mjs');
  await build({
    entryPoints: [join(CHAOS_DIR, 'worker.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    logLevel: 'error',
    // Bundled CommonJS dependencies call require() for Node built-ins.
    banner: {
      js: "import { createRequire as __chaosRequire } from 'node:module'; const require = __chaosRequire(import.meta.url);",
    },
  });
  return outfile;
}

function proxyFault(prng: Prng): ProxyFault {
  const kind = prng.weighted([
    ['none', 70],
    ['latency', 8],
    ['drop', 7],
    ['reset', 6],
    ['stall', 4],
    ['quit-reset', 5],
  ] as const);
  switch (kind) {
    case 'none':
      return { kind };
    case 'latency':
      return { kind, ms: prng.int(1, 40) };
    case 'quit-reset':
      return { kind, forward: prng.chance(0.5) };
    default:
      // Log-uniform: some cut the greeting or login, most land inside a listing or a RETR.
      return { kind, afterBytes: prng.logInt(20, 2_000_000) };
  }
}

async function main(): Promise<number> {
  const started = Date.now();
  const root = new Prng(seed, `chaos-${seed}`);
  const runDir = await mkdtemp(join(tmpdir(), `pophook-chaos-${seed}-`));
  const dataDir = join(runDir, 'data');
  await mkdir(dataDir);
  const secretPrng = root.fork('secret');
  const hookSecret = `whsec_${Buffer.from(Array.from({ length: 32 }, () => secretPrng.int(0, 255))).toString('base64')}`;
  const workerFile = await bundleWorker(runDir);
  let dovecot: Dovecot | undefined;
  const cleanups: (() => Promise<unknown>)[] = [];
  const violations: string[] = [];
  let current: { child: ChildProcess; exited: Promise<void>; crashed: () => string | undefined } | undefined;
  let crashes = 0;
  const workerFaults: Record<string, number> = {};
  let kills = 0;
  let tempsCleaned = 0;
  let incarnation = 0;
  const polls: Record<string, number> = {};

  try {
    dovecot = await startDovecot({ password: randomBytes(12).toString('base64url') });
    cleanups.push(() => (dovecot as Dovecot).stop());
    const archiveIndex = new ArchiveIndex(join(dataDir, 'archive'));
    const watch = new DeletionWatch(dovecot.maildir, archiveIndex);
    const proxyPrng = root.fork('proxy');
    const proxy = await startFaultProxy({
      targetHost: dovecot.host,
      targetPort: dovecot.port,
      decide: () => proxyFault(proxyPrng),
      onQuit: (conn) => watch.holdQuit(conn.upstreamClosed),
    });
    cleanups.push(() => proxy.close());
    const receiver = await startChaosReceiver({ prng: root.fork('receiver'), secret: hookSecret });
    cleanups.push(() => receiver.close());
    const d = dovecot;
    const generator = new MailGenerator({
      prng: root.fork('generator'),
      seed,
      deliver: (msgs) => d.addMessages(msgs),
      onDelivered: (record) => watch.delivered(record),
      exclusive: (fn) => watch.exclusive(fn),
    });

    const startWorker = async (faults: boolean) => {
      incarnation++;
      const spec: WorkerSpec = {
        seed,
        incarnation,
        faults,
        dataDir,
        pop: { host: '127.0.0.1', port: proxy.port, user: d.user, password: d.password },
        receiverUrl: receiver.url,
        hookSecret,
        logFile: join(runDir, 'worker.log'),
      };
      const specFile = join(runDir, `worker-${incarnation}.json`);
      await writeFile(specFile, JSON.stringify(spec));
      const child = spawn(process.execPath, [workerFile, specFile], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let exitInfo: string | undefined;
      const stderrTail: string[] = [];
      const exited = new Promise<void>((r) =>
        child.once('exit', (code, signal) => {
          exitInfo = `exit code ${code}, signal ${signal}`;
          r();
        }),
      );
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      lines.on('line', (line) => {
        let ev: { t?: string; site?: string; kind?: string; removed?: number; outcome?: string };
        try {
          ev = JSON.parse(line);
        } catch {
          return;
        }
        if (ev.t === 'intensity') say(`worker ${spec.incarnation} fault intensity ${line}`);
        else if (ev.t === 'fault') {
          const k = `${ev.site}:${ev.kind}`;
          workerFaults[k] = (workerFaults[k] ?? 0) + 1;
        } else if (ev.t === 'temps') tempsCleaned += ev.removed ?? 0;
        else if (ev.t === 'poll') {
          polls[ev.outcome ?? '?'] = (polls[ev.outcome ?? '?'] ?? 0) + 1;
          if (verbose && ev.outcome !== 'lease-held') say(`worker ${spec.incarnation} poll ${line}`);
        }
      });
      child.stderr?.on('data', (c: Buffer) => {
        stderrTail.push(c.toString('utf8'));
        if (stderrTail.length > 20) stderrTail.shift();
        if (verbose) process.stderr.write(`[worker ${spec.incarnation}] ${c}`);
      });
      // A worker that exits without being told to is a crash of the pipeline under faults.
      const crashed = () =>
        exitInfo === undefined ? undefined : `${exitInfo}: ${stderrTail.join('').slice(-1500)}`;
      current = { child, exited, crashed };
      say(`worker ${incarnation} started (faults ${faults ? 'on' : 'off'})`);
    };
    const killWorker = async () => {
      if (!current) return;
      const { child, exited } = current;
      current = undefined;
      child.kill('SIGKILL');
      await exited;
    };
    cleanups.push(killWorker);

    // ---- chaos phase ----
    const killPrng = root.fork('kills');
    generator.start();
    await startWorker(true);
    const endAt = started + minutes * 60_000;
    const nextKill = () => Date.now() + killPrng.int(KILL_EVERY_S[0] * 1000, KILL_EVERY_S[1] * 1000);
    let killAt = nextKill();
    /** Records a worker that died on its own and starts another. */
    const checkCrash = async (faults: boolean) => {
      const why = current?.crashed();
      if (why === undefined) return;
      crashes++;
      violations.push(`worker ${incarnation} crashed (${why.trim()})`);
      current = undefined;
      await startWorker(faults);
    };
    while (Date.now() < endAt) {
      await sleep(Math.min(200, Math.max(0, endAt - Date.now())));
      await checkCrash(true);
      if (Date.now() >= endAt) break;
      if (Date.now() < killAt) continue;
      await killWorker();
      kills++;
      say(`SIGKILL #${kills}; ${generator.records.length} messages so far`);
      await sleep(killPrng.int(...RESTART_DELAY_MS));
      await startWorker(true);
      killAt = nextKill();
    }

    // ---- drain phase ----
    await generator.stop();
    proxy.setDecide(() => ({ kind: 'none' }));
    receiver.setFaults(false);
    await killWorker();
    kills++;
    await startWorker(false);
    const queue = new LocalJobQueue({ dir: join(dataDir, 'queue') });
    const total = generator.records.length;
    say(`draining ${total} messages`);
    const drainStarted = Date.now();
    let drained = false;
    let lastState = '';
    let idleSince: number | undefined;
    while (Date.now() - drainStarted < DRAIN_TIMEOUT_MS) {
      const onServer = await d.messageCount();
      const depth = await queue.depth();
      const reached = generator.records.filter(
        (r) => (receiver.seen.get(r.sha256)?.accepted ?? 0) > 0,
      ).length;
      lastState = `maildir ${onServer}, queue ${JSON.stringify(depth)}, delivered ${reached}/${total}`;
      await checkCrash(false);
      const idle = onServer === 0 && depth.ready + depth.delayed + depth.inflight === 0;
      if (idle && reached === total) {
        drained = true;
        break;
      }
      // Nothing left anywhere and still not everything delivered: what is missing is lost; stop waiting.
      idleSince = idle ? (idleSince ?? Date.now()) : undefined;
      if (idleSince !== undefined && Date.now() - idleSince > DRAIN_IDLE_GIVE_UP_MS) break;
      await sleep(250);
    }
    say(
      `drain ${drained ? 'done' : 'TIMED OUT'} in ${((Date.now() - drainStarted) / 1000).toFixed(1)} s: ${lastState}`,
    );
    if (!drained) violations.push(`did not drain within ${DRAIN_TIMEOUT_MS / 1000} s (${lastState})`);
    // Graceful stop: the clean worker finishes what it is doing.
    if (current) {
      const { child, exited } = current;
      current = undefined;
      child.kill('SIGTERM');
      const stopped = await Promise.race([
        exited.then(() => true),
        sleep(GRACEFUL_STOP_MS).then(() => false),
      ]);
      if (!stopped) {
        violations.push('the clean worker did not stop within 15 s of SIGTERM');
        child.kill('SIGKILL');
        await exited;
      }
    }
    await watch.finish();

    // ---- checks ----
    const archive = new LocalArchive({ dir: join(dataDir, 'archive') });
    const objects = await archiveIndex.refresh();
    const countBySha = new Map<string, number>();
    for (const sha of objects.values()) countBySha.set(sha, (countBySha.get(sha) ?? 0) + 1);
    const generated = new Set(generator.records.map((r) => r.sha256));
    let lost = 0;
    let duplicateArchives = 0;
    let idMismatches = 0;
    for (const r of generator.records) {
      const copies = countBySha.get(r.sha256) ?? 0;
      const seen = receiver.seen.get(r.sha256);
      if (copies === 0) violations.push(`message ${r.name} was never archived`);
      if (!seen || seen.accepted === 0) violations.push(`message ${r.name} never reached the receiver`);
      if (copies === 0 || !seen || seen.accepted === 0) lost++;
      if (copies > 1) {
        duplicateArchives += copies - 1;
        violations.push(`message ${r.name} archived ${copies} times`);
      }
      if (seen && seen.ids.size > 1) {
        idMismatches++;
        violations.push(`message ${r.name} delivered under ${seen.ids.size} webhook-ids`);
      }
    }
    for (const [path, sha] of objects) {
      if (!generated.has(sha)) {
        duplicateArchives++;
        violations.push(`archive object ${path} matches no generated message (corrupt or partial)`);
      }
    }
    for (const v of watch.violations)
      violations.push(
        `message ${v.name} was deleted from the server before it was archived (QUIT #${v.window})`,
      );
    if (watch.deletedCount !== total)
      violations.push(`${watch.deletedCount} of ${total} deletions were observed at a QUIT window`);
    if (receiver.badSignatures > 0)
      violations.push(`${receiver.badSignatures} requests had an invalid signature`);
    if (receiver.unreadable > 0) violations.push(`${receiver.unreadable} requests were not a pophook event`);
    const temps = await archive.pendingTempFiles();
    if (temps.length)
      violations.push(`${temps.length} archive temp files remain: ${temps.slice(0, 3).join(', ')}`);
    const depth = await queue.depth();
    if (depth.ready + depth.delayed + depth.inflight + depth.dead > 0)
      violations.push(`queue not empty at the end: ${JSON.stringify(depth)}`);
    const queueTmp = await readdir(join(dataDir, 'queue', 'tmp')).catch(() => [] as string[]);

    const receiverFaults = Object.values(receiver.faults).reduce((a, b) => a + b, 0);
    const proxyFaults = Object.values(proxy.faults).reduce((a, b) => a + b, 0);
    const injected = Object.values(workerFaults).reduce((a, b) => a + b, 0);
    const faults = receiverFaults + proxyFaults + injected + kills;
    process.stdout.write(
      `chaos: seed ${seed}, messages ${total}, faults ${faults}, lost ${lost}, duplicate archives ${duplicateArchives}, id mismatches ${idMismatches}\n`,
    );
    const detail = {
      seconds: Math.round((Date.now() - started) / 1000),
      kills,
      crashes,
      proxy: { connections: proxy.connections, ...proxy.faults },
      receiver: { requests: receiver.requests, ...receiver.faults },
      worker: workerFaults,
      polls,
      quitWindows: watch.quits,
      deletionsChecked: watch.checked,
      slowQuitCloses: watch.slowCloses,
      archiveTempsCleanedAtStart: tempsCleaned,
      queueTmpLeftovers: queueTmp.length,
    };
    if (verbose || violations.length) process.stderr.write(`chaos detail: ${JSON.stringify(detail)}\n`);
    for (const v of violations.slice(0, 50)) process.stderr.write(`chaos violation: ${v}\n`);
    if (violations.length > 50) process.stderr.write(`chaos: ... and ${violations.length - 50} more\n`);
    return violations.length ? 1 : 0;
  } catch (err) {
    process.stderr.write(`chaos run failed: ${(err as Error)?.stack ?? String(err)}\n`);
    if (dovecot) process.stderr.write(`${await dovecot.logTail().catch(() => '')}\n`);
    violations.push('run failed');
    return 1;
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    if (violations.length || args.values.keep)
      process.stderr.write(`chaos: run directory kept at ${runDir}\n`);
    else if (existsSync(runDir)) await rm(runDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos run failed: ${String(err)}\n`);
    process.exit(1);
  },
);

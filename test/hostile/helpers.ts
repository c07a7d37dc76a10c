/**
 * Shared pieces for the hostile-input suites: a logger that keeps every line *without* the secret
 * scrubbing (so a test sees what code passed in, not what the second line of defence cleaned up), a
 * recursive reader of a data directory (every archived object, state record and queued job), and a
 * one-call "poll this fake server through the real local pipeline" harness that measures time and
 * peak heap.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseConfig } from '../../shared/config/load.js';
import type { PophookConfig } from '../../shared/config/schema.js';
import type { PollResult } from '../../shared/ingest/poll.js';
import { type LogFields, type Logger, serializeError } from '../../shared/log.js';
import type { Pop3Timeouts, TlsMode } from '../../shared/pop3/types.js';
import { createLocalRuntime, type LocalRuntime, pollLocal } from '../../shared/runtime/local.js';
import { type FakePop3Script, type FakePop3Server, startFakePop3 } from '../fixtures/fake-pop3.js';

/** A logger recording every line as JSON, errors serialised, and no secret scrubbing. */
export function createRawLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const make = (base: LogFields): Logger => {
    const emit = (level: string, message: string, fields?: LogFields) => {
      const record: LogFields = { level, message, ...base };
      for (const [k, v] of Object.entries(fields ?? {}))
        record[k] = v instanceof Error ? serializeError(v) : v;
      lines.push(JSON.stringify(record));
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return Object.assign(make({}), { lines });
}

/** Every file under `dir`: relative path and bytes. */
export async function readTree(dir: string): Promise<{ path: string; bytes: Buffer }[]> {
  const out: { path: string; bytes: Buffer }[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push({ path: relative(dir, p), bytes: await readFile(p) });
    }
  };
  await walk(dir);
  return out;
}

/** Where in `haystacks` any of `needles` occurs (as bytes), for a readable failure message. */
export function findLeaks(
  needles: readonly string[],
  haystacks: readonly { where: string; text: string | Buffer }[],
): string[] {
  const hits: string[] = [];
  for (const n of needles) {
    const needle = Buffer.from(n, 'utf8');
    for (const h of haystacks) {
      const text = typeof h.text === 'string' ? Buffer.from(h.text, 'utf8') : h.text;
      if (text.includes(needle)) hits.push(`${JSON.stringify(n.slice(0, 12))}... in ${h.where}`);
    }
  }
  return hits;
}

/** Longest wait for a poll's background writes to finish after it returned. */
const SETTLE_TIMEOUT_MS = 3000;

/**
 * Waits until the data directory stops changing. A failed poll can return while writes it started in
 * the background (archive, parse, enqueue) are still finishing; assertions are about the end state.
 */
export async function settle(dir: string): Promise<void> {
  const snapshot = async () =>
    (await readTree(dir))
      .map((f) => `${f.path}:${f.bytes.length}`)
      .sort()
      .join('\n');
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  let last = await snapshot();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const next = await snapshot();
    if (next === last && !next.includes('archive/.tmp/')) return;
    last = next;
  }
}

/** A password nobody could mistake for anything else. */
export const HOSTILE_PASSWORD = 'Hostile-Pa55word-9c41e7b2';
export const HOSTILE_USER = 'user';

/** The forms a password can leak in: itself and the SASL PLAIN blob (and USER/PASS line). */
export function passwordForms(user: string, password: string): string[] {
  return [
    password,
    Buffer.from(`\0${user}\0${password}`).toString('base64'),
    Buffer.from(`${user}\0${user}\0${password}`).toString('base64'),
    Buffer.from(password).toString('base64'),
  ];
}

/** Short timeouts: every hostile stall must end in about a second. */
export const FAST_TIMEOUTS: Partial<Pop3Timeouts> = {
  connectMs: 2000,
  greetingMs: 1000,
  tlsHandshakeMs: 1000,
  idleMs: 600,
  sessionMs: 6000,
};

export interface HostileOptions {
  tls?: TlsMode;
  ca?: string;
  host?: string;
  mechanism?: 'auto' | 'plain' | 'user' | 'apop';
  maxMessageBytes?: number;
  timeouts?: Partial<Pop3Timeouts>;
  limits?: Record<string, number>;
}

export interface HostileRun {
  result: PollResult;
  srv: FakePop3Server;
  runtime: LocalRuntime;
  logger: Logger & { lines: string[] };
  dataDir: string;
  ms: number;
  /** Peak heap growth during the poll, sampled every 5 ms. */
  peakHeapBytes: number;
  /** Every file the run left in the data directory. */
  tree(): Promise<{ path: string; bytes: Buffer }[]>;
  /** Credential leaks found in logs, the result and every file of the data directory. */
  leaks(): Promise<string[]>;
  close(): Promise<void>;
}

export function hostileConfig(port: number, dataDir: string, o: HostileOptions = {}): PophookConfig {
  const tls = o.tls ?? 'none';
  return parseConfig({
    version: 1,
    mailboxes: [
      {
        id: 'hostile',
        host: o.host ?? '127.0.0.1',
        port,
        tls,
        ...(o.ca ? { ca: o.ca } : {}),
        allowInsecureAuth: tls === 'none',
        user: HOSTILE_USER,
        auth: { type: 'password', password: { secret: 'pop' }, mechanism: o.mechanism ?? 'auto' },
        retention: 'delete',
        limits: { maxMessageBytes: o.maxMessageBytes ?? 5 * 1024 * 1024 },
      },
    ],
    endpoints: [
      {
        id: 'hook',
        url: 'http://127.0.0.1:9/hook',
        secrets: [{ secret: 'hook' }],
        allowHttp: true,
        allowPrivateNetwork: true,
      },
    ],
    local: { dataDir },
  });
}

/** Starts the fake server from `script`, then runs one real `pollLocal` against it. */
export async function pollFake(script: FakePop3Script, o: HostileOptions = {}): Promise<HostileRun> {
  const srv = await startFakePop3({ user: HOSTILE_USER, password: HOSTILE_PASSWORD, ...script });
  const dataDir = await mkdtemp(join(tmpdir(), 'pophook-hostile-'));
  const logger = createRawLogger();
  const runtime = await createLocalRuntime(hostileConfig(srv.port, dataDir, o), {
    env: {
      POPHOOK_SECRET_POP: HOSTILE_PASSWORD,
      POPHOOK_SECRET_HOOK: `whsec_${Buffer.alloc(32, 3).toString('base64')}`,
    },
    logger,
  });
  global.gc?.();
  const base = process.memoryUsage().heapUsed;
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().heapUsed - base);
  }, 5);
  const started = Date.now();
  let result: PollResult;
  try {
    [result] = (await pollLocal(runtime, undefined, {
      connectOptions: {
        timeouts: { ...FAST_TIMEOUTS, ...o.timeouts },
        transcript: true,
        ...(o.limits ? { limits: o.limits } : {}),
      },
    })) as [PollResult];
  } finally {
    clearInterval(sampler);
  }
  const ms = Date.now() - started;
  peak = Math.max(peak, process.memoryUsage().heapUsed - base);
  await settle(dataDir);
  const tree = () => readTree(dataDir);
  return {
    result,
    srv,
    runtime,
    logger,
    dataDir,
    ms,
    peakHeapBytes: peak,
    tree,
    async leaks() {
      const files = await tree();
      return findLeaks(passwordForms(HOSTILE_USER, HOSTILE_PASSWORD), [
        ...logger.lines.map((l, i) => ({ where: `log line ${i}`, text: l })),
        { where: 'poll result', text: JSON.stringify(result) },
        ...files.map((f) => ({ where: f.path, text: f.bytes })),
      ]);
    },
    async close() {
      await runtime.close();
      await srv.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Command lines that carry credentials. */
export const CREDENTIAL_VERBS = /^(USER|PASS|AUTH|APOP)\b/i;

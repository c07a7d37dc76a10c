/**
 * The peer POP3 clients from Debian, driven exactly as `../shared/scripts/pop3-clients.sh` drives them
 * (research notes §5): every message fetched, all kept on the server (so runs repeat), fresh state each
 * run, delivery to disk. Each run is timed from spawn to exit (their process start is ~1-2 ms for mpop
 * and fetchmail, ~60 ms for getmail's Python; `peerStartup()` measures it).
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { median, progress, runTimed } from './lib.js';

export type Peer = 'mpop' | 'fetchmail' | 'getmail';
export const PEERS: readonly Peer[] = ['mpop', 'fetchmail', 'getmail'];
const PACKAGE: Record<Peer, string> = { mpop: 'mpop', fetchmail: 'fetchmail', getmail: 'getmail6' };
// A peer that hangs (wrong TLS name, server stall) must not hang the whole benchmark.
const PEER_TIMEOUT_MS = 10 * 60 * 1000;

export interface PeerTarget {
  port: number;
  tls: boolean;
  user: string;
  password: string;
  /** File holding the server's certificate (the fixture's caPem). */
  caFile: string;
}

export interface PeerRun {
  seconds: number;
  messages: number;
}

function installed(peer: Peer): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${peer}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Installs missing peers with apt (printing what it does). Returns which are usable; a failed install
 * marks the peer unavailable instead of failing the benchmark.
 */
export function ensurePeers(): Record<Peer, boolean> {
  const missing = PEERS.filter((p) => !installed(p));
  if (missing.length) {
    const pkgs = missing.map((p) => PACKAGE[p]);
    progress(`installing peers: apt-get install -y --no-install-recommends ${pkgs.join(' ')}`);
    try {
      execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch (err) {
      progress(
        `apt-get install failed (${(err as Error).message.split('\n')[0]}); trying apt-get update first`,
      );
      try {
        execFileSync('apt-get', ['update'], { stdio: 'ignore' });
        execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], {
          stdio: ['ignore', 'ignore', 'inherit'],
          env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
        });
      } catch {}
    }
  }
  const out = {} as Record<Peer, boolean>;
  for (const p of PEERS) {
    out[p] = installed(p);
    if (!out[p]) progress(`PEER UNAVAILABLE: ${p} (package ${PACKAGE[p]} is not installed and apt failed)`);
  }
  return out;
}

/** Median process start-and-exit time of each peer (`--version`), to show it is not what we measure. */
export async function peerStartup(available: Record<Peer, boolean>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const p of PEERS) {
    if (!available[p]) continue;
    const times: number[] = [];
    for (let i = 0; i < 5; i++) times.push((await runTimed(p, ['--version'])).seconds);
    out[p] = median(times);
  }
  return out;
}

function freshMaildir(dir: string): void {
  for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(dir, sub), { recursive: true });
}

const countFiles = (dir: string) => (existsSync(dir) ? readdirSync(dir).length : 0);

/**
 * One fetch of the whole mailbox by `peer` into `workDir` (must be fresh and empty). Throws when the
 * peer exits non-zero or delivers a different number of messages than `expected`.
 */
export async function runPeer(
  peer: Peer,
  t: PeerTarget,
  workDir: string,
  expected: number,
): Promise<PeerRun> {
  const dest = join(workDir, 'Maildir');
  const state = join(workDir, 'state');
  mkdirSync(state, { recursive: true });
  freshMaildir(dest);
  // Plain: 127.0.0.1. TLS: the certificate's name, `localhost` (CN and SAN of the fixture's cert).
  const host = t.tls ? 'localhost' : '127.0.0.1';
  let cmd: string;
  let args: string[];
  let count: () => number;
  if (peer === 'mpop') {
    cmd = 'mpop';
    args = [
      '-C',
      '/dev/null',
      `--host=${host}`,
      `--port=${t.port}`,
      `--user=${t.user}`,
      `--passwordeval=echo '${t.password}'`,
      // Without TLS mpop refuses to send a password unless the mechanism is explicit.
      ...(t.tls
        ? ['--tls=on', '--tls-starttls=off', `--tls-trust-file=${t.caFile}`]
        : ['--tls=off', '--auth=user']),
      '--keep=on',
      '--only-new=off',
      `--uidls-file=${join(state, 'uidls')}`,
      `--delivery=maildir,${dest}`,
      '--quiet',
    ];
    count = () => countFiles(join(dest, 'new'));
  } else if (peer === 'fetchmail') {
    // bsmtp: one output file, no per-message fork (a per-message MDA is ~10x slower, research §5).
    const out = join(state, 'out.bsmtp');
    const tls = t.tls ? `ssl sslcertck sslcertfile '${t.caFile}'` : "sslproto ''";
    const rc = join(state, 'fetchmailrc');
    writeFileSync(
      rc,
      [
        'set no bouncemail',
        `poll ${host} with protocol POP3 port ${t.port} auth password`,
        `  user "${t.user}" there with password "${t.password}" is "root" here`,
        `  options keep fetchall no rewrite ${tls}`,
        `  bsmtp "${out}"`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    cmd = 'fetchmail';
    args = ['-f', rc, '-i', join(state, 'fetchids'), '--nodetach', '--silent'];
    count = () => (existsSync(out) ? (readFileSync(out, 'latin1').match(/^MAIL FROM/gm)?.length ?? 0) : 0);
  } else {
    // getmail refuses to deliver as root; it switches to `user` for delivery, who must own the Maildir.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      const { uid, gid } = nobody();
      // mkdtemp dirs are 0700: the delivery user must be able to reach the Maildir.
      for (const d of [dirname(workDir), workDir]) chmodSync(d, 0o755);
      for (const d of [dest, join(dest, 'cur'), join(dest, 'new'), join(dest, 'tmp')]) chownSync(d, uid, gid);
    }
    writeFileSync(
      join(state, 'getmailrc'),
      [
        '[retriever]',
        `type = ${t.tls ? 'SimplePOP3SSLRetriever' : 'SimplePOP3Retriever'}`,
        `server = ${host}`,
        `port = ${t.port}`,
        `username = ${t.user}`,
        `password = ${t.password}`,
        ...(t.tls ? [`ca_certs = ${t.caFile}`] : []),
        '[destination]',
        'type = Maildir',
        `path = ${dest}/`,
        ...(asRoot ? ['user = nobody'] : []),
        '[options]',
        'delete = false',
        'read_all = true',
        'verbose = 0',
        '',
      ].join('\n'),
    );
    cmd = 'getmail';
    args = [`--getmaildir=${state}`, '--rcfile=getmailrc'];
    count = () => countFiles(join(dest, 'new'));
  }
  const r = await runTimed(cmd, args, { timeoutMs: PEER_TIMEOUT_MS });
  const messages = count();
  if (r.code !== 0 || messages !== expected) {
    const err = `${r.stderr}${r.stdout}`
      .split('\n')
      .filter((l) => l && !/Running as root|read_all and not delete/.test(l))
      .slice(0, 3)
      .join(' / ');
    throw new Error(
      `${peer} exited ${r.code} with ${messages}/${expected} messages: ${err || '(no output)'}`,
    );
  }
  return { seconds: r.seconds, messages };
}

let nobodyIds: { uid: number; gid: number } | undefined;
function nobody(): { uid: number; gid: number } {
  if (nobodyIds) return nobodyIds;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('nobody:'));
  const f = line?.split(':') ?? [];
  nobodyIds = { uid: Number(f[2] ?? 65534), gid: Number(f[3] ?? 65534) };
  return nobodyIds;
}

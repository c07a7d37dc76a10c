/**
 * `pophook dev` (also `npm start`): pophook end to end on this machine with no config and no account.
 * It starts the embedded demo POP3 server on a folder (seeded with sample messages the first time),
 * a local webhook receiver with a generated signing secret, builds an in-memory config that points one
 * at the other, and runs the local poll/deliver loop every 2 seconds. Dropping an `.eml` file into the
 * inbox folder makes it arrive at the receiver moments later.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseConfig } from '../../shared/config/load.js';
import type { PophookConfig } from '../../shared/config/schema.js';
import { startLocalConsole } from '../../shared/console/server.js';
import {
  type DemoPop3Server,
  generateDemoPassword,
  startDemoPop3Server,
} from '../../shared/demo/pop3-server.js';
import {
  checkWebhookSecret,
  formatDelivery,
  generateWebhookSecret,
  type ReceivedDelivery,
  startWebhookReceiver,
  type WebhookReceiver,
} from '../../shared/demo/receiver.js';
import { hasNoMessages, seedDemoInbox } from '../../shared/demo/seed.js';
import type { Logger } from '../../shared/log.js';
import { silentLogger } from '../../shared/log.js';
import { type LocalPipelineEvent, runLocalPipeline } from '../../shared/runtime/local.js';
import { LocalStateStore } from '../../shared/state/local-state.js';
import { type CliContext, displayPath, EXIT, type ExitCode, UsageError } from '../context.js';
import { commandLogger, dataDirOf, ensureDataDir, loadCliConfig, reclaimDeadLeases } from '../local.js';
import { formatDuration, type Output } from '../output.js';
import { describePollRecord } from '../poll-report.js';

/** How often the dev loop polls: fast enough that a dropped file shows up "at once". */
export const DEV_POLL_INTERVAL_MS = 2000;

/** Names in the generated local secrets file. */
export const DEV_SECRET_NAMES = {
  pop3Password: 'demo-pop3-password',
  webhookSecret: 'demo-webhook-secret',
} as const;

export const DEV_MAILBOX_ID = 'demo';
export const DEV_ENDPOINT_ID = 'local';

export interface DevOptions {
  /** Root for everything dev writes (archive, state, queue, demo inbox, secrets). */
  dataDir: string;
  pop3Port: number;
  receiverPort: number;
  /** Copy the sample messages into the inbox again, even if it was seeded before. */
  seed?: boolean;
  /** Seconds between polls (default: 2 s for the demo; with `config`, the shortest pollEveryMinutes). */
  interval?: number;
  /** A real config: poll its mailboxes and deliver to its endpoints; no demo server, no receiver. */
  config?: string;
}

export interface DevPaths {
  /** Absolute data directory (archive, state and queue live here, as with a config's local.dataDir). */
  dataDir: string;
  /** `<dataDir>/demo/inbox`: drop `.eml` files here. */
  inbox: string;
  /** `<dataDir>/demo/inbox/served`: where fetched-and-deleted messages go. */
  served: string;
  /** `<dataDir>/demo/secrets.json` (mode 0600): the demo password and signing secret. */
  secretsFile: string;
}

export function devPaths(cwd: string, dataDir: string): DevPaths {
  const root = path.resolve(cwd, dataDir);
  const inbox = path.join(root, 'demo', 'inbox');
  return {
    dataDir: root,
    inbox,
    served: path.join(inbox, 'served'),
    secretsFile: path.join(root, 'demo', 'secrets.json'),
  };
}

/**
 * Reads the dev secrets file, adding whatever is missing (first run: both). The values stay the same
 * across runs, so a receiver of your own can keep its secret.
 */
export async function ensureDevSecrets(
  file: string,
): Promise<{ pop3Password: string; webhookSecret: string }> {
  let stored: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw new SyntaxError('not an object');
    stored = parsed as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new UsageError(
        `${file} is not a JSON object of secrets; delete it and pophook dev will make a new one.`,
        {
          cause: err,
        },
      );
  }
  const password = stored[DEV_SECRET_NAMES.pop3Password];
  const secret = stored[DEV_SECRET_NAMES.webhookSecret];
  const result = {
    pop3Password: typeof password === 'string' && password.length > 0 ? password : generateDemoPassword(),
    webhookSecret:
      typeof secret === 'string' && checkWebhookSecret(secret) === undefined
        ? secret
        : generateWebhookSecret(),
  };
  if (result.pop3Password !== password || result.webhookSecret !== secret) {
    const next = {
      ...stored,
      [DEV_SECRET_NAMES.pop3Password]: result.pop3Password,
      [DEV_SECRET_NAMES.webhookSecret]: result.webhookSecret,
    };
    await mkdir(path.dirname(file), { recursive: true });
    const temp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(temp, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
    await rename(temp, file);
  }
  return result;
}

/** The in-memory config `pophook dev` runs: one demo mailbox, one local endpoint. */
export function buildDevConfig(params: {
  pop3Host: string;
  pop3Port: number;
  receiverUrl: string;
  paths: DevPaths;
}): PophookConfig {
  return parseConfig(
    {
      version: 1,
      mailboxes: [
        {
          id: DEV_MAILBOX_ID,
          host: params.pop3Host,
          port: params.pop3Port,
          tls: 'none',
          allowInsecureAuth: true,
          user: 'demo',
          auth: { type: 'password', password: { secret: DEV_SECRET_NAMES.pop3Password }, mechanism: 'user' },
          retention: 'delete',
          pollEveryMinutes: 1,
        },
      ],
      endpoints: [
        {
          id: DEV_ENDPOINT_ID,
          url: params.receiverUrl,
          secrets: [{ secret: DEV_SECRET_NAMES.webhookSecret }],
          allowHttp: true,
          allowPrivateNetwork: true,
          timeoutMs: 5000,
        },
      ],
      local: { dataDir: params.paths.dataDir, secretsFile: params.paths.secretsFile },
    },
    'the pophook dev config',
  );
}

export interface DevEnvironment {
  config: PophookConfig;
  paths: DevPaths;
  pop3: DemoPop3Server;
  receiver: WebhookReceiver;
  /** Sample files copied into the inbox on this run (empty when it was seeded before). */
  seeded: string[];
  close(): Promise<void>;
}

/**
 * Everything `pophook dev` sets up before the loop starts. Samples are copied only into a brand-new
 * demo (inbox and served/ both empty), or when `seed` asks: re-running dev never re-sends old mail.
 */
export async function prepareDevEnvironment(params: {
  cwd: string;
  dataDir: string;
  pop3Port?: number;
  receiverPort?: number;
  seed?: boolean;
  onDelivery?: (delivery: ReceivedDelivery) => void;
  logger?: Logger;
}): Promise<DevEnvironment> {
  const paths = devPaths(params.cwd, params.dataDir);
  const logger = params.logger ?? silentLogger;
  await mkdir(paths.inbox, { recursive: true });
  const fresh = (await hasNoMessages(paths.inbox)) && (await hasNoMessages(paths.served));
  const seeded = params.seed || fresh ? await seedDemoInbox(paths.inbox) : [];
  const secrets = await ensureDevSecrets(paths.secretsFile);

  const pop3 = await startDemoPop3Server({
    dir: paths.inbox,
    port: params.pop3Port ?? 0,
    password: secrets.pop3Password,
    logger,
  });
  let receiver: WebhookReceiver;
  try {
    receiver = await startWebhookReceiver({
      secrets: [secrets.webhookSecret],
      port: params.receiverPort ?? 0,
      ...(params.onDelivery ? { onDelivery: params.onDelivery } : {}),
      logger,
    });
  } catch (err) {
    await pop3.close();
    throw err;
  }
  const config = buildDevConfig({
    pop3Host: pop3.host,
    pop3Port: pop3.port,
    receiverUrl: receiver.url,
    paths,
  });
  return {
    config,
    paths,
    pop3,
    receiver,
    seeded,
    close: async () => {
      await Promise.all([pop3.close(), receiver.close()]);
    },
  };
}

/**
 * Turns the loop's events into lines: every poll that did something or changed outcome, the first poll
 * of each mailbox (so a quiet mailbox visibly works), and every delivery the receiver does not print.
 */
export function pipelinePrinter(out: Output, options: { receiverPrintsDeliveries: boolean }) {
  const lastOutcome = new Map<string, string>();
  return (event: LocalPipelineEvent): void => {
    const s = out.errStyle;
    if (event.type === 'poll') {
      const p = event.poll;
      const previous = lastOutcome.get(p.mailboxId);
      const key = `${p.outcome}:${p.errorCode ?? ''}`;
      lastOutcome.set(p.mailboxId, key);
      const busy = p.fetched > 0 || p.deleted > 0;
      if (!busy && previous === key) return; // the quiet, common case
      const { line, failed } = describePollRecord(p);
      const time = new Date(p.finishedAt).toISOString().slice(11, 19);
      out.info(`${s.dim(time)} ${failed ? s.red(line) : p.outcome === 'ok' ? line : s.yellow(line)}`);
      return;
    }
    const a = event.attempt;
    if (a.outcome === 'delivered' && options.receiverPrintsDeliveries) return;
    const time = a.at.slice(11, 19);
    const what = `${a.webhookId} to ${a.endpointId}`;
    const status = a.status ? `HTTP ${a.status}` : (a.errorCode ?? 'no response');
    if (a.outcome === 'delivered') {
      out.info(`${s.dim(time)} ${s.green('delivered')} ${what} (${status}, ${formatDuration(a.latencyMs)})`);
      return;
    }
    const next = a.nextAttemptAt ? `; next attempt at ${a.nextAttemptAt.slice(11, 19)}` : '';
    const snippet = a.response ? `: ${a.response.slice(0, 120)}` : '';
    out.info(`${s.dim(time)} ${s.yellow(`delivery ${a.outcome}`)} ${what} (${status}${snippet})${next}`);
  };
}

async function releaseDeadLeases(dataDir: string, mailboxIds: string[], ctx: CliContext): Promise<void> {
  const state = new LocalStateStore({ dir: path.join(dataDir, 'state') });
  for (const r of await reclaimDeadLeases(state, mailboxIds))
    ctx.out.info(
      ctx.out.errStyle.dim(
        `released the lease on ${r.mailboxId} left by pophook process ${r.pid}, which is no longer running`,
      ),
    );
}

/** `pophook dev --config FILE`: the same loop against real mailboxes and endpoints. */
async function runDevWithConfig(opts: DevOptions, file: string, ctx: CliContext): Promise<ExitCode> {
  const out = ctx.out;
  const { config, shown } = await loadCliConfig(file, ctx);
  const dataDir = dataDirOf(config, ctx.cwd);
  await ensureDataDir(dataDir, ctx);
  const shortest = Math.min(...config.mailboxes.map((m) => m.pollEveryMinutes)) * 60;
  const intervalMs = Math.round((opts.interval ?? shortest) * 1000);
  const s = out.errStyle;
  out.info('');
  out.info(
    `${s.bold('pophook dev')} with ${s.cyan(shown)}: polling real mailboxes, delivering to real endpoints`,
  );
  for (const m of config.mailboxes)
    out.info(
      `  mailbox   ${s.cyan(m.id)}  ${m.user} @ ${m.host}:${m.port ?? (m.tls === 'implicit' ? 995 : 110)}`,
    );
  for (const e of config.endpoints) out.info(`  endpoint  ${s.cyan(e.id)}  ${e.url}`);
  out.info(`  data      ${displayPath(dataDir, ctx.cwd)}/ (archive, state, queue)`);
  out.info(
    `  every     ${formatDuration(intervalMs)}${opts.interval === undefined ? ' (the shortest pollEveryMinutes)' : ''}`,
  );
  out.info(s.dim('  Ctrl-C to stop (the message in flight is finished or left on the server, never lost).'));
  out.info('');
  await releaseDeadLeases(
    dataDir,
    config.mailboxes.map((m) => m.id),
    ctx,
  );
  await runLocalPipeline(config, {
    intervalMs,
    signal: ctx.signal,
    logger: commandLogger(ctx.logger),
    env: ctx.env,
    baseDir: ctx.cwd,
    onEvent: pipelinePrinter(out, { receiverPrintsDeliveries: false }),
  });
  out.info('stopped');
  return EXIT.OK;
}

export async function runDev(opts: DevOptions, ctx: CliContext): Promise<ExitCode> {
  if (opts.config) return runDevWithConfig(opts, opts.config, ctx);
  const out = ctx.out;
  const intervalMs = opts.interval === undefined ? DEV_POLL_INTERVAL_MS : Math.round(opts.interval * 1000);
  await ensureDataDir(path.resolve(ctx.cwd, opts.dataDir), ctx);
  const env = await prepareDevEnvironment({
    cwd: ctx.cwd,
    dataDir: opts.dataDir,
    pop3Port: opts.pop3Port,
    receiverPort: opts.receiverPort,
    seed: opts.seed ?? false,
    onDelivery: (d) => {
      out.print(formatDelivery(d, out.style));
      out.print();
    },
    logger: ctx.logger,
  });
  let ui: Awaited<ReturnType<typeof startLocalConsole>> | undefined;
  try {
    ui = await startLocalConsole(env.config, {
      port: 0,
      logger: ctx.logger,
      runtime: { baseDir: ctx.cwd, env: ctx.env, logger: ctx.logger },
    });
    const s = out.errStyle;
    const rel = (p: string) => displayPath(p, ctx.cwd);
    out.info('');
    out.info(`${s.bold('pophook dev')}: a local demo, no AWS account and no config needed`);
    out.info(
      `  demo POP3 server   ${s.cyan(`${env.pop3.host}:${env.pop3.port}`)} (user demo, no TLS, loopback only)`,
    );
    out.info(`  webhook receiver   ${s.cyan(env.receiver.url)} (verifies Standard Webhooks signatures)`);
    out.info(`  data               ${rel(env.paths.dataDir)}/ (archive, state, queue)`);
    out.info(`  secrets            ${rel(env.paths.secretsFile)} (demo password and whsec_ signing secret)`);
    out.info(`  console            ${s.cyan(ui.loginUrl)} (private: the link carries its access token)`);
    if (env.seeded.length > 0)
      out.info(`  seeded             ${env.seeded.length} sample messages into the inbox`);
    out.info('');
    out.info(
      `  ${s.bold('Drop .eml files into')} ${s.cyan(`${rel(env.paths.inbox)}/`)}: they are fetched within ${intervalMs / 1000} s, archived, delivered below, and moved to ${rel(env.paths.served)}/.`,
    );
    out.info(s.dim('  Ctrl-C to stop.'));
    out.info('');
    await releaseDeadLeases(env.paths.dataDir, [DEV_MAILBOX_ID], ctx);
    await runLocalPipeline(env.config, {
      intervalMs,
      signal: ctx.signal,
      logger: commandLogger(ctx.logger),
      env: ctx.env,
      baseDir: ctx.cwd,
      onEvent: pipelinePrinter(out, { receiverPrintsDeliveries: true }),
    });
  } finally {
    await ui?.close();
    await env.close();
  }
  out.info('stopped');
  return EXIT.OK;
}

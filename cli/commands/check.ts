/**
 * `pophook check`: tests each mailbox (DNS to STAT) and each endpoint (URL policy to a signed ping)
 * without fetching, deleting or delivering mail. The steps come from shared/check (the console shows the
 * same); this file only prints them. Exit 0 when every step passed, 1 otherwise, 2 on a config error.
 */
import type { CredentialsProvider } from '../../shared/auth/credentials.js';
import { checkEndpoint } from '../../shared/check/endpoint.js';
import { checkMailbox } from '../../shared/check/mailbox.js';
import type { CheckReport, CheckStep } from '../../shared/check/types.js';
import type { MailboxConfig } from '../../shared/config/schema.js';
import { createLocalRuntime } from '../../shared/runtime/local.js';
import { type CliContext, EXIT, type ExitCode } from '../context.js';
import { checkEndpointIds, loadCliConfig, selectMailboxes } from '../local.js';
import type { Output } from '../output.js';

export interface CheckOptions {
  config?: string;
  /** Only these mailboxes (default: all). */
  mailbox?: string[];
  /** Only these endpoints (default: all). */
  endpoint?: string[];
  /** false with --no-endpoints: skip the endpoint checks. */
  endpoints: boolean;
  json?: boolean;
  /** Hidden: connect to mailboxes from this local address (tests). */
  sourceAddress?: string;
}

/** Width of the step-name column. */
const NAME_WIDTH = 12;

export function printReport(r: CheckReport, out: Output): void {
  const s = out.style;
  const title = `${r.kind} ${s.bold(r.id)}  ${s.dim(r.target)}`;
  out.print(title);
  const pad = ' '.repeat(NAME_WIDTH + 8);
  for (const step of r.steps) {
    const mark = step.ok ? (step.warning ? s.yellow('warn') : s.green('ok  ')) : s.red('FAIL');
    out.print(`  ${mark}  ${step.name.padEnd(NAME_WIDTH)}${step.detail}`);
    for (const line of step.lines ?? []) out.print(`${pad}${s.dim(line)}`);
    if (step.fix && (!step.ok || step.warning))
      out.print(`${pad}${step.ok ? s.yellow('->') : s.red('fix:')} ${step.fix}`);
  }
  out.print(
    r.ok ? s.green(`  ${r.id}: all checks passed`) : s.red(`  ${r.id}: ${failedNames(r.steps)} failed`),
  );
  out.print();
}

const failedNames = (steps: readonly CheckStep[]) =>
  steps
    .filter((x) => !x.ok)
    .map((x) => x.name)
    .join(', ');

export async function runCheck(opts: CheckOptions, ctx: CliContext): Promise<ExitCode> {
  const { config } = await loadCliConfig(opts.config, ctx);
  const mailboxes: MailboxConfig[] =
    opts.endpoint && !opts.mailbox ? [] : selectMailboxes(config, opts.mailbox);
  checkEndpointIds(config, opts.endpoint);
  const endpoints =
    opts.endpoints === false || (opts.mailbox && !opts.endpoint)
      ? []
      : config.endpoints.filter((e) => !opts.endpoint || opts.endpoint.includes(e.id));
  // No data directory needed: check reads secrets and talks to servers, nothing else.
  const runtime = await createLocalRuntime(config, { baseDir: ctx.cwd, env: ctx.env, logger: ctx.logger });
  const provider = runtime.credentials as CredentialsProvider;
  const reports: CheckReport[] = [];
  const emit = (r: CheckReport) => {
    reports.push(r);
    if (opts.json) ctx.out.print(JSON.stringify(r));
    else printReport(r, ctx.out);
  };
  try {
    for (const mailbox of mailboxes) {
      if (ctx.signal.aborted) break;
      const progress = opts.json ? undefined : ctx.out.progress(`checking ${mailbox.id}`);
      try {
        emit(
          await checkMailbox(mailbox, {
            credentials: (m) =>
              typeof provider.getCredentialsWithExpiry === 'function'
                ? provider.getCredentialsWithExpiry(m)
                : runtime.credentials(m).then((credentials) => ({ credentials })),
            ...(opts.sourceAddress ? { localAddress: opts.sourceAddress } : {}),
            logger: ctx.logger,
            signal: ctx.signal,
          }),
        );
      } finally {
        progress?.done();
      }
    }
    for (const endpoint of endpoints) {
      if (ctx.signal.aborted) break;
      emit(
        await checkEndpoint(endpoint, {
          http: runtime.http,
          resolveSecret: (ref) => runtime.secrets.resolve(ref),
          signal: ctx.signal,
        }),
      );
    }
  } finally {
    await runtime.close();
  }
  const failed = reports.filter((r) => !r.ok);
  if (!opts.json) {
    if (reports.length === 0) ctx.out.info('Nothing to check.');
    else if (failed.length === 0) ctx.out.success(`${reports.length} checked, all passed`);
    else ctx.out.error(`${failed.length} of ${reports.length} failed: ${failed.map((r) => r.id).join(', ')}`);
  }
  return failed.length === 0 ? EXIT.OK : EXIT.FAILURE;
}

/**
 * `pophook ui`: the pophook console, a local web page to browse the archive, the polls and the delivery
 * log of a config, replay messages and re-enable endpoints. Loopback only by default; the link printed
 * once carries a random access token (like Jupyter). Ctrl-C stops it.
 *
 * Local mode reads the config's data directory. With `bucket` and `table` (and optionally `queueUrl`)
 * it reads a deployed stack instead, with the user's own AWS credentials.
 */
import { spawn } from 'node:child_process';
import { type ConsoleHandle, startConsole } from '../../shared/console/server.js';
import { awsConsoleSource, localConsoleSource } from '../../shared/console/source.js';
import { type CliContext, EXIT, type ExitCode, UsageError, untilAborted } from '../context.js';
import { dataDirOf, ensureDataDir, loadCliConfig, openRuntime } from '../local.js';

export interface UiOptions {
  config?: string;
  port: number;
  host: string;
  /** Open the page in the default browser. */
  open?: boolean;
  /** AWS mode: the stack's archive bucket. */
  bucket?: string;
  /** AWS mode: the stack's state table. */
  table?: string;
  /** AWS mode: the delivery queue URL (replay); without it the console is read-only. */
  queueUrl?: string;
  region?: string;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/** Opens `url` in the default browser; failures are only reported (the link is printed anyway). */
function openBrowser(url: string, ctx: CliContext): void {
  const [cmd, args] =
    process.platform === 'darwin'
      ? ['open', [url]]
      : process.platform === 'win32'
        ? ['cmd', ['/c', 'start', '""', url]]
        : ['xdg-open', [url]];
  try {
    const child = spawn(cmd, args as string[], { stdio: 'ignore', detached: true });
    child.on('error', () => ctx.out.warn('Could not open a browser; open the link above yourself.'));
    child.unref();
  } catch {
    ctx.out.warn('Could not open a browser; open the link above yourself.');
  }
}

export async function runUi(opts: UiOptions, ctx: CliContext): Promise<ExitCode> {
  const { config, shown } = await loadCliConfig(opts.config, ctx);
  if ((opts.bucket === undefined) !== (opts.table === undefined))
    throw new UsageError('To read a deployed stack give both --bucket and --table.');
  if (!LOOPBACK.has(opts.host))
    ctx.out.warn(
      `Listening on ${opts.host}: anyone who can reach it and has the link can read this mail. Prefer 127.0.0.1.`,
    );

  let closeRuntime: () => Promise<void> = async () => {};
  let handle: ConsoleHandle;
  try {
    let source: Parameters<typeof startConsole>[0]['source'];
    if (opts.bucket && opts.table) {
      source = awsConsoleSource({
        config,
        bucket: opts.bucket,
        table: opts.table,
        ...(opts.queueUrl ? { queueUrl: opts.queueUrl } : {}),
        ...(opts.region ? { region: opts.region } : {}),
        logger: ctx.logger,
      });
    } else {
      if (!(await ensureDataDir(dataDirOf(config, ctx.cwd), ctx, false)))
        ctx.out.warn(
          'The data directory does not exist yet: nothing has been polled. Run "pophook poll" first.',
        );
      const runtime = await openRuntime(config, ctx, { create: false });
      closeRuntime = () => runtime.close();
      source = localConsoleSource(runtime);
    }
    handle = await startConsole({ source, host: opts.host, port: opts.port, logger: ctx.logger }).catch(
      (err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE')
          throw new UsageError(
            `Port ${opts.port} is in use; pass --port with another number (0: any free port).`,
          );
        if (code === 'EADDRNOTAVAIL')
          throw new UsageError(`Cannot listen on ${opts.host}; it is not an address of this machine.`);
        throw err;
      },
    );
  } catch (err) {
    await closeRuntime();
    throw err;
  }

  try {
    const s = ctx.out.errStyle;
    ctx.out.info('');
    ctx.out.info(
      `${s.bold('pophook console')} for ${shown} (${opts.bucket ? `s3://${opts.bucket}` : 'local data'})`,
    );
    ctx.out.info('  Open this link (it carries the access token; keep it private):');
    ctx.out.print(`    ${handle.loginUrl}`);
    ctx.out.info(s.dim('  Ctrl-C to stop.'));
    ctx.out.info('');
    if (opts.open) openBrowser(handle.loginUrl, ctx);
    await untilAborted(ctx.signal);
  } finally {
    await handle.close();
    await closeRuntime();
  }
  return EXIT.OK;
}

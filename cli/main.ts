/**
 * The `pophook` command line. This file declares every command, its options and help; each action
 * lives in `cli/commands/<name>.ts` and is imported only when that command runs, so `--help` stays
 * fast. Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 partial (see EXIT). Errors print as one
 * sentence; stack traces only with --debug.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { isPophookError } from '../shared/errors.js';
import { scrubSecrets, serializeError } from '../shared/log.js';
import { type CliContext, EXIT, type ExitCode, exitCodeFor } from './context.js';
import { createCliLogger, createOutput, type Output, type OutStream } from './output.js';

export interface MainIo {
  stdout: OutStream;
  stderr: OutStream;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Aborted on Ctrl-C; long-running commands return when it fires. */
  signal: AbortSignal;
}

const VERSION = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

/** Default port of `pophook listen`: fixed, so an endpoint config can point at it across runs. */
const DEFAULT_LISTEN_PORT = 8787;
/** Default port of `pophook ui`. */
const DEFAULT_UI_PORT = 8788;

function integer(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value))
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}.`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}.`);
    return n;
  };
}

function seconds(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+(\.\d+)?$/.test(value) || n < min || n > max)
      throw new InvalidArgumentError(`expected a number of seconds from ${min} to ${max}.`);
    return n;
  };
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

const configOption = () =>
  new Option(
    '-c, --config <file>',
    'config file, YAML or JSON (default: $POPHOOK_CONFIG, then ./pophook.yaml)',
  );

const ROOT_HELP = `
Exit codes:
  0  success
  1  failure (the message says what to do)
  2  usage or config error (nothing was attempted)
  3  partial success (e.g. some mailboxes failed)

Environment:
  POPHOOK_CONFIG          config file used when --config is not given
  POPHOOK_WEBHOOK_SECRET  signing secret for "pophook listen" when --secret is not given
  NO_COLOR                turn colours off (they are also off when output is not a terminal)

Examples:
  $ pophook dev                              try pophook locally, no config or account needed
  $ pophook config validate -c pophook.yaml  check a config file
  $ pophook check                            test mailbox logins and endpoints
  $ pophook poll --watch                     run locally until Ctrl-C
  $ pophook list --limit 20                  what arrived, and how each delivery went
  $ pophook show 3f2a9c01be7d                one message (--raw for its exact bytes)
  $ pophook replay --failed                  send failed deliveries again, same webhook-id`;

interface Runtime {
  ctx(cmd: Command): CliContext;
  setExit(code: ExitCode): void;
}

/** Declares every command. Actions import their module lazily. */
export function buildProgram(io: MainIo, out: Output, rt: Runtime): Command {
  const program = new Command('pophook');
  const cfg = (opts: { config?: string }) => opts.config ?? io.env.POPHOOK_CONFIG;

  program
    .description('Turn POP3 mailboxes into signed webhooks, locally or inside your own AWS account.')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .option('--debug', 'print stack traces and debug logs')
    .option('-v, --verbose', 'print progress logs')
    .option('--color', 'force colours on')
    .option('--no-color', 'turn colours off (also NO_COLOR=1)')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(out.errStyle.red(s)),
    })
    .addHelpText('after', ROOT_HELP);
  program.helpCommand('help [command]', 'show help for a command');

  program
    .command('dev')
    .description('run pophook end to end on this machine: a demo POP3 server, a local receiver, no config')
    .option('--data-dir <dir>', 'where the archive, state, queue and demo inbox live', '.pophook')
    .option('--seed', 'copy the sample messages into the demo inbox again')
    .option(
      '--interval <seconds>',
      'seconds between polls (default: 2; with --config: the shortest pollEveryMinutes)',
      seconds(0.2, 86_400),
    )
    .option('--pop3-port <n>', 'port of the demo POP3 server (0: any free port)', integer(0, 65535), 0)
    .option('--receiver-port <n>', 'port of the webhook receiver (0: any free port)', integer(0, 65535), 0)
    .option(
      '-c, --config <file>',
      'poll the mailboxes of this config and deliver to its endpoints instead (no demo server or receiver)',
    )
    .addHelpText(
      'after',
      '\nDrop .eml files into <data-dir>/demo/inbox/; each is fetched, archived, delivered to the receiver,\nand moved to inbox/served/. Ctrl-C to stop (exit 0). "npm start" runs this.',
    )
    .action(async (opts, cmd: Command) => {
      const { runDev } = await import('./commands/dev.js');
      rt.setExit(await runDev(opts, rt.ctx(cmd)));
    });

  program
    .command('check')
    .description('test each mailbox login and each endpoint, without fetching or deleting mail')
    .addOption(configOption())
    .option('-m, --mailbox <id>', 'only this mailbox (repeatable)', collect)
    .option('-e, --endpoint <id>', 'only this endpoint (repeatable)', collect)
    .option('--no-endpoints', 'skip the endpoint checks (and their signed test delivery)')
    .option('--json', 'print one JSON report per mailbox and endpoint')
    .addOption(new Option('--source-address <ip>', 'connect to mailboxes from this local address').hideHelp())
    .addHelpText(
      'after',
      '\nWith --mailbox only, endpoints are not checked (and the reverse). Exits 1 when any step failed.',
    )
    .action(async (opts, cmd: Command) => {
      const { runCheck } = await import('./commands/check.js');
      rt.setExit(await runCheck({ ...opts, config: cfg(opts) }, rt.ctx(cmd)));
    });

  program
    .command('poll')
    .description('fetch new mail, archive it, deliver webhooks and apply retention (local mode)')
    .addOption(configOption())
    .option('-m, --mailbox <id>', 'only this mailbox (repeatable)', collect)
    .option('-w, --watch', 'keep polling each mailbox every pollEveryMinutes until Ctrl-C')
    .option('--json', 'print a JSON summary per mailbox')
    .addHelpText('after', '\nExits 3 when some mailboxes failed and others succeeded.')
    .action(async (opts, cmd: Command) => {
      const { runPoll } = await import('./commands/poll.js');
      rt.setExit(await runPoll({ ...opts, config: cfg(opts) }, rt.ctx(cmd)));
    });

  program
    .command('list')
    .description('list archived messages and their delivery status')
    .addOption(configOption())
    .option('-m, --mailbox <id>', 'only this mailbox')
    .addOption(
      new Option('--status <status>', 'only messages in this state').choices([
        'seen',
        'archived',
        'enqueued',
        'deleted',
        'skipped',
      ]),
    )
    .option('--since <date>', 'only messages first seen at or after this ISO date')
    .option('-n, --limit <n>', 'at most this many messages', integer(1, 100_000), 50)
    .option('--json', 'print JSON lines')
    .action(async (opts, cmd: Command) => {
      const { runList } = await import('./commands/list.js');
      rt.setExit(await runList({ ...opts, config: cfg(opts) }, rt.ctx(cmd)));
    });

  program
    .command('show')
    .description('show one message: its event, raw size and hash, attachments and delivery attempts')
    .argument('<message>', 'message key (from "pophook list") or event id')
    .addOption(configOption())
    .option('--raw', 'write the raw .eml bytes to stdout')
    .option('--json', 'print the event JSON')
    .action(async (message: string, opts, cmd: Command) => {
      const { runShow } = await import('./commands/show.js');
      rt.setExit(await runShow(message, { ...opts, config: cfg(opts) }, rt.ctx(cmd)));
    });

  program
    .command('replay')
    .description('deliver archived messages again, with their original webhook-id')
    .argument('[messages...]', 'message keys (or unique prefixes, or event ids) to replay')
    .addOption(configOption())
    .option('-m, --mailbox <id>', 'only messages of this mailbox')
    .option('--since <date>', 'only messages received at or after this ISO date')
    .option('--until <date>', 'only messages received at or before this ISO date')
    .option('-e, --endpoint <id>', 'only to this endpoint (repeatable)', collect)
    .option('--failed', 'only messages whose last delivery to an endpoint failed, to that endpoint')
    .option('--dry-run', 'list what would be replayed and send nothing')
    .option('--json', 'print what was queued as JSON')
    .addHelpText(
      'after',
      '\nReplay follows the routing rules; --endpoint narrows them. Queued jobs are delivered at once.\nExits 3 when some deliveries failed, 1 when none succeeded.',
    )
    .action(async (messages: string[], opts, cmd: Command) => {
      const { runReplay } = await import('./commands/replay.js');
      rt.setExit(await runReplay(messages, { ...opts, config: cfg(opts) }, rt.ctx(cmd)));
    });

  program
    .command('auth <mailbox>')
    .description('sign in to an OAuth mailbox (Microsoft 365 delegated, Gmail) and store its refresh token')
    .addOption(configOption())
    .option('--aws', 'store the token in AWS Secrets Manager (default: local.secretsFile)')
    .option('--no-browser', 'print the sign-in URL only')
    .action(async (mailbox: string, opts, cmd: Command) => {
      const { runAuth } = await import('./commands/auth.js');
      rt.setExit(await runAuth({ ...opts, mailbox, config: cfg(opts) }, rt.ctx(cmd)));
    });

  program
    .command('listen')
    .description('run a local webhook receiver that verifies signatures and prints each delivery')
    .option('-p, --port <n>', 'port to listen on (0: any free port)', integer(0, 65535), DEFAULT_LISTEN_PORT)
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option(
      '-s, --secret <whsec>',
      'signing secret, whsec_... (repeatable while rotating; default: generated)',
      collect,
    )
    .option('--json', 'print each delivery as one JSON line')
    .action(async (opts, cmd: Command) => {
      const { runListen } = await import('./commands/listen.js');
      const envSecret = io.env.POPHOOK_WEBHOOK_SECRET;
      const secret = opts.secret ?? (envSecret ? [envSecret] : undefined);
      rt.setExit(await runListen({ ...opts, secret }, rt.ctx(cmd)));
    });

  program
    .command('ui')
    .description('open a local web page to browse the archive and the delivery log')
    .addOption(configOption())
    .option('-p, --port <n>', 'port to listen on', integer(0, 65535), DEFAULT_UI_PORT)
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--open', 'open the page in the default browser')
    .option('--bucket <name>', 'read a deployed stack: its archive bucket (with --table)')
    .option('--table <name>', 'read a deployed stack: its state table (with --bucket)')
    .option('--queue-url <url>', 'with --bucket: the delivery queue, so replay works (else read-only)')
    .option('--region <region>', 'AWS region of the stack (default: aws.region, then your AWS profile)')
    .action(async (opts, cmd: Command) => {
      const { runUi } = await import('./commands/ui.js');
      rt.setExit(await runUi({ ...opts, config: cfg(opts) }, rt.ctx(cmd)));
    });

  const config = program.command('config').description('check the config file or print its JSON Schema');
  config
    .command('validate')
    .description('check a config file: prints a summary, or every problem with the field and the fix')
    .addOption(configOption())
    .addHelpText('after', '\nExits 2 when the config has problems.')
    .action(async (opts, cmd: Command) => {
      const { runConfigValidate } = await import('./commands/config.js');
      rt.setExit(await runConfigValidate({ config: cfg(opts) }, rt.ctx(cmd)));
    });
  config
    .command('schema')
    .description('print the config JSON Schema (for editors: $schema in your config)')
    .action(async (_opts, cmd: Command) => {
      const { runConfigSchema } = await import('./commands/config.js');
      rt.setExit(await runConfigSchema({}, rt.ctx(cmd)));
    });

  program
    .command('demo-server', { hidden: true })
    .description('run the demo POP3 server alone, serving a folder of .eml files')
    .option('--dir <dir>', 'folder of .eml files to serve', '.pophook/demo/inbox')
    .option('-p, --port <n>', 'port (0: any free port)', integer(0, 65535), 0)
    .option('--host <address>', 'loopback address to listen on', '127.0.0.1')
    .option('--password <password>', 'fixed password (default: generated and printed)')
    .action(async (opts, cmd: Command) => {
      const { runDemoServer } = await import('./commands/demo-server.js');
      rt.setExit(await runDemoServer(opts, rt.ctx(cmd)));
    });

  return program;
}

function reportError(err: unknown, out: Output, debug: boolean): void {
  const message = err instanceof Error ? err.message : String(err);
  out.error(scrubSecrets(message));
  if (debug) {
    if (err instanceof Error && err.stack) out.info(out.errStyle.dim(scrubSecrets(err.stack)));
    if (err instanceof Error && err.cause !== undefined)
      out.info(out.errStyle.dim(`cause: ${scrubSecrets(JSON.stringify(serializeError(err.cause)))}`));
  } else if (!isPophookError(err)) {
    out.info(out.errStyle.dim('(run with --debug for details)'));
  }
}

/**
 * Runs the CLI with `args` (without node and the script path) and returns the exit code. Never calls
 * process.exit, so tests can call it in-process.
 */
export async function main(args: readonly string[], partialIo: Partial<MainIo> = {}): Promise<ExitCode> {
  const io: MainIo = {
    stdout: partialIo.stdout ?? process.stdout,
    stderr: partialIo.stderr ?? process.stderr,
    env: partialIo.env ?? process.env,
    cwd: partialIo.cwd ?? process.cwd(),
    signal: partialIo.signal ?? new AbortController().signal,
  };
  const colourFlag = args.includes('--no-color') ? false : args.includes('--color') ? true : undefined;
  const out = createOutput({ stdout: io.stdout, stderr: io.stderr, env: io.env, colour: colourFlag });
  let debug = args.includes('--debug') || io.env.POPHOOK_DEBUG === '1';
  let exitCode: ExitCode = EXIT.OK;
  const rt: Runtime = {
    setExit: (code) => {
      exitCode = code;
    },
    ctx: (cmd) => {
      const globals = cmd.optsWithGlobals() as { debug?: boolean; verbose?: boolean };
      debug ||= globals.debug === true;
      return {
        out,
        logger: createCliLogger(out, debug ? 'debug' : globals.verbose ? 'info' : 'warn'),
        cwd: io.cwd,
        env: io.env,
        debug,
        signal: io.signal,
      };
    },
  };
  const program = buildProgram(io, out, rt);
  try {
    await program.parseAsync([...args], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed its message (or the help) already; exitCode 0 means help or version.
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    reportError(err, out, debug);
    return exitCodeFor(err);
  }
}

/** Entry point for bin/pophook.mjs: wires signals and the process exit code. */
export async function runCli(): Promise<void> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(130); // a second Ctrl-C means "now"
    process.stderr.write(
      `\n${signal === 'SIGINT' ? 'stopping' : `${signal}: stopping`} (Ctrl-C again to force)\n`,
    );
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A bug that escapes every await still ends in one line, not a stack trace (unless --debug).
  const debug = process.argv.includes('--debug') || process.env.POPHOOK_DEBUG === '1';
  const crash = (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`error: unexpected failure: ${scrubSecrets(message)}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(`${scrubSecrets(err.stack)}\n`);
    else process.stderr.write('(run with --debug for details)\n');
    process.exit(EXIT.FAILURE);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0); // `pophook ... | head`
  });
  const code = await main(process.argv.slice(2), { signal: controller.signal });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.exitCode = code;
}

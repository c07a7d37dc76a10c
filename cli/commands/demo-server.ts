/**
 * `pophook demo-server` (hidden): the embedded demo POP3 server on its own, for trying POP3 clients
 * (or pophook with a hand-written config) against a folder of `.eml` files.
 */
import path from 'node:path';
import { startDemoPop3Server } from '../../shared/demo/pop3-server.js';
import { type CliContext, displayPath, EXIT, type ExitCode, untilAborted } from '../context.js';

export interface DemoServerOptions {
  dir: string;
  port: number;
  host: string;
  /** Fixed password; generated when absent. */
  password?: string;
}

export async function runDemoServer(opts: DemoServerOptions, ctx: CliContext): Promise<ExitCode> {
  const server = await startDemoPop3Server({
    dir: path.resolve(ctx.cwd, opts.dir),
    host: opts.host,
    port: opts.port,
    ...(opts.password ? { password: opts.password } : {}),
    logger: ctx.logger,
  });
  const s = ctx.out.errStyle;
  ctx.out.info(`${s.bold('demo POP3 server')} on ${s.cyan(`${server.host}:${server.port}`)} (no TLS)`);
  ctx.out.info(`  user      ${server.user}`);
  ctx.out.info(`  password  ${opts.password ? '(as given)' : server.password}`);
  ctx.out.info(`  serving   ${displayPath(server.dir, ctx.cwd)}/*.eml (read again at every login)`);
  ctx.out.info(`  served    ${displayPath(server.servedDir, ctx.cwd)}/ (where DELE + QUIT moves files)`);
  ctx.out.info(s.dim('Ctrl-C to stop'));
  await untilAborted(ctx.signal);
  await server.close();
  return EXIT.OK;
}

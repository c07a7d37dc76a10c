/**
 * Starts a local demo server listening, turning the common failure (port taken) into a sentence that
 * says what to do. Shared by the demo POP3 server and the webhook receiver.
 */
import type { Server } from 'node:net';
import { PophookError } from '../errors.js';

export async function listenOrExplain(
  server: Server,
  host: string,
  port: number | undefined,
  failure: { code: string; what: string },
): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    throw new PophookError(
      failure.code,
      err.code === 'EADDRINUSE'
        ? `Port ${port} is already in use; choose another with --port, or 0 for any free port.`
        : `The ${failure.what} could not listen on ${host}:${port ?? 0} (${err.code ?? 'error'}).`,
      { cause: err },
    );
  });
}

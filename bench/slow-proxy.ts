/**
 * A TCP proxy on loopback that delays every chunk by a fixed time in each direction: a long link
 * (20 ms each way is a 40 ms round trip, a mailbox on another continent) without a bandwidth cap. TLS
 * passes through untouched. Constant delay keeps order: timers of equal duration fire in the order
 * they were set. Backpressure is kept: a side whose writes buffer up pauses the other side's reads.
 */
import { type AddressInfo, createServer, connect as netConnect, type Socket } from 'node:net';

export interface SlowProxy {
  port: number;
  close(): Promise<void>;
}

export async function startSlowProxy(
  targetPort: number,
  delayMs: number,
  targetHost = '127.0.0.1',
): Promise<SlowProxy> {
  const sockets = new Set<Socket>();
  const pipeDelayed = (from: Socket, to: Socket) => {
    let paused = false;
    to.on('drain', () => {
      if (paused) {
        paused = false;
        from.resume();
      }
    });
    from.on('data', (chunk: Buffer) => {
      setTimeout(() => {
        if (to.destroyed) return;
        if (!to.write(chunk) && !paused) {
          paused = true;
          from.pause();
        }
      }, delayMs);
    });
    from.on('end', () => setTimeout(() => to.end(), delayMs));
    from.on('error', () => setTimeout(() => to.destroy(), delayMs));
    from.on('close', () => setTimeout(() => to.destroy(), delayMs + 1));
  };
  const server = createServer((client) => {
    const upstream = netConnect({ host: targetHost, port: targetPort });
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    pipeDelayed(client, upstream);
    pipeDelayed(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

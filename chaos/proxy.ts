/**
 * A TCP fault proxy on loopback for POP3: every accepted connection gets one fault plan (from
 * `decide`) and is piped to the target with that fault applied to the server-to-client direction:
 *
 *   latency    every chunk is delayed (order kept)
 *   drop       after N bytes both sides are closed (FIN): the client sees the reply end early
 *   reset      after N bytes the client side is reset (RST)
 *   stall      after N bytes nothing more is forwarded; the sockets stay open until the client gives up
 *   quit-reset the client's QUIT is (or is not) forwarded, then the client is reset before the reply
 *
 * Client-to-server traffic is forwarded line by line (POP3 commands are CRLF lines), so the proxy can
 * hold a QUIT: `onQuit` runs before the QUIT reaches the server and may return an `after` callback that
 * runs once the server side has closed. The chaos checker uses that window to prove that every message
 * the server deletes was already in the archive (deletion happens only in the UPDATE state, after QUIT).
 * The server side is always read to the end (a stalled connection discards instead of forwarding), so
 * the server finishes every command it received.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type ProxyFault =
  | { kind: 'none' }
  | { kind: 'latency'; ms: number }
  | { kind: 'drop'; afterBytes: number }
  | { kind: 'reset'; afterBytes: number }
  | { kind: 'stall'; afterBytes: number }
  | { kind: 'quit-reset'; forward: boolean };

export interface ProxyConnection {
  readonly id: number;
  readonly fault: ProxyFault;
  /** Resolves when the server side has closed (after a QUIT: the server finished its UPDATE state). */
  readonly upstreamClosed: Promise<void>;
}

export interface FaultProxyOptions {
  targetHost: string;
  targetPort: number;
  /** The fault for the n-th connection (1-based). */
  decide: (id: number) => ProxyFault;
  /**
   * Runs while a client's QUIT is held back; the returned callback (if any) runs after the QUIT was
   * forwarded (or dropped) and must release whatever `onQuit` took.
   */
  onQuit?: (conn: ProxyConnection) => Promise<(() => Promise<void>) | undefined>;
}

export interface FaultProxy {
  readonly port: number;
  /** Faults applied, by kind (`none` not counted). */
  readonly faults: Record<string, number>;
  readonly connections: number;
  /** Replaces the fault decision for new connections (e.g. no faults while draining). */
  setDecide(decide: (id: number) => ProxyFault): void;
  close(): Promise<void>;
}

/** A half-closed server side that never closes is cut after this long (the client is gone anyway). */
const UPSTREAM_LINGER_MS = 10_000;
const CRLF = Buffer.from('\r\n');

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  let decide = options.decide;
  let connections = 0;
  const faults: Record<string, number> = {};
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  };

  const server = net.createServer((client) => {
    const id = ++connections;
    const fault = decide(id);
    if (fault.kind !== 'none') faults[fault.kind] = (faults[fault.kind] ?? 0) + 1;
    track(client);
    const upstream = net.connect({ host: options.targetHost, port: options.targetPort });
    track(upstream);
    const upstreamClosed = new Promise<void>((resolve) => upstream.once('close', () => resolve()));
    const conn: ProxyConnection = { id, fault, upstreamClosed };

    let toClient = 0;
    let cut = false;
    let chain: Promise<void> = Promise.resolve();
    const lingerThenCut = () => {
      const timer = setTimeout(() => upstream.destroy(), UPSTREAM_LINGER_MS);
      timer.unref();
    };
    const cutClient = (how: 'end' | 'reset' | 'keep') => {
      cut = true;
      if (how === 'reset') client.resetAndDestroy();
      else if (how === 'end') {
        client.end();
        // A dropped connection: the server also sees it go (no QUIT, so nothing is deleted).
        upstream.destroy();
      }
    };

    upstream.on('data', (chunk: Buffer) => {
      if (cut || client.destroyed) return; // keep reading so the server completes what it got
      let piece = chunk;
      if (fault.kind === 'drop' || fault.kind === 'reset' || fault.kind === 'stall') {
        const room = fault.afterBytes - toClient;
        if (room < chunk.length) {
          piece = chunk.subarray(0, Math.max(0, room));
          const how = fault.kind === 'drop' ? 'end' : fault.kind === 'reset' ? 'reset' : 'keep';
          toClient += piece.length;
          const write = piece;
          chain = chain.then(() => {
            if (write.length && !client.destroyed) client.write(write);
            cutClient(how);
          });
          return;
        }
      }
      toClient += piece.length;
      if (fault.kind === 'latency') {
        chain = chain.then(async () => {
          await sleep(fault.ms);
          if (!client.destroyed && !cut) client.write(piece);
        });
      } else {
        chain = chain.then(() => {
          if (!client.destroyed && !cut) client.write(piece);
        });
      }
    });
    upstream.on('end', () => {
      chain = chain.then(() => {
        if (!cut) client.end();
      });
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => {
      // Half-close: the server reads what was sent (a QUIT included) and then sees EOF.
      if (!upstream.destroyed) {
        upstream.end();
        lingerThenCut();
      }
    });

    let pending: Buffer = Buffer.alloc(0);
    let inbound: Promise<void> = Promise.resolve();
    const forwardLines = async (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      for (;;) {
        const i = pending.indexOf(CRLF);
        if (i < 0) break;
        const line = pending.subarray(0, i + 2);
        pending = pending.subarray(i + 2);
        if (line.toString('latin1').trim().toUpperCase() !== 'QUIT') {
          if (!upstream.destroyed) upstream.write(line);
          continue;
        }
        if (fault.kind === 'quit-reset' && !fault.forward) {
          cutClient('reset');
          upstream.destroy();
          return;
        }
        const after = options.onQuit ? await options.onQuit(conn) : undefined;
        if (!upstream.destroyed) upstream.write(line);
        if (fault.kind === 'quit-reset') cutClient('reset');
        if (after) void after().catch(() => {});
      }
    };
    client.on('data', (chunk: Buffer) => {
      inbound = inbound
        .then(() => forwardLines(chunk))
        .catch(() => {
          client.destroy();
        });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    faults,
    get connections() {
      return connections;
    },
    setDecide(next) {
      decide = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

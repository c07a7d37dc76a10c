/**
 * The chaos run's webhook receiver: plain HTTP on 127.0.0.1, answering each request per a seeded fault
 * plan (200, 500, 503 with Retry-After, 429, reset, hang past the client timeout, slow past it). Every
 * request's signature is verified with the reference `standardwebhooks` library (independent of our
 * signer); the receiver keeps, per raw SHA-256, the webhook-ids it saw and whether any request was
 * answered 2xx. Bodies are not kept (memory stays flat over a long run).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { Prng } from './prng.js';

export type ReceiverFault = 'ok' | '500' | '503' | '429' | 'reset' | 'hang' | 'slow';

export interface DeliverySeen {
  /** Distinct webhook-id values across every signed request for this message. */
  ids: Set<string>;
  /** Requests answered 2xx with a valid signature. */
  accepted: number;
  requests: number;
}

export interface ChaosReceiver {
  url: string;
  /** By raw SHA-256 (from `data.raw.sha256`). */
  seen: Map<string, DeliverySeen>;
  requests: number;
  badSignatures: number;
  /** Bodies that were not a pophook event naming a raw SHA-256. */
  unreadable: number;
  faults: Record<string, number>;
  setFaults(on: boolean): void;
  close(): Promise<void>;
}

/** A hung request is cut after this long (the client gave up long before: endpoint timeoutMs 1000). */
const HANG_MS = 4000;
/** Longer than the endpoint timeout, so the client times out while we are still "working". */
const SLOW_MS = 1500;

export async function startChaosReceiver(options: { prng: Prng; secret: string }): Promise<ChaosReceiver> {
  const { prng } = options;
  const verifier = new Webhook(options.secret);
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let faultsOn = true;
  const state = {
    seen: new Map<string, DeliverySeen>(),
    requests: 0,
    badSignatures: 0,
    unreadable: 0,
    faults: {} as Record<string, number>,
  };

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    state.requests++;
    const fault: ReceiverFault = faultsOn
      ? prng.weighted<ReceiverFault>([
          ['ok', 70],
          ['500', 8],
          ['503', 4],
          ['429', 3],
          ['reset', 5],
          ['hang', 5],
          ['slow', 5],
        ])
      : 'ok';
    if (fault !== 'ok') state.faults[fault] = (state.faults[fault] ?? 0) + 1;

    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
    };
    let valid = false;
    try {
      verifier.verify(body, {
        'webhook-id': header('webhook-id'),
        'webhook-timestamp': header('webhook-timestamp'),
        'webhook-signature': header('webhook-signature'),
      });
      valid = true;
    } catch {
      state.badSignatures++;
    }
    let sha: string | undefined;
    try {
      const parsed = JSON.parse(body.toString('utf8')) as { data?: { raw?: { sha256?: unknown } } };
      if (typeof parsed.data?.raw?.sha256 === 'string') sha = parsed.data.raw.sha256;
    } catch {}
    if (!sha) state.unreadable++;
    const entry = sha ? (state.seen.get(sha) ?? { ids: new Set(), accepted: 0, requests: 0 }) : undefined;
    if (sha && entry) {
      state.seen.set(sha, entry);
      entry.requests++;
      if (valid) entry.ids.add(header('webhook-id'));
    }

    switch (fault) {
      case 'ok':
        if (valid && entry) entry.accepted++;
        res.writeHead(valid ? 200 : 401, { 'content-type': 'application/json' });
        res.end(valid ? '{"ok":true}' : '{"error":"bad signature"}');
        return;
      case '500':
        res.writeHead(500);
        res.end('boom');
        return;
      case '503':
        res.writeHead(503, { 'retry-after': '1' });
        res.end();
        return;
      case '429':
        res.writeHead(429, { 'retry-after': '1' });
        res.end();
        return;
      case 'reset':
        req.socket.resetAndDestroy();
        return;
      case 'hang':
        later(HANG_MS, () => req.socket.destroy());
        return;
      case 'slow':
        later(SLOW_MS, () => {
          if (!res.destroyed) {
            res.writeHead(200);
            res.end('late');
          }
        });
        return;
    }
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    res.on('error', () => {});
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
  });
  server.keepAliveTimeout = 5000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/hook`,
    get seen() {
      return state.seen;
    },
    get requests() {
      return state.requests;
    },
    get badSignatures() {
      return state.badSignatures;
    },
    get unreadable() {
      return state.unreadable;
    },
    faults: state.faults,
    setFaults(on) {
      faultsOn = on;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '../../../shared/pop3/client.js';
import type { Pop3Session } from '../../../shared/pop3/types.js';
import { type FakePop3Server, startFakePop3 } from '../../fixtures/fake-pop3.js';

// Kept in its own file (own worker process) so other tests' garbage does not blur the RSS figures.
//
// Every socket read is a fresh 64 KiB buffer; V8 collects dead ones lazily (external-memory
// heuristic), letting ~32 MiB of garbage pile up whatever the client does. To measure what the
// client RETAINS, the consumer forces a GC every 4 MiB; a client that buffered the message would
// still show ~50 MiB, since nothing it holds is garbage.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
const SIZE = 50 * MiB;

/** 64 lines of 1 KiB; every 8th starts with a dot, so the server stuffs and the client unstuffs. */
function template(): Buffer {
  const lines: Buffer[] = [];
  for (let i = 0; i < 64; i++) {
    const line = Buffer.alloc(1024, 0x61 + (i % 26));
    if (i % 8 === 0) line[0] = 0x2e;
    line[1022] = 0x0d;
    line[1023] = 0x0a;
    lines.push(line);
  }
  return Buffer.concat(lines);
}

/** The message, produced on the fly: 800 times the same 64 KiB, never held whole. */
function* generate(block: Buffer): Generator<Buffer> {
  for (let sent = 0; sent < SIZE; sent += block.length) yield block;
}

describe('streaming a large message', () => {
  let srv: FakePop3Server | undefined;
  let session: Pop3Session | undefined;
  afterAll(async () => {
    session?.close();
    await srv?.close();
  });

  it('streams 50 MB byte-exact to a slow consumer with flat memory', async () => {
    const block = template();
    const expected = createHash('sha256');
    for (const b of generate(block)) expected.update(b);

    srv = await startFakePop3({ messages: [{ size: SIZE, generate: () => generate(block) }] });
    session = await connect({ host: '127.0.0.1', port: srv.port, tls: 'none', allowInsecureAuth: true });
    await session.login({ mechanism: 'user', user: 'user', password: 'secret' });

    gc();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    let received = 0;
    let writes = 0;
    const hash = createHash('sha256');
    const stream = await session.retr(1);
    // A consumer that does not read at all: the client must stop reading the socket, not buffer.
    await new Promise((r) => setTimeout(r, 500));
    gc();
    const stalledGrowth = process.memoryUsage().rss - rss0;
    expect(stalledGrowth).toBeLessThan(16 * MiB);
    const slow = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        received += chunk.length;
        // Slower than loopback: a pause every few chunks makes the client pause the socket.
        if (++writes % 4 === 0) {
          if (writes % 64 === 0) gc();
          peak = Math.max(peak, process.memoryUsage().rss);
          setTimeout(cb, 1);
        } else {
          cb();
        }
      },
    });
    await pipeline(stream, slow);

    expect(received).toBe(SIZE);
    expect(hash.digest('hex')).toBe(expected.digest('hex'));
    const growth = peak - rss0;
    expect(growth).toBeLessThan(16 * MiB);
    console.log(
      `50 MB RETR: RSS growth ${(growth / MiB).toFixed(1)} MiB (unread for 500 ms: ${(stalledGrowth / MiB).toFixed(1)} MiB)`,
    );
    await session.quit();
  }, 60_000);
});

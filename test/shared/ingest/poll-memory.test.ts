/**
 * The poller reads messages up to INLINE_ARCHIVE_MAX_BYTES into memory and archives and parses them in
 * the background; INLINE_BYTES_IN_FLIGHT bounds the bytes held at once (invariant 5). With parsing
 * slowed down, twelve 3.5 MB messages (42 MB) would all be held at once without the bound. Bigger
 * messages are streamed to the archive and parsed from it, at most STREAMED_TASKS at once.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../shared/config/load.js';
import {
  INLINE_ARCHIVE_MAX_BYTES,
  INLINE_BYTES_IN_FLIGHT,
  PIPELINE_CONCURRENCY,
  pollMailbox,
  STREAMED_TASKS,
} from '../../../shared/ingest/poll.js';
import { silentLogger } from '../../../shared/log.js';
import { createLocalRuntime, pollDeps } from '../../../shared/runtime/local.js';
import { type Dovecot, dovecotAvailable, requireDovecot, startDovecot } from '../../fixtures/dovecot.js';

requireDovecot();

const COUNT = 12;
const SIZE = 3_500_000;

describe.runIf(dovecotAvailable())('in-memory messages are bounded by INLINE_BYTES_IN_FLIGHT', () => {
  let dovecot: Dovecot;
  let dataDir: string;

  beforeAll(async () => {
    dovecot = await startDovecot({});
    for (let i = 1; i <= COUNT; i++) await dovecot.addLargeMessage(SIZE, i);
    dataDir = await mkdtemp(join(tmpdir(), 'pophook-poll-memory-'));
  });
  afterAll(async () => {
    await dovecot?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('never holds more than the budget, yet overlaps several messages, and archives all of them', async () => {
    // The premise: without the byte budget every one of these would be read in and held at once.
    expect(SIZE).toBeLessThanOrEqual(INLINE_ARCHIVE_MAX_BYTES);
    expect(COUNT).toBeLessThanOrEqual(PIPELINE_CONCURRENCY);
    expect(COUNT * SIZE).toBeGreaterThan(INLINE_BYTES_IN_FLIGHT);

    const config = parseConfig({
      version: 1,
      mailboxes: [
        {
          id: 'inbox',
          host: dovecot.host,
          port: dovecot.port,
          tls: 'none',
          allowInsecureAuth: true,
          user: dovecot.user,
          auth: { type: 'password', password: { secret: 'pop' } },
          retention: 'keep',
        },
      ],
      local: { dataDir },
    });
    const rt = await createLocalRuntime(config, {
      env: { POPHOOK_SECRET_POP: dovecot.password },
      logger: silentLogger,
    });
    const deps = pollDeps(rt);
    // Bytes from the moment the archive is handed a message in memory until its parse ends: part of
    // the time the poller holds them, so never more than what it holds.
    let held = 0;
    let peak = 0;
    const putStreamCreateOnly = rt.archive.putStreamCreateOnly.bind(rt.archive);
    rt.archive.putStreamCreateOnly = async (key, body, options) => {
      if (Buffer.isBuffer(body)) {
        held += body.length;
        peak = Math.max(peak, held);
      }
      return putStreamCreateOnly(key, body, options);
    };
    const parse = deps.parse;
    deps.parse = async (input, parseDeps) => {
      await new Promise((r) => setTimeout(r, 150));
      try {
        return await parse(input, parseDeps);
      } finally {
        if (input.bytes) held -= input.bytes.length;
      }
    };
    try {
      const result = await pollMailbox('inbox', deps);
      expect(result).toMatchObject({ outcome: 'ok', fetched: COUNT, parseErrors: 0 });
    } finally {
      await rt.close();
    }
    expect(held).toBe(0);
    expect(peak).toBeLessThanOrEqual(INLINE_BYTES_IN_FLIGHT);
    expect(peak).toBeGreaterThanOrEqual(2 * SIZE);
  }, 60_000);

  it('parses at most STREAMED_TASKS messages too big for memory at once', async () => {
    const big = await startDovecot({});
    const BIG = 6;
    expect(STREAMED_TASKS).toBeLessThan(BIG);
    for (let i = 1; i <= BIG; i++) await big.addLargeMessage(INLINE_ARCHIVE_MAX_BYTES + 100_000, i);
    const dir = await mkdtemp(join(tmpdir(), 'pophook-poll-streamed-'));
    const config = parseConfig({
      version: 1,
      mailboxes: [
        {
          id: 'inbox',
          host: big.host,
          port: big.port,
          tls: 'none',
          allowInsecureAuth: true,
          user: big.user,
          auth: { type: 'password', password: { secret: 'pop' } },
          retention: 'keep',
        },
      ],
      local: { dataDir: dir },
    });
    const rt = await createLocalRuntime(config, {
      env: { POPHOOK_SECRET_POP: big.password },
      logger: silentLogger,
    });
    const deps = pollDeps(rt);
    let parsing = 0;
    let peak = 0;
    const parse = deps.parse;
    deps.parse = async (input, parseDeps) => {
      expect(input.bytes).toBeUndefined();
      parsing++;
      peak = Math.max(peak, parsing);
      try {
        await new Promise((r) => setTimeout(r, 300));
        return await parse(input, parseDeps);
      } finally {
        parsing--;
      }
    };
    try {
      expect(await pollMailbox('inbox', deps)).toMatchObject({ outcome: 'ok', fetched: BIG, parseErrors: 0 });
    } finally {
      await rt.close();
      await big.stop();
      await rm(dir, { recursive: true, force: true });
    }
    expect(peak).toBeLessThanOrEqual(STREAMED_TASKS);
    expect(peak).toBeGreaterThanOrEqual(2);
  }, 60_000);
});

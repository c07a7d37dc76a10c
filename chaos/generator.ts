/**
 * Delivers new mail into the Dovecot Maildir at random times and keeps its own record (Maildir name,
 * size, SHA-256) of every message, which is the ground truth the checker compares everything against.
 * Sizes are log-uniform from 600 B to 300 KB with an occasional 1-3 MB message, and now and then a burst
 * of messages arrives at once (so polls cross the poller's fetch-burst boundaries).
 */
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeMessage } from '../test/fixtures/messages.js';
import { type GeneratedRecord, maildirUnique } from './check.js';
import type { Prng } from './prng.js';

export interface MailGeneratorOptions {
  prng: Prng;
  /** Distinguishes this run's messages from any other run's. */
  seed: number;
  deliver: (messages: Buffer[]) => Promise<string[]>;
  onDelivered: (record: GeneratedRecord) => void;
  /** Runs delivery + registration as one step (the checker's lock: no QUIT window in between). */
  exclusive?: <T>(fn: () => Promise<T>) => Promise<T>;
}

export class MailGenerator {
  readonly records: GeneratedRecord[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;
  private index = 0;

  constructor(private readonly options: MailGeneratorOptions) {}

  private nextMessage(): Buffer {
    const { prng, seed } = this.options;
    const i = ++this.index;
    const size = prng.chance(0.03) ? prng.int(1_000_000, 3_000_000) : prng.logInt(600, 300_000);
    return makeMessage({
      index: seed * 100_000 + i,
      size,
      subject: `chaos ${seed} #${i}`,
      extraHeaders: { 'X-Chaos-Run': `${seed}-${i}` },
    });
  }

  async deliverBatch(count: number): Promise<void> {
    const messages = Array.from({ length: count }, () => this.nextMessage());
    const exclusive = this.options.exclusive ?? ((fn) => fn());
    await exclusive(async () => this.register(messages, await this.options.deliver(messages)));
  }

  private register(messages: Buffer[], paths: string[]): void {
    paths.forEach((p, k) => {
      const bytes = messages[k] as Buffer;
      const record: GeneratedRecord = {
        name: maildirUnique(basename(p)),
        sha256: createHash('sha256').update(bytes).digest('hex'),
        size: bytes.length,
      };
      this.records.push(record);
      this.options.onDelivered(record);
    });
  }

  start(): void {
    const { prng } = this.options;
    this.loop = (async () => {
      while (!this.stopped) {
        const burst = prng.chance(0.08);
        await this.deliverBatch(burst ? prng.int(5, 30) : prng.int(1, 3));
        await sleep(prng.int(100, 1500));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * A small seeded PRNG for the chaos run. Every fault decision draws from a stream derived from the run
 * seed and a label (`proxy`, `receiver`, `worker-3/archive`...), so each site's sequence of decisions
 * is the same for the same seed no matter how the other sites interleave. Timing (the OS scheduler,
 * Dovecot, the network stack) is not deterministic, so a run is reproducible in its decisions, not in
 * its exact interleaving.
 */
import { createHash } from 'node:crypto';

/** 32-bit seed from any labels (SHA-256, first four bytes). */
export function seedFrom(...parts: (string | number)[]): number {
  return createHash('sha256').update(parts.join('/')).digest().readUInt32LE(0);
}

/** mulberry32: tiny, fast, good enough for fault decisions (not for anything secret). */
export class Prng {
  private state: number;
  readonly label: string;

  constructor(seed: number | string, label = String(seed)) {
    this.state = typeof seed === 'number' ? seed >>> 0 : seedFrom(seed);
    this.label = label;
  }

  /** In [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** Uniform in [min, max). */
  float(min: number, max: number): number {
    return min + this.next() * (max - min);
  }

  /** Log-uniform integer in [min, max]: small values as likely per decade as large ones. */
  logInt(min: number, max: number): number {
    return Math.round(Math.exp(this.float(Math.log(min), Math.log(max))));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** Picks by weight; weights need not sum to 1. */
  weighted<T>(entries: readonly (readonly [T, number])[]): T {
    const total = entries.reduce((a, [, w]) => a + w, 0);
    let x = this.next() * total;
    for (const [value, w] of entries) {
      x -= w;
      if (x < 0) return value;
    }
    return (entries.at(-1) as readonly [T, number])[0];
  }

  /** An independent stream for one fault site. */
  fork(label: string): Prng {
    const full = `${this.label}/${label}`;
    return new Prng(seedFrom(full), full);
  }
}

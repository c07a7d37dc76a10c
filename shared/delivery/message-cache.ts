/**
 * A short-lived memo of the payload body every endpoint of one message shares. A message routed to N
 * endpoints becomes N jobs enqueued together, so they usually arrive in one SQS (or local-worker)
 * batch; without the memo each job reads the same event from the archive, parses it and serialises
 * the same body again. Only the finished body (a flat string) is kept, never the parsed event, so
 * the memo costs the garbage collector next to nothing (bodies are kept as bytes, outside the JS heap).
 *
 * Safe to reuse because an event object does not change once jobs point at it (ingest writes it before
 * enqueueing, and a re-fetch writes the same content), and the key names the job's event type and
 * everything the body depends on. What ages is a payload's links: they were signed when the body was
 * built, so an entry lives at most a tenth of the link lifetime (and never over MESSAGE_CACHE_TTL_MS).
 * Concurrent jobs share one in-flight read and build; a failed one is dropped at once, so the next job
 * tries afresh. Bounded by entries and bytes; the oldest go first.
 */
/** Longest a body is reused: a batch's fan-out arrives within seconds, not minutes. */
export const MESSAGE_CACHE_TTL_MS = 30_000;
/** A body may be reused for at most this share of its links' lifetime (links stay >= 90% valid). */
export const MESSAGE_CACHE_LINK_SHARE = 0.1;
/** Body bytes the memo may hold: a few batches' worth of bodies at the largest maxBodyBytes. */
export const MESSAGE_CACHE_MAX_BYTES = 16 * 1024 * 1024;
/** Entries kept at most, whatever their size. */
export const MESSAGE_CACHE_MAX_ENTRIES = 256;

/**
 * A body on its way: settles once the event is read (rejecting with the archive's error), with
 * `built`, the body's UTF-8 bytes (rejecting with a payload error). Two steps, because the caller
 * treats them differently: an unreadable event is an infrastructure failure, a failed build is a failed
 * attempt. Bytes, not a string: encoded once, then signed and sent as they are by every job.
 */
export type PendingPayload = Promise<{ built: Promise<Buffer> }>;

interface Entry {
  at: number;
  ttlMs: number;
  bytes: number;
  value: PendingPayload;
}

/** One memo per archive (see `messageCacheFor`). */
export class MessageCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  /** TTL for a body whose links last `linkExpirySeconds`. */
  static ttlFor(linkExpirySeconds: number): number {
    return Math.min(MESSAGE_CACHE_TTL_MS, linkExpirySeconds * 1000 * MESSAGE_CACHE_LINK_SHARE);
  }

  /** The body under `key` if one is fresh (or in flight), else one from `produce`, remembered. */
  get(key: string, nowMs: number, ttlMs: number, produce: () => PendingPayload): PendingPayload {
    const hit = this.entries.get(key);
    if (hit && nowMs >= hit.at && nowMs - hit.at < hit.ttlMs) return hit.value;
    if (hit) this.remove(key, hit);
    const entry: Entry = { at: nowMs, ttlMs, bytes: 0, value: produce() };
    this.entries.set(key, entry);
    const forget = () => {
      if (this.entries.get(key) === entry) this.remove(key, entry);
    };
    entry.value.then(
      ({ built }) =>
        built.then((body) => {
          if (this.entries.get(key) !== entry) return;
          // Sized once known; a body too big to keep is handed to the jobs waiting now, then forgotten.
          if (body.length > MESSAGE_CACHE_MAX_BYTES / 4) forget();
          else {
            entry.bytes = body.length;
            this.bytes += body.length;
            this.trim(key);
          }
        }, forget),
      forget,
    );
    this.trim(key);
    return entry.value;
  }

  /** Entries currently held (for tests). */
  get size(): number {
    return this.entries.size;
  }

  /** Drops the oldest entries (never `keep`) until both bounds hold. */
  private trim(keep: string): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= MESSAGE_CACHE_MAX_ENTRIES && this.bytes <= MESSAGE_CACHE_MAX_BYTES) return;
      if (key !== keep) this.remove(key, entry);
    }
  }

  private remove(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.bytes -= entry.bytes;
    entry.bytes = 0;
  }
}

const caches = new WeakMap<object, MessageCache>();

/**
 * The memo for one archive instance. Keyed by the archive object, so every caller sharing an archive
 * (the Lambda's container, `pophook dev`) shares it, and nothing leaks between unrelated archives.
 */
export function messageCacheFor(archive: object): MessageCache {
  let cache = caches.get(archive);
  if (!cache) {
    cache = new MessageCache();
    caches.set(archive, cache);
  }
  return cache;
}

/**
 * Where the poller stores attachments. Kept apart from parse.ts so that importing it does not load
 * mailparser: the poller Lambda loads the parser only when a poll finds mail (shared/runtime/aws.ts).
 *
 * Small attachments are read whole and stored in the background while the parser goes on (one disk
 * round trip or S3 PUT per attachment used to stall the parse); `settle()` waits for them all and is
 * what the caller awaits before it writes the event that names them.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Archive } from '../storage/archive.js';
import { attachmentKey } from '../storage/archive.js';
import { readUpTo } from '../storage/read-up-to.js';
import type { ParseDeps } from './parse.js';

/** Attachments up to this size are read into memory and stored in the background; bigger ones stream. */
export const BACKGROUND_ATTACHMENT_MAX_BYTES = 1024 * 1024;
/** Bytes of one message's attachments being stored in the background at once: the memory bound. */
export const ATTACHMENT_BYTES_IN_FLIGHT = 8 * 1024 * 1024;

/** A `writeAttachment` for parseMessage, plus the wait for its background writes. */
export interface ArchiveAttachmentWriter {
  (...args: Parameters<ParseDeps['writeAttachment']>): ReturnType<ParseDeps['writeAttachment']>;
  /** Resolves once every attachment handed over so far is stored; rejects with the first failure. */
  settle(): Promise<void>;
}

/** A `writeAttachment` that stores into the archive at `attachmentKey(...)`, the layout receivers see. */
export function createArchiveAttachmentWriter(
  archive: Pick<Archive, 'put'>,
  mailboxId: string,
  messageKey: string,
): ArchiveAttachmentWriter {
  const pending = new Set<Promise<void>>();
  let inFlight = 0;
  let failed: { err: unknown } | undefined;
  const throwIfFailed = () => {
    if (failed) throw failed.err;
  };
  // The sender's content type stays in the event; stored objects are always opaque bytes so that a
  // pre-signed link to an "text/html" attachment never renders as a page.
  const options = { contentType: 'application/octet-stream' };

  const write = async (index: number, meta: { filename?: string | null }, content: Readable) => {
    throwIfFailed();
    const key = attachmentKey(mailboxId, messageKey, index, meta.filename ?? undefined);
    const whole = await readUpTo(content, BACKGROUND_ATTACHMENT_MAX_BYTES);
    if (!Buffer.isBuffer(whole)) {
      const stored = await archive.put(key, whole, options);
      return { key: stored.key, size: stored.size, sha256: stored.sha256 };
    }
    while (inFlight > 0 && inFlight + whole.length > ATTACHMENT_BYTES_IN_FLIGHT) await Promise.race(pending);
    throwIfFailed();
    inFlight += whole.length;
    const task: Promise<void> = archive.put(key, whole, options).then(
      () => {},
      (err: unknown) => {
        failed ??= { err };
      },
    );
    const tracked = task.finally(() => {
      inFlight -= whole.length;
      pending.delete(tracked);
    });
    pending.add(tracked);
    return { key, size: whole.length, sha256: createHash('sha256').update(whole).digest('hex') };
  };
  return Object.assign(write, {
    async settle() {
      while (pending.size) await Promise.all(pending);
      throwIfFailed();
    },
  });
}

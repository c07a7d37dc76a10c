/**
 * Where the poller stores attachments. Kept apart from parse.ts so that importing it does not load
 * mailparser: the poller Lambda loads the parser only when a poll finds mail (shared/runtime/aws.ts).
 */
import type { Archive } from '../storage/archive.js';
import { attachmentKey } from '../storage/archive.js';
import type { ParseDeps } from './parse.js';

/** A `writeAttachment` that stores into the archive at `attachmentKey(...)`, the layout receivers see. */
export function createArchiveAttachmentWriter(
  archive: Pick<Archive, 'put'>,
  mailboxId: string,
  messageKey: string,
): ParseDeps['writeAttachment'] {
  return async (index, meta, content) => {
    const key = attachmentKey(mailboxId, messageKey, index, meta.filename ?? undefined);
    // The sender's content type stays in the event; stored objects are always opaque bytes so that a
    // pre-signed link to an "text/html" attachment never renders as a page.
    const stored = await archive.put(key, content, { contentType: 'application/octet-stream' });
    return { key: stored.key, size: stored.size, sha256: stored.sha256 };
  };
}

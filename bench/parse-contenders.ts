/**
 * The parse step's contenders on one message in memory, shared by parse.ts, diagnose.ts and floor.ts:
 * `parseMessage` from a stream and from bytes, and mailparser's own `simpleParser` with the options we
 * give MailParser. Attachments are drained, as a writer would.
 */
import { Readable } from 'node:stream';
import { simpleParser } from 'mailparser';
import { ParseConfig } from '../shared/config/schema.js';
import type { ParseDeps, ParseMessageInput } from '../shared/mail/parse.js';
import { parseMessage } from '../shared/mail/parse.js';

const limits = ParseConfig.parse({});

const drain: ParseDeps['writeAttachment'] = async (_index, _meta, content) => {
  let size = 0;
  for await (const chunk of content) size += (chunk as Buffer).length;
  return { key: 'a', size, sha256: '' };
};

function input(msg: Buffer, viaBytes: boolean): ParseMessageInput {
  const base = {
    mailboxId: 'm',
    messageKey: 'k',
    eventId: 'e',
    uidl: null,
    receivedAt: '2024-05-01T12:00:00.000Z',
    raw: { key: 'k', size: msg.length, sha256: '' },
    limits,
  };
  return viaBytes ? { ...base, bytes: msg } : { ...base, source: Readable.from([msg]) };
}

/** pophook's parse of `msg`, from bytes in memory (what the poller does for small mail). */
export const parseBytes = (msg: Buffer) => parseMessage(input(msg, true), { writeAttachment: drain });

export const parseContenders = {
  stream: (msg: Buffer) => parseMessage(input(msg, false), { writeAttachment: drain }),
  bytes: parseBytes,
  // The options we give MailParser that simpleParser takes: no text-to-HTML, no link scans, no MD5.
  simple: (msg: Buffer) =>
    simpleParser(msg, {
      skipTextToHtml: true,
      skipTextLinks: true,
      skipImageLinks: true,
      checksumAlgo: false,
    } as Parameters<typeof simpleParser>[1]),
} satisfies Record<string, (msg: Buffer) => Promise<unknown>>;

/**
 * The in-memory fast path (`parseMessage({ bytes })`) gives exactly the event and the attachment
 * writes of the stream path, over the whole corpus, generated messages and every limit; limits,
 * timeouts and writer failures behave the same; the caller's Buffer is left alone.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ParseConfig } from '../../../shared/config/schema.js';
import { ArchiveError } from '../../../shared/errors.js';
import { parseMessage } from '../../../shared/mail/parse.js';
import { makeMessage } from '../../fixtures/messages.js';
import {
  bytesInput,
  CORPUS_DIR,
  corpusFiles,
  makeInput,
  recordingDeps,
  sha256,
  unsafeStrings,
} from './helpers.js';

const CRLF = '\r\n';
const HEAD = ['From: a@example.com', 'To: b@example.com', 'Subject: limits', 'Message-ID: <l@example.com>'];

/** Event plus every writeAttachment call (index, meta, exact bytes): what "the same result" means. */
async function outcome(input: Parameters<typeof parseMessage>[0]) {
  const deps = recordingDeps();
  const event = await parseMessage(input, deps);
  return { event, writes: deps.calls.map((c) => ({ index: c.index, meta: c.meta, sha: sha256(c.bytes) })) };
}

const LIMIT_SETS: Partial<ParseConfig>[] = [
  {},
  { maxParts: 3 },
  { maxDepth: 2 },
  { maxBodyChars: 1024 },
  { maxHeaderBytes: 300 },
];

function generated(): [string, Buffer][] {
  const manyParts = [
    ...HEAD,
    'Content-Type: multipart/mixed; boundary=p',
    '',
    ...Array.from({ length: 500 }, (_, i) => `--p${CRLF}Content-Type: text/plain${CRLF}${CRLF}part ${i}`),
    '--p--',
    '',
  ].join(CRLF);
  const deep = [
    ...HEAD,
    ...Array.from(
      { length: 60 },
      (_, i) => `Content-Type: multipart/mixed; boundary=b${i}${CRLF}${CRLF}--b${i}`,
    ),
    `Content-Type: text/plain${CRLF}${CRLF}the bottom`,
    ...Array.from({ length: 60 }, (_, i) => `--b${59 - i}--`),
  ].join(CRLF);
  const hugeHeaders = [
    ...HEAD,
    ...Array.from({ length: 3000 }, () => `X-Filler: ${'f'.repeat(500)}`),
    '',
    'x',
  ];
  return [
    ['2 KB text', makeMessage({ index: 1, size: 2000 })],
    ['20 KB + attachment', makeMessage({ index: 2, size: 20_000 })],
    ['200 KB + 3 attachments', makeMessage({ index: 3, size: 200_000, attachments: 3 })],
    ['1 MB + attachment', makeMessage({ index: 4, size: 1_000_000 })],
    ['500 parts', Buffer.from(manyParts)],
    ['60 levels deep', Buffer.from(deep)],
    ['1.5 MB header block', Buffer.from(hugeHeaders.join(CRLF))],
    ['empty', Buffer.alloc(0)],
    ['headers only, no body', Buffer.from('Subject: x\r\nFrom: a@b.c')],
  ];
}

describe('parseMessage({ bytes }) gives what the stream path gives', () => {
  const corpus = corpusFiles().map((path): [string, Buffer] => [
    relative(CORPUS_DIR, path),
    readFileSync(path),
  ]);

  it('over the corpus and generated messages, under every limit', async () => {
    let compared = 0;
    for (const [name, bytes] of [...corpus, ...generated()]) {
      // The tighter limits on the smaller messages only: the big ones hit them in their first KB anyway.
      for (const limits of bytes.length > 200_000 ? LIMIT_SETS.slice(0, 1) : LIMIT_SETS) {
        const viaStream = await outcome(makeInput(Readable.from([bytes]), limits));
        const viaBytes = await outcome(bytesInput(bytes, limits));
        expect(viaBytes, `${name} ${JSON.stringify(limits)}`).toEqual(viaStream);
        expect(unsafeStrings(viaBytes.event)).toEqual([]);
        compared += 1;
      }
    }
    expect(compared).toBeGreaterThan(400);
  }, 60_000);

  it('matches a file stream read in 64 KiB chunks', async () => {
    for (const path of corpusFiles()) {
      const viaFile = await outcome(makeInput(createReadStream(path)));
      const viaBytes = await outcome(bytesInput(readFileSync(path)));
      expect(viaBytes, relative(CORPUS_DIR, path)).toEqual(viaFile);
    }
  }, 30_000);

  it('never modifies the caller’s Buffer', async () => {
    const bytes = makeMessage({ index: 5, size: 50_000, attachments: 2 });
    const before = sha256(bytes);
    const event = await parseMessage(bytesInput(bytes), recordingDeps());
    expect(event.attachments).toHaveLength(2);
    expect(sha256(bytes)).toBe(before);
  });
});

describe('parseMessage({ bytes }): limits, timeouts and failures', () => {
  it('reports each limit with its code and keeps the headers', async () => {
    const [, manyParts] = generated().find(([n]) => n === '500 parts') as [string, Buffer];
    const parts = await parseMessage(bytesInput(manyParts), recordingDeps());
    expect(parts.parseError).toBeNull();
    const limited = await parseMessage(bytesInput(manyParts, { maxParts: 100 }), recordingDeps());
    expect(limited.parseError?.code).toBe('PARSE_LIMIT_PARTS');
    expect(limited.subject).toBe('limits');
    const [, deep] = generated().find(([n]) => n === '60 levels deep') as [string, Buffer];
    expect((await parseMessage(bytesInput(deep), recordingDeps())).parseError?.code).toBe(
      'PARSE_LIMIT_DEPTH',
    );
    const [, huge] = generated().find(([n]) => n === '1.5 MB header block') as [string, Buffer];
    const headers = await parseMessage(bytesInput(huge), recordingDeps());
    expect(headers.parseError?.code).toBe('PARSE_LIMIT_HEADERS');
    expect(headers.subject).toBe('limits');
  });

  it('times out on a message that takes longer than timeoutMs, without throwing', async () => {
    const big = makeMessage({ index: 6, size: 8_000_000, attachments: 4 });
    const started = Date.now();
    const event = await parseMessage(bytesInput(big, { timeoutMs: 20 }), recordingDeps());
    expect(event.parseError?.code).toBe('PARSE_TIMEOUT');
    expect(event.subject).toContain('Test message 6');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('rethrows a writeAttachment failure unchanged', async () => {
    const failure = new ArchiveError('ARCHIVE_WRITE_FAILED', 'disk full');
    await expect(
      parseMessage(bytesInput(makeMessage({ index: 7, size: 20_000 })), {
        async writeAttachment(_index, _meta, content) {
          content.resume();
          throw failure;
        },
      }),
    ).rejects.toBe(failure);
  });
});

describe('parseMessage stream sources', () => {
  it('takes strings and Uint8Arrays from object-mode sources like Buffers', async () => {
    const bytes = makeMessage({ index: 8, size: 20_000 });
    const expected = await outcome(bytesInput(bytes));
    const text = bytes.toString('latin1');
    const cut = text.indexOf('\r\n\r\n') + 1;
    // Split inside the empty line that ends the header block, the collector's hardest case.
    expect(
      await outcome(makeInput(Readable.from([bytes.subarray(0, cut), new Uint8Array(bytes.subarray(cut))]))),
    ).toEqual(expected);
    expect(
      await outcome(makeInput(Readable.from([text.slice(0, cut), Buffer.from(text.slice(cut), 'latin1')]))),
    ).toEqual(expected);
  });
});

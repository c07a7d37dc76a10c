/**
 * Streaming: memory must not grow with message size (BRIEF invariant 5). Each message here is
 * generated on the fly from a stream, so the only way RSS can grow by tens of MB is the parser
 * buffering it.
 */
import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { parseMessage } from '../../../shared/mail/parse.js';
import { pseudoRandomBytes } from '../../fixtures/messages.js';
import { lazyStream, makeInput, peakRssGrowth, recordingDeps } from './helpers.js';

const CRLF = '\r\n';
const MB = 1024 * 1024;
const ATTACHMENT_BYTES = 50 * MB;
// 57 raw bytes make one 76-character base64 line; 1000 lines per generated chunk (~77 KB).
const BLOCK_BYTES = 57 * 1000;
// "Well under 50 MB": the whole attachment would be 50 MB decoded plus 67 MB encoded if buffered.
const MAX_RSS_GROWTH = 32 * MB;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function base64Lines(block: Buffer): string {
  return `${block.toString('base64').replace(/.{76}/g, `$&${CRLF}`)}${CRLF}`;
}

function* attachmentMessage(bytes: number, onBlock: (block: Buffer) => void = () => {}): Generator<string> {
  yield [
    'From: big@example.com',
    'Subject: fifty megabytes',
    'Content-Type: multipart/mixed; boundary=b',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'see attachment',
    '--b',
    'Content-Type: application/octet-stream',
    'Content-Disposition: attachment; filename="big.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    '',
  ].join(CRLF);
  for (let offset = 0, seed = 1; offset < bytes; offset += BLOCK_BYTES, seed++) {
    const block = pseudoRandomBytes(seed, Math.min(BLOCK_BYTES, bytes - offset));
    onBlock(block);
    yield base64Lines(block);
  }
  yield `--b--${CRLF}`;
}

/** Well under the 50 MB body: what the text test must stay below. */
const TEXT_BODY_MAX_RSS_GROWTH = 44 * MB;

describe('parse memory', () => {
  it('streams a 50 MB attachment to the writer without buffering it', async () => {
    // Warm up first (JIT, the heap's young generation, stream buffers) so the measurement below sees
    // only what grows with the message: a 4 MB run costs the same fixed overhead as a 50 MB one.
    await parseMessage(makeInput(lazyStream(attachmentMessage(4 * MB))), recordingDeps({ keep: false }));
    const expected = createHash('sha256');
    gc();
    const deps = recordingDeps({ keep: false });
    const started = Date.now();
    const { result: event, growth } = await peakRssGrowth(() =>
      parseMessage(
        makeInput(lazyStream(attachmentMessage(ATTACHMENT_BYTES, (block) => expected.update(block))), {
          timeoutMs: 60_000,
        }),
        deps,
      ),
    );
    const elapsed = Date.now() - started;
    expect(event.parseError).toBeNull();
    expect(event.attachments).toHaveLength(1);
    expect(event.attachments[0]?.size).toBe(ATTACHMENT_BYTES);
    expect(event.attachments[0]?.sha256).toBe(expected.digest('hex'));
    expect(event.text?.trim()).toBe('see attachment');
    expect(growth).toBeLessThan(MAX_RSS_GROWTH);
    console.info(`50 MB attachment: ${elapsed} ms, peak RSS growth ${(growth / MB).toFixed(1)} MB`);
  }, 60_000);

  it('keeps a 50 MB text body to what the event holds', async () => {
    function* message(bytes: number): Generator<string> {
      yield ['From: big@example.com', 'Subject: long text', 'Content-Type: text/plain', '', ''].join(CRLF);
      const block = `${'lorem ipsum dolor sit amet '.repeat(36)}${CRLF}`.repeat(100);
      for (let written = 0; written < bytes; written += block.length) yield block;
    }
    await parseMessage(makeInput(lazyStream(message(4 * MB))), recordingDeps());
    gc();
    const { result: event, growth } = await peakRssGrowth(() =>
      parseMessage(makeInput(lazyStream(message(50 * MB)), { timeoutMs: 60_000 }), recordingDeps()),
    );
    expect(event.parseError).toBeNull();
    expect(event.textTruncated).toBe(true);
    // Buffering the body would cost at least its 50 MB (twice that as a JS string); the decoder's
    // transient chunks make RSS noisier here than for attachments when other suites run beside it.
    expect(growth).toBeLessThan(TEXT_BODY_MAX_RSS_GROWTH);
    console.info(`50 MB text body: peak RSS growth ${(growth / MB).toFixed(1)} MB`);
  }, 60_000);
});

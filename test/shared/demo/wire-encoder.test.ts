import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeForWire, Pop3WireEncoder } from '../../../shared/demo/wire-encoder.js';
import { unstuff } from './raw-pop3.js';

/** Reference: the same rules written the slow, obvious way. */
function reference(input: Buffer): Buffer {
  let text = input.toString('latin1').replace(/\r?\n/g, '\r\n');
  if (text.length > 0 && !text.endsWith('\r\n')) text += text.endsWith('\r') ? '\n' : '\r\n';
  return Buffer.from(text, 'latin1');
}

function encodeInChunks(input: Buffer, cuts: number[], dotStuff: boolean): Buffer {
  const encoder = new Pop3WireEncoder({ dotStuff });
  const out: Buffer[] = [];
  let pos = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    out.push(...encoder.encode(input.subarray(pos, cut)));
    pos = cut;
  }
  out.push(...encoder.encode(input.subarray(pos)), ...encoder.end());
  return Buffer.concat(out);
}

const messageBytes = fc
  .array(fc.constantFrom('a', '.', '\r', '\n', ' ', '\r\n', '.\r\n', '\n.', 'é'), { maxLength: 60 })
  .map((parts) => Buffer.from(parts.join(''), 'latin1'));

describe('Pop3WireEncoder', () => {
  it('matches the reference for any chunking, and unstuffs back to the CRLF-normalised message', () => {
    fc.assert(
      fc.property(messageBytes, fc.array(fc.nat(), { maxLength: 6 }), (input, rawCuts) => {
        const cuts = rawCuts.map((c) => c % (input.length + 1));
        const wire = encodeInChunks(input, cuts, true);
        expect(wire).toEqual(encodeForWire(input, { dotStuff: true }));
        expect(unstuff(wire)).toEqual(reference(input));
        expect(wire.includes('\r\n.\r\n')).toBe(false); // never an early terminator
        const measured = new Pop3WireEncoder({ dotStuff: false });
        measured.encode(input);
        measured.end();
        expect(measured.messageSize).toBe(reference(input).length);
      }),
      { numRuns: 500 },
    );
  });

  it('pairs a CR and a LF split across chunks', () => {
    expect(encodeInChunks(Buffer.from('a\r\nb'), [2], true).toString()).toBe('a\r\nb\r\n');
    expect(encodeInChunks(Buffer.from('a\n.b'), [2], true).toString()).toBe('a\r\n..b\r\n');
  });

  it('stops after the header and n body lines for TOP', () => {
    const msg = Buffer.from('H: 1\r\n\r\nl1\nl2\nl3\n');
    expect(encodeForWire(msg, { dotStuff: true, bodyLines: 0 }).toString()).toBe('H: 1\r\n\r\n');
    expect(encodeForWire(msg, { dotStuff: true, bodyLines: 1 }).toString()).toBe('H: 1\r\n\r\nl1\r\n');
    const noBody = Buffer.from('H: 1\nH: 2');
    expect(encodeForWire(noBody, { dotStuff: true, bodyLines: 0 }).toString()).toBe('H: 1\r\nH: 2\r\n');
  });

  it('sends nothing for an empty file', () => {
    expect(encodeForWire(Buffer.alloc(0), { dotStuff: true }).length).toBe(0);
  });
});

import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPop3Error } from '../../../shared/pop3/errors.js';
import {
  type FrameExpectation,
  type FramerLimits,
  Pop3Framer,
  type StatusKind,
} from '../../../shared/pop3/framer.js';
import { multilineBody } from '../../fixtures/fake-pop3.js';

interface Exp extends FrameExpectation {
  id: number;
}

type Event =
  | { t: 'status'; id: number; kind: StatusKind; line: string }
  | { t: 'body'; id: number; data: Buffer }
  | { t: 'unsolicited'; data: string }
  | { t: 'error'; code: string };

const LIMITS: FramerLimits = { maxStatusLineBytes: 8192, maxDataLineBytes: 8 * 1024 * 1024 };
const single = { multiline: false, maxBytes: 1 << 30 };
const multi = { multiline: true, maxBytes: 1 << 30 };

/** Frames `chunks` against `exps`, collecting events (bodies concatenated per reply). */
function frame(chunks: Buffer[], exps: Array<Omit<Exp, 'id'>>, limits: FramerLimits = LIMITS): Event[] {
  const events: Event[] = [];
  let parts: Buffer[] = [];
  const framer = new Pop3Framer<Exp>(
    {
      status: (exp, kind, line) =>
        events.push({ t: 'status', id: exp.id, kind, line: line.toString('latin1') }),
      body: (_exp, chunk) => {
        expect(chunk.length).toBeGreaterThan(0);
        parts.push(Buffer.from(chunk));
      },
      end: (exp) => {
        events.push({ t: 'body', id: exp.id, data: Buffer.concat(parts) });
        parts = [];
      },
      unsolicited: (data) => events.push({ t: 'unsolicited', data: data.toString('latin1') }),
    },
    limits,
  );
  exps.forEach((e, id) => {
    framer.expect({ ...e, id });
  });
  try {
    for (const c of chunks) framer.push(c);
  } catch (err) {
    events.push({ t: 'error', code: isPop3Error(err) ? err.code : String(err) });
  }
  return events;
}

function splitAt(buf: Buffer, ...cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const c of cuts) {
    out.push(buf.subarray(from, c));
    from = c;
  }
  out.push(buf.subarray(from));
  return out;
}

function chunked(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const crlf = (s: string) => Buffer.from(s, 'latin1');

/** A body with every awkward thing a message can hold. */
const TRICKY = Buffer.concat([
  crlf('.\r\n..\r\n.foo\r\n...\r\n'),
  crlf('.\r\n.\r\n'), // two lines that are a bare dot: stuffed, not a terminator
  Buffer.from([0x00, 0x41, 0x0d, 0x42, 0x0a, 0x2e, 0x43, 0xff, 0xfe, 0x80, 0x0d, 0x0a]), // NUL, bare CR/LF, 8-bit
  crlf('.\r\r\n'), // dot + bare CR
  crlf('x\r\n.'), // ends in a dot without CRLF (the server appends CRLF)
]);

const SESSION: Array<[Omit<Exp, 'id'>, Buffer]> = [
  [single, crlf('+OK POP3 ready <1.2@x>\r\n')],
  [multi, crlf('+OK capa\r\nUSER\r\nuidl\r\nSASL PLAIN\r\n.\r\n')],
  [multi, crlf('-ERR [SYS/TEMP] no such message\r\n')],
  [multi, Buffer.concat([crlf('+OK 99 octets\r\n'), multilineBody(TRICKY)])],
  [multi, crlf('+OK\r\n.\r\n')], // empty listing
  [single, crlf('+ \r\n+ eyJzIjoxfQ==\r\n-ERR [AUTH] no\r\n')], // SASL continuations
  [single, crlf('+OK 2 320\r\n')],
  [multi, Buffer.concat([crlf('+OK\r\n'), multilineBody(crlf('.first line is dotted\r\nbody\r\n'))])],
  [multi, crlf('+OK\r\n1 uid-1\r\n2 uid-2\r\n.\r\n')],
];
const SESSION_WIRE = Buffer.concat(SESSION.map(([, b]) => b));
const SESSION_EXPS = SESSION.map(([e]) => e);

describe('Pop3Framer', () => {
  const reference = frame([SESSION_WIRE], SESSION_EXPS);

  it('frames a whole session in one chunk (pipelined replies back to back)', () => {
    expect(reference.filter((e) => e.t === 'error' || e.t === 'unsolicited')).toEqual([]);
    const bodies = reference.filter((e) => e.t === 'body');
    expect(bodies.map((b) => b.id)).toEqual([1, 3, 4, 7, 8]);
    expect(bodies[0]?.data.toString()).toBe('USER\r\nuidl\r\nSASL PLAIN\r\n');
    expect(bodies[1]?.data.equals(Buffer.concat([TRICKY, crlf('\r\n')]))).toBe(true);
    expect(bodies[2]?.data.length).toBe(0);
    expect(bodies[3]?.data.toString()).toBe('.first line is dotted\r\nbody\r\n');
    const statuses = reference.filter((e) => e.t === 'status').map((e) => [e.id, e.kind]);
    expect(statuses).toEqual([
      [0, 'ok'],
      [1, 'ok'],
      [2, 'err'],
      [3, 'ok'],
      [4, 'ok'],
      [5, 'cont'],
      [5, 'cont'],
      [5, 'err'],
      [6, 'ok'],
      [7, 'ok'],
      [8, 'ok'],
    ]);
  });

  it('parses a session split at every byte offset identically', () => {
    for (let s = 0; s <= SESSION_WIRE.length; s++) {
      expect(frame(splitAt(SESSION_WIRE, s), SESSION_EXPS), `split at ${s}`).toEqual(reference);
    }
  });

  it('parses a session split at every pair of nearby offsets identically', () => {
    // Two cuts within 8 bytes of each other: every way to split a CRLF.CRLF into three pieces.
    const n = SESSION_WIRE.length;
    for (let a = 1; a < n; a++) {
      for (let b = a + 1; b < Math.min(n, a + 9); b++) {
        const got = frame(splitAt(SESSION_WIRE, a, b), SESSION_EXPS);
        if (JSON.stringify(got) !== JSON.stringify(reference)) {
          expect(got, `split at ${a},${b}`).toEqual(reference);
        }
      }
    }
  });

  it('parses a session fed one byte at a time identically', () => {
    expect(frame(chunked(SESSION_WIRE, 1), SESSION_EXPS)).toEqual(reference);
  });

  it('recognises the terminator split anywhere inside CRLF.CRLF', () => {
    const wire = crlf('+OK\r\nabc\r\n.\r\n');
    const term = wire.indexOf('\r\n.\r\n');
    for (let s = term; s <= term + 5; s++) {
      const ev = frame(splitAt(wire, s), [multi]);
      expect(ev.at(-1)).toEqual({ t: 'body', id: 0, data: crlf('abc\r\n') });
    }
  });

  it('keeps bodies byte-exact: dot lines, NUL, bare CR, bare LF, 8-bit bytes', () => {
    const wire = Buffer.concat([crlf('+OK\r\n'), multilineBody(TRICKY)]);
    for (const size of [1, 2, 3, 5, 7, 64, 65536]) {
      const ev = frame(chunked(wire, size), [multi]);
      const body = ev.find((e) => e.t === 'body');
      expect(body?.t === 'body' && sha256(body.data)).toBe(sha256(Buffer.concat([TRICKY, crlf('\r\n')])));
    }
  });

  it('unstuffs exactly one leading dot and treats only CRLF.CRLF as the end', () => {
    const cases: Array<[string, string]> = [
      ['+OK\r\n..\r\n.\r\n', '.\r\n'],
      ['+OK\r\n...x\r\n.\r\n', '..x\r\n'],
      ['+OK\r\n.\rX\r\n.\r\n', '\rX\r\n'], // unstuffed ".\r<x>": the dot was stuffing
      ['+OK\r\nA\n.\nB\r\n.\r\n', 'A\n.\nB\r\n'], // bare LF does not start a line
      ['+OK\r\nA\n.\r\nB\r\n.\r\n', 'A\n.\r\nB\r\n'], // "LF . CRLF" is not a terminator
      ['+OK\r\nA\r.\r\n.\r\n', 'A\r.\r\n'],
      ['+OK\r\n.\r\n', ''],
      ['+OK\n.\r\n', ''], // a bare-LF status line is tolerated
    ];
    for (const [wire, body] of cases) {
      for (let s = 0; s <= wire.length; s++) {
        const ev = frame(splitAt(crlf(wire), s), [multi]);
        expect(ev.at(-1), JSON.stringify(wire)).toEqual({ t: 'body', id: 0, data: crlf(body) });
      }
    }
  });

  it('streams a 1 MB line byte-exact without a line-length error', () => {
    const line = Buffer.alloc(1_000_000, 0x61);
    line[0] = 0x2e;
    const body = Buffer.concat([crlf('Subject: x\r\n\r\n'), line, crlf('\r\n.\r\nend\r\n')]);
    const wire = Buffer.concat([crlf('+OK\r\n'), multilineBody(body)]);
    for (const size of [65536, 16384, 1 << 20, 4097]) {
      const ev = frame(chunked(wire, size), [multi]);
      const got = ev.find((e) => e.t === 'body');
      expect(got?.t === 'body' && sha256(got.data)).toBe(sha256(body));
    }
  });

  it('emits body bytes as they arrive, holding back at most a dot and a CR', () => {
    const seen: number[] = [];
    const framer = new Pop3Framer<Exp>(
      {
        status: () => {},
        body: (_e, c) => seen.push(c.length),
        end: () => {},
        unsolicited: () => {},
      },
      LIMITS,
    );
    framer.expect({ ...multi, id: 0 });
    framer.push(crlf('+OK\r\n'));
    let total = 0;
    for (let i = 0; i < 100; i++) {
      framer.push(Buffer.alloc(10_000, 0x62));
      total += 10_000;
      expect(seen.reduce((a, b) => a + b, 0)).toBe(total);
    }
    framer.push(crlf('\r\n.'));
    expect(seen.reduce((a, b) => a + b, 0)).toBe(total + 2);
    framer.push(crlf('\r'));
    expect(seen.reduce((a, b) => a + b, 0)).toBe(total + 2);
    expect(framer.inBody).toBeDefined();
    framer.push(crlf('\n'));
    expect(framer.inBody).toBeUndefined();
  });

  it('frames empty maildrop listings', () => {
    const wire = crlf('+OK 0 0\r\n+OK\r\n.\r\n+OK 0 messages\r\n.\r\n');
    for (let s = 0; s <= wire.length; s++) {
      const ev = frame(splitAt(wire, s), [single, multi, multi]);
      expect(ev.filter((e) => e.t === 'body')).toEqual([
        { t: 'body', id: 1, data: Buffer.alloc(0) },
        { t: 'body', id: 2, data: Buffer.alloc(0) },
      ]);
    }
  });

  it('fails a status line longer than the limit, holding no more than the limit', () => {
    const huge = Buffer.alloc(100 * 1024, 0x41);
    huge.write('+OK ', 0);
    expect(frame([huge], [single])).toEqual([{ t: 'error', code: 'POP3_LINE_TOO_LONG' }]);
    // Fed in 1 KiB pieces it fails as soon as the limit is crossed, not at the end.
    let pushed = 0;
    const framer = new Pop3Framer<Exp>(
      { status: () => {}, body: () => {}, end: () => {}, unsolicited: () => {} },
      LIMITS,
    );
    framer.expect({ ...single, id: 0 });
    expect(() => {
      for (const c of chunked(huge, 1024)) {
        pushed++;
        framer.push(c);
      }
    }).toThrow(/longer than 8192 bytes/);
    expect(pushed).toBe(8);
  });

  it('accepts a status line exactly at the limit', () => {
    const limits = { ...LIMITS, maxStatusLineBytes: 20 };
    const line = crlf(`+OK ${'x'.repeat(14)}\r\n`); // 20 bytes with CRLF
    for (let s = 0; s <= line.length; s++) {
      expect(frame(splitAt(line, s), [single], limits)[0]).toMatchObject({ t: 'status', kind: 'ok' });
      const longer = crlf(`+OK ${'x'.repeat(15)}\r\n`);
      expect(frame(splitAt(longer, s), [single], limits)).toEqual([
        { t: 'error', code: 'POP3_LINE_TOO_LONG' },
      ]);
    }
  });

  it('enforces maxDataLineBytes exactly, across chunk boundaries', () => {
    const limits = { ...LIMITS, maxDataLineBytes: 10 };
    const ok = crlf(`+OK\r\n${'a'.repeat(10)}\r\n.${'b'.repeat(9)}\r\n${'c'.repeat(10)}\r\n.\r\n`);
    const bad = crlf(`+OK\r\n${'a'.repeat(10)}\r\n${'c'.repeat(11)}\r\n.\r\n`);
    for (let s = 0; s <= ok.length; s++) {
      expect(frame(splitAt(ok, s), [multi], limits).at(-1)).toMatchObject({ t: 'body' });
    }
    for (let s = 0; s <= bad.length; s++) {
      expect(frame(splitAt(bad, s), [multi], limits).at(-1)).toEqual({
        t: 'error',
        code: 'POP3_LINE_TOO_LONG',
      });
    }
    // A line that never ends fails once it passes the limit, even when every chunk is small.
    const endless = [crlf('+OK\r\n'), ...Array.from({ length: 20 }, () => crlf('zz'))];
    expect(frame(endless, [multi], limits)).toEqual([
      { t: 'status', id: 0, kind: 'ok', line: '+OK' },
      { t: 'error', code: 'POP3_LINE_TOO_LONG' },
    ]);
  });

  it('enforces maxBytes per reply', () => {
    const wire = crlf('+OK\r\n0123456789\r\n.\r\n');
    expect(frame([wire], [{ multiline: true, maxBytes: 12 }]).at(-1)).toMatchObject({ t: 'body' });
    expect(frame([wire], [{ multiline: true, maxBytes: 11 }]).at(-1)).toEqual({
      t: 'error',
      code: 'POP3_MESSAGE_TOO_LARGE',
    });
  });

  it('reports bytes that arrive when no reply is expected', () => {
    expect(frame([crlf('+OK hi\r\n+OK again\r\n')], [single])).toEqual([
      { t: 'status', id: 0, kind: 'ok', line: '+OK hi' },
      { t: 'unsolicited', data: '+OK again\r\n' },
    ]);
    // An extra ".\r\n" after a multi-line reply (a desync) is unsolicited too.
    expect(frame([crlf('+OK\r\nx\r\n.\r\n.\r\n')], [multi]).at(-1)).toEqual({
      t: 'unsolicited',
      data: '.\r\n',
    });
  });

  it('rejects a status line that is neither +OK, -ERR nor a continuation', () => {
    for (const line of ['HELLO\r\n', '+OKAY\r\n', '-ERROR\r\n', '\r\n', '*\r\n']) {
      expect(frame([crlf(line)], [single])).toEqual([{ t: 'error', code: 'POP3_PROTOCOL' }]);
    }
    expect(frame([crlf('+ok lower\r\n-err lower\r\n')], [single, single]).map((e) => e.t)).toEqual([
      'status',
      'status',
    ]);
  });

  it('is stable under random bodies and random chunking (property)', () => {
    const specials = ['\r\n', '.', '..', '\r', '\n', '\r\n.', '\r\n.\r\n', '\0', '\xff'].map((s) =>
      fc.constant(crlf(s)),
    );
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      ...specials,
    );
    const body = fc.array(piece, { maxLength: 40 }).map((ps) => Buffer.concat(ps));
    fc.assert(
      fc.property(
        fc.array(body, { minLength: 1, maxLength: 3 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }),
        (bodies, sizes) => {
          const wire = Buffer.concat(bodies.flatMap((b) => [crlf('+OK\r\n'), multilineBody(b)]));
          const chunks: Buffer[] = [];
          for (let i = 0, k = 0; i < wire.length; k++) {
            const size = sizes[k % sizes.length] ?? 1;
            chunks.push(wire.subarray(i, i + size));
            i += size;
          }
          const got = frame(
            chunks,
            bodies.map(() => multi),
          ).filter((e) => e.t === 'body');
          const want = bodies.map((b) =>
            b.length === 0 || b.subarray(-2).equals(crlf('\r\n')) ? b : Buffer.concat([b, crlf('\r\n')]),
          );
          expect(got.map((e) => (e.t === 'body' ? e.data.toString('hex') : ''))).toEqual(
            want.map((b) => b.toString('hex')),
          );
        },
      ),
      { numRuns: 2000 },
    );
  });
});

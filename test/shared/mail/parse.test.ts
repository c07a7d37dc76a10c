import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { ArchiveError } from '../../../shared/errors.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { createArchiveAttachmentWriter } from '../../../shared/mail/attachment-writer.js';
import { assertMailParserCompatible, MailSourceError, parseMessage } from '../../../shared/mail/parse.js';
import type { Archive, StoredObject } from '../../../shared/storage/archive.js';
import { attachmentKey } from '../../../shared/storage/archive.js';
import { makeInput, RAW_SHA, recordingDeps, sha256, unsafeStrings } from './helpers.js';

const CRLF = '\r\n';
const lines = (...parts: string[]) => parts.join(CRLF);
const b64 = (data: Buffer | string) =>
  (Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('base64').replace(/.{76}/g, `$&${CRLF}`);

const PDF = Buffer.from(`%PDF-1.4\n${'x'.repeat(5000)}\n%%EOF\n`);
const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.alloc(3000, 7),
]);

const NORMAL = lines(
  'Return-Path: <alice@example.com>',
  'Received: from mx.example.net by mail.example.org; Mon, 1 Jan 2024 10:00:01 +0000',
  'From: "Alice Example" <alice@example.com>',
  'To: Bob <bob@example.org>, =?UTF-8?Q?Zo=C3=AB?= <zoe@example.org>',
  'Cc: Team: carol@example.org, dave@example.org;, undisclosed-recipients:;',
  'Reply-To: replies@example.com',
  'Subject: =?UTF-8?B?SGVsbG8g8J+Riw==?= world',
  'Date: Mon, 1 Jan 2024 10:00:00 +0100 (CET)',
  'Message-ID: <abc.123@example.com>',
  'In-Reply-To: <prev.1@example.com>',
  'References: <root.0@example.com>',
  ' <prev.1@example.com>',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="outer"',
  '',
  'preamble',
  '--outer',
  'Content-Type: multipart/alternative; boundary="alt"',
  '',
  '--alt',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: quoted-printable',
  '',
  'Hello Bob, caf=C3=A9 time.',
  '--alt',
  'Content-Type: text/html; charset=utf-8',
  '',
  '<p>Hello Bob, <b>café</b> time.</p>',
  '--alt--',
  '--outer',
  'Content-Type: application/pdf; name="report.pdf"',
  'Content-Disposition: attachment; filename="report.pdf"',
  'Content-Transfer-Encoding: base64',
  '',
  b64(PDF),
  '--outer',
  'Content-Type: image/png',
  'Content-Disposition: inline; filename="logo.png"',
  'Content-ID: <logo@example.com>',
  'Content-Transfer-Encoding: base64',
  '',
  b64(PNG),
  '--outer--',
  '',
);

describe('parseMessage: a normal multipart message', () => {
  it('maps headers, addresses, bodies and attachments into the event', async () => {
    const deps = recordingDeps();
    const event = await parseMessage(makeInput(NORMAL), deps);

    expect(event.parseError).toBeNull();
    expect(event.version).toBe(1);
    expect(event).toMatchObject({
      eventId: 'evt_0001',
      messageKey: 'msg-0001',
      mailboxId: 'inbox-1',
      uidl: 'uidl-1',
      receivedAt: '2024-05-01T12:00:00.000Z',
      raw: { key: 'raw/inbox-1/2024/05/01/msg-0001.eml', size: 1234, sha256: RAW_SHA },
    });
    expect(event.subject).toBe('Hello 👋 world');
    expect(event.date).toBe('2024-01-01T09:00:00.000Z');
    expect(event.messageId).toBe('<abc.123@example.com>');
    expect(event.inReplyTo).toBe('<prev.1@example.com>');
    expect(event.references).toEqual(['<root.0@example.com>', '<prev.1@example.com>']);
    expect(event.from).toEqual([{ address: 'alice@example.com', name: 'Alice Example' }]);
    expect(event.to).toEqual([
      { address: 'bob@example.org', name: 'Bob' },
      { address: 'zoe@example.org', name: 'Zoë' },
    ]);
    expect(event.cc).toEqual([
      { address: 'carol@example.org', name: '' },
      { address: 'dave@example.org', name: '' },
    ]);
    expect(event.bcc).toEqual([]);
    expect(event.replyTo).toEqual([{ address: 'replies@example.com', name: '' }]);

    expect(event.text?.trim()).toBe('Hello Bob, café time.');
    expect(event.html?.trim()).toBe('<p>Hello Bob, <b>café</b> time.</p>');
    expect(event.textTruncated).toBe(false);
    expect(event.htmlTruncated).toBe(false);

    // Ordered, lower-cased, unfolded, decoded.
    expect(event.headers[0]).toEqual({ name: 'return-path', value: '<alice@example.com>' });
    expect(event.headers.map((h) => h.name)).toContain('content-type');
    expect(event.headers.find((h) => h.name === 'subject')?.value).toBe('Hello 👋 world');
    expect(event.headers.find((h) => h.name === 'references')?.value).toBe(
      '<root.0@example.com> <prev.1@example.com>',
    );

    // Attachments: written in order, exact bytes, metadata kept.
    expect(deps.calls.map((c) => c.index)).toEqual([0, 1]);
    expect(deps.calls[0]?.bytes.equals(PDF)).toBe(true);
    expect(deps.calls[1]?.bytes.equals(PNG)).toBe(true);
    expect(event.attachments).toEqual([
      {
        index: 0,
        filename: 'report.pdf',
        contentType: 'application/pdf',
        size: PDF.length,
        sha256: sha256(PDF),
        contentId: null,
        disposition: 'attachment',
        key: 'attachments/test/0',
      },
      {
        index: 1,
        filename: 'logo.png',
        contentType: 'image/png',
        size: PNG.length,
        sha256: sha256(PNG),
        contentId: '<logo@example.com>',
        disposition: 'inline',
        key: 'attachments/test/1',
      },
    ]);
    expect(event.authResults).toBeNull();
    expect(event.spam).toBeNull();
    expect(event.charsetWarnings).toEqual([]);
    expect(unsafeStrings(event)).toEqual([]);
  });

  it('stores attachments at attachmentKey() through the archive writer', async () => {
    const puts: { key: string; contentType: string | undefined; bytes: Buffer }[] = [];
    const archive: Pick<Archive, 'put'> = {
      async put(key, body, options): Promise<StoredObject> {
        const chunks: Buffer[] = [];
        if (body instanceof Readable) for await (const c of body) chunks.push(c as Buffer);
        else chunks.push(Buffer.from(body));
        const bytes = Buffer.concat(chunks);
        puts.push({ key, contentType: options?.contentType, bytes });
        return { key, size: bytes.length, sha256: sha256(bytes) };
      },
    };
    const event = await parseMessage(makeInput(NORMAL), {
      writeAttachment: createArchiveAttachmentWriter(archive, 'inbox-1', 'msg-0001'),
    });
    expect(event.attachments.map((a) => a.key)).toEqual([
      attachmentKey('inbox-1', 'msg-0001', 0, 'report.pdf'),
      attachmentKey('inbox-1', 'msg-0001', 1, 'logo.png'),
    ]);
    expect(event.attachments[0]?.key).toBe('attachments/inbox-1/msg-0001/0-report.pdf');
    expect(puts[0]?.bytes.equals(PDF)).toBe(true);
    // Stored as opaque bytes whatever the sender claimed.
    expect(puts.every((p) => p.contentType === 'application/octet-stream')).toBe(true);
  });

  it('parses a message that arrives one byte at a time the same way', async () => {
    const bytes = Buffer.from(NORMAL);
    const chunks = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
    const whole = await parseMessage(makeInput(NORMAL), recordingDeps());
    const trickled = await parseMessage(makeInput(Readable.from(chunks)), recordingDeps());
    expect(trickled).toEqual(whole);
  });

  it('keeps the mailparser internals it hooks (fails loudly after an incompatible upgrade)', () => {
    expect(() => assertMailParserCompatible()).not.toThrow();
  });
});

describe('parseMessage: infrastructure failures throw, bad mail never does', () => {
  it('rethrows a writeAttachment failure unchanged and stops reading the source', async () => {
    const failure = new ArchiveError('ARCHIVE_WRITE_FAILED', 'disk full');
    const input = makeInput(NORMAL);
    await expect(
      parseMessage(input, {
        async writeAttachment(_i, _m, content) {
          content.resume();
          throw failure;
        },
      }),
    ).rejects.toBe(failure);
    expect(input.source.destroyed).toBe(true);
  });

  it('rethrows the archive error when the upload fails midway through reading the attachment', async () => {
    const failure = new ArchiveError('ARCHIVE_WRITE_FAILED', 'connection reset by S3');
    const event = parseMessage(makeInput(NORMAL), {
      async writeAttachment(_index, _meta, content) {
        let seen = 0;
        await pipeline(
          content,
          new Writable({
            write(chunk: Buffer, _encoding, callback) {
              seen += chunk.length;
              callback(seen > 100 ? failure : null);
            },
          }),
        );
        return { key: 'k', size: seen, sha256: RAW_SHA };
      },
    });
    await expect(event).rejects.toBe(failure);
  });

  it('rethrows a synchronous writeAttachment throw', async () => {
    const failure = new ArchiveError('ARCHIVE_WRITE_FAILED', 'boom');
    await expect(
      parseMessage(makeInput(NORMAL), {
        writeAttachment() {
          throw failure;
        },
      }),
    ).rejects.toBe(failure);
  });

  it('turns a source stream error into a transient MailSourceError', async () => {
    const source = new Readable({
      read() {
        this.push('Subject: x\r\n');
        this.destroy(new Error('ECONNRESET'));
      },
    });
    const err = await parseMessage(makeInput(source), recordingDeps()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MailSourceError);
    expect((err as MailSourceError).code).toBe('PARSE_SOURCE_FAILED');
    expect((err as MailSourceError).transient).toBe(true);
  });

  it('logs a parse error at warn level with its code and never the body', async () => {
    const logger = createMemoryLogger();
    const event = await parseMessage(
      makeInput(lines('Subject: secret-subject', 'Content-Type: multipart/mixed; boundary=b', '', 'x'), {
        maxParts: 1,
      }),
      { ...recordingDeps(), logger },
    );
    expect(event.parseError).toBeNull();
    const bad = await parseMessage(
      makeInput(
        lines(
          'Subject: secret-subject',
          'Content-Type: multipart/mixed; boundary=b',
          '',
          '--b',
          '',
          'a',
          '--b',
          '',
          'b',
          '--b--',
        ),
        {
          maxParts: 2,
        },
      ),
      { ...recordingDeps(), logger },
    );
    expect(bad.parseError?.code).toBe('PARSE_LIMIT_PARTS');
    const text = JSON.stringify(logger.lines);
    expect(text).toContain('PARSE_LIMIT_PARTS');
    expect(text).not.toContain('secret-subject');
  });
});

describe('parseMessage: hostile and odd content', () => {
  it('survives invalid base64 and quoted-printable', async () => {
    const msg = lines(
      'Subject: broken encodings',
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'bad =ZZ escapes =',
      '=C3 half a char and =E2=82 a cut euro =',
      '--b',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: base64',
      '',
      '!!!not*base64@@@ SGVsbG8=== ====',
      '--b',
      'Content-Type: application/octet-stream; name=x.bin',
      'Content-Transfer-Encoding: base64',
      '',
      'QUJD%%%%RE@@@VG=====H',
      '--b',
      'Content-Type: text/plain',
      'Content-Transfer-Encoding: x-uuencode-nonsense',
      '',
      'plain after all',
      '--b--',
      '',
    );
    const deps = recordingDeps();
    const event = await parseMessage(makeInput(msg), deps);
    expect(event.parseError).toBeNull();
    expect(event.text).toContain('bad =ZZ escapes');
    expect(event.text).toContain('plain after all');
    expect(event.attachments).toHaveLength(1);
    expect(unsafeStrings(event)).toEqual([]);
  });

  it('keeps hostile attachment names in the event but derives safe archive keys', async () => {
    const names = [
      '../../../etc/passwd',
      'evil\u0000name\u0007.exe',
      'C:\\Windows\\System32\\evil.dll',
      '....//....//x',
      '\u202Egnp.exe',
    ];
    // Quoted strings escape backslashes (RFC 5322 quoted-pair), so the sender writes them doubled.
    const quoted = (name: string) => `"${name.replace(/\\/g, '\\\\')}"`;
    const parts = names.flatMap((name, i) => [
      '--b',
      `Content-Type: application/octet-stream; name=${quoted(name)}`,
      `Content-Disposition: attachment; filename=${quoted(name)}`,
      '',
      `content ${i}`,
    ]);
    // RFC 2231 encoded traversal as well.
    parts.push(
      '--b',
      'Content-Type: application/octet-stream',
      "Content-Disposition: attachment; filename*=utf-8''..%2F..%2Fencoded%0Aname.txt",
      '',
      'content 5',
    );
    const msg = lines(
      'Subject: names',
      'Content-Type: multipart/mixed; boundary=b',
      '',
      ...parts,
      '--b--',
      '',
    );
    const keys: string[] = [];
    const writer = createArchiveAttachmentWriter(
      {
        async put(key, body) {
          if (body instanceof Readable) body.resume();
          keys.push(key);
          return { key, size: 0, sha256: RAW_SHA };
        },
      },
      'inbox-1',
      'msg-0001',
    );
    const event = await parseMessage(makeInput(msg), { writeAttachment: writer });
    expect(event.parseError).toBeNull();
    const filenames = event.attachments.map((a) => a.filename);
    expect(filenames[0]).toBe('../../../etc/passwd');
    expect(filenames[1]).toBe('evil\ufffdname\ufffd.exe');
    expect(filenames[2]).toBe('C:\\Windows\\System32\\evil.dll');
    expect(filenames[5]).toBe('../../encoded name.txt');
    expect(unsafeStrings(event)).toEqual([]);
    expect(keys).toHaveLength(6);
    for (const key of keys) {
      expect(key.startsWith('attachments/inbox-1/msg-0001/')).toBe(true);
      const leaf = key.slice('attachments/inbox-1/msg-0001/'.length);
      expect(leaf).not.toMatch(/[/\\\u0000-\u001f]/);
      expect(leaf).toMatch(/^\d+-/);
    }
  });

  it('replaces NUL, controls and lone surrogates in headers and bodies', async () => {
    const msg = Buffer.concat([
      Buffer.from(
        lines(
          'Subject: a\u0000b\u0001c =?utf-16le?B?ANg=?= end',
          'X-Note: tab\there',
          'Content-Type: text/plain; charset=utf-16le',
          'Content-Transfer-Encoding: base64',
          '',
          // "ok" then a lone high surrogate (0xD800) then NUL and BEL.
          Buffer.from([0x6f, 0x00, 0x6b, 0x00, 0x00, 0xd8, 0x00, 0x00, 0x07, 0x00]).toString('base64'),
          '',
        ),
        'latin1',
      ),
    ]);
    const event = await parseMessage(makeInput(msg), recordingDeps());
    expect(unsafeStrings(event)).toEqual([]);
    expect(event.subject).toBe('a\ufffdb\ufffdc \ufffd end');
    expect(event.headers.find((h) => h.name === 'x-note')?.value).toBe('tab here');
    expect(event.text?.startsWith('ok')).toBe(true);
    expect(() => JSON.parse(JSON.stringify(event))).not.toThrow();
  });

  it('keeps invalid addresses as names only', async () => {
    const msg = lines(
      'From: not an address',
      'To: "a@b.com x"@internal.domain, user@good.com(x)evil.com, Joe <joe>, =?utf-8?B?YUBiLmNvbQ==?=',
      'Cc: =?utf-8?B?YUBiLmNvbQ==?= <real@example.com>',
      '',
      'body',
    );
    const event = await parseMessage(makeInput(msg), recordingDeps());
    expect(event.from).toEqual([{ address: '', name: 'not an address' }]);
    expect(event.to).toEqual([
      { address: '"a@b.com x"@internal.domain', name: '' },
      { address: 'user@good.com', name: 'evil.com' },
      { address: '', name: 'Joe' },
      // An encoded word never becomes an address (mailparser 3.9.4 fabrication fix).
      { address: '', name: 'a@b.com' },
    ]);
    expect(event.cc).toEqual([{ address: 'real@example.com', name: 'a@b.com' }]);
  });

  it('returns nulls for missing or unparseable Date, Message-ID and Subject', async () => {
    const event = await parseMessage(
      makeInput(lines('Date: the day after tomorrow', '', 'hi')),
      recordingDeps(),
    );
    expect(event).toMatchObject({
      date: null,
      messageId: null,
      inReplyTo: null,
      references: [],
      subject: null,
    });
    expect(event.text?.trim()).toBe('hi');
  });

  it('parses a message with no header block and one that is only headers', async () => {
    const noHeaders = await parseMessage(makeInput('\r\njust a body\r\n'), recordingDeps());
    expect(noHeaders.headers).toEqual([]);
    expect(noHeaders.text?.trim()).toBe('just a body');
    const onlyHeaders = await parseMessage(makeInput('Subject: lonely\r\nX-A: 1'), recordingDeps());
    expect(onlyHeaders.subject).toBe('lonely');
    expect(onlyHeaders.headers).toEqual([
      { name: 'subject', value: 'lonely' },
      { name: 'x-a', value: '1' },
    ]);
    const empty = await parseMessage(makeInput(Buffer.alloc(0)), recordingDeps());
    expect(empty.parseError).toBeNull();
    expect(empty.headers).toEqual([]);
  });
});

describe('parseMessage: charsets', () => {
  const hex = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex');
  const cases = [
    { charset: 'GB2312', bytes: hex('c4e3 bac3 cac0 bde7'), text: '你好世界' },
    { charset: 'Shift_JIS', bytes: hex('93fa 967b 8cea'), text: '日本語' },
    { charset: 'ISO-2022-JP', bytes: hex('1b2442 467c 4b5c 386c 1b2842'), text: '日本語' },
    { charset: 'KOI8-R', bytes: hex('f0d2c9d7c5d4'), text: 'Привет' },
  ];

  for (const c of cases) {
    it(`decodes a ${c.charset} body and encoded-word subject`, async () => {
      // Cross-check the fixture bytes with Node's own (ICU) decoder.
      expect(new TextDecoder(c.charset.toLowerCase()).decode(c.bytes)).toBe(c.text);
      const msg = Buffer.concat([
        Buffer.from(
          lines(
            `Subject: =?${c.charset}?B?${c.bytes.toString('base64')}?=`,
            `From: =?${c.charset}?B?${c.bytes.toString('base64')}?= <x@example.com>`,
            `Content-Type: text/plain; charset="${c.charset}"`,
            'Content-Transfer-Encoding: 8bit',
            '',
            '',
          ),
        ),
        c.bytes,
        Buffer.from(CRLF),
      ]);
      const event = await parseMessage(makeInput(msg), recordingDeps());
      expect(event.subject).toBe(c.text);
      expect(event.from[0]?.name).toBe(c.text);
      expect(event.text?.trim()).toBe(c.text);
      expect(event.charsetWarnings).toEqual([]);
    });
  }

  it('decodes windows-1252 (the C1 range is printable there, not control characters)', async () => {
    const msg = Buffer.concat([
      Buffer.from(
        lines(
          'Subject: =?windows-1252?Q?=80_=E9?=',
          'Content-Type: text/plain; charset=windows-1252',
          '',
          '',
        ),
      ),
      hex('80 20 e9 20 93 71 93'),
    ]);
    const event = await parseMessage(makeInput(msg), recordingDeps());
    expect(event.subject).toBe('€ é');
    expect(event.text?.trim()).toBe('€ é “q“');
  });

  it('reports unknown and refused charset labels', async () => {
    const msg = lines(
      'Subject: =?x-made-up?Q?abc?= and =?utf-8?Q?caf=C3=A9?=',
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      'Content-Type: text/plain; charset=x-klingon',
      '',
      'qapla',
      '--b',
      'Content-Type: text/plain; charset=utf-7',
      '',
      '+ADw-script+AD4-',
      '--b',
      "Content-Type: application/octet-stream; name*=x-bogus''file.bin",
      '',
      'data',
      '--b--',
      '',
    );
    const event = await parseMessage(makeInput(msg), recordingDeps());
    expect(event.parseError).toBeNull();
    expect(event.subject).toBe('abc and café');
    expect(event.charsetWarnings).toEqual(
      expect.arrayContaining(['x-made-up', 'x-klingon', 'utf-7', 'x-bogus']),
    );
    expect(event.charsetWarnings).not.toContain('utf-8');
    // UTF-7 is never decoded (it can smuggle markup).
    expect(event.text).toContain('+ADw-script+AD4-');
  });

  it('flags raw 8-bit header bytes that are not UTF-8', async () => {
    const msg = Buffer.concat([
      Buffer.from('Subject: '),
      Buffer.from([0xf0, 0xd2, 0xc9]),
      Buffer.from('\r\n\r\nx'),
    ]);
    const event = await parseMessage(makeInput(msg), recordingDeps());
    expect(event.charsetWarnings).toContain('unknown-8bit');
    expect(unsafeStrings(event)).toEqual([]);
  });
});

describe('parseMessage: authentication results and spam headers', () => {
  it('trusts only the topmost Authentication-Results and reads X-Spam-*', async () => {
    const msg = lines(
      'Authentication-Results: mx.provider.example; spf=pass smtp.mailfrom=example.com;',
      ' dkim=pass header.d=example.com; dmarc=pass (p=reject) header.from=example.com',
      'Received-SPF: fail (forged) client-ip=192.0.2.1',
      'Authentication-Results: forged.example; spf=pass; dkim=pass; dmarc=pass; arc=pass',
      'X-Spam-Flag: YES',
      'X-Spam-Status: Yes, score=7.3 required=5.0 tests=BAYES_99',
      'X-Spam-Level: *******',
      'Subject: hi',
      '',
      'body',
    );
    const event = await parseMessage(makeInput(msg), recordingDeps());
    expect(event.authResults).toEqual({
      authservId: 'mx.provider.example',
      spf: 'pass',
      dkim: 'pass',
      dmarc: 'pass',
    });
    expect(event.spam).toEqual({
      flagged: true,
      score: 7.3,
      headers: {
        'x-spam-flag': 'YES',
        'x-spam-status': 'Yes, score=7.3 required=5.0 tests=BAYES_99',
        'x-spam-level': '*******',
      },
    });
  });
});

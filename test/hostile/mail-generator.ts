/**
 * Adversarial messages for the whole pipeline (research §8 C): structure bombs (deep nesting, 10,000
 * parts, a 10 MB header block), broken encodings (invalid base64 and quoted-printable, missing or
 * unused boundaries), legacy and unknown charsets (GB2312, Shift_JIS, ISO-2022-JP, KOI8-R, raw 8-bit
 * headers), NUL bytes, attachment names built to escape a directory or a terminal, and encoded-words
 * that decode to lone surrogates. Deterministic: the same bytes every run.
 *
 * `expectParseError` is the `parseError.code` the message must produce (a limit the parser enforces);
 * undefined means "either parsed, or a parseError": the pipeline must cope, not necessarily understand.
 */

export interface HostileMessage {
  name: string;
  bytes: Buffer;
  expectParseError?: string;
}

const CRLF = '\r\n';
const head = (subject: string, extra: string[] = []) =>
  [
    'From: Mallory <mallory@evil.test>',
    'To: victim@example.com',
    `Subject: ${subject}`,
    'Date: Sat, 28 Nov 2026 10:00:00 +0000',
    `Message-ID: <${subject.replace(/[^a-z0-9]/gi, '').slice(0, 40)}@evil.test>`,
    'MIME-Version: 1.0',
    ...extra,
  ].join(CRLF);

const latin1 = (s: string) => Buffer.from(s, 'latin1');
const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64');

/** Multipart nested `depth` levels deep, one text leaf at the bottom. */
function deepNesting(depth: number): Buffer {
  const open: string[] = [];
  const close: string[] = [];
  for (let i = 0; i < depth; i++) {
    open.push(`--b${i}`, `Content-Type: multipart/mixed; boundary="b${i + 1}"`, '');
    close.unshift(`--b${i}--`);
  }
  return latin1(
    [
      head('deep nesting', ['Content-Type: multipart/mixed; boundary="b0"']),
      '',
      ...open,
      `--b${depth}`,
      'Content-Type: text/plain',
      '',
      'bottom',
      `--b${depth}--`,
      ...close,
      '',
    ].join(CRLF),
  );
}

function manyParts(count: number): Buffer {
  const parts: string[] = [];
  for (let i = 0; i < count; i++) parts.push('--p', 'Content-Type: text/plain', '', `part ${i}`);
  return latin1(
    [
      head('ten thousand parts', ['Content-Type: multipart/mixed; boundary="p"']),
      '',
      ...parts,
      '--p--',
      '',
    ].join(CRLF),
  );
}

function hugeHeaders(bytes: number): Buffer {
  const line = `X-Filler: ${'h'.repeat(990)}`;
  const lines: string[] = [];
  for (let size = 0; size < bytes; size += line.length + 2) lines.push(line);
  return latin1([head('ten megabytes of headers'), ...lines, '', 'body after the headers', ''].join(CRLF));
}

function legacyCharsets(): Buffer {
  // Real legacy encodings, byte for byte: "中文" in GB2312, "日本" in Shift_JIS, "日本" in ISO-2022-JP,
  // "Привет" in KOI8-R.
  const gb2312 = Buffer.from([0xd6, 0xd0, 0xce, 0xc4]);
  const sjis = Buffer.from([0x93, 0xfa, 0x96, 0x7b]);
  const iso2022 = Buffer.from('\x1b$BF|K\\\x1b(B', 'latin1');
  const koi8 = Buffer.from([0xf0, 0xd2, 0xc9, 0xd7, 0xc5, 0xd4]);
  const part = (charset: string, body: Buffer, name: string) =>
    Buffer.concat([
      latin1(
        `--c${CRLF}Content-Type: text/plain; charset=${charset}${CRLF}Content-Disposition: attachment; filename="=?${charset}?B?${b64(body)}?="${CRLF}${CRLF}`,
      ),
      body,
      latin1(` (${name})${CRLF}`),
    ]);
  return Buffer.concat([
    latin1(
      `${head(`=?GB2312?B?${b64(gb2312)}?= =?Shift_JIS?B?${b64(sjis)}?= =?ISO-2022-JP?B?${b64(iso2022)}?= =?KOI8-R?B?${b64(koi8)}?=`, ['Content-Type: multipart/mixed; boundary="c"'])}${CRLF}${CRLF}`,
    ),
    part('GB2312', gb2312, 'gb2312'),
    part('Shift_JIS', sjis, 'shift_jis'),
    part('ISO-2022-JP', iso2022, 'iso-2022-jp'),
    part('KOI8-R', koi8, 'koi8-r'),
    part('x-unknown-charset-42', Buffer.from([0xff, 0xfe, 0x00, 0x41]), 'unknown'),
    latin1(`--c--${CRLF}`),
  ]);
}

function raw8bitHeaders(): Buffer {
  return Buffer.concat([
    latin1('From: '),
    Buffer.from([0xc9, 0x6c, 0xe9, 0x6e, 0x61]), // Latin-1 "Éléna", not UTF-8
    latin1(' <elena@example.com>\r\nTo: x@example.com\r\nSubject: '),
    Buffer.from([0xe2, 0x28, 0xa1, 0xc3, 0x28, 0xf0, 0x90, 0x28, 0xbc, 0xff, 0xfe]), // invalid UTF-8
    latin1('\r\nX-Eight-Bit: '),
    Buffer.from([0x80, 0x81, 0x9f, 0xa0]),
    latin1('\r\n\r\nbody '),
    Buffer.from([0xff, 0x00, 0xfe]),
    latin1('\r\n'),
  ]);
}

function nulBytes(): Buffer {
  return latin1(
    `${head('nul\u0000in\u0000subject', ['X-Nul: a\u0000b', 'Content-Type: text/plain'])}\r\n\r\nbody\u0000with\u0000nuls\r\n\u0000\r\n`,
  );
}

function invalidEncodings(): Buffer {
  return latin1(
    [
      head('invalid transfer encodings', ['Content-Type: multipart/mixed; boundary="e"']),
      '',
      '--e',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: base64',
      '',
      '!!!! not base64 at all ***',
      'SGVsbG8=====garbage=',
      'QUJD\u0000REVG',
      '--e',
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      '=ZZ broken =4 escape =\u0000 soft=',
      '=E2=82 truncated utf-8 =FF=FE',
      '--e',
      'Content-Type: application/octet-stream',
      'Content-Transfer-Encoding: x-unknown-encoding',
      'Content-Disposition: attachment; filename="blob.bin"',
      '',
      'whatever',
      '--e--',
      '',
    ].join(CRLF),
  );
}

function missingBoundaries(): Buffer[] {
  return [
    // multipart with no boundary parameter at all
    latin1(
      `${head('no boundary parameter', ['Content-Type: multipart/mixed'])}\r\n\r\n--x\r\n\r\ntext\r\n--x--\r\n`,
    ),
    // declared, never used
    latin1(
      `${head('boundary never used', ['Content-Type: multipart/mixed; boundary="never"'])}\r\n\r\njust text, no parts\r\n`,
    ),
    // opened, never closed, truncated mid-part
    latin1(
      `${head('unterminated multipart', ['Content-Type: multipart/alternative; boundary="open"'])}\r\n\r\n--open\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--open\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+`,
    ),
  ];
}

function evilFilenames(): Buffer {
  const names = [
    '../../../../etc/passwd',
    '..\\..\\..\\windows\\system32\\evil.dll',
    '/absolute/path.txt',
    'con\u0000trol\u0007\u001b[31mred\u001b[0m.txt',
    'CR\r\nX-Injected: yes.txt',
    '\u202egnp.exe',
    '.',
    '..',
    `${'long'.repeat(200)}.pdf`,
  ];
  const parts = names.map((n, i) =>
    [
      '--f',
      `Content-Type: application/octet-stream; name="${n.replace(/["\r\n]/g, '_')}"`,
      // RFC 2231 form carries the raw bytes, CR/LF included.
      `Content-Disposition: attachment; filename*=utf-8''${encodeURIComponent(n)}`,
      'Content-Transfer-Encoding: base64',
      '',
      b64(`attachment ${i}`),
    ].join(CRLF),
  );
  return latin1(
    [
      head('evil attachment names', ['Content-Type: multipart/mixed; boundary="f"']),
      '',
      ...parts,
      '--f--',
      '',
    ].join(CRLF),
  );
}

function loneSurrogates(): Buffer {
  // UTF-8-encoded surrogates (CESU-8 style, invalid UTF-8) and UTF-16 with an unpaired high surrogate.
  const cesu = Buffer.from([0xed, 0xa0, 0x80, 0x41]);
  const utf16 = Buffer.from([0xd8, 0x00, 0x00, 0x41]);
  const utf16le = Buffer.from([0x3d, 0xd8, 0x42, 0x00]);
  return latin1(
    [
      `From: =?UTF-8?B?${b64(cesu)}?= <s@evil.test>`,
      'To: x@example.com',
      `Subject: =?UTF-8?B?${b64(cesu)}?= =?UTF-16?B?${b64(utf16)}?= =?UTF-16LE?B?${b64(utf16le)}?= =?UTF-8?Q?=ED=B0=80?=`,
      `X-Lone: =?UTF-16BE?B?${b64(Buffer.from([0xdc, 0x00]))}?=`,
      'Content-Type: multipart/mixed; boundary="s"',
      '',
      '--s',
      'Content-Type: text/plain; charset=utf-16',
      'Content-Transfer-Encoding: base64',
      '',
      b64(utf16),
      '--s',
      `Content-Disposition: attachment; filename="=?UTF-16BE?B?${b64(Buffer.from([0xd8, 0x3d]))}?="`,
      '',
      'x',
      '--s--',
      '',
    ].join(CRLF),
  );
}

/** Every adversarial message, in a fixed order. */
export function hostileMessages(): HostileMessage[] {
  const [noBoundary, unusedBoundary, unterminated] = missingBoundaries() as [Buffer, Buffer, Buffer];
  return [
    { name: 'deep-nesting-500', bytes: deepNesting(500), expectParseError: 'PARSE_LIMIT_DEPTH' },
    { name: 'ten-thousand-parts', bytes: manyParts(10_000), expectParseError: 'PARSE_LIMIT_PARTS' },
    { name: 'ten-mb-headers', bytes: hugeHeaders(10 * 1024 * 1024), expectParseError: 'PARSE_LIMIT_HEADERS' },
    { name: 'invalid-base64-qp', bytes: invalidEncodings() },
    { name: 'legacy-charsets', bytes: legacyCharsets() },
    { name: 'raw-8bit-headers', bytes: raw8bitHeaders() },
    { name: 'nul-bytes', bytes: nulBytes() },
    { name: 'no-boundary-parameter', bytes: noBoundary },
    { name: 'boundary-never-used', bytes: unusedBoundary },
    { name: 'unterminated-multipart', bytes: unterminated },
    { name: 'evil-attachment-names', bytes: evilFilenames() },
    { name: 'lone-surrogates', bytes: loneSurrogates() },
  ];
}

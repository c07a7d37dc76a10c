/**
 * `pophook check` against real Dovecot and real HTTP receivers, in-process: what a passing check prints,
 * and the plain sentence (and fix) for a wrong password, a wrong port, a self-signed certificate and a
 * server without TLS (where the credentials must never be sent: a recording proxy proves it).
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Dovecot, requireDovecot, startDovecot } from '../../fixtures/dovecot.js';
import { unusedPort } from '../../fixtures/ports.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import { cli, STACK_LINE } from '../helpers.js';

requireDovecot();

const SECRET = `whsec_${Buffer.alloc(32, 5).toString('base64')}`;

/** A TCP proxy to `port` that records every byte the client sends. */
async function recordingProxy(
  port: number,
): Promise<{ port: number; sent: () => string; close(): Promise<void> }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => chunks.push(d));
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    sent: () => Buffer.concat(chunks).toString('latin1'),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('pophook check against Dovecot and real receivers', () => {
  let dovecot: Dovecot;
  let good: Receiver;
  let rejecting: Receiver;
  let proxy: Awaited<ReturnType<typeof recordingProxy>>;
  let dir: string;
  const run = (args: string[]) => cli([...args, '-c', 'pophook.yaml'], { cwd: dir });

  beforeAll(async () => {
    [dovecot, good, rejecting] = await Promise.all([
      startDovecot({}),
      startReceiver(),
      startReceiver({ behaviour: { kind: 'status', status: 401, body: 'bad signature' } }),
    ]);
    proxy = await recordingProxy(dovecot.port);
    dir = await mkdtemp(path.join(os.tmpdir(), 'pophook-cli-check-'));
    const fingerprint = new X509Certificate(dovecot.caPem).fingerprint256;
    await writeFile(path.join(dir, 'ca.pem'), dovecot.caPem);
    await writeFile(
      path.join(dir, 'secrets.json'),
      JSON.stringify({ pop: dovecot.password, wrong: 'not-the-password', hook: SECRET }),
      { mode: 0o600 },
    );
    const mailbox = (id: string, lines: string[]) => [
      `  - id: ${id}`,
      `    host: ${dovecot.host}`,
      `    user: ${dovecot.user}`,
      ...lines.map((l) => `    ${l}`),
    ];
    const pop = 'auth: { type: password, password: { secret: pop } }';
    await writeFile(
      path.join(dir, 'pophook.yaml'),
      [
        'version: 1',
        'mailboxes:',
        ...mailbox('starttls', [
          `port: ${dovecot.port}`,
          'tls: starttls',
          'ca: ca.pem',
          pop,
          'retention: keep',
        ]),
        ...mailbox('implicit', [
          `port: ${dovecot.tlsPort}`,
          'ca: ca.pem',
          `pinSha256: ["${fingerprint}"]`,
          pop,
          'pollEveryMinutes: 2',
        ]),
        ...mailbox('wrong-password', [
          `port: ${dovecot.port}`,
          'tls: starttls',
          'ca: ca.pem',
          'auth: { type: password, password: { secret: wrong } }',
        ]),
        ...mailbox('wrong-port', [`port: ${await unusedPort()}`, pop]),
        ...mailbox('self-signed', [`port: ${dovecot.tlsPort}`, pop]),
        ...mailbox('no-tls', [`port: ${proxy.port}`, 'tls: none', pop]),
        'endpoints:',
        '  - id: good',
        `    url: ${good.url}`,
        '    secrets: [{ secret: hook }]',
        '    allowHttp: true',
        '    allowPrivateNetwork: true',
        '  - id: rejecting',
        `    url: ${rejecting.url}`,
        '    secrets: [{ secret: hook }]',
        '    allowHttp: true',
        '    allowPrivateNetwork: true',
        'local: { secretsFile: secrets.json }',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await Promise.all([dovecot?.stop(), good?.close(), rejecting?.close(), proxy?.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('passes for STARTTLS and implicit TLS (CA file, pinned certificate) and a signed ping; exit 0', async () => {
    const { code, stdout, stderr } = await run(['check', '-m', 'starttls', '-m', 'implicit', '-e', 'good']);
    const text = stdout.text;
    expect(text).toMatch(/^mailbox starttls {2}testuser @ 127\.0\.0\.1:\d+ \(STARTTLS\)$/m);
    expect(text).toMatch(/^ {2}ok {4}DNS {9}127\.0\.0\.1 is an IP address; no lookup needed$/m);
    expect(text).toMatch(/^ {2}ok {4}TCP {9}connected to 127\.0\.0\.1:\d+ in \d+ ms$/m);
    expect(text).toMatch(/^ {2}ok {4}TLS {9}TLSv1\.[23] \S+; certificate for 127\.0\.0\.1 valid until .+$/m);
    expect(text).toMatch(/^ {20}certificate {2}CN=localhost$/m);
    expect(text).toMatch(/^ {2}ok {4}greeting {4}\+OK/m);
    expect(text).toMatch(/^ {2}ok {4}CAPA {8}\d+ capabilities/m);
    expect(text).toMatch(
      /^ {2}ok {4}mechanism {3}SASL PLAIN: the server advertises it \(SASL PLAIN .*\); user and password go in one step$/m,
    );
    expect(text).toMatch(/^ {20}not APOP: never chosen automatically \(MD5/m);
    expect(text).toMatch(/^ {2}ok {4}login {7}logged in as testuser with PLAIN$/m);
    expect(text).toMatch(/^ {2}ok {4}STAT {8}0 messages, 0 bytes on the server$/m);
    expect(text).toMatch(/^ {2}ok {4}UIDL {8}supported: messages can stay on the server/m);
    expect(text).toMatch(/^ {2}ok {4}LOGIN-DELAY none/m);
    expect(text).toMatch(/^ {2}ok {4}EXPIRE {6}/m);
    expect(text).toMatch(/^ {2}ok {4}TLS {9}.*, pinned$/m);
    expect(text).toMatch(/^ {2}ok {4}ping {8}signed webhook\.test accepted: HTTP 200 in \d+ ms$/m);
    expect(text).not.toContain('FAIL');
    expect(stderr.text).toContain('3 checked, all passed');
    expect(code).toBe(0);
    // The ping is a real Standard Webhooks delivery.
    const req = good.requests.at(-1);
    const headers = Object.fromEntries(Object.entries(req?.headers ?? {}).map(([k, v]) => [k, String(v)]));
    const event = new Webhook(SECRET).verify(req?.body.toString() ?? '', headers) as { type: string };
    expect(event.type).toBe('webhook.test');
  });

  it('a wrong password says so and what to check; exit 1', async () => {
    // A source address of its own: Dovecot's per-IP auth penalty must not slow other tests.
    const { code, stdout, stderr } = await run([
      'check',
      '-m',
      'wrong-password',
      '--source-address',
      '127.0.0.23',
    ]);
    expect(stdout.text).toMatch(/^ {2}ok {4}TLS /m);
    expect(stdout.text).toMatch(/^ {2}FAIL {2}login {7}The POP server refused the user name or password\.$/m);
    expect(stdout.text).toMatch(
      /^ {20}fix: Check "user" \(testuser\) and the password secret "wrong"; some providers need an app password/m,
    );
    expect(stdout.text).toContain('wrong-password: login failed');
    expect(stderr.text).toContain('1 of 1 failed: wrong-password');
    expect(stderr.text).not.toMatch(STACK_LINE);
    expect(code).toBe(1);
  });

  it('a wrong port: connection refused, and which ports POP3 uses', async () => {
    const { code, stdout } = await run(['check', '-m', 'wrong-port']);
    expect(stdout.text).toMatch(
      /^ {2}FAIL {2}TCP {9}connection refused by 127\.0\.0\.1:\d+: nothing accepts connections on port \d+ there$/m,
    );
    expect(stdout.text).toMatch(
      /fix: Check "port" \(and "host"\): POP3 is usually 995 with tls: implicit, or 110 with tls: starttls\./,
    );
    expect(code).toBe(1);
  });

  it('a self-signed certificate without ca: shows the certificate and how to trust exactly it', async () => {
    const { code, stdout } = await run(['check', '-m', 'self-signed']);
    const text = stdout.text;
    expect(text).toMatch(
      /^ {2}FAIL {2}TLS {9}the certificate is self-signed \(CN=localhost\), so nobody vouches for it$/m,
    );
    expect(text).toMatch(/^ {20}issued by {4}CN=localhost \(self-signed\)$/m);
    expect(text).toMatch(/^ {20}names {8}localhost, 127\.0\.0\.1$/m);
    expect(text).toMatch(/^ {20}sha256 {7}([0-9A-F]{2}:){31}[0-9A-F]{2}$/m);
    expect(text).toMatch(
      /fix: If this is your server, trust exactly this certificate: save it with `openssl s_client -connect 127\.0\.0\.1:\d+ <\/dev\/null \| openssl x509 > server\.pem`, set ca: server\.pem in mailbox "self-signed", and add pinSha256: \["([0-9A-F]{2}:){31}[0-9A-F]{2}"\] to accept only it\./,
    );
    expect(text).not.toMatch(/greeting|login/); // nothing after a refused certificate
    expect(code).toBe(1);
  });

  it('a server without TLS: credentials are not sent, and the output says so', async () => {
    const { code, stdout } = await run(['check', '-m', 'no-tls']);
    const text = stdout.text;
    expect(text).toMatch(
      /^ {2}FAIL {2}TLS {9}none: the connection is not encrypted, so pophook will not send the credentials over it$/m,
    );
    expect(text).toMatch(
      /fix: Use tls: implicit \(port 995\) or tls: starttls \(port 110\) in mailbox "no-tls"/,
    );
    expect(text).toMatch(/^ {2}ok {4}greeting {4}\+OK/m);
    expect(text).toMatch(
      /^ {2}FAIL {2}login {7}not attempted: credentials are never sent over an unencrypted connection$/m,
    );
    expect(code).toBe(1);
    const sent = proxy.sent();
    expect(sent).toContain('CAPA');
    expect(sent).not.toMatch(/USER|PASS|AUTH/);
    expect(sent).not.toContain(dovecot.password);
  });

  it('an endpoint answering 401: the receiver rejected the signature, check its secret', async () => {
    const { code, stdout } = await run(['check', '-e', 'rejecting', '--json']);
    const report = JSON.parse(stdout.text) as {
      ok: boolean;
      steps: { name: string; ok: boolean; detail: string; fix?: string }[];
    };
    expect(report.ok).toBe(false);
    expect(report.steps.map((s) => s.name)).toEqual(['URL', 'SSRF', 'secrets', 'ping']);
    expect(report.steps[3]).toMatchObject({
      ok: false,
      detail: 'HTTP 401: the receiver rejected the signature (it said: bad signature)',
      fix: expect.stringContaining('Check its secret'),
    });
    expect(code).toBe(1);
    expect((await run(['check', '-m', 'nope'])).stderr.text).toContain('No mailbox "nope" in the config');
  });
});

/**
 * poll, list, show and replay end to end, in-process: real Dovecot (STARTTLS with the CA given as a file
 * path), a real HTTP receiver, signatures verified with the standardwebhooks library.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../../cli/main.js';
import { type Dovecot, requireDovecot, startDovecot } from '../../fixtures/dovecot.js';
import { makeMessage } from '../../fixtures/messages.js';
import { type Receiver, startReceiver } from '../../fixtures/receiver.js';
import { capture } from '../capture.js';
import { cli, STACK_LINE, sleep } from '../helpers.js';

requireDovecot();

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;

const MESSAGES = [
  makeMessage({ index: 1, subject: 'Invoice 1001', size: 6000, attachments: 1 }),
  makeMessage({ index: 2, subject: 'Hello there', size: 2500 }),
  makeMessage({ index: 3, subject: 'Report Q3', size: 9000, attachments: 2 }),
];

describe('poll, list, show and replay against Dovecot and a real receiver', () => {
  let dovecot: Dovecot;
  let receiver: Receiver;
  let dir: string;
  let cfg: string;
  const run = (args: string[]) => cli(args, { cwd: dir });

  beforeAll(async () => {
    [dovecot, receiver] = await Promise.all([startDovecot({ messages: MESSAGES }), startReceiver()]);
    dir = await mkdtemp(path.join(os.tmpdir(), 'pophook-cli-local-'));
    await writeFile(path.join(dir, 'ca.pem'), dovecot.caPem);
    await writeFile(path.join(dir, 'secrets.json'), JSON.stringify({ pop: dovecot.password, hook: SECRET }), {
      mode: 0o600,
    });
    cfg = path.join(dir, 'pophook.yaml');
    await writeFile(
      cfg,
      [
        'version: 1',
        'mailboxes:',
        '  - id: inbox',
        `    host: ${dovecot.host}`,
        `    port: ${dovecot.port}`,
        '    tls: starttls',
        '    ca: ca.pem',
        `    user: ${dovecot.user}`,
        '    auth: { type: password, password: { secret: pop } }',
        'endpoints:',
        '  - id: hook',
        `    url: ${receiver.url}`,
        '    secrets: [{ secret: hook }]',
        '    allowHttp: true',
        '    allowPrivateNetwork: true',
        '    timeoutMs: 2000',
        'delivery:',
        '  retryScheduleSeconds: [1]',
        'local:',
        '  dataDir: data',
        '  secretsFile: secrets.json',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await Promise.all([dovecot?.stop(), receiver?.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  const verified = (n: number) => {
    const req = receiver.requests[n];
    if (!req) throw new Error(`no request ${n}`);
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
    return new Webhook(SECRET).verify(req.body.toString('utf8'), headers) as {
      type: string;
      data: { subject: string; messageKey: string; eventId: string };
    };
  };

  it('poll fetches, archives, deletes and delivers signed webhooks; exit 0', async () => {
    const { code, stdout, stderr } = await run(['poll', '-c', 'pophook.yaml']);
    expect(stderr.text).not.toMatch(/error/i);
    expect(code).toBe(0);
    expect(stdout.text).toMatch(/^inbox: 3 new \([\d.]+ KiB\) in .+, 3 deleted from the server$/m);
    expect(stdout.text).toContain('deliveries: 3 delivered');
    expect(receiver.requests).toHaveLength(3);
    const subjects = [0, 1, 2].map((i) => verified(i).data.subject).sort();
    expect(subjects).toEqual(['Hello there', 'Invoice 1001', 'Report Q3']);
    expect(await dovecot.messageCount()).toBe(0);

    const again = await run(['poll', '-c', 'pophook.yaml', '--json']);
    expect(again.code).toBe(0);
    const lines = again.stdout.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({
      type: 'poll',
      mailboxId: 'inbox',
      outcome: 'ok',
      fetched: 0,
      failed: false,
    });
    expect(lines[1]).toMatchObject({ type: 'deliveries', received: 0 });
  });

  it('list shows every message with its delivery status, filters and limits', async () => {
    const { code, stdout } = await run(['list', '-c', 'pophook.yaml']);
    expect(code).toBe(0);
    const rows = stdout.text.trim().split('\n');
    expect(rows[0]).toMatch(
      /^RECEIVED \(UTC\)\s+MAILBOX\s+KEY\s+FROM\s+SUBJECT\s+SIZE\s+ATT\s+STATUS\s+DELIVERIES$/,
    );
    expect(rows).toHaveLength(4);
    const report = rows.find((r) => r.includes('Report Q3')) ?? '';
    expect(report).toMatch(/inbox\s+[0-9a-f]{12}\s+.+Report Q3\s+8\.8 KiB\s+2\s+deleted\s+hook:delivered$/);

    const json = await run(['list', '-c', 'pophook.yaml', '--json', '--limit', '2']);
    const listed = json.stdout.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { subject: string; deliveries: { outcome: string; attempts: number }[] });
    expect(listed).toHaveLength(2);
    expect(listed[0]?.deliveries).toEqual([
      expect.objectContaining({ endpointId: 'hook', outcome: 'delivered', attempts: 1 }),
    ]);
    expect(json.stderr.text).toContain('2 of 3 shown');

    const none = await run(['list', '-c', 'pophook.yaml', '--since', '2999-01-01']);
    expect(none.stdout.text).toBe('');
    expect(none.stderr.text).toContain('No messages match.');
    expect((await run(['list', '-c', 'pophook.yaml', '--status', 'archived'])).stderr.text).toContain(
      'No messages match.',
    );
  });

  it('show prints headers, parts, the verified raw hash and attempts; --raw is byte-exact; --json is the event', async () => {
    const listed = (await run(['list', '-c', 'pophook.yaml', '--json'])).stdout.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { messageKey: string; subject: string; eventId: string });
    const invoice = listed.find((m) => m.subject === 'Invoice 1001');
    if (!invoice) throw new Error('invoice not listed');

    const shown = await run(['show', invoice.messageKey.slice(0, 12), '-c', 'pophook.yaml']);
    expect(shown.code).toBe(0);
    const text = shown.stdout.text;
    expect(text).toMatch(/^Subject\s+Invoice 1001$/m);
    expect(text).toMatch(/^status\s+deleted$/m);
    expect(text).toContain(`sha256      ${sha(MESSAGES[0] as Buffer)}  matches the record`);
    expect(text).toMatch(/^ {2}0 {2}blob1-1\.bin {2}application\/octet-stream/m);
    expect(text).toMatch(/^ {2}\S+Z {2}hook {2}#1 {2}delivered {2}HTTP 200/m);

    const raw = await run(['show', invoice.eventId, '-c', 'pophook.yaml', '--raw']);
    expect(raw.code).toBe(0);
    expect(raw.stdout.bytes.equals(MESSAGES[0] as Buffer)).toBe(true);

    const json = await run(['show', invoice.messageKey, '-c', 'pophook.yaml', '--json']);
    const event = JSON.parse(json.stdout.text) as {
      type: string;
      data: { eventId: string; raw: { sha256: string } };
    };
    expect(event.type).toBe('email.received');
    expect(event.data.eventId).toBe(invoice.eventId);
    expect(event.data.raw.sha256).toBe(sha(MESSAGES[0] as Buffer));

    const unknown = await run(['show', 'ffffffffffff', '-c', 'pophook.yaml']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.text).toBe(
      'error: No message "ffffffffffff" in the local archive; "pophook list" shows what is there.\n',
    );
  });

  it('a delivery that fails for good is listed as failed, and replay --failed sends it again with the same webhook-id', async () => {
    receiver.respond({ kind: 'status', status: 503, body: 'down' });
    const before = receiver.requests.length;
    await dovecot.addMessages([makeMessage({ index: 4, subject: 'Will fail first', size: 3000 })]);
    const first = await run(['poll', '-c', 'pophook.yaml']);
    expect(first.code).toBe(0); // the mailbox polled fine; the delivery is retried later
    expect(first.stdout.text).toContain('deliveries: 0 delivered, 1 to retry later');
    await sleep(1300); // retryScheduleSeconds: [1]
    const second = await run(['poll', '-c', 'pophook.yaml']);
    expect(second.stdout.text).toContain('1 failed for good');
    expect(receiver.requests.length).toBe(before + 2);

    const list = await run(['list', '-c', 'pophook.yaml', '--limit', '1']);
    expect(list.stdout.text).toMatch(/Will fail first.*hook:failed 503$/m);

    const dry = await run(['replay', '--failed', '--dry-run', '-c', 'pophook.yaml']);
    expect(dry.code).toBe(0);
    expect(dry.stdout.text).toMatch(
      /^would replay [0-9a-f]{32} \(inbox\) -> hook {2}webhook-id msg_[0-9a-f]{32}$/m,
    );
    expect(dry.stdout.text).toContain('would queue 1 delivery of 1 message');
    expect(receiver.requests.length).toBe(before + 2);

    receiver.respond({ kind: 'status', status: 200 });
    const replayed = await run(['replay', '--failed', '-c', 'pophook.yaml']);
    expect(replayed.code).toBe(0);
    expect(replayed.stdout.text).toContain('queued 1 delivery of 1 message, with their original webhook-id');
    expect(replayed.stdout.text).toContain('deliveries: 1 delivered');
    expect(receiver.requests.length).toBe(before + 3);
    const original = receiver.requests[before]?.headers['webhook-id'];
    expect(receiver.requests[before + 2]?.headers['webhook-id']).toBe(original);
    expect(verified(before + 2).data.subject).toBe('Will fail first');

    // Nothing failed any more.
    const nothing = await run(['replay', '--failed', '-c', 'pophook.yaml']);
    expect(nothing.stdout.text).toContain('nothing to replay');
  });

  it('replay by key, by mailbox and date range, to one endpoint; bad input is a one-line error', async () => {
    const listed = (await run(['list', '-c', 'pophook.yaml', '--json'])).stdout.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { messageKey: string; eventId: string; receivedAt: string });
    const target = listed[2];
    if (!target) throw new Error('not listed');
    const before = receiver.requests.length;
    const one = await run([
      'replay',
      target.messageKey.slice(0, 10),
      '--endpoint',
      'hook',
      '-c',
      'pophook.yaml',
    ]);
    expect(one.code).toBe(0);
    expect(receiver.requests.length).toBe(before + 1);
    expect(receiver.requests[before]?.headers['webhook-id']).toBe(target.eventId);
    expect(verified(before).data.messageKey).toBe(target.messageKey);

    const today = new Date().toISOString().slice(0, 10);
    const range = await run([
      'replay',
      '-m',
      'inbox',
      '--since',
      today,
      '--dry-run',
      '--json',
      '-c',
      'pophook.yaml',
    ]);
    const planned = JSON.parse(range.stdout.text) as { dryRun: boolean; jobs: { webhookId: string }[] };
    expect(planned.dryRun).toBe(true);
    expect(planned.jobs.map((j) => j.webhookId).sort()).toEqual(listed.map((m) => m.eventId).sort());

    for (const [args, message] of [
      [['replay'], 'Say what to replay'],
      [['replay', '--since', 'yesterday'], '--since yesterday is not a date'],
      [['replay', '-m', 'nope'], 'No mailbox "nope" in the config (mailboxes: inbox).'],
      [['replay', '--failed', '-e', 'nope'], 'No endpoint "nope" in the config (endpoints: hook).'],
      [['list', '-m', 'nope'], 'No mailbox "nope"'],
      [['poll', '-m', 'nope'], 'No mailbox "nope"'],
    ] as const) {
      const r = await run([...args, '-c', 'pophook.yaml']);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.text).toContain(message);
      expect(r.stderr.text.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.text).not.toMatch(STACK_LINE);
    }
  });

  it('a mailbox that fails makes poll exit 1 alone and 3 beside a good one', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => resolve(port));
      });
    });
    const base = await readFile(cfg, 'utf8');
    await writeFile(
      path.join(dir, 'two.yaml'),
      base.replace(
        'endpoints:',
        [
          '  - id: broken',
          '    host: 127.0.0.1',
          `    port: ${closed}`,
          '    tls: starttls',
          `    user: ${dovecot.user}`,
          '    auth: { type: password, password: { secret: pop } }',
          'endpoints:',
        ].join('\n'),
      ),
    );
    const both = await run(['poll', '-c', 'two.yaml']);
    expect(both.code).toBe(3);
    expect(both.stdout.text).toMatch(/^inbox: no new mail/m);
    expect(both.stdout.text).toMatch(/^broken: failed: .+/m);
    expect(both.stderr.text).toBe(''); // the failure is reported once, in the result line
    const alone = await run(['poll', '-c', 'two.yaml', '-m', 'broken']);
    expect(alone.code).toBe(1);
  });

  it('dev --config polls the real mailbox and delivers to the real endpoint until Ctrl-C (exit 0)', async () => {
    const controller = new AbortController();
    const stderr = capture();
    const before = receiver.requests.length;
    const done = main(['dev', '-c', 'pophook.yaml', '--interval', '0.2'], {
      stdout: capture(),
      stderr,
      env: {},
      cwd: dir,
      signal: controller.signal,
    });
    await dovecot.addMessages([makeMessage({ index: 9, subject: 'Seen by dev', size: 2000 })]);
    const deadline = Date.now() + 15_000;
    while (!/delivered msg_[0-9a-f]+ to hook \(HTTP 200/.test(stderr.text) && Date.now() < deadline)
      await sleep(20);
    controller.abort();
    expect(await done).toBe(0);
    expect(stderr.text).toMatch(
      /^\d\d:\d\d:\d\d inbox: 1 new \([\d.]+ KiB\) in .+, 1 deleted from the server$/m,
    );
    expect(stderr.text).toMatch(/delivered msg_[0-9a-f]+ to hook \(HTTP 200, \d+ ms\)/);
    expect(stderr.text).toContain('stopped');
    expect(verified(before).data.subject).toBe('Seen by dev');
  });

  it('poll --watch keeps polling until Ctrl-C and exits 0', async () => {
    const controller = new AbortController();
    const stdout = capture();
    const done = main(['poll', '--watch', '--json', '-c', 'pophook.yaml'], {
      stdout,
      stderr: capture(),
      env: {},
      cwd: dir,
      signal: controller.signal,
    });
    const deadline = Date.now() + 10_000;
    while (!stdout.text.includes('"type":"poll"') && Date.now() < deadline) await sleep(20);
    controller.abort();
    expect(await done).toBe(0);
    expect(JSON.parse(stdout.text.split('\n')[0] as string)).toMatchObject({ type: 'poll', outcome: 'ok' });
  });
});

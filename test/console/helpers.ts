/**
 * Console test helpers: a synthetic local data directory of N messages (events, raw mail, delivery
 * attempts) written straight to disk in the documented layouts of LocalArchive and LocalStateStore,
 * without their per-file fsync, so 5,000 messages take a second instead of a minute.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../shared/config/load.js';
import type { PophookConfig } from '../../shared/config/schema.js';
import { eventIdFor, messageKeyFor } from '../../shared/ingest/identity.js';
import type { EmailReceivedData, PophookEvent } from '../../shared/mail/event.js';
import type { DeliveryAttempt } from '../../shared/state/store.js';
import { eventKey, rawKey } from '../../shared/storage/archive.js';

export function syntheticConfig(dataDir: string, mailboxes = ['inbox', 'sales']): PophookConfig {
  return parseConfig({
    version: 1,
    mailboxes: mailboxes.map((id) => ({
      id,
      host: '127.0.0.1',
      port: 9,
      tls: 'none',
      allowInsecureAuth: true,
      user: id,
      auth: { type: 'password', password: { secret: 'pop' } },
    })),
    endpoints: [
      {
        id: 'hooks',
        url: 'http://127.0.0.1:9/hook?token=abc',
        secrets: [{ secret: 'hook' }],
        allowHttp: true,
        allowPrivateNetwork: true,
      },
    ],
    local: { dataDir },
  });
}

export interface SyntheticMessage {
  messageKey: string;
  mailboxId: string;
  subject: string;
  receivedAt: string;
  outcome: DeliveryAttempt['outcome'] | undefined;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * Writes `count` messages (numbered from `start`) spread over `mailboxes` and 30 days before `now`. Every 7th has an
 * attachment; attempts cycle delivered / retry / failed / none / none; raw mail for every 10th (all with
 * `withRaw`).
 */
export async function fillDataDir(
  dataDir: string,
  count: number,
  options: { mailboxes?: string[]; now?: number; start?: number; withRaw?: boolean } = {},
): Promise<SyntheticMessage[]> {
  const mailboxes = options.mailboxes ?? ['inbox', 'sales'];
  const now = options.now ?? Date.now();
  const out: SyntheticMessage[] = [];
  const dirs = new Set<string>();
  // Synchronous writes: for thousands of tiny files they beat the thread pool's round trips.
  const ensure = (dir: string) => {
    if (dirs.has(dir)) return;
    mkdirSync(dir, { recursive: true });
    dirs.add(dir);
  };
  const outcomes: (DeliveryAttempt['outcome'] | undefined)[] = [
    'delivered',
    'retry',
    'failed',
    undefined,
    undefined,
  ];
  const write = (i: number) => {
    const mailboxId = mailboxes[i % mailboxes.length] as string;
    const messageKey = messageKeyFor(mailboxId, `uidl-${i}`, 0);
    const received = new Date(now - ((i * 517) % (30 * 86_400)) * 1000);
    const raw = rawKey(mailboxId, messageKey, received);
    const subject = `Order ${i} ${i % 10 === 0 ? 'invoice' : 'update'}`;
    const data: EmailReceivedData = {
      version: 1,
      eventId: eventIdFor(messageKey),
      messageKey,
      mailboxId,
      uidl: `uidl-${i}`,
      receivedAt: received.toISOString(),
      date: received.toISOString(),
      messageId: `<m${i}@example.test>`,
      inReplyTo: null,
      references: [],
      subject,
      from: [{ address: `customer${i % 50}@example.test`, name: `Customer ${i % 50}` }],
      to: [{ address: `${mailboxId}@shop.example`, name: '' }],
      cc: [],
      bcc: [],
      replyTo: [],
      text: `Hello, this is message ${i}. Tracking number TRK${100000 + i}.`,
      textTruncated: false,
      html: null,
      htmlTruncated: false,
      headers: [{ name: 'subject', value: subject }],
      attachments:
        i % 7 === 0
          ? [
              {
                index: 0,
                filename: `invoice-${i}.pdf`,
                contentType: 'application/pdf',
                size: 1234,
                sha256: sha256(String(i)),
                contentId: null,
                disposition: 'attachment',
                key: `attachments/${mailboxId}/${messageKey}/0-invoice-${i}.pdf`,
              },
            ]
          : [],
      raw: { key: raw, size: 2000 + i, sha256: sha256(`raw${i}`) },
      authResults: null,
      spam: null,
      charsetWarnings: [],
      parseError: null,
    };
    const event: PophookEvent = { type: 'email.received', data };
    const archiveDir = join(dataDir, 'archive');
    const eventPath = join(archiveDir, ...eventKey(raw).split('/'));
    ensure(join(eventPath, '..'));
    writeFileSync(eventPath, JSON.stringify(event));
    // Raw mail only for some: file creation dominates this fixture's cost on a busy disk, and the index
    // never reads raw mail (listing skips it).
    if (i % 10 === 0 || options.withRaw)
      writeFileSync(join(archiveDir, ...raw.split('/')), `Subject: ${subject}\r\n\r\nbody ${i}\r\n`);
    const outcome = outcomes[i % outcomes.length];
    if (outcome) {
      const at = new Date(received.getTime() + 1000);
      const attempt: DeliveryAttempt = {
        messageKey,
        endpointId: 'hooks',
        webhookId: data.eventId,
        attempt: 1,
        at: at.toISOString(),
        outcome,
        latencyMs: 40 + (i % 100),
        ...(outcome === 'delivered'
          ? { status: 200 }
          : { status: 503, errorCode: 'HTTP_503', response: 'busy' }),
        ...(outcome === 'retry' ? { nextAttemptAt: new Date(now + 60_000).toISOString() } : {}),
      };
      const dir = join(dataDir, 'state', 'deliveries', sha256(messageKey));
      ensure(dir);
      writeFileSync(join(dir, `hooks.${at.getTime()}.1.json`), JSON.stringify(attempt));
    }
    out[i] = { messageKey, mailboxId, subject, receivedAt: data.receivedAt, outcome };
  };
  const start = options.start ?? 0;
  for (let i = start; i < start + count; i++) {
    write(i);
    // Let timers and sockets breathe now and then (other tests share the process's event loop).
    if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve));
  }
  return out.filter(Boolean);
}

/** Hostile strings every page must show as text, never run. */
export const HOSTILE = {
  subject: '<script>window.__pwned="subject"</script>Invoice <b>now</b>',
  fromName: '"><img src=x onerror="window.__pwned=\'from\'">',
  attachmentName: '<img src=x onerror=alert(1)>.pdf',
  header: '<svg onload=alert(2)>',
};

/**
 * Archives one hostile `email.received` event (with its raw bytes and one attachment) through the
 * real Archive port, as the poller would. Returns its message key.
 */
export async function putHostileEvent(
  archive: { put(key: string, body: Buffer | string): Promise<unknown> },
  options: { mailboxId?: string; html: string; now?: number; remoteUrl?: string },
): Promise<{ messageKey: string; attachment: Buffer; raw: string }> {
  const mailboxId = options.mailboxId ?? 'inbox';
  const messageKey = messageKeyFor(mailboxId, 'hostile-uidl', 0);
  const received = new Date(options.now ?? Date.now());
  const raw = rawKey(mailboxId, messageKey, received);
  const attachment = Buffer.from('%PDF-1.4 not really a pdf\n');
  const attachmentKey = `attachments/${mailboxId}/${messageKey}/0-_img src=x onerror=alert(1)_.pdf`;
  const rawText = `Subject: hostile\r\n\r\n${options.html}\r\n`;
  const data: EmailReceivedData = {
    version: 1,
    eventId: eventIdFor(messageKey),
    messageKey,
    mailboxId,
    uidl: 'hostile-uidl',
    receivedAt: received.toISOString(),
    date: null,
    messageId: '<hostile@evil.test>',
    inReplyTo: null,
    references: [],
    subject: HOSTILE.subject,
    from: [{ address: 'attacker@evil.test', name: HOSTILE.fromName }],
    to: [{ address: 'victim@example.test', name: '' }],
    cc: [],
    bcc: [],
    replyTo: [],
    text: 'plain <script>alert(3)</script> text',
    textTruncated: false,
    html: options.html,
    htmlTruncated: false,
    headers: [
      { name: 'subject', value: HOSTILE.subject },
      { name: 'x-evil', value: HOSTILE.header },
    ],
    attachments: [
      {
        index: 0,
        filename: HOSTILE.attachmentName,
        contentType: 'text/html',
        size: attachment.length,
        sha256: sha256(attachment.toString()),
        contentId: null,
        disposition: 'attachment',
        key: attachmentKey,
      },
    ],
    raw: { key: raw, size: Buffer.byteLength(rawText), sha256: sha256(rawText) },
    authResults: { spf: 'fail', dkim: 'none', dmarc: 'fail', authservId: '<b>mx</b>' },
    spam: { flagged: true, score: 9.5, headers: { 'x-spam-flag': 'YES' } },
    charsetWarnings: [],
    parseError: null,
  };
  await archive.put(raw, rawText);
  await archive.put(attachmentKey, attachment);
  await archive.put(eventKey(raw), JSON.stringify({ type: 'email.received', data } satisfies PophookEvent));
  return { messageKey, attachment, raw: rawText };
}

import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkWebhookSecret,
  formatDelivery,
  generateWebhookSecret,
  type ReceivedDelivery,
  startWebhookReceiver,
  summarizeDelivery,
  type WebhookReceiver,
} from '../../../shared/demo/receiver.js';

const receivers: WebhookReceiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

async function start(secrets: string[]) {
  const deliveries: ReceivedDelivery[] = [];
  const receiver = await startWebhookReceiver({ secrets, onDelivery: (d) => deliveries.push(d) });
  receivers.push(receiver);
  return { receiver, deliveries };
}

const event = {
  type: 'email.received',
  timestamp: '2025-03-05T14:02:11.000Z',
  data: {
    mailboxId: 'support',
    subject: 'Invoice INV-2041',
    from: [{ name: 'Billing', address: 'billing@example.net' }],
    attachments: [
      {
        index: 0,
        filename: 'INV-2041.pdf',
        contentType: 'application/pdf',
        size: 661,
        disposition: 'attachment',
      },
    ],
    raw: { key: 'raw/support/x.eml', url: 'https://bucket.example/raw/x.eml?sig=1' },
    text: 'see https://not-a-link-we-list.example/',
  },
};

function signed(secret: string, body: string, id = 'msg_2d1f', at = new Date()) {
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(id, at, body),
  };
}

describe('webhook receiver', () => {
  it('answers 200 to a correctly signed delivery and reports it verified', async () => {
    const secret = generateWebhookSecret();
    const { receiver, deliveries } = await start([secret]);
    const body = JSON.stringify(event);
    const res = await fetch(receiver.url, { method: 'POST', headers: signed(secret, body), body });
    expect(res.status).toBe(200);
    expect(deliveries).toHaveLength(1);
    const [d] = deliveries;
    expect(d?.verified).toBe(true);
    expect(d?.webhookId).toBe('msg_2d1f');
    const summary = summarizeDelivery(d as ReceivedDelivery);
    expect(summary).toMatchObject({
      type: 'email.received',
      mailbox: 'support',
      from: 'Billing <billing@example.net>',
      subject: 'Invoice INV-2041',
      attachments: ['INV-2041.pdf (application/pdf, 661 B)'],
      links: ['data.raw.url: https://bucket.example/raw/x.eml?sig=1'],
    });
    const text = formatDelivery(d as ReceivedDelivery);
    expect(text).toContain('verified: yes');
    expect(text).toContain('msg_2d1f');
  });

  it('answers 401 to a tampered body, a wrong secret or a stale timestamp', async () => {
    const secret = generateWebhookSecret();
    const { receiver, deliveries } = await start([secret]);
    const body = JSON.stringify(event);
    const tampered = body.replace('INV-2041', 'INV-9999');
    const post = (headers: Record<string, string>, b = body) =>
      fetch(receiver.url, { method: 'POST', headers, body: b });

    expect((await post(signed(secret, body), tampered)).status).toBe(401);
    expect((await post(signed(generateWebhookSecret(), body))).status).toBe(401);
    expect((await post(signed(secret, body, 'msg_old', new Date(Date.now() - 3600_000)))).status).toBe(401);
    expect((await post({ 'content-type': 'application/json' })).status).toBe(401);
    expect(deliveries.map((d) => d.verified)).toEqual([false, false, false, false]);
    expect(formatDelivery(deliveries[0] as ReceivedDelivery)).toContain('verified: NO');
  });

  it('accepts any of several secrets (rotation) and flags a repeated webhook-id', async () => {
    const oldSecret = generateWebhookSecret();
    const newSecret = generateWebhookSecret();
    const { receiver, deliveries } = await start([oldSecret, newSecret]);
    const body = JSON.stringify(event);
    expect(
      (await fetch(receiver.url, { method: 'POST', headers: signed(newSecret, body), body })).status,
    ).toBe(200);
    expect(
      (await fetch(receiver.url, { method: 'POST', headers: signed(oldSecret, body), body })).status,
    ).toBe(200);
    expect(deliveries.map((d) => d.repeat)).toEqual([false, true]);
  });

  it('strips terminal escapes from what it prints', () => {
    const text = formatDelivery({
      receivedAt: new Date(),
      webhookId: 'msg_1',
      timestamp: '1',
      verified: true,
      repeat: false,
      bytes: 10,
      body: { type: 'email.received', data: { subject: 'hi \u001b[2J\u001b]0;pwned\u0007 there' } },
    });
    expect(text).not.toContain('\u001b');
    expect(text).toContain('hi');
  });

  it('answers GET with a hint, other methods with 405, and refuses oversized bodies', async () => {
    const { receiver } = await start([generateWebhookSecret()]);
    expect(await (await fetch(receiver.url)).text()).toContain('POST');
    expect((await fetch(receiver.url, { method: 'PUT', body: 'x' })).status).toBe(405);
    const big = Buffer.alloc(9 * 1024 * 1024, 0x20);
    expect((await fetch(receiver.url, { method: 'POST', body: big })).status).toBe(413);
  });

  it('checks secrets before starting', async () => {
    expect(checkWebhookSecret(generateWebhookSecret())).toBeUndefined();
    expect(checkWebhookSecret('hunter2')).toMatch(/whsec_/);
    await expect(startWebhookReceiver({ secrets: ['nope'] })).rejects.toThrow(/not usable/);
  });
});

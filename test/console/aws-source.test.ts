/**
 * The console over a deployed stack's storage (S3 bucket + DynamoDB table), against the emulators
 * (s3rver, dynalite): the same pages, read-only without a queue URL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConsoleSource } from '../../shared/console/data.js';
import { type ConsoleHandle, startConsole } from '../../shared/console/server.js';
import { awsConsoleSource } from '../../shared/console/source.js';
import { createMemoryLogger } from '../../shared/log.js';
import { createStateTable } from '../../shared/state/dynamo-state.js';
import { type DynaliteFixture, startDynalite } from '../fixtures/dynalite.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';
import { HOSTILE, putHostileEvent, syntheticConfig } from './helpers.js';

describe('console over S3 and DynamoDB (emulated)', () => {
  let s3: S3rverFixture;
  let dynamo: DynaliteFixture;
  let source: ConsoleSource;
  let handle: ConsoleHandle;
  let cookie: string;
  let messageKey: string;
  let attachment: Buffer;

  beforeAll(async () => {
    [s3, dynamo] = await Promise.all([startS3rver(), startDynalite()]);
    await createStateTable(dynamo.client, 'pophook-state');
    source = awsConsoleSource({
      config: syntheticConfig('/nonexistent'),
      bucket: s3.bucket,
      table: 'pophook-state',
      region: 'us-east-1',
      endpoints: { s3: s3.endpoint, dynamodb: dynamo.endpoint },
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    const put = await putHostileEvent(source.archive, { html: '<p>Hello from S3</p>' });
    messageKey = put.messageKey;
    attachment = put.attachment;
    await source.state.recordAttempt({
      messageKey,
      endpointId: 'hooks',
      webhookId: `msg_${messageKey}`,
      attempt: 1,
      at: new Date().toISOString(),
      outcome: 'delivered',
      status: 200,
      latencyMs: 31,
    });
    await source.state.recordPoll({
      mailboxId: 'inbox',
      startedAt: new Date(Date.now() - 1200).toISOString(),
      finishedAt: new Date().toISOString(),
      outcome: 'ok',
      fetched: 1,
      bytes: 900,
      deleted: 1,
      remainingOnServer: 0,
    });
    handle = await startConsole({ source, logger: createMemoryLogger('warn') });
    const login = await fetch(handle.loginUrl, { redirect: 'manual' });
    cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
  }, 60_000);
  afterAll(async () => {
    await handle?.close();
    await Promise.all([s3?.stop(), dynamo?.close()]);
  });

  const get = (path: string) => fetch(new URL(path, handle.url), { headers: { cookie } });

  it('lists archived messages with their delivery status, read-only without a queue', async () => {
    const page = await get('/messages');
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(`data-key="${messageKey}"`);
    expect(html).toContain('badge delivered');
    expect(html).toContain(`AWS: s3://${s3.bucket} + DynamoDB pophook-state`);
    const message = await (await get(`/messages/${messageKey}?tab=text`)).text();
    expect(message).toContain('Replay needs the delivery queue');
    expect(message).not.toContain('data-action="replay"');
    expect(message).toContain('&lt;img src=x onerror=alert(1)&gt;.pdf');
    expect(HOSTILE.attachmentName).toContain('<img');
  });

  it('streams attachments and raw mail from the bucket, and mail HTML into the sandbox', async () => {
    const a = await get(`/messages/${messageKey}/attachments/0`);
    expect(Buffer.from(await a.arrayBuffer()).equals(attachment)).toBe(true);
    const raw = await (await get(`/messages/${messageKey}/raw`)).text();
    expect(raw).toContain('Hello from S3');
    const body = await (await get(`/messages/${messageKey}/body.html`)).text();
    expect(body).toContain('<p>Hello from S3</p>');
  });

  it('shows the last poll from the table and endpoint health from the attempts', async () => {
    const mailboxes = await (await get('/mailboxes')).text();
    expect(mailboxes).toMatch(/data-mailbox="inbox"[\s\S]*badge ok/);
    const endpoints = await (await get('/endpoints')).text();
    expect(endpoints).toContain('>100%<');
  });
});

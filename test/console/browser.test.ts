/**
 * The console end to end in a real headless Chromium, over an archive filled by a REAL poll of a real
 * Dovecot (createLocalRuntime + pollLocal), delivering to a real local receiver. Also saves the
 * screenshot of the message list the README shows (docs/console.png).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Locator, type Page } from 'playwright-core';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config/load.js';
import { type ConsoleHandle, startConsole } from '../../shared/console/server.js';
import { localConsoleSource } from '../../shared/console/source.js';
import { createJsonLogger, createMemoryLogger } from '../../shared/log.js';
import { createLocalRuntime, deliverDue, pollLocal } from '../../shared/runtime/local.js';
import { type Dovecot, dovecotAvailable, requireDovecot, startDovecot } from '../fixtures/dovecot.js';
import { type Receiver, startReceiver } from '../fixtures/receiver.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SCREENSHOT = fileURLToPath(new URL('../../docs/console.png', import.meta.url));

/** Under CI=true a missing Chromium fails the suite with the fix; elsewhere the suite is skipped. */
function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  const msg = `Chromium not found at ${CHROMIUM}; install it: apt-get install -y chromium`;
  if (process.env.CI === 'true') throw new Error(`${msg} (CI=true: console browser tests cannot be skipped)`);
  console.warn(`[pophook tests] ${msg}. Skipping console browser tests.`);
  return false;
}

requireDovecot();
const runnable = chromiumAvailable() && dovecotAvailable();

const CRLF = '\r\n';
const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
/** A 1x1 PNG, for the inline (cid:) image. */
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);
const PDF = Buffer.from('%PDF-1.4\n% pophook test attachment\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n');

interface Part {
  filename: string;
  contentType: string;
  content: Buffer;
  contentId?: string;
}

/** A small MIME message: text, optional HTML (multipart/alternative), attachments, inline parts. */
function mime(o: {
  n: number;
  from: string;
  subject: string;
  text: string;
  html?: string;
  attachments?: Part[];
  inline?: Part[];
  headers?: string[];
}): Buffer {
  const b64 = (buf: Buffer) => buf.toString('base64').replace(/.{76}/g, `$&${CRLF}`);
  const part = (p: Part, disposition: 'attachment' | 'inline') =>
    [
      `Content-Type: ${p.contentType}; name="${p.filename}"`,
      'Content-Transfer-Encoding: base64',
      `Content-Disposition: ${disposition}; filename="${p.filename}"`,
      ...(p.contentId ? [`Content-ID: <${p.contentId}>`] : []),
      '',
      b64(p.content),
    ].join(CRLF);
  const textPart = [
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    o.text,
  ].join(CRLF);
  let body = textPart;
  if (o.html) {
    let htmlPart = [
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
      '',
      o.html,
    ].join(CRLF);
    if (o.inline?.length)
      htmlPart = [
        'Content-Type: multipart/related; boundary="rel"',
        '',
        '--rel',
        htmlPart,
        ...o.inline.map((p) => `--rel${CRLF}${part(p, 'inline')}`),
        '--rel--',
      ].join(CRLF);
    body = [
      'Content-Type: multipart/alternative; boundary="alt"',
      '',
      '--alt',
      textPart,
      '--alt',
      htmlPart,
      '--alt--',
    ].join(CRLF);
  }
  if (o.attachments?.length)
    body = [
      'Content-Type: multipart/mixed; boundary="mix"',
      '',
      '--mix',
      body,
      ...o.attachments.map((a) => `--mix${CRLF}${part(a, 'attachment')}`),
      '--mix--',
    ].join(CRLF);
  const headers = [
    `From: ${o.from}`,
    'To: Support <support@acme.example>',
    `Subject: =?UTF-8?B?${Buffer.from(o.subject).toString('base64')}?=`,
    `Date: ${new Date(Date.UTC(2026, 2, 2, 9, o.n * 7)).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <console-${o.n}@acme.example>`,
    'MIME-Version: 1.0',
    ...(o.headers ?? []),
  ];
  return Buffer.from(`${headers.join(CRLF)}${CRLF}${body}${CRLF}`);
}

const NICE = [
  mime({
    n: 1,
    from: 'Alice Martin <alice@northwind.example>',
    subject: 'Quarterly report Q3',
    text: 'Hi team,\r\n\r\nThe Q3 report is attached. Revenue is up 12%.\r\n\r\nAlice',
    attachments: [{ filename: 'report.pdf', contentType: 'application/pdf', content: PDF }],
    headers: [
      'Authentication-Results: mx.acme.example; spf=pass smtp.mailfrom=northwind.example; dkim=pass header.d=northwind.example; dmarc=pass',
    ],
  }),
  mime({
    n: 2,
    from: 'Acme News <news@acme-news.example>',
    subject: 'Welcome to the Acme newsletter',
    text: 'Welcome! This is the plain text version.',
    html: '<h1 style="color:#2f5bea">Hello from HTML</h1><p><img src="cid:logo@acme" alt="logo" width="16"> Thanks for joining.</p>',
    inline: [{ filename: 'logo.png', contentType: 'image/png', content: PNG, contentId: 'logo@acme' }],
  }),
  mime({
    n: 3,
    from: 'Billing <billing@supplier.example>',
    subject: 'Invoice INV-2026-0042',
    text: 'Please find invoice INV-2026-0042 attached. Due in 30 days.',
    attachments: [{ filename: 'INV-2026-0042.pdf', contentType: 'application/pdf', content: PDF }],
  }),
  mime({
    n: 4,
    from: 'Bob Stone <bob@acme.example>',
    subject: 'Re: Lunch on Friday?',
    text: 'Friday at noon works for me.',
  }),
  mime({
    n: 5,
    from: 'Shop <orders@shop.example>',
    subject: 'Your order has shipped',
    text: 'Order 1138 shipped. Tracking: TRK-55-1138.',
    html: '<p>Order <b>1138</b> shipped.</p><p>Tracking: TRK-55-1138</p>',
    headers: ['X-Spam-Flag: NO', 'X-Spam-Status: No, score=0.4'],
  }),
];

const HOSTILE_ATTACHMENT = '<img src=x onerror=alert(1)>.pdf';

function hostileMessage(hit: string): Buffer {
  const html = [
    '<html><head>',
    `<meta http-equiv="refresh" content="0;url=${hit}/refresh">`,
    `<base href="${hit}/base/">`,
    `<link rel="stylesheet" href="${hit}/link.css">`,
    `<style>@import url("${hit}/import.css"); body { background: url('${hit}/css-bg.png'); }`,
    `@font-face { font-family: x; src: url(${hit}/font.woff); } .f { font-family: x; }</style>`,
    "<script>window.__pwned = 'script'; try { parent.__pwned = 'script'; } catch (e) {} alert('script');</script>",
    `</head><body onload="window.__pwned='onload'; alert('onload')">`,
    '<p class="f">Hostile body text</p>',
    `<img src="${hit}/remote.png" alt="tracker">`,
    `<img src="x" onerror="window.__pwned='onerror'; alert('onerror')">`,
    `<div style="background-image:url(${hit}/inline-style.png)">styled</div>`,
    `<a id="jslink" href="javascript:window.__pwned='jslink';alert('jslink')">click me</a>`,
    `<form action="${hit}/form"><input name="q" value="1"><button id="send">Send</button></form>`,
    `<iframe src="${hit}/frame"></iframe><object data="${hit}/object"></object>`,
    `<svg><image href="${hit}/svg.png"/></svg><video poster="${hit}/poster.png"></video>`,
    `<table background="${hit}/table-bg.png"><tr><td>cell</td></tr></table>`,
    '</body></html>',
  ].join(CRLF);
  return mime({
    n: 6,
    from: `"<img src=x onerror=alert('from')>" <attacker@evil.example>`,
    subject: `<script>alert('subject')</script>Account alert`,
    text: 'Hostile plain text.',
    html,
    attachments: [{ filename: HOSTILE_ATTACHMENT, contentType: 'application/pdf', content: PDF }],
  });
}

interface Recorder {
  url: string;
  hits: string[];
  server: Server;
}

/** An HTTP server that records every request: the remote host mail content must never reach. */
async function startRecorder(page?: (req: IncomingMessage) => string): Promise<Recorder> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    const body = page?.(req) ?? '';
    res.writeHead(200, { 'content-type': page ? 'text/html' : 'image/png' });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits, server };
}

/** Playwright-style waiting assertions on locators, with vitest's expect.poll. */
const WAIT = { timeout: 10_000 };
const count = (l: Locator) => expect.poll(() => l.count(), WAIT);
const text = (l: Locator) => expect.poll(async () => (await l.first().textContent())?.trim() ?? '', WAIT);
const attr = (l: Locator, name: string) => expect.poll(() => l.first().getAttribute(name), WAIT);

const closeServer = (s: Server | undefined) =>
  s ? new Promise<void>((resolve) => s.close(() => resolve())) : Promise.resolve();

describe.runIf(runnable)('pophook console in a real browser', () => {
  let dovecot: Dovecot;
  let receiver: Receiver;
  let billing: Receiver;
  let remote: Recorder;
  let attacker: Recorder;
  let dataDir: string;
  let runtime: Awaited<ReturnType<typeof createLocalRuntime>>;
  let consoleHandle: ConsoleHandle;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const dialogs: string[] = [];
  const browserRequests: string[] = [];

  beforeAll(async () => {
    [dovecot, receiver, billing, remote] = await Promise.all([
      startDovecot({ messages: NICE }),
      startReceiver(),
      startReceiver({ behaviour: { kind: 'status', status: 503, body: 'maintenance' } }),
      startRecorder(),
    ]);
    dataDir = await mkdtemp(join(tmpdir(), 'pophook-console-e2e-'));
    const config = parseConfig({
      version: 1,
      mailboxes: [
        {
          id: 'support',
          host: dovecot.host,
          port: dovecot.port,
          tls: 'none',
          allowInsecureAuth: true,
          user: dovecot.user,
          auth: { type: 'password', password: { secret: 'pop' }, mechanism: 'user' },
        },
      ],
      endpoints: [
        {
          id: 'crm',
          url: receiver.url,
          secrets: [{ secret: 'hook' }],
          allowHttp: true,
          allowPrivateNetwork: true,
        },
        {
          id: 'billing',
          url: billing.url,
          secrets: [{ secret: 'hook' }],
          allowHttp: true,
          allowPrivateNetwork: true,
          match: { subject: '*Invoice*' },
        },
      ],
      local: { dataDir },
    });
    runtime = await createLocalRuntime(config, {
      env: { POPHOOK_SECRET_POP: dovecot.password, POPHOOK_SECRET_HOOK: SECRET },
      logger: process.env.DEBUG_CONSOLE ? createJsonLogger() : createMemoryLogger('warn'),
    });
    const [polled] = await pollLocal(runtime, undefined);
    expect(polled).toMatchObject({ outcome: 'ok', fetched: NICE.length });
    await deliverDue(runtime);
    expect(receiver.requests).toHaveLength(NICE.length);
    consoleHandle = await startConsole({
      source: localConsoleSource(runtime),
      logger: createMemoryLogger('warn'),
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1280, height: 760 }, acceptDownloads: true });
    context.on('request', (r) => browserRequests.push(r.url()));
    page = await context.newPage();
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss().catch(() => {});
    });
  }, 60_000);

  afterAll(async () => {
    await context?.close().catch(() => {});
    await browser?.close().catch(() => {});
    await consoleHandle?.close();
    await runtime?.close();
    await Promise.all([
      dovecot?.stop(),
      receiver?.close(),
      billing?.close(),
      closeServer(remote?.server),
      closeServer(attacker?.server),
    ]);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const rows = () => page.locator('table.messages tbody tr');

  it('refuses the console without the token, then logs in once and drops the token from the URL', async () => {
    const refused = await page.goto(consoleHandle.url);
    expect(refused?.status()).toBe(401);
    await text(page.locator('body')).toContain('access link');
    await page.goto(consoleHandle.loginUrl);
    await page.waitForURL(/\/messages$/);
    expect(page.url()).not.toContain('token');
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(cookie?.value).not.toBe(consoleHandle.token);
    // Our own script runs under our CSP (it marks the page).
    await attr(page.locator('body'), 'data-console-js').toBe('ready');
  });

  it('lists the polled messages, searches and filters them, and saves the screenshot', async () => {
    await count(rows()).toBe(NICE.length);
    await text(page.locator('table.messages')).toContain('Quarterly report Q3');
    await text(page.locator('table.messages')).toContain('Alice Martin');
    // The invoice went to a failing endpoint too: it is retrying.
    await count(page.locator('tr', { hasText: 'Invoice INV-2026-0042' }).locator('.badge.retrying')).toBe(1);
    await mkdir(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    expect((await readFile(SCREENSHOT)).subarray(1, 4).toString()).toBe('PNG');

    await page.fill('input[name=q]', 'quarterly');
    await page.click('form.filters button[type=submit]');
    await count(rows()).toBe(1);
    await text(rows().first()).toContain('Quarterly report Q3');
    await page.goto(`${consoleHandle.url}messages?attachments=yes`);
    await count(rows()).toBe(2);
    await page.goto(`${consoleHandle.url}messages?q=TRK-55-1138`);
    await count(rows()).toBe(1);
    await page.goto(`${consoleHandle.url}messages?status=retrying`);
    await count(rows()).toBe(1);
  });

  it('shows a message: text, HTML with its inline image, attachments, auth results', async () => {
    await page.goto(`${consoleHandle.url}messages?q=newsletter`);
    await page.click('td.subject a');
    await text(page.locator('h1')).toBe('Welcome to the Acme newsletter');
    const frame = page.frameLocator('iframe.mail');
    await text(frame.locator('h1')).toBe('Hello from HTML');
    const logo = frame.locator('img[alt=logo]');
    await attr(logo, 'src').toMatch(/^data:image\/png;base64,/);
    expect(await logo.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)).toBe(1);
    await page.click('a[data-tab=text]');
    await text(page.locator('pre[data-part=text]')).toContain('plain text version');

    await page.goto(`${consoleHandle.url}messages?q=quarterly`);
    await page.click('td.subject a');
    await text(page.locator('pre[data-part=text]')).toContain('Revenue is up 12%');
    await text(page.locator('[data-auth=spf]')).toBe('SPF pass');
    await text(page.locator('[data-auth=dmarc]')).toBe('DMARC pass');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('a[data-attachment="0"]'),
    ]);
    expect(download.suggestedFilename()).toBe('report.pdf');
    expect((await readFile(await download.path())).equals(PDF)).toBe(true);
    const [raw] = await Promise.all([page.waitForEvent('download'), page.click('a[data-download=raw]')]);
    expect(raw.suggestedFilename()).toMatch(/^[0-9a-f]{32}\.eml$/);
    expect((await readFile(await raw.path())).equals(NICE[0] as Buffer)).toBe(true);
    await page.click('a[data-tab=event]');
    await text(page.locator('pre[data-part=event]')).toContain('"type": "email.received"');
  });

  it('replays one message with its original webhook-id, signed, and shows the result', async () => {
    const before = receiver.requests.length;
    const original = receiver.requests.find((r) => r.body.toString().includes('Quarterly report Q3'));
    expect(original).toBeDefined();
    await page.click('button[data-action=replay]:not([data-endpoint])');
    await page.waitForURL(/notice=/);
    await text(page.locator('.notice')).toContain('Delivered 1');
    expect(receiver.requests).toHaveLength(before + 1);
    const replayed = receiver.requests.at(-1);
    if (!replayed || !original) throw new Error('no request');
    expect(replayed.headers['webhook-id']).toBe(original.headers['webhook-id']);
    const verified = new Webhook(SECRET).verify(replayed.body.toString(), {
      'webhook-id': String(replayed.headers['webhook-id']),
      'webhook-timestamp': String(replayed.headers['webhook-timestamp']),
      'webhook-signature': String(replayed.headers['webhook-signature']),
    }) as { data: { subject: string } };
    expect(verified.data.subject).toBe('Quarterly report Q3');
    // The attempt shows up on the message page, newest last.
    await count(page.locator('table.attempts tbody tr')).toBe(2);
    expect(page.url()).not.toContain('token');
  });

  it('replays the filtered list and shows attempts per endpoint with the next retry', async () => {
    const before = receiver.requests.length;
    await page.goto(`${consoleHandle.url}messages?attachments=yes`);
    await page.click('button[data-action=replay-filtered]');
    await page.waitForURL(/notice=/);
    await text(page.locator('.notice')).toContain('Replayed 2 messages: 3 jobs');
    expect(receiver.requests).toHaveLength(before + 2);

    await page.goto(`${consoleHandle.url}deliveries?endpoint=billing`);
    await text(page.locator('table.attempts tbody tr').first()).toContain('HTTP_503');
    await text(page.locator('table.attempts tbody tr').first()).toContain('maintenance');
    await page.goto(`${consoleHandle.url}endpoints`);
    await text(page.locator('[data-endpoint=crm] [data-rate]')).toBe('100%');
    await text(page.locator('[data-endpoint=billing] [data-rate]')).toBe('0%');
    await text(page.locator('[data-endpoint=billing]')).toContain('Waiting to retry');
    await page.goto(`${consoleHandle.url}mailboxes`);
    await text(page.locator('tr[data-mailbox=support]')).toContain('ok');
    await text(page.locator('tr[data-mailbox=support] [data-today]')).toBe(String(NICE.length));
  });

  it('renders a hostile message inert: no script, no handler, no remote request, page still usable', async () => {
    remote.hits.length = 0;
    await dovecot.addMessages([hostileMessage(remote.url)]);
    const [polled] = await pollLocal(runtime, undefined);
    expect(polled?.fetched).toBe(1);
    await page.goto(`${consoleHandle.url}messages?refresh=1`);
    await count(rows()).toBe(NICE.length + 1);
    // The subject and sender are text, not markup.
    await text(page.locator('table.messages')).toContain("<script>alert('subject')</script>Account alert");
    await page.click('tr:has-text("Account alert") td.subject a');
    await text(page.locator('h1')).toBe("<script>alert('subject')</script>Account alert");
    await text(page.locator('a[data-attachment="0"]')).toBe(HOSTILE_ATTACHMENT);
    expect(await page.locator('img[src=x]').count()).toBe(0);

    const frameElement = page.locator('iframe.mail');
    const sandbox = await frameElement.getAttribute('sandbox');
    expect(sandbox).not.toMatch(/allow-scripts|allow-same-origin|allow-forms|allow-top-navigation/);
    const frame = page.frameLocator('iframe.mail');
    await text(frame.locator('p.f')).toBe('Hostile body text');
    await page.locator('[data-remote-blocked]').waitFor({ state: 'visible' });
    // Try the javascript: link and the form inside the mail, as a curious user would.
    await frame.locator('#jslink').click();
    expect(await frame.locator('form, input, button, script, iframe, object, svg, video').count()).toBe(0);
    // Give any refresh, handler or lazy load time to fire.
    await page.waitForTimeout(1500);
    expect(await page.evaluate('window.__pwned')).toBeUndefined();
    expect(dialogs).toEqual([]);

    // "Load remote content" allows https only: this plain-http tracker still gets nothing.
    await page.click('a[data-action=load-remote]');
    await text(frame.locator('p.f')).toBe('Hostile body text');
    await page.waitForTimeout(1000);
    expect(remote.hits).toEqual([]);
    expect(browserRequests.filter((u) => u.startsWith(remote.url))).toEqual([]);
    expect(dialogs).toEqual([]);

    // Still usable: the navigation works and the page is ours.
    await page.click('header.top nav a:has-text("Messages")');
    await count(rows()).toBe(NICE.length + 1);
    expect(await page.evaluate('window.__pwned')).toBeUndefined();
    await attr(page.locator('body'), 'data-console-js').toBe('ready');
  });

  it('refuses a cross-site POST (another origin on the same host, no CSRF token)', async () => {
    const key = await rows().first().getAttribute('data-key');
    const before = receiver.requests.length;
    // All jobs, not only `ready`: billing's retry (503 above) may come due meanwhile.
    const jobs = async () => {
      const d = await runtime.queue.depth();
      return d.ready + d.delayed + d.inflight;
    };
    const queued = await jobs();
    const target = `${consoleHandle.url}replay`;
    attacker = await startRecorder(
      () =>
        `<!doctype html><form id=f method=post action="${target}"><input name=scope value=keys><input name=key value="${key}"></form><script>document.getElementById('f').submit()</script>`,
    );
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url() === target),
      page.goto(`${attacker.url}/`),
    ]);
    expect(response.status()).toBe(403);
    await text(page.locator('body')).toContain('Refused');
    expect(await jobs()).toBe(queued);
    expect(receiver.requests).toHaveLength(before);
  });
});

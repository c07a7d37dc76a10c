import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConsoleHandle, safeFilename, startConsole } from '../../shared/console/server.js';
import { localConsoleSource } from '../../shared/console/source.js';
import { createMemoryLogger } from '../../shared/log.js';
import { createLocalRuntime, type LocalRuntime } from '../../shared/runtime/local.js';
import { fillDataDir, putHostileEvent, syntheticConfig } from './helpers.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
}

/** A raw HTTP request: every header (Host, Origin, Sec-Fetch-Site) exactly as given. */
function http(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: { host: `127.0.0.1:${port}`, ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('pophook console over HTTP', () => {
  let dataDir: string;
  let runtime: LocalRuntime;
  let consoleHandle: ConsoleHandle;
  let port: number;
  let cookie: string;
  let csrf: string;
  let hostileKey: string;
  let hostileAttachment: Buffer;
  let hostileRaw: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'pophook-console-http-'));
    await fillDataDir(dataDir, 30);
    runtime = await createLocalRuntime(syntheticConfig(dataDir), {
      logger: createMemoryLogger('warn'),
      env: { POPHOOK_SECRET_HOOK: `whsec_${Buffer.alloc(24, 3).toString('base64')}` },
    });
    const hostile = await putHostileEvent(runtime.archive, {
      html: '<p>Hello</p><script>window.__pwned=1</script><img src="https://track.test/p.gif">',
    });
    hostileKey = hostile.messageKey;
    hostileAttachment = hostile.attachment;
    hostileRaw = hostile.raw;
    consoleHandle = await startConsole({
      source: localConsoleSource(runtime),
      logger: createMemoryLogger('warn'),
    });
    port = consoleHandle.port;
  });
  afterAll(async () => {
    await consoleHandle?.close();
    await runtime?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('prints a loopback URL and a 32-byte base64url token', () => {
    expect(consoleHandle.url).toBe(`http://127.0.0.1:${port}/`);
    expect(consoleHandle.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(consoleHandle.loginUrl).toBe(`${consoleHandle.url}?token=${consoleHandle.token}`);
  });

  it('refuses every page without the token or with a wrong one', async () => {
    for (const path of ['/', '/messages', '/mailboxes', `/messages/${hostileKey}/raw`, '/endpoints']) {
      const r = await http(port, path);
      expect(r.status, path).toBe(401);
      expect(r.text).not.toContain('Order');
    }
    const wrong = await http(port, `/messages?token=${'A'.repeat(43)}`);
    expect(wrong.status).toBe(401);
    expect(wrong.headers['set-cookie']).toBeUndefined();
    const forged = await http(port, '/messages', { headers: { cookie: `pophook_console_${port}=guess` } });
    expect(forged.status).toBe(401);
    const post = await http(port, '/replay', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'scope=keys',
    });
    expect(post.status).toBe(401);
  });

  it('exchanges the token for an HttpOnly SameSite=Strict cookie and drops it from the URL', async () => {
    const r = await http(port, `/messages?q=order&token=${consoleHandle.token}`);
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/messages?q=order');
    const setCookie = String(r.headers['set-cookie']);
    expect(setCookie).toMatch(
      new RegExp(`^pophook_console_${port}=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Strict$`),
    );
    expect(setCookie).not.toContain(consoleHandle.token);
    cookie = setCookie.split(';')[0] as string;
    const sneaky = await http(port, `/.//evil.example/?token=${consoleHandle.token}`);
    expect(sneaky.headers.location).toBe('/');
    const page = await http(port, '/messages?q=order', { headers: { cookie } });
    expect(page.status).toBe(200);
    csrf = /name="csrf" value="([^"]+)"/.exec(page.text)?.[1] ?? '';
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('refuses foreign Host headers (DNS rebinding), even with a valid session', async () => {
    for (const host of [
      `evil.example:${port}`,
      `127.0.0.1:${port + 1}`,
      'localhost',
      `127.0.0.1.nip.io:${port}`,
    ]) {
      const r = await http(port, '/messages', { headers: { host, cookie } });
      expect(r.status, host).toBe(421);
    }
    expect((await http(port, '/messages', { headers: { host: `localhost:${port}`, cookie } })).status).toBe(
      200,
    );
  });

  it('sends a strict CSP and the other security headers on console pages', async () => {
    const r = await http(port, '/messages', { headers: { cookie } });
    const csp = String(r.headers['content-security-policy']);
    for (const d of [
      "default-src 'self'",
      "script-src 'self'",
      "object-src 'none'",
      "frame-ancestors 'none'",
      "base-uri 'none'",
    ])
      expect(csp).toContain(d);
    expect(csp).not.toContain('unsafe');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['referrer-policy']).toBe('no-referrer');
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect(r.headers['cache-control']).toBe('no-store');
    // No inline script, style or handler attribute (quoted attribute values are text, so set aside).
    expect(r.text.replace(/"[^"]*"/g, '""')).not.toMatch(/<script>|<style>|<[a-z][^>]*\son[a-z]+\s*=/i);
  });

  it('escapes hostile subjects, names, headers and attachment names', async () => {
    const list = await http(port, '/messages?q=invoice', { headers: { cookie } });
    expect(list.text).not.toContain('<script>window.__pwned');
    expect(list.text).toContain('&lt;script&gt;window.__pwned=&quot;subject&quot;&lt;/script&gt;Invoice');
    for (const tab of ['text', 'headers', 'event', 'html']) {
      const page = await http(port, `/messages/${hostileKey}?tab=${tab}`, { headers: { cookie } });
      expect(page.status).toBe(200);
      expect(page.text).not.toMatch(/<script>(?!<\/)|<img src=x|<svg onload|<b>mx<\/b>/);
      expect(page.text).toContain('&lt;img src=x onerror=alert(1)&gt;.pdf');
    }
    const headers = await http(port, `/messages/${hostileKey}?tab=headers`, { headers: { cookie } });
    expect(headers.text).toContain('&lt;svg onload=alert(2)&gt;');
  });

  it('serves mail HTML sanitised, under the mail CSP, for a sandboxed frame only', async () => {
    const page = await http(port, `/messages/${hostileKey}?tab=html`, { headers: { cookie } });
    const iframe = /<iframe[^>]*>/.exec(page.text)?.[0] ?? '';
    expect(iframe).toContain('sandbox="allow-popups allow-popups-to-escape-sandbox"');
    expect(iframe).not.toMatch(/allow-scripts|allow-same-origin|allow-forms|allow-top-navigation/);
    expect(page.text).toContain('data-remote-blocked="1"');
    const body = await http(port, `/messages/${hostileKey}/body.html`, { headers: { cookie } });
    const csp = String(body.headers['content-security-policy']);
    expect(csp).toMatch(/^default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:;/);
    expect(csp).toContain('sandbox allow-popups');
    expect(csp).not.toMatch(/script-src|https:/);
    expect(body.text).toContain('<p>Hello</p>');
    expect(body.text).not.toMatch(/script|track\.test/);
    const remote = await http(port, `/messages/${hostileKey}/body.html?remote=1`, { headers: { cookie } });
    expect(String(remote.headers['content-security-policy'])).toContain('img-src data: cid: https:');
    expect(String(remote.headers['content-security-policy'])).not.toContain('script-src');
    expect(remote.text).toContain('src="https://track.test/p.gif"');
    expect(remote.text).not.toContain('script');
  });

  it('downloads attachments, raw mail and the event as octet-stream attachments with safe names', async () => {
    const a = await http(port, `/messages/${hostileKey}/attachments/0`, { headers: { cookie } });
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toBe('application/octet-stream');
    const disposition = String(a.headers['content-disposition']);
    expect(disposition).toMatch(
      /^attachment; filename="[A-Za-z0-9._ ()-]+"; filename\*=UTF-8''[A-Za-z0-9%._~!-]+$/,
    );
    expect(disposition).not.toMatch(/[<>]/);
    expect(a.headers['x-content-type-options']).toBe('nosniff');
    expect(a.body.equals(hostileAttachment)).toBe(true);
    const raw = await http(port, `/messages/${hostileKey}/raw`, { headers: { cookie } });
    expect(raw.text).toBe(hostileRaw);
    expect(String(raw.headers['content-disposition'])).toContain(`filename="${hostileKey}.eml"`);
    const event = await http(port, `/messages/${hostileKey}/event.json`, { headers: { cookie } });
    expect(JSON.parse(event.text).data.messageKey).toBe(hostileKey);
    expect(event.headers['content-type']).toBe('application/octet-stream');
    expect((await http(port, `/messages/${hostileKey}/attachments/7`, { headers: { cookie } })).status).toBe(
      404,
    );
    expect((await http(port, '/messages/..%2F..%2Fetc/raw', { headers: { cookie } })).status).toBe(404);
    expect((await http(port, `/messages/${'f'.repeat(32)}`, { headers: { cookie } })).status).toBe(404);
  });

  it('refuses state-changing requests without the CSRF token or from another site', async () => {
    const form = (extra: string) => `scope=keys&key=${hostileKey}&return=%2Fmessages${extra}`;
    const post = (body: string, headers: Record<string, string> = {}) =>
      http(port, '/replay', {
        method: 'POST',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body,
      });
    expect((await post(form(''))).status).toBe(403);
    expect((await post(form('&csrf=wrong'))).status).toBe(403);
    expect((await post(form(`&csrf=${csrf}`), { origin: 'http://evil.example' })).status).toBe(403);
    expect((await post(form(`&csrf=${csrf}`), { origin: 'null' })).status).toBe(403);
    expect((await post(form(`&csrf=${csrf}`), { 'sec-fetch-site': 'same-site' })).status).toBe(403);
    expect((await post(form(`&csrf=${csrf}`), { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    const get = await http(port, `/replay?${form(`&csrf=${csrf}`)}`, { headers: { cookie } });
    expect(get.status).toBe(404);
    expect((await post(form(`&csrf=${csrf}`), { 'content-type': 'text/plain' })).status, 'forms only').toBe(
      415,
    );
    // Nothing was queued by any of the refused requests.
    expect((await runtime.queue.depth()).ready).toBe(0);
  });

  it('re-enables a disabled endpoint with a same-origin POST', async () => {
    await runtime.state.setEndpointState({
      endpointId: 'hooks',
      disabled: true,
      disabledAt: new Date().toISOString(),
      disabledReason: 'HTTP 410 Gone',
    });
    const page = await http(port, '/endpoints', { headers: { cookie } });
    expect(page.text).toContain('data-action="enable"');
    const r = await http(port, '/endpoints/hooks/enable', {
      method: 'POST',
      headers: {
        cookie,
        'content-type': 'application/x-www-form-urlencoded',
        origin: `http://127.0.0.1:${port}`,
        'sec-fetch-site': 'same-origin',
      },
      body: `csrf=${csrf}`,
    });
    expect(r.status).toBe(303);
    expect(r.headers.location).toMatch(/^\/endpoints\?notice=/);
    expect((await runtime.state.getEndpointState('hooks'))?.disabled).toBe(false);
    const after = await http(port, String(r.headers.location), { headers: { cookie } });
    expect(after.text).toContain('Endpoint hooks re-enabled');
    expect(after.text).not.toContain('data-action="enable"');
  });

  it('shows mailboxes, deliveries and endpoints pages', async () => {
    for (const path of [
      '/mailboxes',
      '/deliveries',
      '/deliveries?endpoint=hooks&outcome=failed',
      '/endpoints',
    ]) {
      const r = await http(port, path, { headers: { cookie } });
      expect(r.status, path).toBe(200);
    }
    const deliveries = await http(port, '/deliveries?outcome=failed', { headers: { cookie } });
    expect(deliveries.text).toContain('HTTP_503');
    expect(deliveries.text).toContain('data-action="replay-attempts"');
  });

  it('makes safe download names', () => {
    expect(safeFilename('report.pdf', 'x')).toBe('report.pdf');
    expect(safeFilename('../../etc/passwd', 'x')).toBe('_.._etc_passwd');
    expect(safeFilename('<img src=x onerror=alert(1)>.pdf', 'x')).toBe('_img src_x onerror_alert(1)_.pdf');
    expect(safeFilename('...', 'fallback')).toBe('fallback');
    expect(safeFilename('Ünïcødé "quoted".txt', 'x')).toBe('_n_c_d_ _quoted_.txt');
  });
});

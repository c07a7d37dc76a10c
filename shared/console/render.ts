/**
 * The console's pages, server-rendered with the escaping `html` template (see html.ts): every value
 * from mail, state or a request is escaped where it is placed. No inline scripts or styles (the CSP
 * forbids them); forms that change state carry the session's CSRF token.
 */
import type { EmailReceivedData, PophookEvent } from '../mail/event.js';
import type { DeliveryAttempt } from '../state/store.js';
import {
  type AttemptQuery,
  type AttemptRow,
  DELIVERY_STATUSES,
  type DeliveryStatus,
  type EndpointView,
  latestPerEndpoint,
  type MailboxView,
  type MessageQuery,
  type MessageSummary,
  type Page,
} from './data.js';
import { explainAttempt, explainPoll } from './explain.js';
import { html, queryString, type SafeHtml } from './html.js';

export interface Chrome {
  title: string;
  active: 'messages' | 'mailboxes' | 'deliveries' | 'endpoints' | '';
  /** Where the data lives (shown top right). */
  source: string;
  notice?: string | undefined;
  footer?: string;
}

const NAV: [Chrome['active'], string, string][] = [
  ['messages', '/messages', 'Messages'],
  ['mailboxes', '/mailboxes', 'Mailboxes'],
  ['deliveries', '/deliveries', 'Deliveries'],
  ['endpoints', '/endpoints', 'Endpoints'],
];

export function layout(chrome: Chrome, body: SafeHtml): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${chrome.title} · pophook console</title>
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head>
<body>
<header class="top">
  <a class="brand" href="/messages">pop<span>hook</span> console</a>
  <nav>${NAV.map(([id, href, label]) => html`<a href="${href}" class="${id === chrome.active ? 'active' : ''}">${label}</a>`)}</nav>
  <span class="source" title="Data source">${chrome.source}</span>
</header>
<main>
${chrome.notice ? html`<div class="notice" role="status">${chrome.notice}</div>` : ''}
${body}
</main>
${chrome.footer ? html`<footer>${chrome.footer}</footer>` : ''}
</body>
</html>`.toString();
}

export function time(iso: string | undefined): SafeHtml {
  if (!iso) return html`<span class="muted">–</span>`;
  const d = new Date(iso);
  const text = Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  return html`<time datetime="${iso}">${text}</time>`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function formatMs(ms: number | undefined): string {
  if (ms === undefined) return '–';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

const badge = (text: string, kind = text) => html`<span class="badge ${kind}">${text}</span>`;

const csrfField = (csrf: string) => html`<input type="hidden" name="csrf" value="${csrf}">`;

function pager(
  page: Page<unknown>,
  base: string,
  params: Record<string, string | number | undefined>,
): SafeHtml {
  if (page.pages <= 1) return html``;
  const link = (p: number) => `${base}${queryString({ ...params, page: p })}`;
  return html`<div class="pager">
    ${page.page > 1 ? html`<a href="${link(page.page - 1)}" rel="prev">← Newer</a>` : ''}
    <span class="muted">Page ${page.page} of ${page.pages}</span>
    ${page.page < page.pages ? html`<a href="${link(page.page + 1)}" rel="next">Older →</a>` : ''}
  </div>`;
}

// ---- messages ----

export interface MessagesPageModel {
  page: Page<MessageSummary>;
  query: MessageQuery;
  mailboxes: string[];
  csrf: string;
  canReplay: boolean;
  indexed: number;
}

/** Filter values as query parameters (for links and the "replay filtered" form). */
export function messageQueryParams(q: MessageQuery): Record<string, string | undefined> {
  return {
    q: q.q,
    mailbox: q.mailbox,
    from: q.from,
    to: q.to,
    subject: q.subject,
    since: q.since,
    until: q.until,
    attachments: q.attachments,
    status: q.status,
  };
}

export function messagesPage(m: MessagesPageModel): SafeHtml {
  const q = m.query;
  const params = messageQueryParams(q);
  const option = (value: string, current: string | undefined, label = value) =>
    html`<option value="${value}" ${value === (current ?? '') ? 'selected' : ''}>${label}</option>`;
  const filtered = Object.values(params).some((v) => v !== undefined && v !== '');
  return html`<h1>Messages</h1>
<form class="filters panel" method="get" action="/messages" role="search">
  <label>Search<input type="search" name="q" value="${q.q ?? ''}" placeholder="subject, address, text… (press /)"></label>
  <label>Mailbox<select name="mailbox">${option('', q.mailbox, 'all')}${m.mailboxes.map((id) => option(id, q.mailbox))}</select></label>
  <label>From<input type="text" name="from" value="${q.from ?? ''}"></label>
  <label>To / Cc<input type="text" name="to" value="${q.to ?? ''}"></label>
  <label>Subject<input type="text" name="subject" value="${q.subject ?? ''}"></label>
  <label>Since<input type="date" name="since" value="${q.since ?? ''}"></label>
  <label>Until<input type="date" name="until" value="${q.until ?? ''}"></label>
  <label>Attachments<select name="attachments">${option('', q.attachments, 'any')}${option('yes', q.attachments, 'with')}${option('no', q.attachments, 'without')}</select></label>
  <label>Delivery<select name="status">${option('', q.status, 'any')}${DELIVERY_STATUSES.map((s) => option(s, q.status))}</select></label>
  <button class="primary" type="submit">Filter</button>
  ${filtered ? html`<a class="button" href="/messages">Clear</a>` : ''}
</form>
<div class="summary-line">
  <span><strong data-total="${m.page.total}">${m.page.total}</strong> ${m.page.total === 1 ? 'message' : 'messages'}${filtered ? html` <span class="muted">(of ${m.indexed})</span>` : ''}</span>
  <a href="/messages${queryString({ ...params, refresh: 1 })}">Refresh</a>
  ${
    m.canReplay && filtered && m.page.total > 0
      ? html`<form class="inline" method="post" action="/replay">
    ${csrfField(m.csrf)}<input type="hidden" name="scope" value="filtered">
    ${Object.entries(params).map(([k, v]) => (v ? html`<input type="hidden" name="${k}" value="${v}">` : ''))}
    <input type="hidden" name="return" value="/messages${queryString(params)}">
    <button type="submit" data-action="replay-filtered">Replay ${m.page.total === 1 ? 'this message' : `these ${m.page.total} messages`}</button>
  </form>`
      : ''
  }
</div>
${
  m.page.items.length === 0
    ? html`<div class="panel muted">No messages${filtered ? ' match these filters' : ' archived yet'}.</div>`
    : html`<table class="list messages">
<thead><tr><th>Received</th><th>Mailbox</th><th>From</th><th>Subject</th><th>Size</th><th>Delivery</th></tr></thead>
<tbody>
${m.page.items.map(
  (s) => html`<tr data-key="${s.messageKey}">
  <td class="nowrap small">${time(s.receivedAt)}</td>
  <td>${s.mailboxId}</td>
  <td class="from">${s.from || html`<span class="muted">(none)</span>`}</td>
  <td class="subject"><a href="/messages/${s.messageKey}">${s.subject || '(no subject)'}</a>
    ${s.attachments.length ? html` <span class="badge" title="${s.attachments.map((a) => a.filename).join(', ')}">${s.attachments.length} ${s.attachments.length === 1 ? 'file' : 'files'}</span>` : ''}
    ${s.spamFlagged ? html` ${badge('spam')}` : ''}
    <span class="snippet">${s.snippet}</span></td>
  <td class="nowrap small">${formatBytes(s.size)}</td>
  <td>${badge(s.status)}</td>
</tr>`,
)}
</tbody></table>`
}
${pager(m.page, '/messages', params)}`;
}

// ---- one message ----

export type MessageTab = 'html' | 'text' | 'headers' | 'event';

export interface MessagePageModel {
  summary: MessageSummary;
  event: PophookEvent;
  eventJson: string;
  tab: MessageTab;
  remote: boolean;
  remoteBlocked: number;
  csrf: string;
  canReplay: boolean;
  endpoints: string[];
}

function addressList(list: { address: string; name: string }[]): string {
  return list.map((a) => (a.name ? `${a.name} <${a.address}>` : a.address)).join(', ');
}

function authBadges(d: EmailReceivedData): SafeHtml {
  const a = d.authResults;
  const items: SafeHtml[] = [];
  for (const k of ['spf', 'dkim', 'dmarc', 'arc'] as const) {
    const v = a?.[k];
    if (v)
      items.push(
        html`<span class="badge ${v.toLowerCase()}" data-auth="${k}">${k.toUpperCase()} ${v}</span> `,
      );
  }
  if (!a || items.length === 0) items.push(html`<span class="muted">no Authentication-Results</span> `);
  if (a?.authservId) items.push(html`<span class="muted small">by ${a.authservId}</span>`);
  return html`${items}`;
}

function spamBadge(d: EmailReceivedData): SafeHtml {
  if (!d.spam) return html`<span class="muted">no spam headers</span>`;
  const score = d.spam.score !== undefined ? ` (score ${d.spam.score})` : '';
  return d.spam.flagged
    ? html`<span class="badge spam" data-spam="flagged">flagged as spam${score}</span>`
    : html`<span class="badge ok" data-spam="clean">not spam${score}</span>`;
}

export function attemptsTable(
  attempts: readonly DeliveryAttempt[],
  withMessage?: (a: DeliveryAttempt) => SafeHtml,
): SafeHtml {
  if (attempts.length === 0) return html`<div class="panel muted">No delivery attempts recorded.</div>`;
  return html`<table class="list attempts">
<thead><tr><th>Time</th>${withMessage ? html`<th>Message</th>` : ''}<th>Endpoint</th><th>#</th><th>Outcome</th><th>Status</th><th>Latency</th><th>Error</th><th>Response</th><th>Next retry</th></tr></thead>
<tbody>${attempts.map(
    (a) => html`<tr data-outcome="${a.outcome}">
  <td class="nowrap small">${time(a.at)}</td>
  ${withMessage ? html`<td>${withMessage(a)}</td>` : ''}
  <td>${a.endpointId}</td>
  <td>${a.attempt}</td>
  <td>${badge(a.outcome)}</td>
  <td>${a.status ?? '–'}</td>
  <td class="nowrap">${formatMs(a.latencyMs)}</td>
  <td class="small">${a.errorCode ? html`<span class="mono">${a.errorCode}</span><br>` : ''}<span class="muted">${a.outcome === 'delivered' ? '' : explainAttempt(a)}</span></td>
  <td class="mono small">${a.response ?? ''}</td>
  <td class="nowrap small">${a.outcome === 'retry' || a.outcome === 'blocked' ? time(a.nextAttemptAt) : ''}</td>
</tr>`,
  )}</tbody></table>`;
}

function replayForm(
  csrf: string,
  keys: string[],
  label: string,
  returnTo: string,
  endpoint?: string,
): SafeHtml {
  return html`<form class="inline" method="post" action="/replay">
  ${csrfField(csrf)}<input type="hidden" name="scope" value="keys">
  ${keys.map((k) => html`<input type="hidden" name="key" value="${k}">`)}
  ${endpoint ? html`<input type="hidden" name="endpoint" value="${endpoint}">` : ''}
  <input type="hidden" name="return" value="${returnTo}">
  <button type="submit" class="${endpoint ? '' : 'primary'}" data-action="replay"${endpoint ? html` data-endpoint="${endpoint}"` : ''}>${label}</button>
</form>`;
}

export function messagePage(m: MessagePageModel): SafeHtml {
  const s = m.summary;
  const base = `/messages/${s.messageKey}`;
  const tabLink = (tab: MessageTab, label: string) =>
    html`<a href="${base}?tab=${tab}" class="${m.tab === tab ? 'active' : ''}" data-tab="${tab}">${label}</a>`;
  const received = m.event.type === 'email.received' ? m.event.data : undefined;
  const latest = latestPerEndpoint(s.attempts);
  const endpoints = [...new Set([...s.routed, ...latest.keys()])];

  let tabBody: SafeHtml;
  if (!received) {
    tabBody = html`<p>This message was over maxMessageBytes (${formatBytes(s.size)}), so it was reported as <span class="mono">email.skipped</span> and left on the server; nothing was archived.</p>`;
  } else if (m.tab === 'html') {
    tabBody = received.html
      ? html`<div class="remote-bar">
  ${
    m.remote
      ? html`<span>Remote images and styles are loaded for this message (https only; scripts stay off).</span> <a href="${base}?tab=html">Block remote content</a>`
      : m.remoteBlocked > 0
        ? html`<span data-remote-blocked="${m.remoteBlocked}">${m.remoteBlocked} remote ${m.remoteBlocked === 1 ? 'reference was' : 'references were'} blocked (they could tell the sender you read this).</span> <a href="${base}?tab=html&amp;remote=1" data-action="load-remote">Load remote content</a>`
        : html`<span class="muted">No remote content.</span>`
  }
  ${received.htmlTruncated ? html`<span class="muted">The HTML was cut at the parse limit; download the raw message for all of it.</span>` : ''}
</div>
<iframe class="mail" title="Message HTML" sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer" loading="lazy" src="${base}/body.html${m.remote ? '?remote=1' : ''}"></iframe>`
      : html`<p class="muted">This message has no HTML part.</p>`;
  } else if (m.tab === 'text') {
    tabBody = received.text
      ? html`<pre class="text" data-part="text">${received.text}</pre>${received.textTruncated ? html`<p class="muted">The text was cut at the parse limit.</p>` : ''}`
      : html`<p class="muted">This message has no text part.</p>`;
  } else if (m.tab === 'headers') {
    tabBody = html`<table class="list headers"><tbody>${received.headers.map(
      (h) => html`<tr><th class="mono">${h.name}</th><td class="mono">${h.value}</td></tr>`,
    )}</tbody></table>`;
  } else {
    tabBody = html`<p><a href="${base}/event.json">Download event JSON</a></p><pre class="json" data-part="event">${m.eventJson}</pre>`;
  }

  return html`<p class="small"><a href="/messages">← Messages</a></p>
<h1 data-subject>${s.subject || '(no subject)'}</h1>
<div class="grid">
<div class="panel"><dl class="kv">
  <dt>From</dt><dd>${received ? addressList(received.from) : '–'}</dd>
  <dt>To</dt><dd>${received ? addressList(received.to) : '–'}</dd>
  ${received?.cc.length ? html`<dt>Cc</dt><dd>${addressList(received.cc)}</dd>` : ''}
  <dt>Date</dt><dd>${received?.date ? time(received.date) : '–'}</dd>
  <dt>Received</dt><dd>${time(s.receivedAt)} <span class="muted">by ${s.mailboxId}</span></dd>
  <dt>Size</dt><dd>${formatBytes(s.size)}</dd>
  <dt>Message key</dt><dd class="mono">${s.messageKey}</dd>
  ${received?.messageId ? html`<dt>Message-ID</dt><dd class="mono">${received.messageId}</dd>` : ''}
</dl></div>
<div class="panel"><dl class="kv">
  <dt>Authentication</dt><dd>${received ? authBadges(received) : '–'}</dd>
  <dt>Spam</dt><dd>${received ? spamBadge(received) : '–'}</dd>
  <dt>Delivery</dt><dd>${badge(s.status)}</dd>
  ${received?.parseError ? html`<dt>Parse problem</dt><dd>${received.parseError.code}: ${received.parseError.message}</dd>` : ''}
  ${received?.charsetWarnings.length ? html`<dt>Charsets</dt><dd>${received.charsetWarnings.join(', ')}</dd>` : ''}
  <dt>Downloads</dt><dd>${received ? html`<a href="${base}/raw" data-download="raw">Raw .eml</a> · ` : ''}<a href="${base}/event.json">Event JSON</a></dd>
</dl></div>
</div>
${
  received?.attachments.length
    ? html`<div class="panel"><strong>Attachments</strong><ul class="attachments">${received.attachments.map(
        (a) =>
          html`<li><a href="${base}/attachments/${a.index}" data-attachment="${a.index}">${a.filename ?? `attachment-${a.index}`}</a> <span class="muted small">${a.contentType}, ${formatBytes(a.size)}${a.disposition === 'inline' ? ', inline' : ''}</span></li>`,
      )}</ul></div>`
    : ''
}
<nav class="tabs">${tabLink('html', 'HTML')}${tabLink('text', 'Text')}${tabLink('headers', 'Headers')}${tabLink('event', 'Event JSON')}</nav>
<div class="tab-body">${tabBody}</div>
<h2>Deliveries</h2>
${
  m.canReplay
    ? html`<div class="summary-line">${replayForm(m.csrf, [s.messageKey], 'Replay to all routed endpoints', base)}
  ${endpoints.map((id) => replayForm(m.csrf, [s.messageKey], `Replay to ${id}`, base, id))}
  <span class="muted small">Replays use the original webhook-id, so receivers can recognise the message.</span></div>`
    : html`<p class="muted">Replay needs the delivery queue (read-only console).</p>`
}
${attemptsTable(s.attempts)}`;
}

// ---- mailboxes ----

export function mailboxesPage(views: MailboxView[]): SafeHtml {
  return html`<h1>Mailboxes</h1>
<table class="list mailboxes">
<thead><tr><th>Mailbox</th><th>Last poll</th><th>Outcome</th><th>Duration</th><th>Fetched (last poll)</th><th>Fetched today</th><th>Left on server</th><th>Archived</th></tr></thead>
<tbody>${views.map((v) => {
    const p = v.lastPoll;
    return html`<tr data-mailbox="${v.id}">
  <td><strong>${v.id}</strong><br><span class="muted small">${v.user} @ ${v.host}</span></td>
  <td class="small nowrap">${p ? time(p.finishedAt) : html`<span class="muted">never</span>`}</td>
  <td>${p ? badge(p.outcome) : ''}</td>
  <td>${formatMs(v.durationMs)}</td>
  <td>${p ? html`${p.fetched} <span class="muted small">(${formatBytes(p.bytes)}, ${p.deleted} deleted)</span>` : '–'}</td>
  <td data-today>${v.fetchedToday}</td>
  <td>${p ? p.remainingOnServer : '–'}</td>
  <td>${v.archived}${v.skipped ? html` <span class="muted small">+ ${v.skipped} skipped</span>` : ''}</td>
</tr>${
      p && (p.outcome !== 'ok' || p.errorCode)
        ? html`<tr class="explain"><td></td><td colspan="7" class="small">
  ${p.errorCode ? html`<span class="mono">${p.errorCode}</span> ` : ''}${p.errorMessage ? html`<span>${p.errorMessage}</span><br>` : ''}
  <span class="muted">${explainPoll(p)}</span></td></tr>`
        : ''
    }`;
  })}</tbody></table>
<p class="muted small">"Fetched today" counts messages first seen since midnight (this computer's time zone).</p>`;
}

// ---- deliveries ----

export interface DeliveriesPageModel {
  page: Page<AttemptRow>;
  query: AttemptQuery;
  endpoints: string[];
  csrf: string;
  canReplay: boolean;
  /** Unique messages in the filtered attempts (what "replay these" would send). */
  messageCount: number;
}

const OUTCOMES: DeliveryAttempt['outcome'][] = ['delivered', 'retry', 'failed', 'disabled', 'blocked'];

export function deliveriesPage(m: DeliveriesPageModel): SafeHtml {
  const q = m.query;
  const params = { endpoint: q.endpoint, outcome: q.outcome };
  const option = (value: string, current: string | undefined, label = value) =>
    html`<option value="${value}" ${value === (current ?? '') ? 'selected' : ''}>${label}</option>`;
  const bySubject = new Map(m.page.items.map((r) => [r.attempt, r.message]));
  return html`<h1>Deliveries</h1>
<form class="filters panel" method="get" action="/deliveries">
  <label>Endpoint<select name="endpoint">${option('', q.endpoint, 'all')}${m.endpoints.map((id) => option(id, q.endpoint))}</select></label>
  <label>Outcome<select name="outcome">${option('', q.outcome, 'any')}${OUTCOMES.map((o) => option(o, q.outcome))}</select></label>
  <button class="primary" type="submit">Filter</button>
</form>
<div class="summary-line"><span><strong>${m.page.total}</strong> attempts</span>
${
  m.canReplay && (q.endpoint || q.outcome) && m.messageCount > 0
    ? html`<form class="inline" method="post" action="/replay">${csrfField(m.csrf)}
  <input type="hidden" name="scope" value="attempts">
  ${q.endpoint ? html`<input type="hidden" name="endpoint" value="${q.endpoint}">` : ''}
  ${q.outcome ? html`<input type="hidden" name="outcome" value="${q.outcome}">` : ''}
  <input type="hidden" name="return" value="/deliveries${queryString(params)}">
  <button type="submit" data-action="replay-attempts">Replay these ${m.messageCount} ${m.messageCount === 1 ? 'message' : 'messages'}${q.endpoint ? ` to ${q.endpoint}` : ''}</button></form>`
    : ''
}</div>
${attemptsTable(
  m.page.items.map((r) => r.attempt),
  (a) => {
    const s = bySubject.get(a);
    return s ? html`<a href="/messages/${s.messageKey}">${s.subject || '(no subject)'}</a>` : html``;
  },
)}
${pager(m.page, '/deliveries', params)}`;
}

// ---- endpoints ----

export function endpointsPage(views: EndpointView[], csrf: string): SafeHtml {
  if (views.length === 0)
    return html`<h1>Endpoints</h1><div class="panel muted">No endpoints in the config.</div>`;
  return html`<h1>Endpoints</h1><div class="grid">${views.map((v) => {
    const disabled = v.state?.disabled === true;
    const rate = v.successRate === undefined ? '–' : `${Math.round(v.successRate * 100)}%`;
    const health: DeliveryStatus | 'ok' =
      disabled || !v.enabledInConfig
        ? 'disabled'
        : v.successRate === undefined
          ? 'none'
          : v.successRate >= 0.9
            ? 'ok'
            : 'failed';
    return html`<div class="panel" data-endpoint="${v.id}">
  <h2>${v.id} ${badge(disabled ? 'disabled (410)' : v.enabledInConfig ? 'enabled' : 'disabled in config', disabled || !v.enabledInConfig ? 'disabled' : 'ok')}</h2>
  <p class="mono small">${v.displayUrl}</p>
  <p><span class="health badge ${health}" data-rate>${rate}</span> <span class="muted">success over the last ${v.recentAttempts} attempts (${v.recentDelivered} delivered)</span></p>
  <dl class="kv">
    <dt>Last success</dt><dd>${v.lastSuccess ? time(v.lastSuccess.at) : '–'}</dd>
    <dt>Last error</dt><dd>${
      v.lastError
        ? html`${time(v.lastError.at)} <span class="mono">${v.lastError.errorCode ?? v.lastError.outcome}</span>${v.lastError.status ? ` (HTTP ${v.lastError.status})` : ''}<br><span class="muted small">${explainAttempt(v.lastError)}</span>`
        : '–'
    }</dd>
    <dt>Waiting to retry</dt><dd>${v.retrying}${v.nextRetryAt ? html`, next ${time(v.nextRetryAt)}` : ''}</dd>
    ${disabled ? html`<dt>Disabled</dt><dd>${time(v.state?.disabledAt)} ${v.state?.disabledReason ?? ''}</dd>` : ''}
  </dl>
  <p><a href="/deliveries?endpoint=${v.id}">All attempts</a>${v.lastError ? html` · <a href="/deliveries?endpoint=${v.id}&amp;outcome=failed">Failed</a>` : ''}</p>
  ${
    disabled
      ? html`<form method="post" action="/endpoints/${v.id}/enable">${csrfField(csrf)}
    <button class="primary" type="submit" data-action="enable">Re-enable ${v.id}</button>
    <span class="muted small">Only once the receiver is fixed; then replay what it missed.</span></form>`
      : ''
  }
</div>`;
  })}</div>`;
}

// ---- errors ----

export function errorBody(status: number, message: string): SafeHtml {
  return html`<h1>${status === 404 ? 'Not found' : status === 403 ? 'Refused' : 'Something went wrong'}</h1><div class="panel">${message}</div>`;
}

/** A standalone page (no session needed): how to get in. */
export function unauthorizedPage(): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pophook console</title></head>
<body><h1>pophook console</h1><p>This page needs the access link printed by <code>pophook ui</code> (it ends in <code>?token=…</code>). Open that link; the token is then kept in a cookie for this browser.</p></body></html>`.toString();
}

/**
 * The console's static assets, as strings: no front-end build step. Served from /static/ with
 * `script-src 'self'` / `style-src 'self'`, so no inline script or style is ever needed.
 */

export const CONSOLE_CSS = `
:root {
  --bg: #f6f7f9; --panel: #fff; --ink: #1d2330; --muted: #677084; --line: #e3e6ec;
  --accent: #2f5bea; --ok: #1f8a4c; --warn: #b7791f; --bad: #c53030; --off: #718096;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.top { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #151a26; color: #fff; }
header.top .brand { font-weight: 700; letter-spacing: .2px; color: #fff; font-size: 16px; }
header.top .brand span { color: #8fb0ff; }
header.top nav a { color: #c9d3ea; margin-right: 16px; padding: 4px 0; }
header.top nav a.active { color: #fff; border-bottom: 2px solid #8fb0ff; }
header.top .source { margin-left: auto; color: #9aa6c0; font-size: 12px; }
main { padding: 20px 24px 40px; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 20px; margin: 0 0 14px; }
h2 { font-size: 16px; margin: 24px 0 10px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 16px; }
.notice { background: #eef6ff; border: 1px solid #c5dcff; padding: 10px 14px; border-radius: 8px; margin-bottom: 16px; }
.notice.error { background: #fff1f1; border-color: #f5c2c2; }
table.list { width: 100%; border-collapse: collapse; background: var(--panel); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
table.list th, table.list td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.list th { background: #fafbfc; font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .3px; }
table.list tr:last-child td { border-bottom: 0; }
table.list tr:hover td { background: #fafcff; }
td.subject a { color: var(--ink); font-weight: 600; }
td .snippet { color: var(--muted); font-size: 12px; display: block; max-width: 620px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.muted { color: var(--muted); }
.small { font-size: 12px; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.nowrap { white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #edf0f5; color: var(--muted); white-space: nowrap; }
.badge.ok, .badge.delivered, .badge.pass { background: #e3f5ea; color: var(--ok); }
.badge.retrying, .badge.retry, .badge.pending, .badge.partial, .badge.softfail, .badge.neutral { background: #fdf3e1; color: var(--warn); }
.badge.failed, .badge.error, .badge.fail, .badge.disabled, .badge.blocked, .badge.spam { background: #fde8e8; color: var(--bad); }
.badge.none { background: #edf0f5; color: var(--off); }
form.filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-end; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 2px; }
input, select, button { font: inherit; }
input[type=text], input[type=search], input[type=date], select { padding: 6px 8px; border: 1px solid #cfd5df; border-radius: 6px; background: #fff; min-width: 120px; }
input[type=search] { min-width: 260px; }
button, .button { padding: 6px 12px; border-radius: 6px; border: 1px solid #cfd5df; background: #fff; cursor: pointer; color: var(--ink); display: inline-block; }
button.primary, .button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button:disabled { opacity: .6; cursor: progress; }
form.inline { display: inline; }
.pager { display: flex; gap: 12px; align-items: center; margin: 12px 0; }
.summary-line { display: flex; gap: 16px; align-items: center; margin: 10px 0; flex-wrap: wrap; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 16px; }
.kv { display: grid; grid-template-columns: 150px 1fr; gap: 4px 12px; margin: 0; }
.kv dt { color: var(--muted); }
.kv dd { margin: 0; overflow-wrap: anywhere; }
.tabs { display: flex; gap: 4px; border-bottom: 1px solid var(--line); margin: 16px 0 0; }
.tabs a { padding: 8px 14px; border: 1px solid transparent; border-bottom: 0; border-radius: 6px 6px 0 0; color: var(--muted); }
.tabs a.active { background: var(--panel); border-color: var(--line); color: var(--ink); margin-bottom: -1px; }
.tab-body { background: var(--panel); border: 1px solid var(--line); border-top: 0; border-radius: 0 0 8px 8px; padding: 14px 16px; }
pre.text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
pre.json { max-height: 600px; overflow: auto; background: #0f1420; color: #d8e1f5; padding: 12px; border-radius: 6px; font-size: 12px; }
iframe.mail { width: 100%; height: 70vh; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
.remote-bar { display: flex; gap: 12px; align-items: center; margin-bottom: 8px; font-size: 13px; }
ul.attachments { list-style: none; padding: 0; margin: 0; }
ul.attachments li { padding: 4px 0; }
.health { font-size: 26px; font-weight: 700; }
footer { color: var(--muted); font-size: 12px; padding: 0 24px 24px; max-width: 1400px; margin: 0 auto; }
`;

/**
 * Progressive enhancement only; every page works without it. Shows times in the browser's time zone,
 * focuses search on "/", and disables a form's buttons once submitted (no double replays).
 */
export const CONSOLE_JS = `
(function () {
  'use strict';
  var fmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  document.querySelectorAll('time[datetime]').forEach(function (el) {
    var d = new Date(el.getAttribute('datetime'));
    if (!isNaN(d.getTime())) { el.title = el.getAttribute('datetime'); el.textContent = fmt.format(d); }
  });
  document.addEventListener('keydown', function (e) {
    if (e.key !== '/' || e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return;
    var q = document.querySelector('input[name=q]');
    if (q) { e.preventDefault(); q.focus(); }
  });
  document.querySelectorAll('form[method=post]').forEach(function (form) {
    form.addEventListener('submit', function () {
      setTimeout(function () {
        form.querySelectorAll('button').forEach(function (b) { b.disabled = true; b.textContent = 'Working…'; });
      }, 0);
    });
  });
  document.body.setAttribute('data-console-js', 'ready');
})();
`;

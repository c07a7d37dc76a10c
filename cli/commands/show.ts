/**
 * `pophook show <key|event id>`: one message as pophook saw it: headers, text, parts and attachments,
 * the raw object (key, size, SHA-256, checked against the archive), and every delivery attempt.
 * `--raw` streams the exact archived bytes to stdout; `--json` prints the event.
 */
import { createHash } from 'node:crypto';
import { PophookError } from '../../shared/errors.js';
import type { PophookEvent } from '../../shared/mail/event.js';
import { sanitizeForeignText } from '../../shared/sanitize.js';
import { type CliContext, EXIT, type ExitCode } from '../context.js';
import { type CliRuntime, dataDirOf, ensureDataDir, loadCliConfig, openRuntime } from '../local.js';
import { eventIdOf, eventKeyOf, findMessage, formatAddress } from '../messages.js';
import { formatBytes } from '../output.js';

/** Header lines printed (the rest: --json). */
const MAX_HEADER_LINES = 40;
/** Characters of one header value printed. */
const MAX_HEADER_CHARS = 200;
/** Lines of the text part printed (the rest: --json or --raw). */
const MAX_TEXT_LINES = 60;

export interface ShowOptions {
  config?: string;
  /** Write the raw .eml bytes to stdout instead. */
  raw?: boolean;
  json?: boolean;
}

async function hashArchived(runtime: CliRuntime, key: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of await runtime.archive.get(key)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

export async function runShow(message: string, opts: ShowOptions, ctx: CliContext): Promise<ExitCode> {
  const { config } = await loadCliConfig(opts.config, ctx);
  await ensureDataDir(dataDirOf(config, ctx.cwd), ctx, false);
  const runtime = await openRuntime(config, ctx, { create: false });
  try {
    const record = await findMessage(runtime, config, message);
    if (opts.raw) {
      if (!record.rawKey)
        throw new PophookError(
          'CLI_NOT_ARCHIVED',
          `Message ${record.messageKey} has no archived copy (status ${record.status}${record.skippedReason ? `: ${record.skippedReason}` : ''}).`,
        );
      // Streamed: a 50 MB message never sits in memory, and the bytes are written untouched.
      for await (const chunk of await runtime.archive.get(record.rawKey))
        await ctx.out.writeBytes(chunk as Buffer);
      return EXIT.OK;
    }
    const evKey = eventKeyOf(record);
    let event: PophookEvent | undefined;
    if (evKey) {
      try {
        event = JSON.parse((await runtime.archive.getBytes(evKey)).toString('utf8')) as PophookEvent;
      } catch (err) {
        if (opts.json) throw err;
        ctx.out.warn(`the event ${evKey} could not be read: ${(err as Error).message}`);
      }
    }
    if (opts.json) {
      if (!event)
        throw new PophookError(
          'CLI_NO_EVENT',
          `Message ${record.messageKey} has no event yet (status ${record.status}); the next poll writes it.`,
        );
      ctx.out.print(JSON.stringify(event, null, 2));
      return EXIT.OK;
    }

    const out = ctx.out;
    const s = out.style;
    const row = (label: string, value: string) => out.print(`${s.dim(label.padEnd(12))}${value}`);
    const section = (title: string) => {
      out.print();
      out.print(s.bold(title));
    };
    row('message', `${record.messageKey}  ${s.dim(`(event id ${eventIdOf(record)})`)}`);
    row('mailbox', record.mailboxId);
    row(
      'status',
      `${record.status}${record.skippedReason ? ` (${record.skippedReason})` : ''}${record.lastError ? s.red(` last error: ${record.lastError}`) : ''}`,
    );
    row('first seen', record.firstSeenAt);
    if (record.deletedAt) row('deleted', `${record.deletedAt} (from the server)`);

    if (event?.type === 'email.skipped') {
      row(
        'skipped',
        `${formatBytes(event.data.size)} is over the ${formatBytes(event.data.limit)} limit; left on the server`,
      );
    }
    const data = event?.type === 'email.received' ? event.data : undefined;
    if (data) {
      section('headers');
      row('From', formatAddress(data.from) || '-');
      if (data.to.length) row('To', data.to.map((a) => formatAddress([a])).join(', '));
      if (data.cc.length) row('Cc', data.cc.map((a) => formatAddress([a])).join(', '));
      row('Subject', data.subject ?? '(none)');
      row('Date', data.date ?? '(none or unparseable)');
      if (data.messageId) row('Message-ID', data.messageId);
      const authBits = data.authResults
        ? (['spf', 'dkim', 'dmarc', 'arc'] as const)
            .filter((k) => data.authResults?.[k])
            .map((k) => `${k}=${data.authResults?.[k]}`)
        : [];
      if (authBits.length) row('auth', authBits.join(' '));
      if (data.spam)
        row(
          'spam',
          `${data.spam.flagged ? 'flagged' : 'not flagged'}${data.spam.score !== undefined ? `, score ${data.spam.score}` : ''}`,
        );
      out.print(s.dim(`all ${data.headers.length} header lines:`));
      for (const h of data.headers.slice(0, MAX_HEADER_LINES))
        out.print(`  ${s.dim(`${h.name}:`)} ${sanitizeForeignText(h.value, MAX_HEADER_CHARS)}`);
      if (data.headers.length > MAX_HEADER_LINES)
        out.print(s.dim(`  ... ${data.headers.length - MAX_HEADER_LINES} more (--json)`));

      section('parts');
      row(
        'text',
        data.text === null
          ? '(none)'
          : `${data.text.length} characters${data.textTruncated ? ' (truncated in the event)' : ''}`,
      );
      row(
        'html',
        data.html === null
          ? '(none)'
          : `${data.html.length} characters${data.htmlTruncated ? ' (truncated in the event)' : ''}`,
      );
      if (data.charsetWarnings.length) row('charsets', s.yellow(data.charsetWarnings.join(', ')));
      if (data.parseError) row('parse error', s.red(`${data.parseError.code}: ${data.parseError.message}`));
      if (data.attachments.length === 0) row('attachments', '(none)');
      for (const a of data.attachments)
        out.print(
          `  ${a.index}  ${sanitizeForeignText(a.filename ?? '(no name)', 120)}  ${a.contentType}  ${formatBytes(a.size)}  ${s.dim(`${a.disposition ?? 'part'}, sha256 ${a.sha256.slice(0, 16)}…, ${a.key}`)}`,
        );
    }

    section('raw');
    if (record.rawKey) {
      const stored = await hashArchived(runtime, record.rawKey).catch((err: unknown) => err as Error);
      row('key', record.rawKey);
      if (stored instanceof Error) row('check', s.red(`cannot read the archived copy: ${stored.message}`));
      else {
        const expected = record.sha256 ?? data?.raw.sha256;
        const good = expected === stored.sha256 && (record.size === undefined || record.size === stored.size);
        row('size', `${stored.size} bytes (${formatBytes(stored.size)})`);
        row(
          'sha256',
          `${stored.sha256}  ${good ? s.green('matches the record') : s.red(`DOES NOT MATCH the record (${expected ?? 'none'})`)}`,
        );
      }
    } else row('key', s.dim(`not archived (status ${record.status})`));

    if (data?.text) {
      section('text');
      const lines = data.text.split(/\r?\n/);
      for (const line of lines.slice(0, MAX_TEXT_LINES)) out.print(`  ${sanitizeForeignText(line, 400)}`);
      if (lines.length > MAX_TEXT_LINES)
        out.print(
          s.dim(`  ... ${lines.length - MAX_TEXT_LINES} more lines (--json, or --raw for the message)`),
        );
    }

    section('deliveries');
    const attempts = await runtime.state.listAttempts(record.messageKey);
    if (attempts.length === 0) out.print(s.dim('  none yet'));
    for (const a of attempts) {
      const outcome =
        a.outcome === 'delivered'
          ? s.green(a.outcome)
          : a.outcome === 'retry'
            ? s.yellow(a.outcome)
            : s.red(a.outcome);
      const result = a.status ? `HTTP ${a.status}` : (a.errorCode ?? '');
      const extra = [
        a.errorCode && a.status ? a.errorCode : '',
        a.nextAttemptAt ? `next ${a.nextAttemptAt}` : '',
        a.response ? `"${a.response.slice(0, 100)}"` : '',
      ].filter(Boolean);
      out.print(
        `  ${a.at}  ${a.endpointId}  #${a.attempt}  ${outcome}  ${result}  ${a.latencyMs} ms${extra.length ? `  ${s.dim(extra.join('  '))}` : ''}`,
      );
    }
    return EXIT.OK;
  } finally {
    await runtime.close();
  }
}

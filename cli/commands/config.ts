/**
 * `pophook config validate` and `pophook config schema`.
 */
import { renderConfigJsonSchema } from '../../shared/config/json-schema.js';
import type { MailboxConfig } from '../../shared/config/schema.js';
import { PophookConfig } from '../../shared/config/schema.js';
import { explainConfigIssues } from '../config-issues.js';
import { type CliContext, EXIT, type ExitCode } from '../context.js';
import { ConfigSyntaxError, readRawConfig } from '../local.js';

export interface ConfigValidateOptions {
  config?: string;
}

/** Lines of the YAML parser's message shown (it quotes the offending lines). */
const MAX_YAML_ERROR_LINES = 8;

function describeRetention(retention: MailboxConfig['retention']): string {
  if (retention === 'delete') return 'deleted after delivery';
  if (retention === 'keep') return 'kept on the server';
  return `deleted after ${retention.deleteAfterDays} days`;
}

function defaultPort(m: MailboxConfig): number {
  return m.port ?? (m.tls === 'implicit' ? 995 : 110);
}

function countSecretRefs(value: unknown): number {
  if (Array.isArray(value)) return value.reduce<number>((n, v) => n + countSecretRefs(v), 0);
  if (value === null || typeof value !== 'object') return 0;
  const record = value as Record<string, unknown>;
  if (typeof record.secret === 'string' && Object.keys(record).every((k) => k === 'secret' || k === 'field'))
    return 1;
  return Object.values(record).reduce<number>((n, v) => n + countSecretRefs(v), 0);
}

/** Advice about a config that is valid but probably not what the user wants. */
export function configWarnings(config: PophookConfig): string[] {
  const warnings: string[] = [];
  config.mailboxes.forEach((m, i) => {
    const where = `mailboxes[${i}] (${m.id})`;
    if (m.tls === 'none' && !m.allowInsecureAuth)
      warnings.push(
        `${where}: tls is "none", so pophook will refuse to send the password; use "implicit" or "starttls" (allowInsecureAuth: true is only for local test servers)`,
      );
    else if (m.tls === 'none')
      warnings.push(
        `${where}: the password is sent unencrypted (tls "none"); only do this with a local test server`,
      );
    if (m.auth.type === 'password' && m.auth.mechanism === 'apop')
      warnings.push(`${where}: APOP relies on MD5 and is weak; prefer TLS with mechanism "auto"`);
  });
  if (config.endpoints.length === 0)
    warnings.push('no endpoints: messages will be archived but not delivered anywhere');
  config.endpoints.forEach((e, i) => {
    const where = `endpoints[${i}] (${e.id})`;
    if (!e.enabled) warnings.push(`${where}: disabled; nothing is delivered to it`);
    if (e.allowPrivateNetwork)
      warnings.push(`${where}: allowPrivateNetwork is on; only do this for local testing`);
    if (e.allowHttp && e.url.startsWith('http://'))
      warnings.push(`${where}: deliveries go over plain http; only do this for local testing`);
  });
  return warnings;
}

/** The summary printed for a valid config. */
export function configSummary(config: PophookConfig, raw: unknown): string[][] {
  const rows: string[][] = [];
  rows.push(['mailboxes', String(config.mailboxes.length), '']);
  for (const m of config.mailboxes) {
    const tls = m.tls === 'implicit' ? 'TLS' : m.tls === 'starttls' ? 'STARTTLS' : 'no TLS';
    rows.push([
      '',
      m.id,
      `${m.user} @ ${m.host}:${defaultPort(m)} (${tls}), ${m.auth.type}, every ${m.pollEveryMinutes} min, ${describeRetention(m.retention)}`,
    ]);
  }
  rows.push(['endpoints', String(config.endpoints.length), '']);
  for (const e of config.endpoints) {
    const match =
      Object.keys(e.match).length > 0 ? `matching ${Object.keys(e.match).join(', ')}` : 'every message';
    rows.push(['', e.id, `${e.url} (${e.payload} payload, ${match}${e.enabled ? '' : ', disabled'})`]);
  }
  rows.push(['secrets', String(countSecretRefs(raw)), 'references, resolved when pophook runs']);
  rows.push(['local data', config.local.dataDir, '']);
  return rows;
}

/** Reads and checks a config file; prints a summary or every problem. */
export async function runConfigValidate(opts: ConfigValidateOptions, ctx: CliContext): Promise<ExitCode> {
  let loaded: Awaited<ReturnType<typeof readRawConfig>>;
  try {
    loaded = await readRawConfig(opts.config, ctx);
  } catch (err) {
    if (!(err instanceof ConfigSyntaxError)) throw err;
    ctx.out.error(`${err.shown} is not valid YAML or JSON:`);
    for (const line of err.lines.slice(0, MAX_YAML_ERROR_LINES)) ctx.out.info(`  ${line}`);
    return EXIT.USAGE;
  }
  const { shown, raw } = loaded;
  const result = PophookConfig.safeParse(raw);
  if (!result.success) {
    const problems = explainConfigIssues(result.error.issues, raw);
    ctx.out.error(`${shown} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:`);
    for (const problem of problems) ctx.out.info(`  - ${problem}`);
    return EXIT.USAGE;
  }
  const config = result.data;
  ctx.out.print(`${ctx.out.style.green('OK')} ${shown} is valid`);
  ctx.out.table(configSummary(config, raw));
  for (const warning of configWarnings(config)) ctx.out.warn(warning);
  return EXIT.OK;
}

/** Prints the config JSON Schema (the same text as docs/config.schema.json). */
export async function runConfigSchema(_opts: Record<string, never>, ctx: CliContext): Promise<ExitCode> {
  ctx.out.write(renderConfigJsonSchema());
  return EXIT.OK;
}

/**
 * What `pophook check` reports: a list of steps per mailbox or endpoint, each passed or failed with a
 * plain sentence, and on failure (or on a warning) what to change. The CLI and the console only print.
 */

export interface CheckStep {
  /** Short and stable: `DNS`, `TCP`, `TLS`, `greeting`, `CAPA`, `mechanism`, `login`, `ping`, ... */
  name: string;
  ok: boolean;
  /** One line: what was found. */
  detail: string;
  /** What to change, in a plain sentence (failures, and warnings). */
  fix?: string;
  /** Passed, but worth a look (e.g. LOGIN-DELAY longer than pollEveryMinutes). */
  warning?: boolean;
  /** Extra lines: certificate fields, capabilities, addresses. */
  lines?: string[];
}

export interface CheckReport {
  kind: 'mailbox' | 'endpoint';
  id: string;
  /** `user @ host:port (TLS mode)` or the URL. */
  target: string;
  ok: boolean;
  steps: CheckStep[];
}

/** A report from its steps: ok when no step failed. */
export function report(
  kind: CheckReport['kind'],
  id: string,
  target: string,
  steps: CheckStep[],
): CheckReport {
  return { kind, id, target, ok: steps.every((s) => s.ok), steps };
}

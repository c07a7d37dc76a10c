/**
 * Spam verdicts that a filter upstream (SpamAssassin, Rspamd in SpamAssassin-compatible mode, most
 * hosting providers) wrote into `X-Spam-*` headers. Reported as found: the topmost occurrence of each
 * header wins, for the same reason as with Authentication-Results (lower ones came with the message).
 */
import type { HeaderLine, SpamInfo } from './event.js';

// Why: a filter writes 3-6 X-Spam-* headers; more is noise or abuse and would bloat the event.
const MAX_SPAM_HEADERS = 20;
// Why: X-Spam-Status lists the rules that fired and can reach a few KiB; keep it useful but bounded.
const MAX_SPAM_HEADER_CHARS = 2048;
// Why: X-Spam-Level is one '*' per point; filters cap it around 50, and a longer run is not a score.
const MAX_SPAM_LEVEL_STARS = 100;

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/;

/** Reads the X-Spam-* headers, or returns null when there are none. */
export function extractSpam(headers: readonly HeaderLine[]): SpamInfo | null {
  const found: Record<string, string> = {};
  let count = 0;
  for (const h of headers) {
    if (!h.name.startsWith('x-spam-') || Object.hasOwn(found, h.name)) continue;
    if (count >= MAX_SPAM_HEADERS) break;
    found[h.name] = h.value.slice(0, MAX_SPAM_HEADER_CHARS);
    count += 1;
  }
  if (count === 0) return null;

  const info: SpamInfo = { headers: found };
  const flag = found['x-spam-flag'];
  const status = found['x-spam-status'];
  if (flag !== undefined) {
    const verdict = parseYesNo(flag);
    if (verdict !== undefined) info.flagged = verdict;
  }
  if (status !== undefined) {
    // "Yes, score=7.2 required=5.0 tests=..." (SpamAssassin); Rspamd writes "hits=" in some modes.
    if (info.flagged === undefined) {
      const verdict = parseYesNo(status.split(/[\s,]/)[0] ?? '');
      if (verdict !== undefined) info.flagged = verdict;
    }
    const score = /(?:^|[\s,;])(?:score|hits)=\s*([+-]?[\d.]+)(?=$|[\s,;])/i.exec(status)?.[1];
    const parsed = parseScore(score);
    if (parsed !== undefined) info.score = parsed;
  }
  if (info.score === undefined && found['x-spam-score'] !== undefined) {
    // Sometimes "7.2", sometimes "7.2 (+++++++)" or "7.2/5.0".
    const parsed = parseScore(/^\s*([+-]?[\d.]+)(?=$|[\s/(])/.exec(found['x-spam-score'])?.[1]);
    if (parsed !== undefined) info.score = parsed;
  }
  const level = found['x-spam-level'];
  if (info.score === undefined && level !== undefined) {
    const stars = /^\s*(\*+)\s*$/.exec(level)?.[1];
    if (stars && stars.length <= MAX_SPAM_LEVEL_STARS) info.score = stars.length;
  }
  return info;
}

function parseYesNo(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (v === 'yes' || v === 'true' || v === 'y') return true;
  if (v === 'no' || v === 'false' || v === 'n') return false;
  return undefined;
}

function parseScore(value: string | undefined): number | undefined {
  if (value === undefined || !NUMBER.test(value)) return undefined;
  const n = Number.parseFloat(value);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * docs/bench.svg: retrieval throughput (msg/s, plain POP3) of every contender, one panel per dataset,
 * drawn from a results JSON written by bench/run.ts. Plain SVG, no dependencies.
 *
 *   npx tsx bench/chart.ts bench/results/<timestamp>.json [docs/bench.svg]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, ROOT } from './lib.js';
import type { RetrievalRow } from './retrieval.js';

const COLORS: Record<string, string> = {
  'pophook pipeline': '#2563eb',
  'pophook client': '#60a5fa',
  mpop: '#9ca3af',
  fetchmail: '#9ca3af',
  getmail: '#9ca3af',
  'server limit': '#d1d5db',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Renders the retrieval rows of one transport as grouped horizontal bars. */
export function renderChart(rows: readonly RetrievalRow[], subtitle: string, transport = 'plain'): string {
  const picked = rows.filter((r) => r.transport === transport);
  const datasets = [...new Set(picked.map((r) => r.label))];
  const W = 760;
  const labelW = 150;
  const barH = 18;
  const gap = 4;
  const panelGap = 34;
  const left = labelW + 10;
  const barMax = W - left - 110;
  let y = 62;
  const parts: string[] = [];
  for (const ds of datasets) {
    const rs = picked.filter((r) => r.label === ds);
    const max = Math.max(...rs.filter((r) => !r.error).map((r) => r.msgPerS), 1);
    parts.push(`<text x="10" y="${y}" class="h">${esc(ds)}, msg/s (higher is better)</text>`);
    y += 10;
    for (const r of rs) {
      const w = r.error ? 0 : Math.max(1, (r.msgPerS / max) * barMax);
      const value = r.error ? 'n/a' : `${fmt.rate(r.msgPerS)} msg/s · ${r.mbPerS.toFixed(0)} MB/s`;
      parts.push(
        `<text x="${labelW}" y="${y + barH - 5}" text-anchor="end">${esc(r.contender)}</text>`,
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" rx="2" fill="${COLORS[r.contender] ?? '#9ca3af'}"/>`,
        `<text x="${(left + w + 6).toFixed(1)}" y="${y + barH - 5}" class="v">${esc(value)}</text>`,
      );
      y += barH + gap;
    }
    y += panelGap - gap;
  }
  const H = y;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="-apple-system,Segoe UI,Helvetica,Arial,sans-serif" font-size="12">
<style>text{fill:#111827}.h{font-weight:600;font-size:13px}.v{fill:#374151;font-size:11px}.t{font-weight:700;font-size:15px}.s{fill:#6b7280;font-size:11px}</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="22" class="t">POP3 retrieval to disk, real Dovecot on loopback (${transport === 'tls' ? 'implicit TLS' : 'plain'})</text>
<text x="10" y="40" class="s">${esc(subtitle)}</text>
${parts.join('\n')}
</svg>
`;
}

function main(): void {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: tsx bench/chart.ts RESULTS.json [OUT.svg]');
    process.exitCode = 2;
    return;
  }
  const results = JSON.parse(readFileSync(file, 'utf8')) as {
    startedAt: string;
    quick: boolean;
    machine: { cpus: number; node: string };
    sections: { retrieval?: RetrievalRow[] };
  };
  const out = process.argv[3] ?? join(ROOT, 'docs', 'bench.svg');
  const subtitle = `median of runs · ${results.machine.cpus} cores · Node ${results.machine.node} · ${results.startedAt.slice(0, 10)}${results.quick ? ' · quick mode (smaller datasets)' : ''} · pipeline = archive + parse + enqueue`;
  writeFileSync(out, renderChart(results.sections.retrieval ?? [], subtitle));
  console.log(`wrote ${out}`);
}

if (process.argv[1]?.endsWith('chart.ts')) main();

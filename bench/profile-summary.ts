/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): top functions by self time, and self time
 * per module (our files, each node_modules package, node internals, GC, idle).
 *
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  functions: { name: string; where: string; selfMs: number; share: number }[];
  modules: { module: string; selfMs: number; share: number }[];
}

/** Groups a script URL: `shared/pop3/...`, `mailparser`, `node:internal`, `(gc)`. */
function moduleOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] as string;
  if (url.startsWith('node:')) return 'node:internal';
  const ours = /\/(shared|bench|test|functions|cli)\/(.+)$/.exec(url);
  if (ours) return `${ours[1]}/${ours[2]}`;
  return url.replace(/^file:\/\//, '');
}

export function summarise(file: string, top = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const fns = new Map<string, { name: string; where: string; us: number }>();
  const mods = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    const { functionName, url, lineNumber } = n.callFrame;
    const name = functionName || '(anonymous)';
    const where = url ? `${url.replace(/^.*\/(node_modules|work\/main)\//, '')}:${lineNumber + 1}` : '';
    const key = `${name}@${where}`;
    const f = fns.get(key) ?? { name, where, us: 0 };
    f.us += us;
    fns.set(key, f);
    const m = moduleOf(url, name);
    mods.set(m, (mods.get(m) ?? 0) + us);
  }
  return {
    totalMs: total / 1000,
    functions: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, selfMs: f.us / 1000, share: f.us / total })),
    modules: [...mods.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([module, us]) => ({ module, selfMs: us / 1000, share: us / total })),
  };
}

function main(): void {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: tsx bench/profile-summary.ts FILE.cpuprofile [--top N]');
    process.exitCode = 2;
    return;
  }
  const topArg = process.argv.indexOf('--top');
  const s = summarise(file, topArg > 0 ? Number(process.argv[topArg + 1]) : 25);
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`.padStart(6);
  console.log(`total sampled: ${s.totalMs.toFixed(0)} ms\n\nself time by module:`);
  for (const m of s.modules)
    console.log(`${pct(m.share)} ${m.selfMs.toFixed(0).padStart(7)} ms  ${m.module}`);
  console.log('\ntop functions by self time:');
  for (const f of s.functions)
    console.log(`${pct(f.share)} ${f.selfMs.toFixed(0).padStart(7)} ms  ${f.name}  ${f.where}`);
}

if (process.argv[1]?.endsWith('profile-summary.ts')) main();

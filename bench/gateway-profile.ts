/**
 * Self-time summary of a V8 CPU profile (`node --cpu-prof`) of the gateway bench target: time by area
 * (package, src/ directory, node: module, GC, native) and the top functions, as shares of busy (non-idle)
 * time. `node --import tsx bench/gateway-profile.ts <file.cpuprofile> [skip_s]` or `summarizeProfile()`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  sampled_s: number;
  busy_s: number;
  areas: { name: string; share: number }[];
  functions: { name: string; share: number }[];
}

function area(url: string, fn: string): string {
  if (url === '') {
    if (fn === '(garbage collector)') return 'GC';
    if (fn === '(idle)') return 'idle';
    if (fn === '(program)') return '(program): native uWS/libuv/V8 outside JS';
    return `native ${fn}`;
  }
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg;
  const src = /\/(src\/[^/]+)\//.exec(url)?.[1];
  if (src) return src;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  return url.split('/').slice(-2).join('/');
}

/** `skip_s`: samples of the first seconds (start-up, module loading, warm-up) are left out. */
export function summarizeProfile(path: string, top_n = 15, skip_s = 0): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const by_id = new Map(profile.nodes.map((n) => [n.id, n]));
  const self_us = new Map<number, number>();
  let elapsed_us = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const delta = profile.timeDeltas[i] ?? 0;
    elapsed_us += delta;
    if (elapsed_us < skip_s * 1e6) continue;
    self_us.set(id, (self_us.get(id) ?? 0) + delta);
  }
  const by_area = new Map<string, number>();
  const by_fn = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self_us) {
    const { functionName, url, lineNumber } = by_id.get(id)!.callFrame;
    total += us;
    const a = area(url, functionName);
    by_area.set(a, (by_area.get(a) ?? 0) + us);
    // tsx-compiled sources report no useful line: the file names them well enough.
    const file = url.split('/').slice(-2).join('/');
    const where = url === '' ? '' : url.endsWith('.ts') ? ` ${file}` : ` ${file}:${lineNumber + 1}`;
    const key = `${functionName || '(anonymous)'}${where}`;
    by_fn.set(key, (by_fn.get(key) ?? 0) + us);
  }
  const busy = total - (by_area.get('idle') ?? 0);
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .filter(([k]) => k !== 'idle' && !k.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, share: us / Math.max(1, busy) }));
  return {
    sampled_s: total / 1e6,
    busy_s: busy / 1e6,
    areas: top(by_area, 12),
    functions: top(by_fn, top_n),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(6);
  return [
    `${s.sampled_s.toFixed(1)} s sampled, ${s.busy_s.toFixed(1)} s busy (not idle)`,
    '  by area (share of busy time):',
    ...s.areas.map((a) => `    ${pct(a.share)}  ${a.name}`),
    '  top functions (self time):',
    ...s.functions.map((f) => `    ${pct(f.share)}  ${f.name}`),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const path of process.argv.slice(2))
    process.stdout.write(`${path}: ${formatSummary(summarizeProfile(path))}\n`);
}

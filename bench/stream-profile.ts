/**
 * Summary of V8 CPU profiles (`node --cpu-prof`) for the "where the time goes" reading of the stream
 * benchmark: self time grouped by package/area and the top functions, per profile (main thread and each
 * lane thread write their own file).
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/stream-prof --import tsx bench/stream.bench.ts --quick
 *   node --import tsx bench/stream-profile.ts [--inclusive=applyBatch,takeDelta] /tmp/stream-prof/*.cpuprofile
 *
 * `--inclusive` adds the total (self + callees) time of the named functions, e.g. a lane's batch apply vs
 * its checkpoint deltas.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function area(url: string, fn: string): string {
  if (url === '') return fn === '(garbage collector)' ? 'GC' : fn === '(idle)' ? 'idle' : `native ${fn}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg;
  const src = /\/(src\/[^/]+)\//.exec(url)?.[1];
  if (src) return src;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  return url.split('/').slice(-2).join('/');
}

function summarize(path: string): void {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const by_id = new Map(profile.nodes.map((n) => [n.id, n]));
  const self_us = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    self_us.set(id, (self_us.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const by_area = new Map<string, number>();
  const by_fn = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self_us) {
    const { functionName, url, lineNumber } = by_id.get(id)!.callFrame;
    total += us;
    const a = area(url, functionName);
    by_area.set(a, (by_area.get(a) ?? 0) + us);
    const key = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
    by_fn.set(key, (by_fn.get(key) ?? 0) + us);
  }
  const busy = total - (by_area.get('idle') ?? 0);
  const inclusive = inclusiveTimes(profile, self_us, inclusive_names);
  const pct = (us: number) => `${((100 * us) / Math.max(1, busy)).toFixed(1)}%`;
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .filter(([k]) => k !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .slice(0, n);
  process.stdout.write(
    `\n${path}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (not idle)\n`,
  );
  process.stdout.write('  by area (share of busy time):\n');
  for (const [k, us] of top(by_area, 12)) process.stdout.write(`    ${pct(us).padStart(6)}  ${k}\n`);
  process.stdout.write('  top functions (self):\n');
  for (const [k, us] of top(by_fn, 15)) process.stdout.write(`    ${pct(us).padStart(6)}  ${k}\n`);
  if (inclusive.size > 0) process.stdout.write('  inclusive (self + callees):\n');
  for (const [k, us] of inclusive) process.stdout.write(`    ${pct(us).padStart(6)}  ${k}\n`);
}

/** Time under the outermost frame of each named function (recursion counted once). */
function inclusiveTimes(
  profile: Profile,
  self_us: Map<number, number>,
  names: string[],
): Map<string, number> {
  const out = new Map<string, number>();
  if (names.length === 0) return out;
  const by_id = new Map(profile.nodes.map((n) => [n.id, n]));
  const subtree = (id: number): number => {
    const node = by_id.get(id)!;
    let us = self_us.get(id) ?? 0;
    for (const child of node.children ?? []) us += subtree(child);
    return us;
  };
  const walk = (id: number, inside: Set<string>) => {
    const node = by_id.get(id)!;
    const name = node.callFrame.functionName;
    if (names.includes(name) && !inside.has(name)) {
      out.set(name, (out.get(name) ?? 0) + subtree(id));
      inside = new Set(inside).add(name);
    }
    for (const child of node.children ?? []) walk(child, inside);
  };
  walk(profile.nodes[0]!.id, new Set());
  return out;
}

const inclusive_arg = process.argv.find((a) => a.startsWith('--inclusive='));
const inclusive_names = inclusive_arg ? inclusive_arg.slice('--inclusive='.length).split(',') : [];
for (const path of process.argv.slice(2).filter((a) => !a.startsWith('--'))) summarize(path);

/**
 * `npm run bench`: every benchmark, one after the other (never two heavy ones at once on this machine),
 * each printing its own ratios against the baseline it measures in the same run.
 *
 *   npm run bench                 quick modes: domain (as is), stream --quick, e2e --quick
 *   npm run bench -- --full       full modes (several minutes each)
 *   npm run bench -- --only e2e   a subset: domain, stream, e2e (comma-separated)
 * Extra arguments after `--` are not forwarded; run a bench's own script for its options.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { full: { type: 'boolean', default: false }, only: { type: 'string' } },
});
const only = values.only ? new Set(values.only.split(',')) : null;
const quick = values.full ? [] : ['--quick'];
const benches: Array<[string, string[]]> = [
  ['domain', ['run', 'bench:domain']],
  ['stream', ['run', 'bench:stream', '--', ...quick]],
  ['e2e', ['run', 'bench:e2e', '--', ...quick]],
];
let failed = 0;
for (const [name, cmd] of benches) {
  if (only && !only.has(name)) continue;
  const t0 = Date.now();
  process.stdout.write(`\n=== bench ${name}: npm ${cmd.join(' ')}\n`);
  const r = spawnSync('npm', cmd, { stdio: 'inherit' });
  const s = ((Date.now() - t0) / 1000).toFixed(0);
  process.stdout.write(`=== bench ${name}: exit ${r.status} after ${s} s\n`);
  if (r.status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);

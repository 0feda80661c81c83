import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { chaos_dir, ScriptBroker } from './env.js';
import type { ScenarioReport } from './run-context.js';
import { type ScenarioContext, type Size, scenarios } from './scenarios.js';
import { formatVerdict } from './verify.js';

/**
 * `npm run chaos [-- <scenario>… ] [--short]`: runs the chaos scenarios one at a time against the suite's
 * own broker (tools/kafka/kafka.sh on 127.0.0.1:29092, cache .cache/kafka-chaos) and Redis instances of
 * their own, prints one line per scenario and writes .cache/chaos/results.json. Exits 1 if any failed.
 * Scenario names: see `scenarios` in scenarios.ts.
 */
async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const size: Size = args.includes('--short') ? 'short' : 'full';
  const keep_broker = args.includes('--keep-broker');
  const wanted = args.filter((a) => !a.startsWith('--'));
  const unknown = wanted.filter((n) => !(n in scenarios));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario(s) ${unknown.join(', ')}; known: ${Object.keys(scenarios)}\n`);
    return 2;
  }
  const names = wanted.length > 0 ? wanted : Object.keys(scenarios);
  const broker = new ScriptBroker();
  process.stdout.write(`chaos: starting the chaos broker on ${broker.brokers.join(',')}\n`);
  await broker.start();
  const ctx: ScenarioContext = { broker, broker_owned: true, size };
  const reports: ScenarioReport[] = [];
  try {
    for (const name of names) {
      process.stdout.write(`chaos: ${name} …\n`);
      const report = await scenarios[name]!(ctx);
      reports.push(report);
      process.stdout.write(`${line(report)}\n`);
      for (const f of report.failures) process.stdout.write(`  FAIL ${f}\n`);
      save(reports, size);
    }
  } finally {
    if (!keep_broker) await broker.stop().catch(() => {});
  }
  return reports.every((r) => r.passed) ? 0 : 1;
}

function line(r: ScenarioReport): string {
  const rec = `serving ≤ ${r.recovery.serving_max_s ?? '∞'} s, recovered median/max ${r.recovery.recovered_median_s ?? '∞'}/${r.recovery.recovered_max_s ?? '∞'} s (p99 < ${r.recovery.p99_limit_ms} ms)`;
  return [
    `${r.passed ? 'PASS' : 'FAIL'} ${r.name} (${r.duration_s} s, ${r.faults} faults)`,
    `load ${r.load.baseline_rps}→${r.load.fault_rps} req/s over ${r.load.fault_window_s} s, p99 ${r.load.baseline_p99_ms}→${r.load.fault_p99_ms} ms, lag max ${r.load.lag_max_during_faults}`,
    rec,
    r.verdict ? formatVerdict(r.verdict) : 'no verdict',
    Object.keys(r.checks).length > 0 ? JSON.stringify(r.checks) : '',
  ].join(' | ');
}

function save(reports: ScenarioReport[], size: Size): void {
  mkdirSync(chaos_dir, { recursive: true });
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, mem_gb: Math.round(totalmem() / 2 ** 30) };
  writeFileSync(join(chaos_dir, `results-${size}.json`), JSON.stringify({ machine, reports }, null, 2));
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`chaos: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);

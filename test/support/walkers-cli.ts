// `npm run walkers -- [--runs 20] [--walkers 16] [--rounds 10]`: issue 12's acceptance runs. One node with the
// default configuration (own topic and Redis prefixes, so runs never mix with `npm start`'s data) runs the
// dependent walker workload, then is stopped (SIGTERM) and restarted; each run checks every answer against the
// model, that every refund settles, every balance, the node's transaction metrics, and the restart's time to
// ready. Exits 1 on any divergence. The npm script builds and starts the local broker (as `npm start` does);
// KAFKA_BROKERS points it at another.
import { parseArgs } from 'node:util';
import { cleanup, type NodeProcess, startNode, stopNode, uniqueName } from '../integration/helpers.js';
import { metricValue } from './metrics.js';
import { checkWalkerSettlement, runWalkers, setupWalkers, type WalkerOptions } from './walkers.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    walkers: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '10' },
    keep: { type: 'boolean', default: false },
  },
});
const runs_total = Number(values.runs);
const topic_prefix = uniqueName('walkers');
const redis_prefix = `walkers:${topic_prefix}:`;
const env = { TOPIC_PREFIX: topic_prefix, REDIS_KEY_PREFIX: redis_prefix, NODE_ID: 'walkers-1' };
let node: NodeProcess = await startNode(env);
let failed = false;
try {
  for (let run = 1; run <= runs_total; run++) {
    const opts: WalkerOptions = {
      base: () => node.base,
      walkers_total: Number(values.walkers),
      rounds_total: Number(values.rounds),
      prefix: `${topic_prefix}_r${run}`,
      currency: 'USD',
      deposit_amount: 1_000_000,
    };
    const started_ms = Date.now();
    await setupWalkers(opts);
    const result = await runWalkers(opts);
    const settle = await checkWalkerSettlement(opts, result.payments, Date.now() + 30_000);
    const metrics = await (await fetch(`${node.base}/metrics`)).text();
    const aborted = metricValue(metrics, 'transactions_aborted_total');
    const retries = metricValue(metrics, 'transaction_retries_total');
    await stopNode(node);
    const restart_ms = Date.now();
    node = await startNode(env, 60_000);
    const ready_ms = Date.now() - restart_ms;
    // After the restart every balance must still be the model's: the restore rebuilt it from the log.
    const after = await checkWalkerSettlement(opts, result.payments, Date.now() + 10_000);
    const divergences = [...result.divergences, ...settle, ...after.map((d) => `after restart: ${d}`)];
    if (aborted !== 0) divergences.push(`transactions_aborted_total ${aborted}`);
    if (ready_ms > 10_000) divergences.push(`ready ${ready_ms} ms after restart (bound 10 s)`);
    console.log(
      `run ${run}: ${result.requests_total} requests, ${result.acknowledged_writes.length} acknowledged writes, ` +
        `${divergences.length} divergences, transactions_aborted_total ${aborted}, ` +
        `transaction_retries_total ${retries}, ${Date.now() - started_ms} ms, ready after restart ${ready_ms} ms`,
    );
    for (const d of divergences.slice(0, 20)) console.log(`  ${d}`);
    if (divergences.length > 0) failed = true;
  }
} finally {
  await stopNode(node);
  if (!values.keep) await cleanup(topic_prefix, redis_prefix);
}
console.log(failed ? 'walkers: DIVERGED' : `walkers: ${runs_total} runs, 0 divergences`);
process.exit(failed ? 1 : 0);

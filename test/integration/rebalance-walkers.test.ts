import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { verifyLedger } from '../chaos/verify.js';
import { checkWalkerSettlement, runWalkers, setupWalkers, type WalkerOptions } from '../support/walkers.js';
import { brokers, cleanup, freePort, type NodeProcess, startNode, stopNode, uniqueName } from './helpers.js';

/**
 * Issue 12's rebalance test: the dependent walker workload through node-a while node-b joins, is stopped
 * (SIGTERM), rejoins, is killed (SIGKILL) and rejoins. Partitions move back and forth under the walkers; before
 * the fix some acknowledged refunds stayed pending on GET for good. Every answer must match the model, every
 * refund must settle, every balance must be the model's, and the independent verifier must find each
 * acknowledged payment and refund exactly once in the log.
 */
describe('dependent workload through a rebalancing group (real Kafka)', { timeout: 600_000 }, () => {
  const topic_prefix = uniqueName('it_rbw');
  const nodes: NodeProcess[] = [];
  const env = (node_id: string, port: number) => ({
    TOPIC_PREFIX: topic_prefix,
    REDIS_KEY_PREFIX: `test:${topic_prefix}:`,
    PARTITIONS: '8',
    NODE_ID: node_id,
    PORT: String(port),
    CHECKPOINT_INTERVAL_MS: '200',
    SESSION_TIMEOUT_MS: '6000',
    REPLY_TIMEOUT_MS: '5000',
    // Walkers pay once a round for as long as node-b comes and goes: above the default 20 a minute.
    RISK_VELOCITY_COUNT_MAX: '10000',
  });

  after(async () => {
    for (const node of nodes) await stopNode(node, 'SIGKILL');
    await cleanup(topic_prefix, `test:${topic_prefix}:`);
  });

  it('answers as the model says and settles every refund while a second node comes and goes', async () => {
    const a = await startNode(env('node-a', await freePort()));
    nodes.push(a);
    const env_b = env('node-b', await freePort());
    const opts: WalkerOptions = {
      base: () => a.base,
      walkers_total: 12,
      rounds_total: 200,
      done: () => bounced,
      prefix: `${topic_prefix}_w`,
      currency: 'USD',
      deposit_amount: 1_000_000,
    };
    await setupWalkers(opts);
    let bounced = false;
    const steps: string[] = [];
    const bouncer = (async () => {
      const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
      let b = await startNode(env_b);
      nodes.push(b);
      steps.push('joined');
      await pause(2_000);
      assert.equal(await stopNode(b, 'SIGTERM'), 0, 'node-b drains and exits 0');
      steps.push('stopped');
      await pause(1_000);
      b = await startNode(env_b);
      nodes.push(b);
      steps.push('rejoined');
      await pause(2_000);
      await stopNode(b, 'SIGKILL');
      steps.push('killed');
      await pause(1_000);
      b = await startNode(env_b);
      nodes.push(b);
      steps.push('rejoined after kill');
      await pause(2_000);
      bounced = true;
    })();
    const [result] = await Promise.all([runWalkers(opts), bouncer]);
    assert.deepEqual(steps, ['joined', 'stopped', 'rejoined', 'killed', 'rejoined after kill']);
    assert.deepEqual(result.divergences, []);
    assert.equal(
      result.requests_total,
      result.payments.length * 12,
      'every walker finished each round it began',
    );
    assert.ok(result.payments.length >= opts.walkers_total * 3, `rounds walked ${result.payments.length}`);
    assert.deepEqual(await checkWalkerSettlement(opts, result.payments, Date.now() + 60_000), []);
    const refunds = result.acknowledged_writes.filter((w) => w.op === 'refund').map((w) => w.id);
    assert.equal(refunds.length, result.payments.length * 2);
    const verdict = await verifyLedger({
      brokers,
      topic_prefix,
      base: a.base,
      run: { acknowledged: result.payments, accounts: [], acknowledged_refunds: refunds },
    });
    console.log(JSON.stringify({ rounds: result.payments.length, retries: result.retries, steps, verdict }));
    assert.deepEqual(verdict.violations, []);
    assert.equal(verdict.unsettled_refunds, 0);
    assert.equal(verdict.sum_of_balances, 0);
  });
});

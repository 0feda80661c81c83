import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { metricValue } from '../support/metrics.js';
import { call, cleanup, type NodeProcess, redis_url, startNode, stopNode, uniqueName } from './helpers.js';

/**
 * A checkpoint that disagrees with the changelog: one whose offset claims less than it holds (replaying on it
 * meets an account opened twice), one whose offset is past the changelog's end. Before issue 12 the first
 * looped forever on the InvariantError and the node never became ready; the second stayed in Redis, so every
 * restart replayed from the start. Now each is dropped (deleted, counted), its partition replayed from the
 * start, the node ends ready with the right balances, and a new checkpoint is written.
 */
describe('restore with a checkpoint that disagrees with the log (real Kafka + Redis)', {
  timeout: 300_000,
}, () => {
  const topic_prefix = uniqueName('it_rdis');
  const redis_prefix = `test:${topic_prefix}:`;
  const partitions_total = 2;
  const env = {
    TOPIC_PREFIX: topic_prefix,
    REDIS_KEY_PREFIX: redis_prefix,
    PARTITIONS: String(partitions_total),
    LANES: '1',
    NODE_ID: 'it-rdis',
    CHECKPOINT_INTERVAL_MS: '50',
  };
  let node: NodeProcess;
  const redis = new Redis(redis_url);
  const balances = new Map<string, number>();
  // Accounts (8: both partitions get some, which the checkpoint wait below asserts), each with a deposit.
  const accounts = Array.from({ length: 8 }, (_, i) => `${topic_prefix}_acct${i}`);

  before(async () => {
    node = await startNode(env);
    for (const [i, id] of accounts.entries()) {
      assert.equal(
        (await call(node, 'POST', '/v1/accounts', { id, currency: 'USD', kind: 'customer' })).status,
        201,
      );
      const amount = 1000 * (i + 1);
      const deposit = await call(node, 'POST', '/v1/deposits', { account: id, amount, currency: 'USD' });
      assert.equal(deposit.status, 201);
      balances.set(id, amount);
    }
  });
  after(async () => {
    if (node) await stopNode(node, 'SIGKILL');
    await redis.quit();
    await cleanup(topic_prefix, redis_prefix);
  });

  it('drops the checkpoint, replays from the start, and ends ready with the right balances', async () => {
    const key = (p: number) => `${redis_prefix}${topic_prefix}:ckpt:${p}`;
    // Wait for both checkpoints, then stop the node so nothing rewrites them.
    const deadline_ms = Date.now() + 20_000;
    while (Date.now() < deadline_ms && (await redis.exists(key(0), key(1))) < 2) await sleep(50);
    await stopNode(node);
    assert.equal(await redis.exists(key(0), key(1)), 2, 'both partitions were checkpointed');
    await redis.hset(key(0), 'offset', '0'); // claims nothing, holds every account: replay opens them twice
    await redis.hset(key(1), 'offset', '1000000'); // past the changelog's end
    node = await startNode(env, 60_000);
    const ready = await call(node, 'GET', '/readyz', undefined, {});
    assert.equal(ready.status, 200);
    for (const [id, amount] of balances) {
      const account = await call(node, 'GET', `/v1/accounts/${id}`);
      assert.equal(account.body.posted, amount, id);
    }
    const metrics = await (await fetch(`${node.base}/metrics`)).text();
    assert.equal(metricValue(metrics, 'checkpoints_dropped_total{reason="does_not_fold"}'), 1);
    assert.equal(metricValue(metrics, 'checkpoints_dropped_total{reason="ahead_of_changelog"}'), 1);
    // A new checkpoint replaces each dropped one once the partition changes again.
    for (const id of accounts)
      await call(node, 'POST', '/v1/deposits', { account: id, amount: 1, currency: 'USD' });
    const rewritten_by_ms = Date.now() + 20_000;
    const offsets = async () => [await redis.hget(key(0), 'offset'), await redis.hget(key(1), 'offset')];
    while (Date.now() < rewritten_by_ms) {
      const [a, b] = await offsets();
      if (a !== null && a !== '0' && b !== null && b !== '1000000') break;
      await sleep(100);
    }
    const [a, b] = await offsets();
    assert.ok(a !== null && Number(a) > 0, `partition 0 checkpoint rewritten (offset ${a})`);
    assert.ok(b !== null && Number(b) < 1_000_000, `partition 1 checkpoint rewritten (offset ${b})`);
    // And a restart from those new checkpoints is consistent too.
    await stopNode(node);
    node = await startNode(env, 60_000);
    for (const [id, amount] of balances) {
      assert.equal((await call(node, 'GET', `/v1/accounts/${id}`)).body.posted, amount + 1, id);
    }
    const after_restart = await (await fetch(`${node.base}/metrics`)).text();
    assert.equal(metricValue(after_restart, 'checkpoints_dropped_total'), 0);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig } from '../../src/config.js';
import { topicNames } from '../../src/streams/topics.js';
import { transactionalIdOf } from '../../src/streams/transaction.js';
import { verifyLedger } from '../chaos/verify.js';
import { readEvents } from '../support/ledger-verifier.js';
import { type DriverResult, drive, getJson, post, rng } from '../support/load-driver.js';
import {
  brokers,
  cleanup,
  freePort,
  type NodeProcess,
  redis_url,
  startNode,
  stopNode,
  uniqueName,
} from './helpers.js';

/**
 * Exactly-once under failure (issue 5), on the real broker and Redis: the node is killed with SIGKILL at
 * random moments while a workload runs, two nodes rebalance, Redis is flushed, a zombie producer tries to
 * commit. An independent verifier (test/support/ledger-verifier.ts) then reads the events topic.
 */
async function openAccounts(base: string, prefix: string, customers_total: number, merchants_total: number) {
  const customers = Array.from({ length: customers_total }, (_, i) => `${prefix}_c${i}`);
  const merchants = Array.from({ length: merchants_total }, (_, i) => `${prefix}_m${i}`);
  const all = [
    ...customers.map((id) => ({ id, kind: 'customer' })),
    ...merchants.map((id) => ({ id, kind: 'merchant' })),
  ];
  for (let i = 0; i < all.length; i += 50) {
    await Promise.all(
      all.slice(i, i + 50).map(async ({ id, kind }) => {
        const opened = await post(base, '/v1/accounts', { id, currency: 'USD', kind }, `open-${id}`);
        assert.equal(opened.status, 201, JSON.stringify(opened.body));
        if (kind === 'customer') {
          const funded = await post(
            base,
            '/v1/deposits',
            { account: id, amount: 1_000_000, currency: 'USD' },
            `fund-${id}`,
          );
          assert.equal(funded.status, 201, JSON.stringify(funded.body));
        }
      }),
    );
  }
  return { customers, merchants };
}

async function flushRedis(topic_prefix: string): Promise<void> {
  const redis = new Redis(redis_url);
  const keys = await redis.keys(`test:${topic_prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
}

/** The chaos suite's verifier (one verifier everywhere): fold, duplicates by command, every acknowledged write. */
async function verify(topic_prefix: string, base: string, result: DriverResult, accounts: string[]) {
  const run = {
    acknowledged: [...result.acknowledged_payments],
    accounts,
    acknowledged_deposits: result.acknowledged_deposits,
    acknowledged_refunds: result.acknowledged_refunds,
    acknowledged_captures: result.acknowledged_captures,
  };
  return verifyLedger({ brokers, topic_prefix, base, run });
}

describe('exactly once under failure (real Kafka + Redis)', { timeout: 900_000 }, () => {
  const prefixes: string[] = [];
  const nodes: NodeProcess[] = [];
  after(async () => {
    for (const node of nodes) await stopNode(node, 'SIGKILL');
    for (const prefix of prefixes) await cleanup(prefix, `test:${prefix}:`);
  });

  function envFor(topic_prefix: string, node_id: string, port: number) {
    return {
      TOPIC_PREFIX: topic_prefix,
      REDIS_KEY_PREFIX: `test:${topic_prefix}:`,
      PARTITIONS: '8',
      NODE_ID: node_id,
      PORT: String(port),
      LOG_LEVEL: process.env.TEST_NODE_LOG_LEVEL ?? 'warn',
      CHECKPOINT_INTERVAL_MS: '200',
      SESSION_TIMEOUT_MS: '6000',
      REPLY_TIMEOUT_MS: '5000',
    };
  }

  it('applies every acknowledged payment exactly once through 6 SIGKILLs and a Redis flush', async () => {
    const topic_prefix = uniqueName('it_crash');
    prefixes.push(topic_prefix);
    const env = envFor(topic_prefix, 'crash-node', await freePort());
    let node = await startNode(env);
    nodes.push(node);
    const accounts = await openAccounts(node.base, 'a', 800, 200);
    const random = rng(7);
    const commands_total = 20_000;
    const kills_total = 6;
    const progress = { sent: 0 };
    let kills = 0;
    // Kill at random points spread over the workload: the k-th kill lands somewhere in the k-th slice.
    const killer = (async () => {
      for (let k = 0; k < kills_total; k++) {
        const at = ((k + 0.2 + random() * 0.6) * commands_total) / (kills_total + 1);
        while (progress.sent < at) await new Promise((r) => setTimeout(r, 50));
        node.child.kill('SIGKILL');
        await node.exited;
        kills++;
        if (kills === 3) await flushRedis(topic_prefix); // checkpoints gone: restore replays the changelog
        node = await startNode(env);
        nodes.push(node);
      }
    })();
    const result = await drive({
      base: () => node.base,
      accounts,
      commands_total,
      concurrency: 256,
      deadline_ms: Date.now() + 600_000,
      currency: 'USD',
      seed: 11,
      progress,
    });
    await killer;
    assert.ok(kills >= 5, `killed ${kills} times`);
    assert.ok(result.sent >= 20_000, `sent ${result.sent}`);
    assert.equal(result.gave_up, 0);
    const verdict = await verify(topic_prefix, node.base, result, [
      ...accounts.customers,
      ...accounts.merchants,
    ]);
    console.log(
      JSON.stringify({ kills, ...result, acknowledged_payments: result.acknowledged_payments.size, verdict }),
    );
    assert.deepEqual(verdict.violations, []);
    assert.ok(verdict.acknowledged > 10_000, `acknowledged payments ${verdict.acknowledged}`);
  });

  it('rebalances between two nodes under load without loss or double processing', async () => {
    const topic_prefix = uniqueName('it_rebal');
    prefixes.push(topic_prefix);
    // A lane queue bound of 1 lets the consumer pause and resume partitions under this load.
    const env_a = { ...envFor(topic_prefix, 'node-a', await freePort()), LANE_BATCHES_IN_FLIGHT_MAX: '1' };
    const env_b = envFor(topic_prefix, 'node-b', await freePort());
    const a = await startNode(env_a);
    nodes.push(a);
    let b = await startNode(env_b);
    nodes.push(b);
    const accounts = await openAccounts(a.base, 'r', 150, 50);
    let load_done = false;
    let bounces = 0;
    const bouncer = (async () => {
      while (!load_done && bounces < 2) {
        await new Promise((r) => setTimeout(r, 3000));
        assert.equal(await stopNode(b, 'SIGTERM'), 0, 'node-b drains and exits 0');
        await new Promise((r) => setTimeout(r, 2000));
        b = await startNode(env_b);
        nodes.push(b);
        bounces++;
      }
    })();
    // Requests alternate between the nodes; node-b's are retried (same key) while it restarts.
    let turn = 0;
    const result = await drive({
      base: () => (turn++ % 2 === 0 ? a.base : b.base),
      accounts,
      commands_total: 6_000,
      concurrency: 128,
      deadline_ms: Date.now() + 300_000,
      currency: 'USD',
      seed: 23,
    });
    load_done = true;
    await bouncer;
    assert.ok(bounces >= 1, `node-b restarted ${bounces} times`);
    const verdict = await verify(topic_prefix, a.base, result, [
      ...accounts.customers,
      ...accounts.merchants,
    ]);
    console.log(
      JSON.stringify({
        bounces,
        ...result,
        acknowledged_payments: result.acknowledged_payments.size,
        verdict,
      }),
    );
    assert.deepEqual(verdict.violations, []);
    // Nothing abandoned leaves the checked set: every request got an answer, and most were acknowledged.
    assert.equal(result.gave_up, 0);
    assert.ok(verdict.acknowledged > 3_000, `acknowledged payments ${verdict.acknowledged}`);
    const metrics = await (await fetch(`${a.base}/metrics`)).text();
    // Lane pauses (LANE_BATCHES_IN_FLIGHT_MAX 1 above) happen here only when batches of several partitions
    // reach the lane at once, which depends on timing since reads stopped taking transactions; the
    // deterministic cover is test/streams/processor-faults.test.ts ('pauses partitions …').
    // Requests to node-a whose partition node-b owned were answered through node-a's reply topic; the
    // rest straight from node-a's own commits.
    assert.match(metrics, /gateway_replies_delivered_total\{path="local"\} [1-9]/, 'local replies');
    assert.match(metrics, /gateway_replies_delivered_total\{path="topic"\} [1-9]/, 'replies via topic');
  });

  it('fences a zombie producer: it cannot commit after the owner took its transactional id back', async () => {
    const topic_prefix = uniqueName('it_fence');
    prefixes.push(topic_prefix);
    const env = envFor(topic_prefix, 'fence-node', await freePort());
    const node = await startNode(env);
    nodes.push(node);
    assert.equal(
      (await post(node.base, '/v1/accounts', { id: 'f1', currency: 'USD', kind: 'customer' }, 'f1')).status,
      201,
    );
    const kafka = new Kafka({ brokers, clientId: 'zombie', logLevel: logLevel.NOTHING });
    // The account's partition: find it from the events topic (the node wrote account_opened there).
    // The gateway namespaces account ids per merchant (`<merchant tag>_<id>`) inside the ledger.
    const opened = (await readEvents(brokers, `${topic_prefix}.events`)).find((e) =>
      e.account_id.endsWith('f1'),
    );
    assert.ok(opened);
    const admin = kafka.admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(`${topic_prefix}.events`);
    await admin.disconnect();
    const partition = offsets.find((o) => o.high !== '0')!.partition;
    // The node's transactional id: the partition's, or the node's own with a KIP-447 client.
    const config = loadConfig({ ...process.env, ...env });
    const scope =
      config.transaction_scope_effective === 'node'
        ? { per: 'node' as const, node_id: config.node_id }
        : { per: 'partition' as const, partition };
    const zombie = kafka.producer({
      transactionalId: transactionalIdOf(
        config.topic_prefix,
        topicNames(config.topic_prefix).commands,
        scope,
      ),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await zombie.connect(); // fences the node's producer for this partition
    const txn = await zombie.transaction();
    await txn.send({
      topic: `${topic_prefix}.events`,
      messages: [{ partition, value: Buffer.from('zombie') }],
    });
    // The node's next commit on this partition fails; it checks it still owns the partition and takes the
    // transactional id back, which fences the zombie. The deposit is applied once.
    const deposit = await post(
      node.base,
      '/v1/deposits',
      { account: 'f1', amount: 42, currency: 'USD' },
      'dep-f1',
    );
    assert.equal(deposit.status, 201, JSON.stringify(deposit.body));
    await assert.rejects(txn.commit(), 'the zombie cannot commit');
    await zombie.disconnect().catch(() => {});
    const events = await readEvents(brokers, `${topic_prefix}.events`);
    assert.equal(events.filter((e) => e.type === 'deposited').length, 1);
    const account = await getJson(node.base, '/v1/accounts/f1');
    assert.equal(account.body.posted, 42);
    const metrics = await (await fetch(`${node.base}/metrics`)).text();
    assert.match(metrics, /transactions_aborted_total [1-9]/);
  });
});

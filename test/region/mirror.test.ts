import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { topicNames } from '../../src/streams/topics.js';
import { nodeEnv, openAccounts, repo_root, ScriptBroker, sleep } from '../chaos/env.js';
import { apiBalances, type RunLog, verifyEvents } from '../chaos/verify.js';
import { type NodeProcess, redis_url, startNode, stopNode, uniqueName } from '../integration/helpers.js';
import { type RawEvent, readPartitionedEvents, waitQuiescent } from '../support/ledger-verifier.js';
import { type DriverResult, drive } from '../support/load-driver.js';
import { copyOf, MirrorMaker, topicRegex } from './mirror-maker.js';

/**
 * The second region (issue 14): a node writes to a primary broker, MirrorMaker 2 (dedicated mode,
 * exactly-once source, read_committed source consumer) copies the events topic to a secondary broker, and the
 * independent verifier reads the secondary's copy `primary.<prefix>.events` read_committed. The copy must
 * fold to the balances the primary's API answers, hold every acknowledged write once, and be the primary's
 * events partition by partition in the same order, also after MirrorMaker is SIGKILLed under load.
 * Its own two brokers (free ports, .cache/kafka-chaos-region-*), its own MirrorMaker (.cache/region-test-*).
 */
const COPY_TIMEOUT_MS = 90_000;
const COPY_POLL_MS = 500;
const PARTITIONS = 8;

interface Copies {
  source: { partition: number; event: RawEvent }[];
  copy: { partition: number; event: RawEvent }[];
  waited_ms: number;
}

function eventIdsByPartition(entries: { partition: number; event: RawEvent }[]): Map<number, string[]> {
  const by = new Map<number, string[]>();
  for (const { partition, event } of entries) {
    const ids = by.get(partition) ?? [];
    ids.push(event.event_id);
    by.set(partition, ids);
  }
  return new Map([...by].sort(([a], [b]) => a - b));
}

function merge(runs: DriverResult[], accounts: string[]): RunLog {
  return {
    acknowledged: runs.flatMap((r) => [...r.acknowledged_payments]),
    accounts,
    acknowledged_deposits: runs.flatMap((r) => r.acknowledged_deposits),
    acknowledged_refunds: runs.flatMap((r) => r.acknowledged_refunds),
    acknowledged_captures: runs.flatMap((r) => r.acknowledged_captures),
  };
}

describe('second region: MirrorMaker 2 copies the events topic (two real brokers + Redis)', {
  timeout: 300_000,
}, () => {
  const topic_prefix = uniqueName('region');
  const events_topic = topicNames(topic_prefix).events;
  const copy_topic = copyOf(events_topic);
  const runs: DriverResult[] = [];
  const passed = new Set<string>();
  let primary: ScriptBroker;
  let secondary: ScriptBroker;
  let mm2: MirrorMaker;
  let node: NodeProcess | null = null;
  let accounts: { customers: string[]; merchants: string[] };
  let all_accounts: string[] = [];

  /** Where to look when an assertion fails. */
  const logs = () =>
    `logs: MirrorMaker ${mm2?.log_file} (config ${mm2?.config_file}); primary broker ` +
    `${primary ? join(primary.cache_dir, 'logs', 'server.log') : '-'}; secondary broker ` +
    `${secondary ? join(secondary.cache_dir, 'logs', 'server.log') : '-'}; node output: last lines\n` +
    (node?.output.join('').split('\n').slice(-15).join('\n') ?? '');

  before(async () => {
    [primary, secondary] = await Promise.all([
      ScriptBroker.ephemeral('region-primary'),
      ScriptBroker.ephemeral('region-secondary'),
    ]);
    mm2 = new MirrorMaker({
      source: primary.brokers,
      target: secondary.brokers,
      topics: topicRegex(events_topic),
      exactly_once: true,
      cache_dir: join(repo_root, '.cache', `region-test-${process.pid}`),
    });
    const t0 = Date.now();
    await Promise.all([primary.start(), secondary.start(), mm2.fetch()]);
    const brokers_ms = Date.now() - t0;
    node = await startNode(nodeEnv({ brokers: primary.brokers, redis_url, topic_prefix }));
    const node_ms = Date.now() - t0;
    // The node created the events topic: MirrorMaker finds it at its first topic listing.
    await mm2.start();
    const mm2_ms = Date.now() - t0;
    accounts = await openAccounts(() => node!.base, 'rg', 60, 15);
    all_accounts = [...accounts.customers, ...accounts.merchants];
    console.log(JSON.stringify({ brokers_ms, node_ms, mm2_ms, accounts_ms: Date.now() - t0 }));
  });

  after(async () => {
    if (node) await stopNode(node, 'SIGKILL');
    await mm2?.kill().catch(() => {});
    await Promise.all([primary?.kill().catch(() => {}), secondary?.kill().catch(() => {})]);
    if (passed.size === 2 && !process.env.MIRROR_TEST_KEEP) {
      await mm2.dispose();
      await Promise.all([primary.dispose(), secondary.dispose()]);
      const redis = new Redis(redis_url);
      const keys = await redis.keys(`chaos:${topic_prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    } else {
      process.stderr.write(`mirror.test: kept for diagnosis: ${logs()}\n`);
    }
  });

  const load = (seed: number, commands_total: number, progress?: { sent: number }) =>
    drive({
      base: () => node!.base,
      accounts,
      commands_total,
      concurrency: 32,
      deadline_ms: Date.now() + 60_000,
      currency: 'USD',
      seed,
      ...(progress ? { progress } : {}),
    });

  /** The primary's events once quiescent, and the copy once it holds at least as many (bounded). */
  async function waitForCopy(): Promise<Copies> {
    await waitQuiescent(primary.brokers, topic_prefix, 60_000);
    const source = await readPartitionedEvents(primary.brokers, events_topic, 30_000);
    const t0 = Date.now();
    let copy: { partition: number; event: RawEvent }[] = [];
    while (Date.now() - t0 < COPY_TIMEOUT_MS) {
      copy = await readPartitionedEvents(secondary.brokers, copy_topic, 30_000).catch(() => []);
      if (copy.length >= source.length) break;
      await sleep(COPY_POLL_MS);
    }
    return { source, copy, waited_ms: Date.now() - t0 };
  }

  /** The verifier on the copy against the primary's API, and the copy against the primary partition-wise. */
  async function verifyCopy(copies: Copies) {
    const balances = await apiBalances(node!.base, all_accounts);
    const run = merge(runs, all_accounts);
    const verdict = verifyEvents(
      copies.copy.map((e) => e.event),
      run,
      balances,
    );
    assert.deepEqual(verdict.violations, [], `the copy's verdict ${JSON.stringify(verdict)}; ${logs()}`);
    assert.equal(verdict.sum_of_balances, 0);
    assert.equal(verdict.balances_checked, all_accounts.length);
    assert.equal(verdict.events_total, copies.source.length, `copy vs primary event count; ${logs()}`);
    // Same records in the same partitions in the same order: a replay in the second region would rebuild
    // every account's state exactly as the primary's nodes did.
    assert.deepEqual(
      eventIdsByPartition(copies.copy),
      eventIdsByPartition(copies.source),
      `copy ≠ primary partition by partition; ${logs()}`,
    );
    return verdict;
  }

  it('the copy folds to the primary API balances, with every acknowledged write once', async () => {
    const t0 = Date.now();
    runs.push(await load(3, 800));
    const load_ms = Date.now() - t0;
    assert.equal(runs[0]!.gave_up, 0);
    const copies = await waitForCopy();
    const verdict = await verifyCopy(copies);
    assert.ok(verdict.acknowledged > 600, `acknowledged writes ${verdict.acknowledged}`);

    const kafka = new Kafka({
      brokers: secondary.brokers,
      clientId: 'mirror-test',
      logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    try {
      // sync.topic.configs.enabled: the changelog's retention (forever) came with it.
      const described = await admin.describeConfigs({
        resources: [{ type: 2 /* TOPIC */, name: copy_topic, configNames: ['retention.ms'] }],
        includeSynonyms: false,
      });
      const retention = described.resources[0]?.configEntries.find((c) => c.configName === 'retention.ms');
      assert.equal(retention?.configValue, '-1', `retention.ms of ${copy_topic}`);
      const offsets = await admin.fetchTopicOffsets(copy_topic);
      assert.equal(offsets.length, PARTITIONS);
      // Exactly-once source writes in transactions: every commit marker takes an offset, so the copy's end
      // offsets exceed its records. Without EOS (idempotent producer only) they would be equal.
      const end_total = offsets.reduce((sum, p) => sum + Number(p.high), 0);
      assert.ok(end_total > copies.copy.length, `end offsets ${end_total} vs records ${copies.copy.length}`);
    } finally {
      await admin.disconnect();
    }
    console.log(
      JSON.stringify({
        load_ms,
        events: copies.source.length,
        copy_waited_ms: copies.waited_ms,
        acknowledged: verdict.acknowledged,
      }),
    );
    passed.add('fold');
  });

  it('a SIGKILL of MirrorMaker under load leaves no duplicate and no gap in the copy (EOS)', async () => {
    const before_kill = (await readPartitionedEvents(secondary.brokers, copy_topic, 30_000)).length;
    const commands_total = 1_800;
    const progress = { sent: 0 };
    let copied_at_kill = -1;
    let restarted_ms = 0;
    const killer = (async () => {
      while (progress.sent < commands_total / 3) await sleep(20);
      copied_at_kill = (await readPartitionedEvents(secondary.brokers, copy_topic, 30_000)).length;
      restarted_ms = await mm2.killAndRestart();
    })();
    // Its failure surfaces here, after the load, not as an unhandled rejection while the load runs.
    const killed = killer.then(
      () => null,
      (err: unknown) => err,
    );
    runs.push(await load(5, commands_total, progress));
    const kill_error = await killed;
    if (kill_error) throw kill_error;
    assert.equal(runs[1]!.gave_up, 0);
    // MirrorMaker was copying this run's events when it died (not idle between runs), and the node went on
    // writing after it: the restarted one had to resume mid-stream from its committed source offsets.
    assert.ok(copied_at_kill > before_kill, `copy at kill ${copied_at_kill}, before the run ${before_kill}`);
    const copies = await waitForCopy();
    assert.ok(copies.source.length > copied_at_kill, 'events were written after the kill');
    const verdict = await verifyCopy(copies);
    console.log(
      JSON.stringify({
        before_kill,
        copied_at_kill,
        events: copies.source.length,
        restart_ms: restarted_ms,
        copy_waited_ms: copies.waited_ms,
        acknowledged: verdict.acknowledged,
      }),
    );
    passed.add('kill');
  });
});

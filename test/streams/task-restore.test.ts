import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Lanes } from '../../src/actors/lanes.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { encode, encodeOwned } from '../../src/protocol/wire.js';
import type { Checkpoints } from '../../src/streams/checkpoints.js';
import { Task } from '../../src/streams/task.js';
import { type RestoreHost, TaskRestorer } from '../../src/streams/task-restore.js';
import { topicNames } from '../../src/streams/topics.js';
import { metricValue } from '../support/metrics.js';
import { ScriptedCluster } from '../support/scripted-kafka.js';

/**
 * Found by chaos rebalance-storm (2026-12-02, both transaction scopes): a node stopped on "lane invariant:
 * partition 0 is not loaded on this lane". A rebuild started while an older restore of the same task was
 * still running: the older one had loaded the lane, the rebuild dropped it, and the older one then found the
 * task RESTORING again (the rebuild's state) and declared it RUNNING on the dropped lane. A restore attempt
 * now acts on a task only while it is the task's latest (Task.restore_attempt), and rebuilds are single
 * flight.
 */
const names = topicNames('tr');

function gate() {
  let open = () => {};
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { open, opened };
}

describe('task restore', () => {
  const lanes = new Lanes({ lanes: 1, partitions_total: 1, lane_queue_max: 64 });
  after(() => lanes.close());

  it('an older restore overtaken by a newer one never declares the task RUNNING', async () => {
    const cluster = new ScriptedCluster();
    cluster.createTopic(names.commands, 1);
    cluster.createTopic(names.events, 1);
    const first_after_replay = gate();
    const second_before_load = gate();
    let committed_calls = 0;
    let checkpoint_loads = 0;
    const host: RestoreHost = {
      kafka: cluster.port(),
      lanes,
      checkpoints: {
        load: async () => {
          if (++checkpoint_loads === 2) await second_before_load.opened;
          return null;
        },
        drop: async () => {},
      } as unknown as Checkpoints,
      names,
      app_id: 'tr',
      restore_timeout_ms: 5_000,
      node_transactions: false,
      log: createLogger('silent', 'task-restore'),
      metrics: createMetrics(),
      ensureProducer: async () => {},
      keepOwned: async (tasks) => tasks,
      committedOffsets: async () => {
        if (++committed_calls === 1) await first_after_replay.opened;
        return new Map([[0, '0']]);
      },
      seek: () => {},
      releaseRevoked: async () => {},
      stopping: () => false,
      fatal: (err) => {
        throw err;
      },
    };
    const restorer = new TaskRestorer(host);
    const task = new Task(0, Date.now());
    task.transition('RESTORING');
    const older = restorer.restoreNow([task]); // loads the lane, then waits before it would finish
    while (committed_calls === 0) await new Promise((r) => setTimeout(r, 5));
    // A rebuild overlaps it: the task failed, its lane state is dropped, a new restore starts.
    task.transition('FAILED');
    await lanes.drop(0);
    task.transition('RESTORING');
    const newer = restorer.restoreNow([task]); // waits before it loads the lane
    while (checkpoint_loads < 2) await new Promise((r) => setTimeout(r, 5));
    first_after_replay.open();
    await older;
    assert.equal(task.state, 'RESTORING', 'the overtaken restore must leave the task to the newer one');
    await assert.rejects(lanes.apply(0, encodeOwned([])), /not loaded/, 'the lane holds nothing yet');
    second_before_load.open();
    await newer;
    assert.equal(task.state, 'RUNNING');
    await lanes.apply(0, encodeOwned([])); // loaded by the newer restore
  });

  it('node transactions: a previous owner whose offsets were accepted is waited for before the changelog is read', async () => {
    // Found by chaos broker-kill on @platformatic/kafka (2026-12-03): the old owner's transaction had sent
    // its offsets (accepted in its generation) but not yet its records when the new owner read the
    // changelog's end: no transaction open, so the end was final to it. The records then landed and committed:
    // the restored state lacked a refund whose command the committed offset skipped ("settled for unknown
    // refund" on every node, for good, once checkpointed).
    const cluster = new ScriptedCluster();
    cluster.createTopic(names.commands, 1);
    cluster.createTopic(names.events, 1);
    const group_id = 'tr.processor';
    const old_owner = cluster.port().transactionalProducer({
      transactional_id: 'tr-old-owner',
      transaction_timeout_ms: 30_000,
    });
    await old_owner.connect();
    const txn = await old_owner.transaction();
    await txn.sendOffsets({
      consumerGroupId: group_id,
      topics: [{ topic: names.commands, partitions: [{ partition: 0, offset: '1' }] }],
    });
    const admin = cluster.port().admin();
    const metrics = createMetrics();
    const host: RestoreHost = {
      kafka: cluster.port(),
      lanes,
      checkpoints: { load: async () => null, drop: async () => {} } as unknown as Checkpoints,
      names,
      app_id: 'tr',
      restore_timeout_ms: 5_000,
      node_transactions: true,
      log: createLogger('silent', 'task-restore'),
      metrics,
      ensureProducer: async () => {},
      keepOwned: async (tasks) => tasks,
      committedOffsets: async (partitions) => {
        const committed = await admin.groupOffsets(group_id, names.commands); // requireStable
        return new Map(
          partitions.map((p) => [p, committed.get(p) === '-1' ? '0' : (committed.get(p) ?? '0')]),
        );
      },
      seek: () => {},
      releaseRevoked: async () => {},
      stopping: () => false,
      fatal: (err) => {
        throw err;
      },
    };
    const task = new Task(0, Date.now());
    task.transition('RESTORING');
    const restored = new TaskRestorer(host).restoreNow([task]);
    await new Promise((r) => setTimeout(r, 50)); // the restore is under way
    const opened = {
      type: 'account_opened',
      event_id: 'c1:0',
      account_id: 'acct_old',
      time_ms: Date.UTC(2026, 11, 3),
      command_id: 'c1',
      fingerprint: null,
      currency: 'usd',
      kind: 'customer',
      overdraft_limit: 0,
      risk_rules: null,
    };
    await txn.sendBatch({
      topicMessages: [
        { topic: names.events, messages: [{ partition: 0, key: null, value: encode(opened) }] },
      ],
      acks: -1,
    });
    await txn.commit();
    await restored;
    assert.equal(task.state, 'RUNNING');
    assert.equal(
      metricValue(await metrics.registry.metrics(), 'restore_events_replayed_total'),
      1,
      "the old owner's committed event is in the restored state",
    );
    assert.ok(task.events_next_offset >= 1n, `the restore's end ${task.events_next_offset} covers it`);
  });
});

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Lanes } from '../../src/actors/lanes.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { encodeOwned } from '../../src/protocol/wire.js';
import type { Checkpoints } from '../../src/streams/checkpoints.js';
import { Task } from '../../src/streams/task.js';
import { type RestoreHost, TaskRestorer } from '../../src/streams/task-restore.js';
import { topicNames } from '../../src/streams/topics.js';
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
});

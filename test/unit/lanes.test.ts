import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Lanes } from '../../src/actors/lanes.js';
import { encodeOwned } from '../../src/protocol/wire.js';

/**
 * Found by chaos graceful-drain and rebalance-storm on @platformatic/kafka (2026-12-03/04): nodes stopped on
 * `lane invariant: partition N is not loaded on this lane`. piscina 5.3's default queue is not FIFO: when
 * the worker frees up, the task after the one it hands over goes back to the tail, so a new task's load
 * could run before the closed task's drop, queued earlier. These tests queue many ops at once, as a
 * rebalance does, and fail on piscina's default order.
 */
const partitions_total = 8;
const noRecords = () => encodeOwned([]);

describe('lanes', () => {
  const lanes = new Lanes({ lanes: 1, partitions_total, lane_queue_max: 1024 });
  after(() => lanes.close());

  it('runs the ops of a lane in the order they were queued, however deep the queue', async () => {
    for (let p = 0; p < partitions_total; p++) await lanes.load(p, null);
    const ops: Promise<unknown>[] = [];
    // A rebalance's worth at once: every partition's task closed (drop), a new one restored (load), applied.
    for (let round = 0; round < 4; round++) {
      for (let p = 0; p < partitions_total; p++) {
        ops.push(lanes.drop(p), lanes.load(p, null), lanes.apply(p, noRecords()));
      }
    }
    const results = await Promise.allSettled(ops);
    const failed = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason));
    assert.deepEqual(failed, []);
    assert.deepEqual((await lanes.stats())[0]?.partitions, partitions_total);
  });

  it('refuses an op on a partition it dropped, naming who dropped it', async () => {
    await lanes.load(3, null);
    await lanes.drop(3);
    await assert.rejects(
      lanes.apply(3, noRecords()),
      /apply of partition 3, which is not loaded \(dropped by/,
    );
    await assert.rejects(lanes.checkpoint(3), /checkpoint of partition 3, which is not loaded/);
  });

  it('a full lane refuses new ops and keeps the order of those it took', async () => {
    const small = new Lanes({ lanes: 1, partitions_total, lane_queue_max: 2 });
    try {
      await small.load(0, null);
      const ops = Array.from({ length: 20 }, () => small.apply(0, noRecords()));
      const results = await Promise.allSettled(ops);
      const refused = results.filter((r) => r.status === 'rejected');
      assert.ok(refused.length > 0, 'a queue bounded at 2 refuses some of 20 ops queued at once');
      for (const r of refused) assert.match(String(r.reason), /more than 2 tasks queued/);
      // No gap in the lane's order: ops after the refused ones still run.
      await small.drop(0);
      await small.load(0, null);
      await small.apply(0, noRecords());
    } finally {
      await small.close();
    }
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Lanes } from '../../src/actors/lanes.js';
import { createMetrics } from '../../src/metrics.js';
import { encode } from '../../src/protocol/wire.js';
import { CheckpointScheduler } from '../../src/streams/checkpoint-schedule.js';
import type { Checkpoints } from '../../src/streams/checkpoints.js';
import { Task } from '../../src/streams/task.js';

/** Lanes and Checkpoints reduced to what the scheduler calls; each write resolves with `written`. */
function harness(written: boolean[]) {
  const calls: string[] = [];
  const writes: { partition: number; offset: bigint }[] = [];
  let settle: () => void = () => {};
  const settled = new Promise<void>((resolve) => {
    settle = resolve;
  });
  const lanes = {
    checkpoint: async (partition: number) => {
      calls.push(`checkpoint ${partition}`);
      return encode({ upserts: [], deletes: [] });
    },
    checkpointFailed: async (partition: number) => {
      calls.push(`failed ${partition}`);
    },
  } as unknown as Lanes;
  const checkpoints = {
    write: async (partition: number, offset: bigint) => {
      writes.push({ partition, offset });
      const ok = written.shift() ?? true;
      setImmediate(settle);
      return ok;
    },
  } as unknown as Checkpoints;
  const scheduler = new CheckpointScheduler({
    lanes,
    checkpoints,
    metrics: createMetrics(),
    interval_ms: 1_000,
    dirty_max: 100,
  });
  return { scheduler, calls, writes, settled };
}

function runningTask(now_ms: number): Task {
  const task = new Task(3, now_ms);
  task.transition('RESTORING');
  task.transition('RUNNING');
  task.changed_since_checkpoint = true;
  task.events_next_offset = 42n;
  return task;
}

describe('checkpoint scheduling', () => {
  it('waits for the interval or for dirty_max changed entities, then writes at the events end', async () => {
    const h = harness([true]);
    const task = runningTask(0);
    await h.scheduler.afterCommit(task, 99, 999);
    assert.deepEqual(h.writes, [], 'neither due nor dirty enough');
    await h.scheduler.afterCommit(task, 100, 999);
    assert.deepEqual(h.writes, [{ partition: 3, offset: 42n }], 'dirty_max reached');
    await h.settled;
    assert.equal(task.last_checkpoint_ms, 999);
    assert.equal(task.changed_since_checkpoint, false);
    assert.equal(task.checkpoint_in_flight, false);
  });

  it('never checkpoints a task that is not RUNNING, nor one without changes, nor two at once', async () => {
    const h = harness([]);
    const closed = runningTask(0);
    closed.transition('CLOSED');
    await h.scheduler.afterCommit(closed, 1_000, 5_000);
    const unchanged = runningTask(0);
    unchanged.changed_since_checkpoint = false;
    await h.scheduler.afterCommit(unchanged, 1_000, 5_000);
    const busy = runningTask(0);
    busy.checkpoint_in_flight = true;
    await h.scheduler.afterCommit(busy, 1_000, 5_000);
    assert.deepEqual(h.calls, []);
    assert.deepEqual(h.writes, []);
  });

  it('a failed write keeps the changes for the next one and tells the lane', async () => {
    const h = harness([false]);
    const task = runningTask(0);
    await h.scheduler.afterCommit(task, 0, 1_000);
    await h.settled;
    await new Promise((r) => setImmediate(r));
    assert.equal(task.changed_since_checkpoint, true);
    assert.equal(task.last_checkpoint_ms, 0);
    assert.deepEqual(h.calls, ['checkpoint 3', 'failed 3']);
  });

  it('the checkpoint age is that of the oldest unsaved change', () => {
    const a = runningTask(1_000);
    const b = runningTask(4_000);
    const clean = runningTask(0);
    clean.changed_since_checkpoint = false;
    assert.equal(CheckpointScheduler.ageMs([a, b, clean], 6_000), 5_000);
    assert.equal(CheckpointScheduler.ageMs([clean], 6_000), 0);
  });
});

import { performance } from 'node:perf_hooks';
import type { Lanes } from '../actors/lanes.js';
import type { Metrics } from '../metrics.js';
import type { CheckpointDelta } from '../protocol/checkpoint-delta.js';
import { decode } from '../protocol/wire.js';
import type { Checkpoints } from './checkpoints.js';
import type { Task } from './task.js';

/**
 * When a task's actor state is checkpointed to Redis: after `interval_ms`, or sooner once `dirty_max`
 * entities changed; always between two chunks of the partition, after the commit, so that the delta brings
 * the stored checkpoint to exactly the events below the task's events_next_offset. One write per task in
 * flight; a failed write keeps the changes for the next one.
 */
export interface CheckpointScheduleOptions {
  lanes: Lanes;
  checkpoints: Checkpoints;
  metrics: Metrics;
  interval_ms: number;
  dirty_max: number;
}

export class CheckpointScheduler {
  readonly #o: CheckpointScheduleOptions;

  constructor(o: CheckpointScheduleOptions) {
    this.#o = o;
  }

  /** Called after each committed chunk of `task`, with the lane's count of entities changed since the last one. */
  async afterCommit(task: Task, dirty_total: number, now_ms: number): Promise<void> {
    // Only a RUNNING task owns its partition's lane state. A task closed while its last batch committed
    // (revoked during a broker outage, say) reaches this point after the partition's next owner may have
    // queued its restore on the lane: its checkpoint op would then run on that owner's half-restored
    // state (and clear that state's dirty set) and store it under this task's offset, a checkpoint that
    // claims events its content lacks. Checked right before the op is queued (lanes.checkpoint queues
    // synchronously), so no other owner's load can come in between. See RELIABILITY.md, 2026-12-02.
    if (task.state !== 'RUNNING' || !this.due(task, dirty_total, now_ms)) return;
    const started = performance.now();
    const delta = decode<CheckpointDelta>(await this.#o.lanes.checkpoint(task.partition));
    const offset = task.events_next_offset;
    task.checkpoint_in_flight = true;
    task.changed_since_checkpoint = false;
    const { lanes, metrics } = this.#o;
    this.#o.checkpoints
      .write(task.partition, offset, delta, now_ms)
      .then(async (written) => {
        metrics.checkpoint_duration_seconds.observe((performance.now() - started) / 1000);
        if (written) task.last_checkpoint_ms = now_ms;
        else {
          task.changed_since_checkpoint = true;
          if (task.state === 'RUNNING') await lanes.checkpointFailed(task.partition).catch(() => {});
        }
      })
      .finally(() => {
        task.checkpoint_in_flight = false;
      });
  }

  /** A checkpoint of the task is wanted now: changes older than the interval, or too many of them. */
  due(task: Task, dirty_total: number, now_ms: number): boolean {
    if (!task.changed_since_checkpoint || task.checkpoint_in_flight) return false;
    return now_ms - task.last_checkpoint_ms >= this.#o.interval_ms || dirty_total >= this.#o.dirty_max;
  }

  /** Age of the oldest unsaved change among `tasks`: the replay a restart would cost. */
  static ageMs(tasks: Iterable<Task>, now_ms: number): number {
    let age_ms = 0;
    for (const task of tasks) {
      if (task.changed_since_checkpoint) age_ms = Math.max(age_ms, now_ms - task.last_checkpoint_ms);
    }
    return age_ms;
  }
}

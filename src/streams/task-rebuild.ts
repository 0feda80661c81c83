import type { Lanes } from '../actors/lanes.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { isTransient, kafkaErrorType } from './kafka-errors.js';
import type { Task } from './task.js';
import type { TaskRestorer } from './task-restore.js';
import { GenerationMovedError } from './transaction.js';

export interface TaskRebuildOptions {
  lanes: Lanes;
  log: Logger;
  metrics: Metrics;
  restorer: TaskRestorer;
  /** Asks the group coordinator, not our possibly stale view of the assignment. */
  stillOwned: (partition: number) => Promise<boolean>;
  closeTask: (task: Task) => Promise<void>;
}

/** What follows a failed transaction: the partition's state dropped and rebuilt from its changelog. */
export class TaskRebuilds {
  readonly #o: TaskRebuildOptions;

  constructor(opts: TaskRebuildOptions) {
    this.#o = opts;
  }

  /**
   * A failed or ambiguous transaction: the lane state may hold effects that were never committed (or were).
   * Drop it, replace the producer (a new one with the same transactional id fences the old one, whose client
   * state after a failed step is unknown), rebuild from the changelog, and seek back to the
   * committed offset so the batch is processed again on a state that matches the log.
   */
  async recover(task: Task, err: unknown): Promise<void> {
    if (err instanceof GenerationMovedError) {
      // Refused before anything was written: the partition left this member in a rebalance (its batch is no
      // longer current). The assignment closes it anyway; closing now releases the lane state that holds
      // the refused chunk, without a rebuild the partition's new owner makes moot.
      this.#o.log.info({ partition: task.partition }, 'partition left the generation; task closed');
      await this.#o.closeTask(task);
      return;
    }
    this.#o.metrics.transactions_aborted_total.inc();
    this.#o.log.warn(
      { partition: task.partition, err: (err as Error).message, type: kafkaErrorType(err) },
      'transaction failed; rebuilding partition',
    );
    if (task.state === 'CLOSED') return; // revoked meanwhile: the new owner starts from the last commit
    task.transition('FAILED');
    task.offset_deferred = null; // the rebuild seeks to the committed offset: those reads are applied again
    // Chunks chained after the failed one were applied on the state being dropped: their links see this
    // chain's failure and commit nothing; chunks after the rebuild start a new chain.
    task.commit_tail = Promise.resolve(true);
    const old = task.producer;
    task.producer = null;
    await old?.disconnect().catch(() => {});
    await this.rebuild(task);
  }

  /**
   * FAILED → RESTORING → RUNNING. If the broker is away meanwhile (ownership check, replay or committed
   * offset fail), the task goes back to FAILED and the partition's next batch tries again (StreamProcessor#eachBatch):
   * it must never stay FAILED with its batches skipped.
   */
  rebuild(task: Task): Promise<void> {
    // Single flight: a failed link and the partition's next batch may both ask; the second joins the first.
    if (task.rebuilding) return task.rebuilding;
    const rebuilding = this.#rebuildOnce(task).finally(() => {
      if (task.rebuilding === rebuilding) task.rebuilding = null;
    });
    task.rebuilding = rebuilding;
    return rebuilding;
  }

  async #rebuildOnce(task: Task): Promise<void> {
    try {
      await this.#o.lanes.drop(task.partition);
      // Re-initializing the transactional id fences whoever holds it. If we were fenced because another node
      // now owns p (we are the zombie), doing so would fence the rightful owner: ask the group coordinator.
      if (!(await this.#o.stillOwned(task.partition))) {
        this.#o.log.warn({ partition: task.partition }, 'partition no longer owned; released');
        await this.#o.closeTask(task);
        return;
      }
      task.transition('RESTORING');
      task.restored = this.#o.restorer.restoreNow([task]); // seeks to the committed offset read after the fence
      await task.restored;
    } catch (err) {
      task.restored = Promise.resolve();
      if (task.state === 'RESTORING' || task.state === 'RUNNING') task.transition('FAILED');
      const attempts = (task.restore_error?.attempts ?? 0) + 1;
      const reason = `${(err as Error)?.name}: ${(err as Error)?.message}`;
      task.restore_error = { reason, attempts, permanent: !isTransient(err) };
      this.#o.log.warn(
        { partition: task.partition, err: (err as Error).message },
        'partition rebuild failed; retried with its next batch',
      );
    }
  }
}

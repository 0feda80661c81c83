import { performance } from 'node:perf_hooks';
import { type Lanes, ReplayDisagreementError } from '../actors/lanes.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { encodeOwned } from '../protocol/wire.js';
import type { Checkpoints } from './checkpoints.js';
import { isTransient } from './kafka-errors.js';
import type { KafkaPort } from './kafka-port.js';
import { CheckpointAheadError, type ReplayTarget, replayPartitions } from './restore.js';
import type { Task } from './task.js';
import type { TopicNames } from './topics.js';

/**
 * What a task restore needs from the stream processor that owns the tasks: its Kafka parts and the few
 * processor operations a restore takes part in (producer fencing, ownership, committed offsets, seeks).
 */
export interface RestoreHost {
  kafka: KafkaPort;
  lanes: Lanes;
  checkpoints: Checkpoints;
  names: TopicNames;
  app_id: string;
  restore_timeout_ms: number;
  /** One transactional producer per node: a changelog end is taken only with no transaction open on it. */
  node_transactions: boolean;
  log: Logger;
  metrics: Metrics;
  /** Creates and initializes (fences with) the task's transactional producer, if it has none. */
  ensureProducer(task: Task): Promise<unknown>;
  /** Closes the tasks the coordinator no longer assigns to this member; returns the others. */
  keepOwned(tasks: Task[]): Promise<Task[]>;
  committedOffsets(partitions: number[]): Promise<Map<number, string>>;
  /** Moves the commands consumer of the partition to `offset`. */
  seek(partition: number, offset: string): void;
  /** Releases the lane state of tasks revoked while they restored. */
  releaseRevoked(tasks: Task[]): Promise<void>;
  stopping(): boolean;
  fatal(err: unknown, what: string): void;
}

/**
 * Task restore (Kafka Streams vocabulary): load the checkpoint, replay the changelog on top, seek the commands
 * to the committed offset, RESTORING → RUNNING. Bounded retries; a restore that cannot finish is named on the
 * task (readiness shows it).
 */
export class TaskRestorer {
  readonly #h: RestoreHost;

  constructor(host: RestoreHost) {
    this.#h = host;
  }

  /**
   * A broker that is loaded, electing leaders or restarting answers NOT_LEADER, timeouts or closed
   * connections for a while, and a broker outage lasts as long as it lasts: transient failures are retried,
   * with a backoff capped at 5 s, up to restore_attempts_max (≈ 10 min) while the partitions stay assigned,
   * each failure named on the task for /readyz; past the bound the node restarts (crash-only). A failure that
   * is not transient (the changelog does not fold even without a checkpoint) is named and not retried.
   */
  async restoreRetrying(tasks: Task[]): Promise<void> {
    try {
      for (let attempt = 1; attempt <= restore_attempts_max; attempt++) {
        if (this.#h.stopping()) return;
        try {
          // Ownership is asked of the coordinator before each attempt: a restore that outlived its assignment
          // (an outage, a session that expired meanwhile) must not re-initialize the transactional id and
          // fence the partition's rightful new owner.
          const pending = await this.#h.keepOwned(tasks.filter((task) => task.state === 'RESTORING'));
          if (pending.length === 0) return;
          return await this.restoreNow(pending);
        } catch (err) {
          const permanent = !isTransient(err);
          this.#restoreFailed(tasks, err, attempt, permanent);
          // The changelog itself does not fold (a checkpoint was already ruled out): retrying cannot help,
          // and restarting would loop the same way. The partition stays out of service, named on /readyz.
          if (permanent) return;
          const backoff_ms = Math.min(500 * 2 ** attempt, restore_backoff_ms_max);
          await new Promise((resolve) => setTimeout(resolve, backoff_ms));
        }
      }
      // Crash-only: a restart rejoins with fresh connections; the reason was logged and shown meanwhile.
      this.#h.fatal(new Error(`restore failed ${restore_attempts_max} times`), 'restore');
    } finally {
      await this.#h.releaseRevoked(tasks); // also those revoked between two attempts
    }
  }

  #restoreFailed(tasks: Task[], err: unknown, attempts: number, permanent: boolean): void {
    const reason = `${(err as Error)?.name ?? 'Error'}: ${(err as Error)?.message ?? String(err)}`;
    for (const task of tasks) {
      if (task.state === 'RESTORING') task.restore_error = { reason, attempts, permanent };
    }
    this.#h.metrics.restore_failures_total.inc();
    const partitions = tasks.map((t) => t.partition);
    if (permanent)
      this.#h.log.error(
        { partitions, err: reason },
        'restore cannot finish; runbook: docs/runbooks/restore-not-finishing.md',
      );
    else this.#h.log.warn({ partitions, err: reason, attempt: attempts }, 'restore failed; retrying');
  }

  /**
   * Loads each task's checkpoint and replays its changelog on top, then seeks its commands to the committed
   * offset. A checkpoint that disagrees with the log (ahead of it, or an event that does not apply on it) is
   * dropped and its partition replayed from the start: at most once per partition, so the loop is bounded.
   */
  async restoreNow(tasks: Task[]): Promise<void> {
    const started = performance.now();
    // Per-partition producers: initializing each transactional id fences any zombie, and the coordinator
    // answers it only once the previous producer's open transaction is settled (markers written): the last
    // stable offset read next is final for the partition. One producer per node: this waits for its
    // initialization after a failed transaction (settling that one); another node's last transaction is
    // waited for through the committed offsets (requireStable) and the changelog's open transactions
    // (replayPartitions' `settled`).

    await Promise.all(tasks.map((task) => this.#h.ensureProducer(task)));
    const without_checkpoint = new Set<number>();
    try {
      for (let attempt = 0; ; attempt++) {
        const from_checkpoint = new Set<number>();
        try {
          return await this.#replayInto(tasks, without_checkpoint, from_checkpoint, started);
        } catch (err) {
          const partition = disagreeingPartition(err);
          // Without a checkpoint it is the changelog itself that does not fold: nothing to drop.
          if (partition === null || !from_checkpoint.has(partition) || attempt >= tasks.length) throw err;
          without_checkpoint.add(partition);
          await this.#dropCheckpoint(partition, err);
        }
      }
    } finally {
      await this.#h.releaseRevoked(tasks);
    }
  }

  async #replayInto(
    tasks: Task[],
    without_checkpoint: Set<number>,
    from_checkpoint: Set<number>,
    started: number,
  ): Promise<void> {
    const targets = new Map<number, ReplayTarget>();
    const by_partition = new Map(tasks.map((task) => [task.partition, task]));
    const attempt = new Map(tasks.map((task) => [task.partition, ++task.restore_attempt]));
    // A task revoked during its restore is CLOSED: its lane state is left alone here and released at the end.
    // One whose later restore started meanwhile belongs to that one.
    const live = (partition: number) => {
      const task = by_partition.get(partition);
      return task?.state === 'RESTORING' && task.restore_attempt === attempt.get(partition);
    };
    for (const task of tasks) {
      const use = !without_checkpoint.has(task.partition);
      const checkpoint = use ? await this.#h.checkpoints.load(task.partition) : null;
      if (!live(task.partition)) continue;
      if (checkpoint) from_checkpoint.add(task.partition);
      await this.#h.lanes.load(task.partition, checkpoint ? encodeOwned(checkpoint.parts) : null);
      // A rebuild never ends short of this task's own commits (events_next_offset after the last one).
      targets.set(task.partition, {
        from: checkpoint?.offset ?? 0n,
        to_min: task.events_next_offset,
        settled: this.#h.node_transactions,
      });
    }
    if (targets.size === 0) return;
    // Committed offsets first (requireStable where the client has KIP-447: it waits while a transaction
    // holds offsets of these partitions), then the changelog's end. With one producer per node nothing
    // fences the previous owner's transaction: it sends its offsets first, and if they were accepted before
    // the rebalance, its records can land on the changelog after an end read first (no transaction open
    // yet), and commit: the state would miss them while the position skips their commands. Read first, the
    // offsets wait for that transaction; a later one of the old generation is refused (ILLEGAL_GENERATION)
    // before it writes anything. The fence of per-partition producers makes the order moot there.
    const committed = await this.#h.committedOffsets(tasks.map((task) => task.partition));
    const result = await replayPartitions({
      kafka: this.#h.kafka,
      topic: this.#h.names.events,
      group_prefix: this.#h.app_id,
      targets,
      timeout_ms: this.#h.restore_timeout_ms,
      log: this.#h.log,
      onEvents: async (partition, values) => {
        if (live(partition)) await this.#h.lanes.replay(partition, encodeOwned(values));
      },
    });
    // Read after our fence, before the changelog's end: state and position both reflect every transaction
    // committed before it. Batches the consumer fetched from an older position (its offset fetch at join
    // time may predate a commit of the previous owner, or of a zombie) become stale with the seek and are
    // dropped, so no command is applied on top of a state that already holds it.
    for (const task of tasks) {
      if (!live(task.partition)) continue;
      task.events_next_offset = result.end.get(task.partition) ?? 0n;
      const offset = committed.get(task.partition) ?? '0';
      this.#h.seek(task.partition, offset);
      task.restore_error = null;
      task.transition('RUNNING');
    }
    this.#h.metrics.restore_events_replayed_total.inc(result.events_replayed);
    this.#h.metrics.restore_duration_seconds.observe((performance.now() - started) / 1000);
    this.#h.log.info(
      { partitions: tasks.map((t) => t.partition), events_replayed: result.events_replayed },
      'partitions restored',
    );
  }

  /** Deletes a checkpoint the log contradicts, so a new (full) one can be written. */
  async #dropCheckpoint(partition: number, err: unknown): Promise<void> {
    const reason = err instanceof CheckpointAheadError ? 'ahead_of_changelog' : 'does_not_fold';
    this.#h.metrics.checkpoints_dropped_total.inc({ reason });
    this.#h.log.error(
      { partition, reason, err: (err as Error).message },
      'checkpoint disagrees with the changelog: dropped, replaying the partition from the start',
    );
    await this.#h.checkpoints.drop(partition);
  }
}

const restore_backoff_ms_max = 5_000;
/** Restore attempts on transient failures (≈ 10 min at the capped backoff) before the node restarts. */
const restore_attempts_max = 120;

/** The partition whose checkpoint the changelog contradicts, or null for any other failure. */
function disagreeingPartition(err: unknown): number | null {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof ReplayDisagreementError || e instanceof CheckpointAheadError) return e.partition;
  }
  return null;
}

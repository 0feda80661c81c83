import type { Lanes } from '../actors/lanes.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { ReplyRecord } from '../protocol/wire.js';
import { CheckpointScheduler } from './checkpoint-schedule.js';
import type { Checkpoints } from './checkpoints.js';
import { ChunkCommits } from './chunk-commits.js';
import type { Admin, FetchedBatch, GroupConsumer, KafkaPort } from './kafka-port.js';
import { Task, type TaskState } from './task.js';
import { TaskRebuilds } from './task-rebuild.js';
import { TaskRestorer } from './task-restore.js';
import type { TopicNames } from './topics.js';
import {
  type Committer,
  type CommitterFactory,
  default_retry_policy,
  type RetryPolicy,
  SharedTransactions,
  transactionalCommitter,
  transactionalIdOf,
} from './transaction.js';

export interface ProcessorOptions {
  kafka: KafkaPort;
  lanes: Lanes;
  checkpoints: Checkpoints;
  names: TopicNames;
  app_id: string;
  partitions_total: number;
  batch_size_max: number;
  checkpoint_interval_ms: number;
  checkpoint_dirty_max: number;
  /**
   * Lane batches queued behind the running one; past it, partitions of that lane are paused. Default 64.
   * The consumer delivers at most one batch per partition at a time, so a value ≥ the partitions a lane
   * holds never pauses; a lower one pauses partitions that are ready and costs them a fetch round.
   */
  lane_batches_in_flight_max?: number;
  session_timeout_ms: number;
  restore_timeout_ms: number;
  /**
   * 'node': one transaction per node commit, under one transactional producer (KIP-447; the adapter must
   * carry the group generation). 'partition' (default): one producer and transaction per input partition.
   */
  transactions?:
    | { per: 'partition' }
    | { per: 'node'; node_id: string; commit_interval_ms: number; records_max: number };
  log: Logger;
  metrics: Metrics;
  /**
   * Bench only (bench/stream-run.ts injects an at-least-once one to measure what exactly-once costs); never
   * set from config. Default: one Kafka transaction per commit (transactionalCommitter).
   */
  committer?: CommitterFactory;
  /**
   * This node's gateway: replies addressed to `topic` are handed to `deliver` once their transaction has
   * committed, instead of being produced to the node's reply topic and read back. Replies to other nodes'
   * gateways still travel through their reply topics.
   */
  local_replies?: { topic: string; deliver: (replies: ReplyRecord[]) => void };
  /** Tests only: the coordinator-busy retry policy of transactional steps (default_retry_policy). */
  retry_policy?: RetryPolicy;
}

/** A partition that is not processing, and why: the body of a 503 /readyz. */
export interface PartitionNotReady {
  partition: number;
  state: TaskState;
  reason?: string;
  attempts?: number;
}

/**
 * The exactly-once loop: consume commands of the assigned partitions (read_committed), apply each batch on
 * the partition's lane, and commit events, replies, follow-up legs and the consumed offset in ONE Kafka
 * transaction per batch: one transactional producer per node whose transactions span partitions, fenced by
 * the group generation (KIP-447, transaction_scope=node), or one per input partition (partition).
 *
 * This class keeps what Kafka Streams gives its TaskManager: the assignment (tasks created, restored and
 * closed) and the batch loop. A chunk's way from lane to commit is ChunkCommits (chunk-commits.ts), a restore
 * TaskRestorer (task-restore.ts), the rebuild after a failed transaction TaskRebuilds (task-rebuild.ts), the
 * transactions themselves transaction.ts, and checkpoint timing CheckpointScheduler.
 */
export class StreamProcessor {
  readonly #o: ProcessorOptions;
  readonly #consumer: GroupConsumer;
  readonly #admin: Admin;
  readonly #restorer: TaskRestorer;
  readonly #checkpointing: CheckpointScheduler;
  readonly #chunks: ChunkCommits;
  readonly #rebuilds: TaskRebuilds;
  readonly #tasks = new Map<number, Task>();
  readonly #group_id: string;
  /** The node's transactions, when one producer serves every partition (ProcessorOptions.transactions). */
  readonly #shared: SharedTransactions | null;
  #joined = false;
  #stopping = false;
  #signalStopped: () => void = () => {};
  /** Settles when stop() begins: batches waiting for a restore give up then. */
  readonly #stopped = new Promise<void>((resolve) => {
    this.#signalStopped = resolve;
  });
  #age_timer: NodeJS.Timeout | null = null;
  #flush_timer: NodeJS.Timeout | null = null;
  #member_id: string | null = null;
  /** Assignments are handled one at a time, in the order the group delivered them. */
  #assignments: Promise<void> = Promise.resolve();

  constructor(opts: ProcessorOptions) {
    this.#o = opts;
    this.#group_id = `${opts.app_id}.processor`;
    this.#consumer = opts.kafka.consumer({
      group_id: this.#group_id,
      topic: opts.names.commands,
      from: 'earliest',
      max_wait_ms: 20,
      session_timeout_ms: opts.session_timeout_ms,
      // A batch past this is cut into lane batches of batch_size_max anyway.
      max_bytes_per_partition: 1_048_576,
      // Each partition has its own producer and transaction: commits of different partitions overlap, and
      // the lanes serialize only the CPU part. Per partition, batches stay strictly in order.
      partitions_concurrently_max: Math.min(opts.partitions_total, 64),
      manual_resolve: true,
    });
    this.#admin = opts.kafka.admin();
    this.#shared = this.#sharedTransactions(opts);
    this.#checkpointing = new CheckpointScheduler({
      lanes: opts.lanes,
      checkpoints: opts.checkpoints,
      metrics: opts.metrics,
      interval_ms: opts.checkpoint_interval_ms,
      dirty_max: opts.checkpoint_dirty_max,
    });
    this.#chunks = new ChunkCommits({
      ...opts,
      checkpointing: this.#checkpointing,
      shared: this.#shared,
      recover: (task, err) => this.#rebuilds.recover(task, err),
      fatal: (err, what) => this.#fatal(err, what),
    });
    this.#restorer = new TaskRestorer({
      ...opts,
      node_transactions: this.#shared !== null,
      ensureProducer: (task) => this.#ensureProducer(task),
      keepOwned: (tasks) => this.#keepOwned(tasks),
      committedOffsets: (partitions) => this.#committedOffsets(partitions),
      seek: (partition, offset) => this.#consumer.seek(partition, offset),
      releaseRevoked: (tasks) => this.#releaseRevoked(tasks),
      stopping: () => this.#stopping,
      fatal: (err, what) => this.#fatal(err, what),
    });
    this.#rebuilds = new TaskRebuilds({
      ...opts,
      restorer: this.#restorer,
      stillOwned: (partition) => this.#stillOwned(partition),
      closeTask: (task) => this.#closeTask(task),
    });
  }

  #sharedTransactions(opts: ProcessorOptions): SharedTransactions | null {
    const t = opts.transactions;
    if (t === undefined || t.per === 'partition') return null;
    if (opts.committer) throw new Error('processor invariant: a bench committer with node transactions');
    const transactional_id = transactionalIdOf(opts.app_id, opts.names.commands, t);
    return new SharedTransactions({
      producer: () => opts.kafka.transactionalProducer({ transactional_id, transaction_timeout_ms: 30_000 }),
      group_id: this.#group_id,
      policy: opts.retry_policy ?? default_retry_policy,
      onRetry: (error) => opts.metrics.transaction_retries_total.inc({ error }),
      records_max: t.records_max,
      commit_interval_ms: t.commit_interval_ms,
      requests_max: opts.partitions_total,
      onTransaction: (requests) => opts.metrics.transaction_partitions.observe(requests),
    });
  }

  /** Ready when the group is joined and every assigned partition is restored. */
  get ready(): boolean {
    if (!this.#joined || this.#stopping) return false;
    for (const task of this.#tasks.values()) if (task.state !== 'RUNNING') return false;
    return true;
  }

  /** The partitions that hold readiness back, with the reason of a restore that keeps failing. */
  get notReady(): PartitionNotReady[] {
    const out: PartitionNotReady[] = [];
    for (const task of this.#tasks.values()) {
      if (task.state === 'RUNNING') continue;
      const entry: PartitionNotReady = { partition: task.partition, state: task.state };
      if (task.restore_error) {
        entry.reason = task.restore_error.reason;
        entry.attempts = task.restore_error.attempts;
      }
      out.push(entry);
    }
    return out.sort((a, b) => a.partition - b.partition);
  }

  get assigned(): number[] {
    return [...this.#tasks.keys()].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    await this.#admin.connect();
    this.#age_timer = setInterval(() => this.#reportCheckpointAge(Date.now()), 1000);
    this.#age_timer.unref();
    this.#flush_timer = setInterval(() => this.#flushDeferredOffsets(Date.now()), deferred_offset_flush_ms);
    this.#flush_timer.unref();
    await this.#consumer.start({
      onAssignment: ({ member_id, partitions }) => {
        // A new member id means the coordinator dropped us (session timeout) and we joined again: in
        // between, other members may have owned and advanced any of our partitions, so none is "kept".
        const rejoined = this.#member_id !== null && this.#member_id !== member_id;
        this.#member_id = member_id;
        this.#assignments = this.#assignments
          .then(() => this.#onAssignment(partitions, rejoined))
          .catch((err) => this.#fatal(err, 'assignment'));
      },
      onCrash: (err, restarting) => {
        if (!restarting) this.#fatal(err, 'consumer crashed without restart');
      },
      onBatch: (batch) => this.#eachBatch(batch),
    });
  }

  /** `step` names each stage as it starts (the node's shutdown log names the one that overran). */
  async stop(step: (name: string) => void = () => {}): Promise<void> {
    this.#stopping = true;
    this.#signalStopped();
    if (this.#age_timer) clearInterval(this.#age_timer);
    if (this.#flush_timer) clearInterval(this.#flush_timer);
    // Waits for running batches to finish their transaction: nothing acknowledged is left half-done. Then
    // the offsets of read-only chunks are committed, so a restart does not apply those reads again.
    step('running batches');
    const slow = setTimeout(() => {
      const busy = [...this.#tasks.values()].map((t) => `${t.partition}:${t.state}:${t.activity}`);
      this.#o.log.warn({ tasks: busy }, 'shutdown: batches still running after 3 s');
    }, 3_000);
    await this.#consumer.stop();
    clearTimeout(slow);
    const tasks = [...this.#tasks.values()];
    step('pipelined commits');
    await Promise.all(tasks.map((task) => task.commit_tail));
    step('deferred offsets');
    await Promise.all(tasks.map((task) => this.#chunks.commitDeferred(task)));
    step('consumer disconnect');
    await this.#consumer.disconnect();
    step('producers');
    await Promise.all(tasks.map((task) => this.#closeTask(task, true)));
    step('admin');
    await this.#shared?.close();
    await this.#admin.disconnect();
  }

  /**
   * Closes revoked tasks and starts restoring fresh ones without waiting for the restore: a restore waits
   * out a broker outage, and the next assignment (which may revoke what is being restored) must not wait
   * for it. A restore that cannot finish is named on readiness (#restoreRetrying); only an unexpected
   * error escaping it stops the node.
   */
  async #onAssignment(assigned: number[], rejoined: boolean): Promise<void> {
    if (rejoined && this.#tasks.size > 0) {
      // Their lane state and producers may be stale (another node committed meanwhile): applying a leg on a
      // state without the refund another node created stops the node (the 2026-12-02 chaos failures).
      this.#o.log.warn({ partitions: this.assigned }, 'rejoined the group as a new member: restoring all');
      for (const task of [...this.#tasks.values()]) await this.#closeTask(task);
    }
    const keep = new Set(assigned);
    const revoked = this.assigned.filter((p) => !keep.has(p));
    const fresh = assigned.filter((p) => !this.#tasks.has(p));
    // Each assignment named once: a crash after a rebalance is read against which tasks closed and opened.
    if (revoked.length > 0 || fresh.length > 0) this.#o.log.info({ revoked, fresh }, 'assignment changed');
    for (const task of [...this.#tasks.values()]) if (!keep.has(task.partition)) await this.#closeTask(task);
    const tasks = fresh.map((partition) => this.#createTask(partition));
    this.#joined = true;
    if (tasks.length > 0) this.#restore(tasks).catch((err) => this.#fatal(err, 'restore'));
  }

  #createTask(partition: number): Task {
    const task = new Task(partition, Date.now());
    this.#tasks.set(partition, task);
    return task;
  }

  /** Restores several partitions with one changelog replay; each task's `restored` settles with it. */
  #restore(tasks: Task[]): Promise<void> {
    for (const task of tasks) task.transition('RESTORING');
    const done = this.#restorer.restoreRetrying(tasks);
    for (const task of tasks) task.restored = done;
    return done;
  }

  /**
   * Drops the lane state of tasks revoked while they were restoring (#closeTask leaves it to the restore,
   * which may still be loading it), unless the partition came back meanwhile as a new task that owns it.
   */
  async #releaseRevoked(tasks: Task[]): Promise<void> {
    for (const task of tasks) {
      if (task.state !== 'CLOSED' || this.#tasks.has(task.partition)) continue;
      await this.#o.lanes.drop(task.partition);
    }
  }

  async #ensureProducer(task: Task): Promise<Committer> {
    if (task.producer) return task.producer;
    const shared = this.#shared;
    const factory: CommitterFactory = shared
      ? () => ({
          // A previous task's transaction of this partition ends first: the restore's committed offset, read
          // next, must already hold whatever it commits (SharedTransactions.settledFor).
          connect: () => shared.settledFor(task.partition).then(() => shared.ready()),
          commit: (request) => shared.commit(request),
          disconnect: async () => {}, // the node's producer outlives its tasks
        })
      : (this.#o.committer ?? transactionalCommitter);
    const committer = factory({
      kafka: this.#o.kafka,
      group_id: this.#group_id,
      transactional_id: transactionalIdOf(this.#o.app_id, this.#o.names.commands, {
        per: 'partition',
        partition: task.partition,
      }),
      policy: this.#o.retry_policy ?? default_retry_policy,
      onRetry: (error) => this.#o.metrics.transaction_retries_total.inc({ error }),
      commitOffsets: (offsets) => this.#consumer.commitOffsets(offsets),
    });
    await committer.connect();
    task.producer = committer;
    return committer;
  }

  async #eachBatch(batch: FetchedBatch): Promise<void> {
    const task = this.#tasks.get(batch.partition);
    if (!task) return; // revoked between fetch and processing; the new owner takes it from the commit
    // A shutdown does not wait for a restore: the batch is left unprocessed (fetched again after a restart).
    await Promise.race([task.restored, this.#stopped]);
    if (this.#stopping) return;
    // A rebuild the broker's absence interrupted: retried here, at each delivery of the partition's batch.
    if (task.state === 'FAILED') {
      if (task.restore_error?.permanent) return; // named on /readyz; retrying would fail the same way
      return this.#rebuilds.rebuild(task);
    }
    if (task.state !== 'RUNNING') return;
    task.group = () => batch.group;
    // A chunk of this batch may wait for its turn behind a pipelined commit that fails: by the time the turn
    // comes the task may have been rebuilt (RUNNING again, consumer seeked back), and this batch is stale.
    // Checked inside the turn, right before the apply: a stale chunk applied on the rebuilt state would skip
    // the records the rebuild seeked back to.
    const restore_attempt = task.restore_attempt;
    const current = () =>
      batch.current() &&
      !this.#stopping &&
      task.state === 'RUNNING' &&
      task.restore_attempt === restore_attempt;
    const messages = batch.messages;
    for (let start = 0; start < messages.length; start += this.#o.batch_size_max) {
      if (!current()) return;
      if (this.#laneSaturated(task.partition)) {
        // Stop fetching this partition until its lane drains; the unprocessed rest is fetched again then.
        this.#o.metrics.lane_pauses_total.inc();
        const resume = batch.pause();
        void this.#laneDrained(task.partition).then(resume);
        return;
      }
      const chunk = messages.slice(start, start + this.#o.batch_size_max);
      const ok = await this.#chunks.process(task, chunk, current);
      if (!ok) return;
      const last_offset = chunk[chunk.length - 1]!.offset;
      batch.resolveOffset(last_offset);
      this.#o.metrics.consumer_lag_records.set(
        { partition: String(batch.partition) },
        Math.max(0, Number(batch.high_watermark) - Number(last_offset) - 1),
      );
      await batch.heartbeat();
    }
  }

  #laneSaturated(partition: number): boolean {
    const lane = this.#o.lanes.laneOf(partition);
    return this.#o.lanes.queueDepth(lane) >= (this.#o.lane_batches_in_flight_max ?? 64);
  }

  /** Polls the lane's queue (bounded: at most restore_timeout_ms); a paused partition always resumes. */
  async #laneDrained(partition: number): Promise<void> {
    const deadline_ms = Date.now() + this.#o.restore_timeout_ms;
    while (this.#laneSaturated(partition) && Date.now() < deadline_ms)
      await new Promise((r) => setTimeout(r, 5));
  }

  /** Offsets-only transactions for read-only chunks that found no transaction to ride in. */
  #flushDeferredOffsets(now_ms: number): void {
    for (const task of this.#tasks.values()) {
      if (task.offset_deferred === null || now_ms - task.offset_deferred_since_ms < deferred_offset_flush_ms)
        continue;
      void this.#chunks.commitDeferred(task);
    }
  }

  async #stillOwned(partition: number): Promise<boolean> {
    return (await this.#ownedPartitions()).has(partition);
  }

  /** The coordinator's current assignment of this member, not our possibly stale view of it. */
  async #ownedPartitions(): Promise<Set<number>> {
    if (this.#stopping || this.#member_id === null) return new Set();
    const commands = this.#o.names.commands;
    return new Set(await this.#admin.memberAssignment(this.#group_id, this.#member_id, commands));
  }

  /** Closes the tasks the coordinator no longer assigns to this member; returns the others. */
  async #keepOwned(tasks: Task[]): Promise<Task[]> {
    if (tasks.length === 0) return tasks;
    const owned = await this.#ownedPartitions();
    for (const task of tasks) {
      if (owned.has(task.partition)) continue;
      this.#o.log.warn({ partition: task.partition }, 'partition no longer owned; restore abandoned');
      await this.#closeTask(task);
    }
    return tasks.filter((task) => task.state === 'RESTORING');
  }

  /** The group's committed offsets of the commands topic ('0' where none was committed yet). */
  async #committedOffsets(partitions: number[]): Promise<Map<number, string>> {
    const committed = await this.#admin.groupOffsets(this.#group_id, this.#o.names.commands);
    const offsets = new Map<number, string>();
    for (const partition of partitions) {
      const offset = committed.get(partition);
      offsets.set(partition, offset === undefined || offset === '-1' ? '0' : offset);
    }
    return offsets;
  }

  /** Once a second: age of the oldest unsaved change (replay a restart would cost), task and lane gauges. */
  #reportCheckpointAge(now_ms: number): void {
    const age_ms = CheckpointScheduler.ageMs(this.#tasks.values(), now_ms);
    this.#o.metrics.checkpoint_age_seconds.set(age_ms / 1000);
    const { lanes, metrics } = this.#o;
    // Every state is set, zeros included, so a restore that ends shows 0 rather than its last count.
    const tasks_by_state: Record<Exclude<TaskState, 'CLOSED'>, number> = {
      CREATED: 0,
      RESTORING: 0,
      RUNNING: 0,
      FAILED: 0,
    };
    for (const task of this.#tasks.values()) if (task.state !== 'CLOSED') tasks_by_state[task.state]++;
    for (const [state, count] of Object.entries(tasks_by_state)) metrics.stream_tasks.set({ state }, count);
    for (let lane = 0; lane < lanes.count; lane++) {
      metrics.lane_queue_depth_tasks.set({ lane: String(lane) }, lanes.queueDepth(lane));
    }
    lanes.stats().then(
      (stats) => {
        for (const [lane, s] of stats.entries()) metrics.lane_actors.set({ lane: String(lane) }, s.accounts);
      },
      () => {},
    );
  }

  /**
   * Idempotent. The producer's disconnect is not waited for (during a broker outage it can take as long as the
   * outage, and the next assignment must not queue behind it) unless `wait_disconnect`; its transactional id
   * is fenced by whoever initializes it next anyway.
   */
  async #closeTask(task: Task, wait_disconnect = false): Promise<void> {
    if (task.state === 'CLOSED') return;
    const restoring = task.state === 'RESTORING'; // its restore releases the lane state when it ends
    task.transition('CLOSED');
    this.#tasks.delete(task.partition);
    this.#o.metrics.consumer_lag_records.remove({ partition: String(task.partition) });
    const disconnected = task.producer?.disconnect().catch(() => {});
    task.producer = null;
    if (!restoring) await this.#o.lanes.drop(task.partition).catch(() => {});
    if (wait_disconnect) await disconnected;
  }

  #fatal(err: unknown, what: string): void {
    this.#o.log.fatal({ err: (err as Error)?.message ?? String(err) }, `stream processor: ${what}`);
    process.exitCode = 1;
    process.kill(process.pid, 'SIGTERM');
  }
}

/** A read-only chunk's offset waits at most this long for a transaction to ride in. */
const deferred_offset_flush_ms = 100;

import { performance } from 'node:perf_hooks';
import type { Lanes } from '../actors/lanes.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { type BatchOutput, decode, encodeOwned, type ReplyRecord } from '../protocol/wire.js';
import { CheckpointScheduler } from './checkpoint-schedule.js';
import type { Checkpoints } from './checkpoints.js';
import { isTransient, kafkaErrorType } from './kafka-errors.js';
import type { Admin, FetchedBatch, GroupConsumer, InRecord, KafkaPort } from './kafka-port.js';
import { Task, type TaskState } from './task.js';
import { TaskRestorer } from './task-restore.js';
import type { TopicNames } from './topics.js';
import { type ChunkTrace, traceChunk } from './tracing.js';
import {
  type Committer,
  type CommitterFactory,
  default_retry_policy,
  eventsEndAfter,
  GenerationMovedError,
  RequestWithdrawnError,
  type RetryPolicy,
  routeRecords,
  SharedTransactions,
  type TopicMessages,
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
 */
export class StreamProcessor {
  readonly #o: ProcessorOptions;
  readonly #consumer: GroupConsumer;
  readonly #admin: Admin;
  readonly #restorer: TaskRestorer;
  readonly #checkpointing: CheckpointScheduler;
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
    await Promise.all(tasks.map((task) => this.#commitDeferred(task)));
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
      return this.#rebuild(task);
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
      const ok = await this.#processChunk(task, chunk, current);
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

  /** Applies one bounded chunk and commits it; false when the transaction failed and the task was rebuilt. */
  #processChunk(task: Task, chunk: InRecord[], current: () => boolean): Promise<boolean> {
    return task.inTurn(() =>
      this.#shared ? this.#applyPipelined(task, chunk, current) : this.#applyAndCommit(task, chunk, current),
    );
  }

  async #applyAndCommit(task: Task, chunk: InRecord[], current: () => boolean): Promise<boolean> {
    if (!current()) return false; // failed, rebuilt or closed while this chunk waited for its turn
    return this.#settle(task, await this.#apply(task, chunk), task.applied_seq);
  }

  /**
   * Node transactions: the chunk is applied while the task's previous chunk commits, and its own commit
   * joins a later node transaction once that one has committed. One chunk deep: the turn ends only when
   * the previous commit settled, so the next chunk's apply waits for it. A checkpoint that is due is taken
   * before the apply (a checkpoint must hold committed chunks only), which costs one bubble per interval.
   */
  async #applyPipelined(task: Task, chunk: InRecord[], current: () => boolean): Promise<boolean> {
    if (!current()) return false;
    const previous = task.commit_tail;
    if (this.#checkpointing.due(task, task.dirty_total_last, Date.now())) {
      if (!(await previous) || !current()) return false;
      task.activity = 'checkpoint';
      await this.#checkpointing.afterCommit(task, task.dirty_total_last, Date.now());
      if (!current()) return false;
    }
    const applied = await this.#apply(task, chunk);
    const seq = task.applied_seq;
    task.commit_tail = previous.then((ok) => (ok ? this.#settle(task, applied, seq) : false));
    return previous;
  }

  /** One chunk on the lane, routed to the records of its transaction (or answered read-only). */
  async #apply(task: Task, chunk: InRecord[]): Promise<AppliedChunk> {
    const values = chunk.map((m) => m.value ?? Buffer.alloc(0));
    // The domain is pure and total: a lane that throws, or output that cannot be routed, is a bug, and
    // retrying it would fail the same way. Stop the node loudly instead of looping.
    const local: ReplyRecord[] = [];
    const trace = traceChunk(task.partition, chunk, this.#o); // tracing: src/streams/tracing.ts
    try {
      task.activity = 'lane';
      task.applied_seq++; // before the op is queued: a checkpoint op queued after it sees it
      const output = decode<BatchOutput>(await this.#o.lanes.apply(task.partition, encodeOwned(values)));
      const { names, partitions_total } = this.#o;
      const local_topic = this.#o.local_replies?.topic ?? null;
      const records = routeRecords(task.partition, output, { names, partitions_total, local_topic }, local);
      trace.applied(output, records);
      task.dirty_total_last = output.dirty_total;
      for (const index of output.rejected) {
        this.#o.log.error(
          { partition: task.partition, offset: chunk[index]?.offset },
          'undecodable command record skipped',
        );
      }
      this.#o.metrics.batch_size_commands.observe(chunk.length);
      const next_offset = BigInt(chunk[chunk.length - 1]!.offset) + 1n;
      return { output, records, local, next_offset, trace };
    } catch (err) {
      this.#fatal(err, `partition ${task.partition}: lane or routing invariant failed`);
      throw err;
    }
  }

  /**
   * Commits an applied chunk (every earlier chunk of the task has committed), then answers its requests and
   * checkpoints if due and no later chunk is applied yet. False when the task failed or was closed.
   */
  async #settle(task: Task, applied: AppliedChunk, seq: number): Promise<boolean> {
    const { output, records, local, next_offset, trace } = applied;
    if (records.length === 0) {
      // Read-only (no events, follow-ups or replies for other nodes): every earlier chunk of the partition
      // has committed, so answering now is linearizable and needs no transaction. Re-applying it after a
      // crash changes no state, so its offset can wait for the next transaction.
      if (task.state !== 'RUNNING') return false;
      task.deferOffset(next_offset, Date.now());
      this.#o.metrics.offsets_deferred_total.inc();
      if (local.length > 0) this.#o.local_replies?.deliver(local);
      trace.delivered(local.length);
      return true;
    }
    try {
      task.activity = 'commit';
      await this.#commit(task, records, output.events.length, next_offset);
    } catch (err) {
      trace.failed(err);
      // Closed while the lane applied the chunk, or before its transaction sent the offsets: nothing was
      // written, and closing released the lane state.
      if (err instanceof TaskNotRunningError || err instanceof RequestWithdrawnError) return false;
      await this.#recover(task, err);
      return false;
    }
    trace.committed(task.events_next_offset);
    if (local.length > 0) this.#o.local_replies?.deliver(local); // committed: safe to acknowledge
    trace.delivered(local.length);
    if (output.events.length > 0) task.changed_since_checkpoint = true;
    // A later chunk already applied on the lane (pipelined) is not committed: no checkpoint of that state.
    if (seq === task.applied_seq) {
      task.activity = 'checkpoint';
      await this.#checkpointing.afterCommit(task, output.dirty_total, Date.now());
    }
    task.activity = 'idle';
    return true;
  }

  async #commit(task: Task, records: TopicMessages[], events_total: number, next_offset: bigint) {
    const started = performance.now();
    // Only a restore creates (and so initializes, fencing others) a partition's producer, right before it
    // reads the changelog and the committed offset. A producer made here would fence the partition's owner
    // and commit work computed on a state that was never rebuilt after that fence: a closed or failed task
    // fails its commit instead.
    const producer = task.producer;
    if (producer === null || task.state !== 'RUNNING') {
      throw new TaskNotRunningError(`partition ${task.partition} is ${task.state}: not committing`);
    }
    const offset = { topic: this.#o.names.commands, partition: task.partition, offset: next_offset };
    const onStep = (name: string) => {
      task.activity = `${records.length === 0 ? 'offsets-only ' : ''}commit: ${name}`;
    };
    const attempt = task.restore_attempt;
    const live = () => task.state === 'RUNNING' && task.restore_attempt === attempt;
    const metadata = await producer.commit({ offset, records, group: task.group, onStep, live });
    task.activity = 'committed';
    // The offset committed covers every deferred read-only chunk before it.
    task.offsetCommitted(next_offset);
    const events = { topic: this.#o.names.events, partition: task.partition };
    const events_end = eventsEndAfter(metadata, events, events_total);
    if (events_end !== null) task.events_next_offset = events_end;
    this.#o.metrics.transaction_commit_duration_seconds.observe((performance.now() - started) / 1000);
  }

  /** Offsets-only transactions for read-only chunks that found no transaction to ride in. */
  #flushDeferredOffsets(now_ms: number): void {
    for (const task of this.#tasks.values()) {
      if (task.offset_deferred === null || now_ms - task.offset_deferred_since_ms < deferred_offset_flush_ms)
        continue;
      void this.#commitDeferred(task);
    }
  }

  /** Commits the task's deferred offset, if one still waits; a failure rebuilds like any other. */
  #commitDeferred(task: Task): Promise<void> {
    return task.inTurn(async () => {
      if (!(await task.commit_tail)) return; // a pipelined chunk's commit comes first (or failed: rebuilt)
      const offset = task.offset_deferred;
      if (offset === null || task.state !== 'RUNNING') return;
      try {
        await this.#commit(task, [], 0, offset);
      } catch (err) {
        if (!(err instanceof TaskNotRunningError || err instanceof RequestWithdrawnError))
          await this.#recover(task, err);
      }
    });
  }

  /**
   * A failed or ambiguous transaction: the lane state may hold effects that were never committed (or were).
   * Drop it, replace the producer (a new one with the same transactional id fences the old one, whose client
   * state after a failed step is unknown), rebuild from the changelog, and seek back to the
   * committed offset so the batch is processed again on a state that matches the log.
   */
  async #recover(task: Task, err: unknown): Promise<void> {
    if (err instanceof GenerationMovedError) {
      // Refused before anything was written: the partition left this member in a rebalance (its batch is no
      // longer current). The assignment closes it anyway; closing now releases the lane state that holds
      // the refused chunk, without a rebuild the partition's new owner makes moot.
      this.#o.log.info({ partition: task.partition }, 'partition left the generation; task closed');
      await this.#closeTask(task);
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
    await this.#rebuild(task);
  }

  /**
   * FAILED → RESTORING → RUNNING. If the broker is away meanwhile (ownership check, replay or committed
   * offset fail), the task goes back to FAILED and the partition's next batch tries again (#eachBatch):
   * it must never stay FAILED with its batches skipped.
   */
  #rebuild(task: Task): Promise<void> {
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
      if (!(await this.#stillOwned(task.partition))) {
        this.#o.log.warn({ partition: task.partition }, 'partition no longer owned; released');
        await this.#closeTask(task);
        return;
      }
      task.transition('RESTORING');
      task.restored = this.#restorer.restoreNow([task]); // seeks to the committed offset read after the fence
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

interface AppliedChunk {
  output: BatchOutput;
  records: TopicMessages[];
  /** Replies for this node's gateway, handed over once the chunk's transaction committed. */
  local: ReplyRecord[];
  next_offset: bigint;
  /** The chunk's spans and debug lines (a no-op when tracing and the debug log are off). */
  trace: ChunkTrace;
}

/** A read-only chunk's offset waits at most this long for a transaction to ride in. */
const deferred_offset_flush_ms = 100;

/** A commit attempted for a task closed while its chunk was on the lane: nothing is sent or rebuilt. */
class TaskNotRunningError extends Error {
  override name = 'TaskNotRunningError';
}

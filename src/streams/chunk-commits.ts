import { performance } from 'node:perf_hooks';
import type { Lanes } from '../actors/lanes.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { type BatchOutput, decode, encodeOwned, type ReplyRecord } from '../protocol/wire.js';
import type { CheckpointScheduler } from './checkpoint-schedule.js';
import type { InRecord } from './kafka-port.js';
import type { Task } from './task.js';
import type { TopicNames } from './topics.js';
import { type ChunkTrace, traceChunk } from './tracing.js';
import {
  eventsEndAfter,
  RequestWithdrawnError,
  routeRecords,
  type SharedTransactions,
  type TopicMessages,
} from './transaction.js';

export interface ChunkCommitsOptions {
  lanes: Lanes;
  names: TopicNames;
  partitions_total: number;
  log: Logger;
  metrics: Metrics;
  local_replies?: { topic: string; deliver: (replies: ReplyRecord[]) => void };
  checkpointing: CheckpointScheduler;
  /** The node's transactions (pipelined chunks), or null for one transaction per partition (one at a time). */
  shared: SharedTransactions | null;
  /** A failed or ambiguous commit: the processor drops and rebuilds the partition (or closes it). */
  recover: (task: Task, err: unknown) => Promise<void>;
  /** A lane or routing invariant failed: the node stops. */
  fatal: (err: unknown, what: string) => void;
}

/**
 * What happens to one chunk of a task's batch: applied on the partition's lane, routed to the records of its
 * transaction, committed (or, read-only, answered with its offset deferred), then answered and checkpointed.
 * The processor owns the tasks and the batch loop; this owns the chunk's way from lane to commit.
 */
export class ChunkCommits {
  readonly #o: ChunkCommitsOptions;

  constructor(opts: ChunkCommitsOptions) {
    this.#o = opts;
  }

  /** Applies one bounded chunk and commits it; false when the transaction failed and the task was rebuilt. */
  process(task: Task, chunk: InRecord[], current: () => boolean): Promise<boolean> {
    return task.inTurn(() =>
      this.#o.shared
        ? this.#applyPipelined(task, chunk, current)
        : this.#applyAndCommit(task, chunk, current),
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
    if (this.#o.checkpointing.due(task, task.dirty_total_last, Date.now())) {
      if (!(await previous) || !current()) return false;
      task.activity = 'checkpoint';
      await this.#o.checkpointing.afterCommit(task, task.dirty_total_last, Date.now());
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
      this.#o.fatal(err, `partition ${task.partition}: lane or routing invariant failed`);
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
      await this.#o.recover(task, err);
      return false;
    }
    trace.committed(task.events_next_offset);
    if (local.length > 0) this.#o.local_replies?.deliver(local); // committed: safe to acknowledge
    trace.delivered(local.length);
    if (output.events.length > 0) task.changed_since_checkpoint = true;
    // A later chunk already applied on the lane (pipelined) is not committed: no checkpoint of that state.
    if (seq === task.applied_seq) {
      task.activity = 'checkpoint';
      await this.#o.checkpointing.afterCommit(task, output.dirty_total, Date.now());
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

  /** Commits the task's deferred offset, if one still waits; a failure rebuilds like any other. */
  commitDeferred(task: Task): Promise<void> {
    return task.inTurn(async () => {
      if (!(await task.commit_tail)) return; // a pipelined chunk's commit comes first (or failed: rebuilt)
      const offset = task.offset_deferred;
      if (offset === null || task.state !== 'RUNNING') return;
      try {
        await this.#commit(task, [], 0, offset);
      } catch (err) {
        if (!(err instanceof TaskNotRunningError || err instanceof RequestWithdrawnError))
          await this.#o.recover(task, err);
      }
    });
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

/** A commit attempted for a task closed while its chunk was on the lane: nothing is sent or rebuilt. */
class TaskNotRunningError extends Error {
  override name = 'TaskNotRunningError';
}

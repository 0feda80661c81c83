import type { GroupMetadata } from './kafka-port.js';
import type { Committer } from './transaction.js';

/**
 * Task state of one input partition (Kafka Streams vocabulary):
 *
 *   CREATED ──▶ RESTORING ──▶ RUNNING ──▶ CLOSED
 *                   ▲            │
 *                   └── FAILED ◀─┘   (transaction failed: state dropped, rebuilt from the changelog)
 *
 * Every state but CLOSED may also go to CLOSED (revoked). The processor owns the transitions; the task
 * asserts each one.
 */
export type TaskState = 'CREATED' | 'RESTORING' | 'RUNNING' | 'FAILED' | 'CLOSED';
const transitions: Record<TaskState, TaskState[]> = {
  CREATED: ['RESTORING', 'CLOSED'],
  RESTORING: ['RUNNING', 'FAILED', 'CLOSED'],
  RUNNING: ['FAILED', 'CLOSED'],
  FAILED: ['RESTORING', 'CLOSED'],
  CLOSED: [],
};

/** Why the last restore attempt failed (shown on /readyz); `permanent` when retrying cannot help. */
export interface RestoreError {
  reason: string;
  attempts: number;
  permanent: boolean;
}

export class Task {
  readonly partition: number;
  #state: TaskState = 'CREATED';
  /** The partition's committer (its transactional producer); null until a restore fences and creates it. */
  producer: Committer | null = null;
  restored: Promise<void> = Promise.resolve();
  /**
   * Next offset of this partition in the events topic: what a checkpoint taken now covers, and the end a
   * rebuild must replay to at least (the events end after this task's last commit).
   */
  events_next_offset = 0n;
  last_checkpoint_ms: number;
  checkpoint_in_flight = false;
  changed_since_checkpoint = false;
  /**
   * Next command offset of a read-only chunk answered without a transaction: it rides in the partition's
   * next transaction, or in an offsets-only one after the flush interval. Null when none waits.
   */
  offset_deferred: bigint | null = null;
  offset_deferred_since_ms = 0;
  restore_error: RestoreError | null = null;
  /**
   * Bumped by each restore attempt as it starts: an attempt acts on the task (loads, replays, RUNNING) only
   * while it is the latest. A rebuild that overlapped an older restore (the older one loaded the lane, the
   * rebuild dropped it) must not have the older one declare the task RUNNING on a dropped state.
   */
  restore_attempt = 0;
  /** The rebuild in progress, if any: a second trigger joins it instead of starting another. */
  rebuilding: Promise<void> | null = null;
  /** What the task's current chunk is doing (named in the log of a shutdown that waits for it). */
  activity = 'idle';
  /**
   * The consumer group generation the task's offsets are committed in (KIP-447), read when a commit is sent:
   * that of the partition's latest batch (null where the client has no KIP-447).
   */
  group: () => GroupMetadata | null = () => null;
  /**
   * Node transactions pipeline one chunk deep: chunk k+1 is applied while chunk k commits, and its commit
   * (or a read-only chunk's answer) is chained after k's. Settles true once the latest chunk committed (or
   * was answered), false if a chunk of the chain failed (the task rebuilds and starts a new chain).
   */
  commit_tail: Promise<boolean> = Promise.resolve(true);
  /** Chunks applied on the lane so far: a checkpoint is taken only when no applied chunk is uncommitted. */
  applied_seq = 0;
  /** The lane's count of entities changed since the last checkpoint, as of the latest applied chunk. */
  dirty_total_last = 0;
  /** Chunks and deferred-offset commits of one task take turns: one transaction of a producer at a time. */
  #turn: Promise<void> = Promise.resolve();

  constructor(partition: number, now_ms: number) {
    this.partition = partition;
    this.last_checkpoint_ms = now_ms;
  }

  get state(): TaskState {
    return this.#state;
  }

  /** Asserts the transition is legal: an illegal one is a bug in the processor, and crashes loudly. */
  transition(to: TaskState): void {
    if (!transitions[this.#state].includes(to)) {
      throw new Error(`task invariant: partition ${this.partition} cannot go ${this.#state} → ${to}`);
    }
    this.#state = to;
  }

  /** Runs `fn` after the task's previous turn (a chunk or a deferred-offset commit) has ended. */
  async inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.#turn;
    let release = () => {};
    this.#turn = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** A read-only chunk's next offset waits for a transaction to ride in. */
  deferOffset(next_offset: bigint, now_ms: number): void {
    if (this.offset_deferred === null) this.offset_deferred_since_ms = now_ms;
    this.offset_deferred = next_offset;
  }

  /** A transaction committed `next_offset`: it covers every deferred offset at or below it. */
  offsetCommitted(next_offset: bigint): void {
    if (this.offset_deferred !== null && this.offset_deferred <= next_offset) this.offset_deferred = null;
  }
}

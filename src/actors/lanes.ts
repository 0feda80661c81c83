import { Piscina } from 'piscina';
import type { DomainConfig } from '../domain/index.js';
import type { LaneOp, LaneStats, LaneTask } from './protocol.js';

/** The changelog does not fold onto the loaded state: the checkpoint it started from disagrees with it. */
export class ReplayDisagreementError extends Error {
  override name = 'ReplayDisagreementError';
  constructor(
    readonly partition: number,
    readonly invariant: string,
  ) {
    super(`partition ${partition}: replay does not apply: ${invariant}`);
  }
}

/**
 * W lanes, one single-thread piscina pool each: piscina has no worker affinity, and partition p must always
 * run on lane p mod W so that one account is only ever touched by one thread.
 */
export class Lanes {
  readonly #pools: Piscina[];
  readonly #partitions_total: number;
  #closing = false;
  readonly #queue_max: number;
  /** The last op queued on each lane (LaneTask.seq). */
  readonly #seq: number[];
  /**
   * The partitions loaded on their lane as of the ops queued so far (each lane runs its ops in queue order),
   * with the call stack of the op that last loaded or dropped each: an op on a partition that is not loaded
   * is a processor bug, and the error names who dropped it. Bounded by partitions_total.
   */
  readonly #loaded = new Map<number, { loaded: boolean; by: string }>();

  constructor(opts: {
    lanes: number;
    partitions_total: number;
    /** Tasks queued per lane beyond the one running; piscina rejects past it. */
    lane_queue_max: number;
    domain_config?: Partial<DomainConfig>;
    /**
     * A lane's worker thread ended while the pool was open: piscina starts a new one, empty, and every
     * partition of the lane lost its actor state. The node must stop (crash-only) rather than go on.
     */
    onLaneLost?: (lane: number, why: string) => void;
  }) {
    if (opts.lanes < 1) throw new Error('lanes must be ≥ 1');
    this.#partitions_total = opts.partitions_total;
    const filename = workerFilename();
    this.#queue_max = opts.lane_queue_max;
    this.#seq = Array.from({ length: opts.lanes }, () => 0);
    this.#pools = Array.from({ length: opts.lanes }, (_, lane) => {
      const pool = new Piscina({
        filename,
        minThreads: 1,
        maxThreads: 1,
        concurrentTasksPerWorker: 1,
        stricterFIFO: true, // see #runOn
        maxQueue: opts.lane_queue_max,
        idleTimeout: Number.POSITIVE_INFINITY,
        workerData: { domain_config: opts.domain_config ?? {} },
      });
      let created_total = 0;
      pool.on('workerCreate', () => {
        if (++created_total > 1) opts.onLaneLost?.(lane, `worker thread replaced (${created_total} created)`);
      });
      pool.on('workerDestroy', () => {
        if (!this.#closing) opts.onLaneLost?.(lane, `worker thread ended: ${new Error().stack}`);
      });
      pool.on('error', (err: unknown) => opts.onLaneLost?.(lane, `worker error: ${(err as Error)?.stack}`));
      return pool;
    });
  }

  get count(): number {
    return this.#pools.length;
  }

  laneOf(partition: number): number {
    return partition % this.#pools.length;
  }

  async apply(partition: number, input: Uint8Array): Promise<Uint8Array> {
    this.#assertLoaded(partition, 'apply');
    const task: LaneOp = { op: 'apply', partition, partitions_total: this.#partitions_total, input };
    return (await this.#run(partition, task, [input.buffer as ArrayBuffer])) as Uint8Array;
  }

  async load(partition: number, parts: Uint8Array | null): Promise<void> {
    const transfer = parts ? [parts.buffer as ArrayBuffer] : [];
    await this.#run(partition, { op: 'load', partition, parts }, transfer, () =>
      this.#record(partition, true),
    );
  }

  /** Throws ReplayDisagreementError when an event does not apply to the partition's loaded state. */
  async replay(partition: number, input: Uint8Array): Promise<void> {
    const task: LaneOp = { op: 'replay', partition, input };
    const result = (await this.#run(partition, task, [input.buffer as ArrayBuffer])) as {
      invariant_failed: string;
    } | null;
    if (result !== null) throw new ReplayDisagreementError(partition, result.invariant_failed);
  }

  async drop(partition: number): Promise<void> {
    await this.#run(partition, { op: 'drop', partition }, [], () => this.#record(partition, false));
  }

  /** A msgpack CheckpointDelta of what changed on the partition since its last checkpoint. */
  async checkpoint(partition: number): Promise<Uint8Array> {
    this.#assertLoaded(partition, 'checkpoint');
    return (await this.#run(partition, { op: 'checkpoint', partition }, [])) as Uint8Array;
  }

  async checkpointFailed(partition: number): Promise<void> {
    await this.#run(partition, { op: 'checkpoint_failed', partition }, []);
  }

  async stats(): Promise<LaneStats[]> {
    return Promise.all(
      this.#pools.map((_, lane) => this.#runOn(lane, { op: 'stats' }, []) as Promise<LaneStats>),
    );
  }

  queueDepth(lane: number): number {
    return this.#pools[lane]?.queueSize ?? 0;
  }

  async close(): Promise<void> {
    this.#closing = true;
    await Promise.all(this.#pools.map((pool) => pool.destroy()));
  }

  #record(partition: number, loaded: boolean): void {
    if (partition < 0 || partition >= this.#partitions_total)
      throw new Error(`lane invariant: partition ${partition} out of 0..${this.#partitions_total - 1}`);
    const by = new Error().stack?.split('\n').slice(2, 12).join(' | ') ?? '';
    this.#loaded.set(partition, { loaded, by });
  }

  #assertLoaded(partition: number, op: string): void {
    const entry = this.#loaded.get(partition);
    if (entry?.loaded) return;
    const origin = entry ? `dropped by ${entry.by}` : 'never loaded';
    throw new Error(`lane invariant: ${op} of partition ${partition}, which is not loaded (${origin})`);
  }

  /** `queued` runs once the lane took the op (a refused op changes nothing the lane holds). */
  #run(partition: number, op: LaneOp, transferList: ArrayBuffer[], queued?: () => void): Promise<unknown> {
    return this.#runOn(this.laneOf(partition), op, transferList, queued);
  }

  /**
   * Ops of one partition must run in the order they are queued (a drop then a load, say). piscina's default
   * queue does not keep it: a queued task it cannot hand to the busy worker goes back to the tail
   * (piscina 5.3, `stricterFIFO: false`), which reordered a new task's load before the old task's drop and
   * stopped nodes with `partition N is not loaded on this lane` (RELIABILITY.md, 2026-12-04). The pools
   * run with stricterFIFO, and the lane asserts each op's `seq`.
   */
  #runOn(lane: number, op: LaneOp, transferList: ArrayBuffer[], queued?: () => void): Promise<unknown> {
    const pool = this.#pools[lane]!;
    // Refused here rather than by piscina: a task piscina refused would leave a gap in the lane's seq.
    if (pool.queueSize >= this.#queue_max)
      return Promise.reject(new Error(`lane ${lane}: more than ${this.#queue_max} tasks queued`));
    queued?.();
    const seq = ++this.#seq[lane]!;
    return pool.run({ ...op, seq } satisfies LaneTask, { transferList });
  }
}

/** Compiled code runs dist/actors/lane-worker.js; tests running the TypeScript sources use the .ts file. */
function workerFilename(): string {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./lane-worker.${ext}`, import.meta.url).href;
}

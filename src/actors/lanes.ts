import { Piscina } from 'piscina';
import type { DomainConfig } from '../domain/index.js';
import type { LaneStats, LaneTask } from './protocol.js';

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

  constructor(opts: {
    lanes: number;
    partitions_total: number;
    /** Tasks queued per lane beyond the one running; piscina rejects past it. */
    lane_queue_max: number;
    domain_config?: Partial<DomainConfig>;
  }) {
    if (opts.lanes < 1) throw new Error('lanes must be ≥ 1');
    this.#partitions_total = opts.partitions_total;
    const filename = workerFilename();
    this.#pools = Array.from(
      { length: opts.lanes },
      () =>
        new Piscina({
          filename,
          minThreads: 1,
          maxThreads: 1,
          concurrentTasksPerWorker: 1,
          maxQueue: opts.lane_queue_max,
          idleTimeout: Number.POSITIVE_INFINITY,
          workerData: { domain_config: opts.domain_config ?? {} },
        }),
    );
  }

  get count(): number {
    return this.#pools.length;
  }

  laneOf(partition: number): number {
    return partition % this.#pools.length;
  }

  async apply(partition: number, input: Uint8Array): Promise<Uint8Array> {
    const task: LaneTask = { op: 'apply', partition, partitions_total: this.#partitions_total, input };
    return (await this.#run(partition, task, [input.buffer as ArrayBuffer])) as Uint8Array;
  }

  async load(partition: number, parts: Uint8Array | null): Promise<void> {
    await this.#run(partition, { op: 'load', partition, parts }, parts ? [parts.buffer as ArrayBuffer] : []);
  }

  /** Throws ReplayDisagreementError when an event does not apply to the partition's loaded state. */
  async replay(partition: number, input: Uint8Array): Promise<void> {
    const task: LaneTask = { op: 'replay', partition, input };
    const result = (await this.#run(partition, task, [input.buffer as ArrayBuffer])) as {
      invariant_failed: string;
    } | null;
    if (result !== null) throw new ReplayDisagreementError(partition, result.invariant_failed);
  }

  async drop(partition: number): Promise<void> {
    await this.#run(partition, { op: 'drop', partition }, []);
  }

  /** A msgpack CheckpointDelta of what changed on the partition since its last checkpoint. */
  async checkpoint(partition: number): Promise<Uint8Array> {
    return (await this.#run(partition, { op: 'checkpoint', partition }, [])) as Uint8Array;
  }

  async checkpointFailed(partition: number): Promise<void> {
    await this.#run(partition, { op: 'checkpoint_failed', partition }, []);
  }

  async stats(): Promise<LaneStats[]> {
    return Promise.all(
      this.#pools.map((pool) => pool.run({ op: 'stats' } satisfies LaneTask) as Promise<LaneStats>),
    );
  }

  queueDepth(lane: number): number {
    return this.#pools[lane]?.queueSize ?? 0;
  }

  async close(): Promise<void> {
    await Promise.all(this.#pools.map((pool) => pool.destroy()));
  }

  #run(partition: number, task: LaneTask, transferList: ArrayBuffer[]): Promise<unknown> {
    const pool = this.#pools[this.laneOf(partition)]!;
    return pool.run(task, { transferList });
  }
}

/** Compiled code runs dist/actors/lane-worker.js; tests running the TypeScript sources use the .ts file. */
function workerFilename(): string {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./lane-worker.${ext}`, import.meta.url).href;
}

/**
 * Messages between the stream loop (main thread) and a lane (worker thread). Buffers are transferred. Each
 * carries `seq`, its place in the lane's queue (Lanes.#runOn): the lane runs them in exactly that order.
 */
export type LaneTask = LaneOp & { seq: number };
export type LaneOp =
  | { op: 'apply'; partition: number; partitions_total: number; input: Uint8Array }
  | { op: 'replay'; partition: number; input: Uint8Array }
  /** `parts`: msgpack CheckpointParts from Redis, or null to start empty (then replay from offset 0). */
  | { op: 'load'; partition: number; parts: Uint8Array | null }
  | { op: 'drop'; partition: number }
  /** Returns a msgpack CheckpointDelta of what changed since the last one. */
  | { op: 'checkpoint'; partition: number }
  /** The last delta was not stored: the next one must be full. */
  | { op: 'checkpoint_failed'; partition: number }
  | { op: 'stats' };

export interface LaneStats {
  partitions: number;
  accounts: number;
}

import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import type { KafkaPort } from './kafka-port.js';

export interface ReplayTarget {
  /** First events offset to replay (the checkpoint's offset, or 0). */
  from: bigint;
  /**
   * The replay ends no earlier than this: the events end after the last transaction this node committed
   * for the partition. Right after an EndTxn its markers may not be written yet, so the last stable offset
   * can still be short of it; the read_committed consumer then waits for it (within the timeout).
   */
  to_min?: bigint;
  /**
   * Wait until no transaction is open on the partition (the last stable offset reaches the high watermark)
   * before taking its end. With one transactional producer per node (KIP-447) nothing fences the previous
   * owner's id: its last transaction may be committed in the group's offsets (read with requireStable) while
   * its marker on this changelog partition is still being written. Only the partition's owner writes its
   * changelog, and a new owner writes nothing before its restore ends, so an open transaction there is the
   * previous owner's, and it settles within the transaction timeout.
   */
  settled?: boolean;
}

export interface ReplayResult {
  /** Per partition: the next offset after the replayed range (the last stable offset at start). */
  end: Map<number, bigint>;
  events_replayed: number;
}

export class RestoreTimeoutError extends Error {
  override name = 'RestoreTimeoutError';
}

export class CheckpointAheadError extends Error {
  override name = 'CheckpointAheadError';
  constructor(
    readonly partition: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Replays the changelog (events topic, read_committed) of the given partitions from their offsets up to the
 * last stable offset seen at start, or further where a target's `to_min` says so. The port has no manual
 * assign, so a throwaway consumer group subscribes, pauses what it does not need and seeks the rest. Control
 * records (transaction markers) never reach a batch handler, so progress is tracked through onBatchEnd, which
 * also fires for batches of markers only.
 */
export async function replayPartitions(opts: {
  kafka: KafkaPort;
  topic: string;
  group_prefix: string;
  targets: Map<number, ReplayTarget>;
  timeout_ms: number;
  log: Logger;
  onEvents: (partition: number, values: Buffer[]) => Promise<void>;
}): Promise<ReplayResult> {
  const { kafka, topic, targets } = opts;
  const admin = kafka.admin();
  await admin.connect();
  const end = new Map<number, bigint>();
  const all_partitions: number[] = [];
  try {
    for (const { partition, high, low } of await settledOffsets(admin, opts)) {
      all_partitions.push(partition);
      const target = targets.get(partition);
      if (!target) continue;
      const stop = BigInt(high) > (target.to_min ?? 0n) ? BigInt(high) : (target.to_min ?? 0n);
      end.set(partition, stop);
      if (target.from > stop) {
        throw new CheckpointAheadError(
          partition,
          `partition ${partition}: checkpoint offset ${target.from} > end ${stop}`,
        );
      }
      if (target.from < BigInt(low))
        throw new Error(`changelog invariant: partition ${partition} truncated below ${target.from}`);
    }
  } finally {
    await admin.disconnect();
  }
  const pending = new Map<number, bigint>();
  for (const [partition, target] of targets) {
    const stop = end.get(partition);
    if (stop === undefined) throw new Error(`restore invariant: partition ${partition} not in ${topic}`);
    if (target.from < stop) pending.set(partition, target.from);
  }
  if (pending.size === 0) return { end, events_replayed: 0 };
  const events_replayed = await consumeRange({ ...opts, pending, end, all_partitions });
  return { end, events_replayed };
}

/**
 * The topic's offsets once every `settled` target has no open transaction (bounded by the restore
 * timeout; polled 20 ms doubling to 320 ms). An adapter that reads no high watermark has per-partition
 * producers, whose fence at restore already settled the previous owner's transaction.
 */
async function settledOffsets(
  admin: Awaited<ReturnType<KafkaPort['admin']>>,
  opts: { topic: string; targets: Map<number, ReplayTarget>; timeout_ms: number },
) {
  const deadline_ms = Date.now() + opts.timeout_ms;
  let wait_ms = 20;
  for (;;) {
    const offsets = await admin.topicOffsets(opts.topic);
    const open = offsets.filter(
      (o) =>
        opts.targets.get(o.partition)?.settled === true &&
        o.high_watermark !== undefined &&
        o.high_watermark !== o.high,
    );
    if (open.length === 0) return offsets;
    if (Date.now() >= deadline_ms) {
      const which = open.map((o) => `${o.partition} (${o.high} < ${o.high_watermark})`).join(', ');
      throw new RestoreTimeoutError(`changelog partitions ${which} keep a transaction open`);
    }
    await new Promise((r) => setTimeout(r, wait_ms));
    wait_ms = Math.min(wait_ms * 2, 320);
  }
}

async function consumeRange(opts: {
  kafka: KafkaPort;
  topic: string;
  group_prefix: string;
  timeout_ms: number;
  log: Logger;
  pending: Map<number, bigint>;
  end: Map<number, bigint>;
  all_partitions: number[];
  onEvents: (partition: number, values: Buffer[]) => Promise<void>;
}): Promise<number> {
  const { kafka, topic, pending, end } = opts;
  const group_id = `${opts.group_prefix}.restore.${randomUUID()}`;
  const consumer = kafka.consumer({ group_id, topic, from: 'earliest', max_wait_ms: 100 });
  let events_replayed = 0;
  let settle: (err?: Error) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  // A crash can settle `done` while start() is still awaited (the consumer joins the group inside it):
  // the `await done` below observes it; until then it must not count as an unhandled rejection (exit 1).
  done.catch(() => {});
  const advance = (partition: number, next: bigint) => {
    const stop = end.get(partition);
    if (!pending.has(partition) || stop === undefined) return;
    if (next >= stop) {
      pending.delete(partition);
      consumer.pause([partition]);
      if (pending.size === 0) settle();
    }
  };
  const timer = setTimeout(
    () => settle(new RestoreTimeoutError(`restore timed out after ${opts.timeout_ms} ms`)),
    opts.timeout_ms,
  );
  try {
    await consumer.start({
      onBatchEnd: (partition, last_offset) => {
        if (last_offset !== null) advance(partition, BigInt(last_offset) + 1n);
      },
      onCrash: (err) => settle(err as Error),
      onBatch: async (batch) => {
        const from = pending.get(batch.partition);
        const stop = end.get(batch.partition);
        if (from === undefined || stop === undefined) return;
        const values: Buffer[] = [];
        for (const message of batch.messages) {
          const offset = BigInt(message.offset);
          if (offset >= from && offset < stop && message.value) values.push(message.value);
        }
        // A failure to apply is the restore's answer, not the client's: thrown here, the client would retry
        // the batch and then crash with a retries-exceeded wrapper that reads as a transient broker error.
        try {
          if (values.length > 0) await opts.onEvents(batch.partition, values);
        } catch (err) {
          settle(err as Error);
          return;
        }
        events_replayed += values.length;
      },
    });
    for (const [partition, from] of pending) consumer.seek(partition, from.toString());
    const others = opts.all_partitions.filter((p) => !pending.has(p));
    if (others.length > 0) consumer.pause(others);
    await done;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
    await deleteGroup(kafka, group_id);
  }
  return events_replayed;
}

async function deleteGroup(kafka: KafkaPort, group_id: string): Promise<void> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.deleteGroups([group_id]);
  } catch {
    // A leftover empty group costs nothing and expires with offsets.retention; never fail a restore on it.
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

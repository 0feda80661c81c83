/**
 * The Kafka port: everything the stream processor, the changelog replay and the gateway ask of a Kafka
 * client, in the project's own terms. Only the adapter (src/streams/platformatic/) imports a client
 * library; the engine's tests script this surface (test/support/scripted-kafka.ts) to inject every error
 * class.
 *
 * Errors an adapter throws carry what kafka-errors.ts classifies: the Kafka protocol error name as `type`
 * (e.g. CONCURRENT_TRANSACTIONS), and `retriable` where the protocol says so or for a connection or timeout
 * failure. Offsets are decimal strings, as on the wire's int64.
 */

/** A record to produce. The partition is always explicit: routing is ours (src/protocol/route.ts). */
export interface OutRecord {
  partition: number;
  key: string | null;
  value: Buffer;
  headers?: Record<string, string>;
}

export interface TopicRecords {
  topic: string;
  messages: OutRecord[];
}

/** Where a produced batch landed: one entry per topic-partition written. */
export interface ProduceAck {
  topicName: string;
  partition: number;
  baseOffset?: string;
}

export interface InRecord {
  offset: string;
  value: Buffer | null;
  /** As the adapter's client delivers them (no copy on the hot path): read one with `headerValue`. */
  headers?: RecordHeaders;
}

/** An object of values (as an OutRecord carries them), or a record's [key, value] pairs (platformatic). */
export type RecordHeaders =
  | { [key: string]: Buffer | string | (Buffer | string)[] | undefined }
  | [Buffer, Buffer][];

/** The first value of header `name` as text, or null when the record has none. */
export function headerValue(record: InRecord, name: string): string | null {
  const headers = record.headers;
  if (headers === undefined) return null;
  if (Array.isArray(headers)) {
    for (const [key, value] of headers) if (key.toString() === name) return value.toString();
    return null;
  }
  const value = headers[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined ? null : first.toString();
}

/**
 * The consumer group generation a batch was fetched in. A transaction that commits the batch's offsets
 * carries it (KIP-447): the group coordinator refuses the commit once the generation has moved on, which
 * fences a member that lost the partition without knowing it.
 */
export interface GroupMetadata {
  group_id: string;
  generation_id: number;
  member_id: string;
  /** Node id of the group coordinator, where the offsets go. */
  coordinator_id: number;
}

/** One fetched batch of one partition, and the consumer's controls over that partition. */
export interface FetchedBatch {
  partition: number;
  /** Null where the consumer does not expose it (scripted tests without a group generation). */
  group: GroupMetadata | null;
  messages: InRecord[];
  high_watermark: string;
  /** False once the consumer stops, or the partition was revoked or seeked since this batch was fetched. */
  current(): boolean;
  /** Everything up to `offset` is processed: the consumer fetches the partition after it. */
  resolveOffset(offset: string): void;
  heartbeat(): Promise<void>;
  /** Stops fetching this partition; the returned function resumes it (from the last resolved offset). */
  pause(): () => void;
}

export interface GroupConsumerOptions {
  group_id: string;
  topic: string;
  /** Where a partition without a committed offset starts. */
  from: 'earliest' | 'latest';
  max_wait_ms: number;
  session_timeout_ms?: number;
  max_bytes_per_partition?: number;
  /** Partitions whose batches are handled at the same time; per partition, batches stay in order. */
  partitions_concurrently_max?: number;
  /**
   * The handler resolves what it processed (FetchedBatch.resolveOffset), and a batch cut short is fetched
   * again from after its last resolved offset (after refetch_wait_ms when it took nothing). Otherwise a batch
   * counts as processed once its handler returns.
   */
  manual_resolve?: boolean;
}

/** A manual_resolve batch its handler took nothing of is fetched again after this wait, not at once. */
export const refetch_wait_ms = 20;

export interface GroupHandlers {
  onBatch(batch: FetchedBatch): Promise<void>;
  /** The group (re)assigned this member; `member_id` changes when the coordinator dropped and re-admitted us. */
  onAssignment?(assignment: { member_id: string; partitions: number[] }): void;
  /** After each fetch round (the gateway's outcome feed waits for the first one). */
  onFetch?(): void;
  /** After each batch, also for batches of transaction markers only (the replay tracks progress with it). */
  onBatchEnd?(partition: number, last_offset: string | null): void;
  /** The consumer stopped on an error it will (restarting) or will not recover from itself. */
  onCrash?(err: unknown, restarting: boolean): void;
}

/** A read_committed consumer in a consumer group (classic protocol, eager rebalances on Kafka 3.9). */
export interface GroupConsumer {
  /** Connects, joins and starts delivering batches; resolves once running (not once joined). */
  start(handlers: GroupHandlers): Promise<void>;
  seek(partition: number, offset: string): void;
  pause(partitions: number[]): void;
  /** Plain (non-transactional) offset commit: only the at-least-once bench mode uses it. */
  commitOffsets(offsets: { partition: number; offset: string }[]): Promise<void>;
  /** Stops fetching and waits for the batches being handled. */
  stop(): Promise<void>;
  disconnect(): Promise<void>;
}

/** One transaction: its consumed offsets, its records, then EndTxn (see transaction.ts for the order). */
export interface TransactionSteps {
  sendOffsets(offsets: {
    consumerGroupId: string;
    topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
    /** Required by a KIP-447 adapter: the generation the offsets were consumed in. */
    group?: GroupMetadata | null;
  }): Promise<void>;
  sendBatch(batch: { topicMessages: TopicRecords[]; acks: -1 }): Promise<ProduceAck[]>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface TransactionalProducer {
  /**
   * Connects and initializes the transactional id (InitProducerId): this fences every older producer of the
   * id and settles its open transaction before it resolves.
   */
  connect(): Promise<void>;
  transaction(): Promise<TransactionSteps>;
  disconnect(): Promise<void>;
}

/** The gateway's idempotent producer (acks=all). */
export interface Producer {
  connect(): Promise<void>;
  sendBatch(batch: { topicMessages: TopicRecords[]; acks: -1 }): Promise<ProduceAck[]>;
  disconnect(): Promise<void>;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  replication_factor: number;
  configs: Record<string, string>;
}

export interface Admin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  listTopics(): Promise<string[]>;
  createTopics(topics: TopicSpec[]): Promise<void>;
  partitionCounts(topics: string[]): Promise<Map<string, number>>;
  /**
   * Per partition: the log start, and the end a read_committed reader sees (the last stable offset);
   * `high_watermark` where the adapter reads it too (it differs from `high` while a transaction is open).
   */
  topicOffsets(
    topic: string,
  ): Promise<{ partition: number; low: string; high: string; high_watermark?: string }[]>;
  /** The group's committed offsets of `topic` ('-1' where none was committed). */
  groupOffsets(group_id: string, topic: string): Promise<Map<number, string>>;
  /** The partitions of `topic` the coordinator assigns to `member_id` now (empty if it is not a member). */
  memberAssignment(group_id: string, member_id: string, topic: string): Promise<number[]>;
  deleteGroups(group_ids: string[]): Promise<void>;
}

export interface KafkaPort {
  /** `quick`: fail fast instead of retrying (the start-up reachability check). */
  admin(opts?: { quick?: boolean }): Admin;
  consumer(opts: GroupConsumerOptions): GroupConsumer;
  transactionalProducer(opts: {
    transactional_id: string;
    transaction_timeout_ms: number;
  }): TransactionalProducer;
  /** Idempotent, acks=all. `retries_max` bounds the client's own retries of a failed produce. */
  producer(opts?: { retries_max?: number }): Producer;
}

/** `host:port,host:port` → the bootstrap list. */
export function parseBrokers(list: string): string[] {
  return list
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
}

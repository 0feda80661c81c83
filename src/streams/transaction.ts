import { type BatchOutput, decode, type ReplyRecord } from '../protocol/wire.js';
import { kafkaErrorType } from './kafka-errors.js';
import type {
  GroupMetadata,
  KafkaPort,
  OutRecord,
  ProduceAck,
  TopicRecords,
  TransactionalProducer,
} from './kafka-port.js';
import type { TopicNames } from './topics.js';

export type TopicMessages = TopicRecords;

/** How a task commits a chunk: its records and its consumed offset, atomically in production. */
export interface Committer {
  /** Fences older holders of the partition's transactional id (exactly-once) before it resolves. */
  connect(): Promise<void>;
  /** Resolves once the chunk is committed; what it wrote, per topic-partition. */
  commit(request: Omit<CommitRequest, 'group_id'>): Promise<ProduceAck[]>;
  disconnect(): Promise<void>;
}

export interface CommitterContext {
  kafka: KafkaPort;
  group_id: string;
  transactional_id: string;
  policy: RetryPolicy;
  onRetry: (error: string) => void;
  /** The group consumer's plain offset commit (for a bench's at-least-once committer only). */
  commitOffsets: (offsets: { partition: number; offset: string }[]) => Promise<void>;
}

export type CommitterFactory = (ctx: CommitterContext) => Committer;

/**
 * The transactional id a node commits under: one per input partition (a client without KIP-447 fences a
 * zombie only through the id, so it must follow the partition), or one per node (KIP-447: the group
 * generation fences, and the id only has to be stable across the node's restarts).
 */
export function transactionalIdOf(
  app_id: string,
  commands_topic: string,
  scope: { per: 'partition'; partition: number } | { per: 'node'; node_id: string },
): string {
  return scope.per === 'node'
    ? `${app_id}-${commands_topic}-node-${scope.node_id}`
    : `${app_id}-${commands_topic}-${scope.partition}`;
}

/** Production: one Kafka transaction per commit (commitTransaction), on the partition's transactional id. */
export const transactionalCommitter: CommitterFactory = (ctx) => {
  const producer = ctx.kafka.transactionalProducer({
    transactional_id: ctx.transactional_id,
    transaction_timeout_ms: 30_000,
  });
  return {
    connect: () => producer.connect(),
    commit: (request) =>
      commitTransaction(producer, { ...request, group_id: ctx.group_id }, ctx.policy, ctx.onRetry),
    disconnect: () => producer.disconnect(),
  };
};

/**
 * Answers of a transaction coordinator that mean "not now", not "failed": CONCURRENT_TRANSACTIONS while the
 * previous transaction's markers are still being written (normal right after an EndTxn), and a coordinator
 * that is loading or has moved. The Java client's TransactionManager retries them; so do we.
 */
const coordinator_busy_types = new Set([
  'CONCURRENT_TRANSACTIONS',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'NOT_COORDINATOR',
  'COORDINATOR_NOT_AVAILABLE',
]);

export function coordinatorBusyType(err: unknown): string | null {
  const type = kafkaErrorType(err);
  return type !== null && coordinator_busy_types.has(type) ? type : null;
}

/**
 * The group coordinator's answers to a TxnOffsetCommit sent with a generation it has just left (KIP-447):
 * the group is rebalancing, or has completed a rebalance our member has not seen the end of yet. For a
 * partition this member kept through the rebalance the offsets are sent again with the generation it joins
 * (the commit's group is read per attempt); for one it lost, the old generation is sent again and refused
 * again, and the transaction fails as before (aborted, the partition released or rebuilt).
 */
const generation_moved_types = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION']);

export function offsetsRetryType(err: unknown): string | null {
  const type = kafkaErrorType(err);
  if (type !== null && generation_moved_types.has(type)) return type;
  return coordinatorBusyType(err);
}

export interface RetryPolicy {
  /** Attempts of one step, the first included. */
  attempts_max: number;
  backoff_ms_first: number;
  backoff_ms_max: number;
}

/**
 * 20 ms first, as the Java client does for CONCURRENT_TRANSACTIONS, doubling to 320 ms: the 12 attempts
 * wait at most 20 + 40 + 80 + 160 + 8 × 320 ≈ 2.9 s, far below the 30 s transaction timeout.
 */
export const default_retry_policy: RetryPolicy = {
  attempts_max: 12,
  backoff_ms_first: 20,
  backoff_ms_max: 320,
};

export type StepName = 'offsets' | 'produce' | 'end_txn';

export class StepFailedError extends Error {
  override name = 'StepFailedError';
  constructor(
    readonly step: StepName,
    override readonly cause: unknown,
  ) {
    super(`transaction step ${step} failed: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

/** Runs `fn`, retrying coordinator-busy answers with a capped backoff; any other error is thrown at once. */
export async function retryBusy<T>(
  fn: () => Promise<T>,
  policy: RetryPolicy,
  onRetry: (type: string) => void,
  sleep: (ms: number) => Promise<void> = defaultSleep,
  retriable: (err: unknown) => string | null = coordinatorBusyType,
): Promise<T> {
  let backoff_ms = policy.backoff_ms_first;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const type = retriable(err);
      if (type === null || attempt >= policy.attempts_max) throw err;
      onRetry(type);
      await sleep(backoff_ms);
      backoff_ms = Math.min(backoff_ms * 2, policy.backoff_ms_max);
    }
  }
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface CommitRequest {
  group_id: string;
  /** The consumed position that this transaction commits: the next command offset of the partition. */
  offset: { topic: string; partition: number; offset: bigint };
  /** A transaction of several partitions (SharedTransactions): all their positions; `offset` is ignored. */
  offsets?: { topic: string; partition: number; offset: bigint }[];
  /** The group generation to commit the offset in, read per attempt (KIP-447 adapters require it). */
  group?: () => GroupMetadata | null;
  /** Told each step as it starts (a task names it when a shutdown waits for it). */
  onStep?: (step: StepName | 'begin') => void;
  /**
   * Node transactions: false once the task that made the request is closed, failed or rebuilt. Its offsets
   * are then never sent (SharedTransactions): a new task of the partition may already have read the
   * committed offset and be applying the same commands again.
   */
  live?: () => boolean;
  records: TopicMessages[];
}

/**
 * Offsets first: AddOffsetsToTxn is then the transaction's first request, the one the coordinator answers
 * CONCURRENT_TRANSACTIONS to while the previous transaction completes, and it is retried here as a whole
 * (on top of the client's own retries of the single request, src/streams/platformatic/index.ts). Retrying
 * it is safe: adding the group's offsets partition twice, or committing the same offset twice, inside one
 * transaction changes nothing. Once it is in, the transaction is ongoing on the coordinator, so the
 * records' AddPartitionsToTxn is not refused as concurrent; the client retries its produce path itself. A
 * failed EndTxn (after the client's retries of coordinator-busy answers) is ambiguous: the caller rebuilds
 * rather than resend it.
 */
export async function commitTransaction(
  producer: Pick<TransactionalProducer, 'transaction'>,
  request: CommitRequest,
  policy: RetryPolicy,
  onRetry: (type: string) => void,
  sleep?: (ms: number) => Promise<void>,
): Promise<ProduceAck[]> {
  request.onStep?.('begin');
  const txn = await producer.transaction();
  let step: StepName = 'offsets';
  request.onStep?.(step);
  try {
    // Per attempt, in this order: reading the group may narrow the transaction (SharedTransactions).
    const offsets = () => {
      const group = request.group?.() ?? null;
      return {
        consumerGroupId: request.group_id,
        group,
        topics: offsetTopics(request.offsets ?? [request.offset]),
      };
    };
    await retryBusy(() => txn.sendOffsets(offsets()), policy, onRetry, sleep, offsetsRetryType);
    step = 'produce';
    request.onStep?.(step);
    let metadata: ProduceAck[] = [];
    if (request.records.length > 0) {
      metadata = await txn.sendBatch({ topicMessages: request.records, acks: -1 });
    }
    step = 'end_txn';
    request.onStep?.(step);
    await txn.commit();
    return metadata;
  } catch (err) {
    // A failed EndTxn is not followed by an abort (its outcome is unknown; the transaction may no longer be
    // active): the rebuild's fence aborts whatever the coordinator still holds.
    if (step !== 'end_txn') await txn.abort().catch(() => {});
    throw new StepFailedError(step, err);
  }
}

function offsetTopics(offsets: { topic: string; partition: number; offset: bigint }[]) {
  const by_topic = new Map<string, { partition: number; offset: string }[]>();
  for (const o of offsets) {
    const list = by_topic.get(o.topic) ?? [];
    list.push({ partition: o.partition, offset: o.offset.toString() });
    by_topic.set(o.topic, list);
  }
  return [...by_topic].map(([topic, partitions]) => ({ topic, partitions }));
}

/**
 * The events offset a commit leaves the partition's changelog at: its last event's offset + 1, which is the
 * commit marker's offset. The last stable offset passes it only once that marker is written.
 */
export function eventsEndAfter(
  metadata: ProduceAck[],
  events: { topic: string; partition: number },
  events_total: number,
) {
  if (events_total === 0) return null;
  const events_topic = events.topic;
  const meta = metadata.find((m) => m.topicName === events_topic && m.partition === events.partition);
  if (meta?.baseOffset === undefined) {
    throw new Error(
      `transaction invariant: ${events_total} events committed without an ${events_topic} offset`,
    );
  }
  return BigInt(meta.baseOffset) + BigInt(events_total);
}

/**
 * A lane batch's output as the records of its transaction: events to the partition's changelog partition,
 * replies to the reply topics of other nodes' gateways (replies for this node's own gateway go to `local`,
 * handed over once the transaction commits), follow-up legs to the partition that owns their account. A
 * follow-up without an owner is a bug in the domain: it throws (the caller stops the node).
 */
export function routeRecords(
  partition: number,
  output: BatchOutput,
  route: { names: TopicNames; partitions_total: number; local_topic: string | null },
  local: ReplyRecord[],
): TopicMessages[] {
  const groups: TopicMessages[] = [];
  if (output.events.length > 0) {
    groups.push({
      topic: route.names.events,
      messages: output.events.map((e) => ({ partition, key: e.key, value: asBuffer(e.value) })),
    });
  }
  const by_topic = new Map<string, OutRecord[]>();
  for (const r of output.replies) {
    if (r.reply_to === route.local_topic) {
      local.push(decode<ReplyRecord>(r.value)); // handed over in process: the only decode on this path
      continue;
    }
    const list = by_topic.get(r.reply_to) ?? [];
    list.push({ partition: 0, key: r.key, value: asBuffer(r.value) });
    by_topic.set(r.reply_to, list);
  }
  for (const [topic, messages] of by_topic) groups.push({ topic, messages });
  if (output.follow_ups.length > 0) {
    groups.push({
      topic: route.names.commands,
      messages: output.follow_ups.map((f) => {
        const target = f.partition;
        if (target === null || !Number.isInteger(target) || target < 0 || target >= route.partitions_total)
          throw new Error(`routing invariant: follow-up ${f.key} has no owner`);
        return { partition: target, key: f.key, value: asBuffer(f.value) };
      }),
    });
  }
  return groups;
}

/** The lane's bytes as a Buffer, without a copy (msgpackr hands nested binaries over as Uint8Array). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * One transaction per node commit (KIP-447). Every task's commit request joins the node's next transaction:
 * while one transaction runs, the requests that arrive form the next, so a transaction spans every partition
 * with work, bounded by `records_max` (a request larger than it goes alone) and gathered for at most
 * `commit_interval_ms`. One transactional producer for the node; a zombie is fenced by the group generation
 * its TxnOffsetCommit carries (offsets are sent first, so a fenced transaction writes nothing), not by the
 * transactional id. Each task still has at most one request in flight (its chunks take turns).
 *
 *   task p0 ─commit─┐
 *   task p3 ─commit─┼─▶ queue (≤ requests_max) ──▶ [offsets p0,p3,p5 │ records │ EndTxn] ──▶ resolve each
 *   task p5 ─commit─┘
 *
 * A failed transaction rejects every request in it (each task rebuilds: exactly the partitions it held), and
 * the producer is initialized again before the next one: InitProducerId fences the old instance and
 * settles its open transaction, so a rebuild's changelog end is final once `ready()` resolves.
 */
export interface SharedTransactionsOptions {
  producer: () => TransactionalProducer;
  group_id: string;
  policy: RetryPolicy;
  onRetry: (type: string) => void;
  records_max: number;
  commit_interval_ms: number;
  /** Bound of queued requests: one per task at most, so the partition count. */
  requests_max: number;
  onTransaction?: (requests: number, records: number) => void;
}

interface QueuedCommit {
  request: Omit<CommitRequest, 'group_id'>;
  records_total: number;
  resolve: (acks: ProduceAck[]) => void;
  reject: (err: unknown) => void;
}

/** A request whose partition left the generation the rest of its transaction commits in. */
export class GenerationMovedError extends Error {
  override name = 'GenerationMovedError';
}

/** A request whose task ended before its offsets were sent: dropped, nothing of it written. */
export class RequestWithdrawnError extends Error {
  override name = 'RequestWithdrawnError';
}

export class SharedTransactions {
  readonly #o: SharedTransactionsOptions;
  #producer: TransactionalProducer | null = null;
  /** Settles when the current producer holds the id (InitProducerId answered); replaced after a failure. */
  #ready: Promise<void> | null = null;
  #queue: QueuedCommit[] = [];
  #running = false;
  /** The partitions of the running transaction, and when it ends (committed or failed). */
  #running_partitions = new Set<number>();
  #running_done: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(o: SharedTransactionsOptions) {
    this.#o = o;
  }

  /** Resolves once the node's producer is initialized; a failed initialization is tried again next call. */
  ready(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('shared transactions closed'));
    if (this.#ready === null) {
      const producer = this.#o.producer();
      this.#producer = producer;
      const ready = producer.connect();
      this.#ready = ready;
      ready.catch(() => {
        if (this.#ready === ready) this.#ready = null;
        void producer.disconnect().catch(() => {});
      });
    }
    return this.#ready;
  }

  commit(request: Omit<CommitRequest, 'group_id'>): Promise<ProduceAck[]> {
    if (this.#closed) return Promise.reject(new Error('shared transactions closed'));
    this.#queue = this.#withdrawEnded(this.#queue);
    if (this.#queue.length >= this.#o.requests_max)
      throw new Error(`transaction invariant: more than ${this.#o.requests_max} commit requests queued`);
    if (this.#queue.some((q) => q.request.offset.partition === request.offset.partition))
      throw new Error(`transaction invariant: two commits of partition ${request.offset.partition} queued`);
    const records_total = request.records.reduce((n, t) => n + t.messages.length, 0);
    return new Promise((resolve, reject) => {
      this.#queue.push({ request, records_total, resolve, reject });
      this.#schedule();
    });
  }

  /**
   * Resolves once no transaction can still send offsets of `partition` or is still settling them: queued
   * requests of ended tasks are dropped, and a running transaction that holds one of the partition's is
   * waited for. A restore reads the committed offset only after this: a request of the partition's previous
   * task (revoked and assigned back in the same generation, by the same member) would otherwise commit its
   * chunk after that read, and the new task apply the same commands again.
   */
  async settledFor(partition: number): Promise<void> {
    this.#queue = this.#withdrawEnded(this.#queue);
    if (this.#queue.some((q) => q.request.offset.partition === partition))
      throw new Error(
        `transaction invariant: a live commit of partition ${partition} queued during its restore`,
      );
    // Bounded: each pass waits for one transaction to end, and a partition's request is in at most one.
    while (this.#running && this.#running_partitions.has(partition)) await this.#running_done;
  }

  /** Rejects the requests whose task ended (RequestWithdrawnError); returns the others. */
  #withdrawEnded(requests: QueuedCommit[]): QueuedCommit[] {
    const live: QueuedCommit[] = [];
    for (const q of requests) {
      if (q.request.live?.() ?? true) live.push(q);
      else q.reject(new RequestWithdrawnError(`partition ${q.request.offset.partition}: its task ended`));
    }
    return live;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    for (const q of this.#queue.splice(0)) q.reject(new Error('shared transactions closed'));
    const producer = this.#producer;
    this.#producer = null;
    this.#ready = null;
    await producer?.disconnect().catch(() => {});
  }

  #schedule(): void {
    if (this.#running || this.#timer !== null || this.#queue.length === 0) return;
    const run = () => {
      this.#timer = null;
      void this.#runNext();
    };
    if (this.#o.commit_interval_ms > 0) this.#timer = setTimeout(run, this.#o.commit_interval_ms);
    else setImmediate(run);
  }

  /** The requests of the next transaction: in arrival order, up to records_max (at least one). */
  #take(): QueuedCommit[] {
    this.#queue = this.#withdrawEnded(this.#queue);
    let records = 0;
    let n = 0;
    while (n < this.#queue.length) {
      const next = this.#queue[n]!.records_total;
      if (n > 0 && records + next > this.#o.records_max) break;
      records += next;
      n++;
    }
    return this.#queue.splice(0, n);
  }

  async #runNext(): Promise<void> {
    if (this.#running || this.#closed) return;
    this.#running = true;
    const batch = this.#take();
    this.#running_partitions = new Set(batch.map((q) => q.request.offset.partition));
    const run = this.#run(batch);
    this.#running_done = run.catch(() => {});
    try {
      await run;
    } finally {
      this.#running = false;
      this.#running_partitions = new Set();
      this.#schedule();
    }
  }

  async #run(batch: QueuedCommit[]): Promise<void> {
    const txn = { live: batch };
    try {
      await this.ready();
      txn.live = this.#dropMovedGenerations(this.#withdrawEnded(batch));
      if (txn.live.length === 0) return;
      const acks = await this.#transaction(txn);
      this.#o.onTransaction?.(
        txn.live.length,
        txn.live.reduce((n, q) => n + q.records_total, 0),
      );
      for (const q of txn.live) q.resolve(acks);
    } catch (err) {
      // Ambiguous or failed: the next transaction starts on a newly initialized producer, which aborts
      // whatever the coordinator still holds of this one before its first request is answered.
      const old = this.#producer;
      this.#producer = null;
      this.#ready = null;
      await old?.disconnect().catch(() => {});
      for (const q of txn.live) q.reject(err);
    }
  }

  /** Requests whose group generation differs from the newest among them are refused before anything is sent. */
  #dropMovedGenerations(batch: QueuedCommit[]): QueuedCommit[] {
    const groups = batch.map((q) => q.request.group?.() ?? null);
    const newest = groups.reduce<GroupMetadata | null>(
      (a, g) => (g !== null && (a === null || g.generation_id > a.generation_id) ? g : a),
      null,
    );
    if (newest === null) return batch;
    const live: QueuedCommit[] = [];
    batch.forEach((q, i) => {
      const g = groups[i];
      if (g && g.generation_id === newest.generation_id && g.member_id === newest.member_id) live.push(q);
      else
        q.reject(
          new GenerationMovedError(
            `partition ${q.request.offset.partition} left generation ${newest.generation_id}`,
          ),
        );
    });
    return live;
  }

  /**
   * `txn.live` shrinks while the offsets step is retried: a rebalance during the transaction refuses its
   * TxnOffsetCommit (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS), and on the next attempt the partitions
   * this member kept carry the new generation while revoked ones keep the old. Those are dropped (refused
   * with GenerationMovedError: their tasks close or rebuild) and the others go on in the new generation.
   * Safe because offsets go first: nothing of the transaction is written before they are accepted.
   */
  async #transaction(txn: { live: QueuedCommit[] }): Promise<ProduceAck[]> {
    const producer = this.#producer;
    if (producer === null) throw new Error('transaction invariant: no producer after ready()');
    const merged: CommitRequest = {
      group_id: this.#o.group_id,
      offsets: txn.live.map((q) => q.request.offset),
      offset: txn.live[0]!.request.offset,
      group: () => {
        txn.live = this.#dropMovedGenerations(this.#withdrawEnded(txn.live));
        if (txn.live.length === 0) throw new GenerationMovedError('every partition of the transaction left');
        merged.offsets = txn.live.map((q) => q.request.offset);
        merged.records = mergeRecords(txn.live.map((q) => q.request.records));
        return txn.live[0]!.request.group?.() ?? null;
      },
      onStep: (step) => {
        for (const q of txn.live) q.request.onStep?.(step);
      },
      records: mergeRecords(txn.live.map((q) => q.request.records)),
    };
    return commitTransaction(producer, merged, this.#o.policy, this.#o.onRetry);
  }
}

function mergeRecords(lists: TopicMessages[][]): TopicMessages[] {
  const by_topic = new Map<string, OutRecord[]>();
  for (const list of lists) {
    for (const { topic, messages } of list) {
      const into = by_topic.get(topic);
      if (into) for (const m of messages) into.push(m);
      else by_topic.set(topic, [...messages]);
    }
  }
  return [...by_topic].map(([topic, messages]) => ({ topic, messages }));
}

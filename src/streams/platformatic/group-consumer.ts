import { FetchIsolationLevels, Consumer as PltConsumer, type RetryDelayGetter } from '@platformatic/kafka';
import type { Logger } from '../../log.js';
import type {
  FetchedBatch,
  GroupConsumer,
  GroupConsumerOptions,
  GroupHandlers,
  GroupMetadata,
  InRecord,
} from '../kafka-port.js';
import { refetch_wait_ms } from '../kafka-port.js';
import { closeWithin, leave_ms_max, withinMs } from './bounded.js';
import { classified, KafkaPortError, protocolType } from './errors.js';
import { protocolCall } from './protocol-call.js';

/** How often the membership watchdog looks, and how soon it tries again after a failed rejoin. */
const membership_check_ms = 1_000;
const membership_retry_ms = 2_000;
/** Record batch attribute bits (Kafka protocol). */
const is_transactional = 0x10;
const is_control = 0x20;
/**
 * The longest a fetch waits for data while a partition's handler runs. That partition is not in the fetch (one
 * batch per partition at a time), and the broker answers a connection's requests in order: it rejoins at the
 * next round only, so a fetch that long-polls its full `max_wait_ms` delays it by as much. On 2026-12-06
 * (BENCHMARKS.md) this took the node's closed loop from 849–1,165 to 1,730 answers/s.
 */
export const busy_fetch_wait_ms = 2;

/** The fetch's wait: the full long poll only while no partition is being handled. */
export function fetchWaitMs(max_wait_ms: number, partitions_busy: number): number {
  return partitions_busy > 0 ? Math.min(max_wait_ms, busy_fetch_wait_ms) : max_wait_ms;
}

/** Wait between fetch rounds when nothing can be fetched (all partitions paused or busy), and after errors. */
const idle_wait_ms = 10;
const error_backoff_ms_first = 50;
const error_backoff_ms_max = 2_000;

interface BaseClientOptions {
  clientId: string;
  bootstrapBrokers: string[];
  timeout: number;
  retries: number;
  retryDelay: RetryDelayGetter;
  log: Logger;
}

/**
 * A read_committed group member on @platformatic/kafka: the client's classic-protocol membership (join,
 * sync, heartbeats, rejoin on rebalance), and a fetch loop of our own over its low-level `fetch`, because its
 * stream can neither pause one partition nor be seeked, and keeps delivering records fetched for partitions
 * a rebalance took away. Positions are ours: the committed offset (or `from`) when a partition is assigned,
 * then what the handler resolved; a seek or a revocation bumps the partition's epoch, which makes every
 * batch fetched before it stale (`current()` false, its resolutions ignored). One batch per partition is
 * handled at a time; batches of different partitions run concurrently, up to partitions_concurrently_max.
 */
/** One fetch response's bytes at most (the broker returns at least one batch even past it). */
const fetch_bytes_max = 50 * 1_048_576;

interface FetchedBatchRecords {
  firstOffset: bigint;
  lastOffsetDelta: number;
  attributes: number;
  producerId: bigint;
  records: { offsetDelta: number; key: Buffer | null; value: Buffer | null; headers?: [Buffer, Buffer][] }[];
}
interface FetchedPartition {
  partitionIndex: number;
  highWatermark: bigint;
  abortedTransactions?: { producerId: bigint; firstOffset: bigint }[];
  records?: FetchedBatchRecords[];
}
interface FetchResponse {
  responses: { topicId: string; partitions: FetchedPartition[] }[];
}

/**
 * The batches of a read_committed fetch without those of aborted transactions, as the Java consumer
 * filters them: an aborted transaction listed in the response starts at its first offset; its producer's
 * transactional batches are skipped until that producer's abort marker. Control batches stay (they move
 * the position); an abort marker of a transaction the response does not list ends nothing.
 */
export function committedBatches(part: FetchedPartition): FetchedBatchRecords[] {
  const batches = part.records ?? [];
  const aborted = [...(part.abortedTransactions ?? [])].sort((a, b) =>
    a.firstOffset < b.firstOffset ? -1 : a.firstOffset > b.firstOffset ? 1 : 0,
  );
  if (aborted.length === 0) return batches;
  const aborting = new Set<bigint>();
  const kept: FetchedBatchRecords[] = [];
  let next = 0;
  for (const batch of batches) {
    const batch_last = batch.firstOffset + BigInt(batch.lastOffsetDelta);
    while (next < aborted.length && aborted[next]!.firstOffset <= batch_last)
      aborting.add(aborted[next++]!.producerId);
    if (batch.attributes & is_control) {
      // Control record key: version (int16), type (int16): 0 = ABORT, 1 = COMMIT.
      if (batch.records[0]?.key?.readInt16BE(2) === 0) aborting.delete(batch.producerId);
      kept.push(batch);
      continue;
    }
    if (batch.attributes & is_transactional && aborting.has(batch.producerId)) continue;
    kept.push(batch);
  }
  return kept;
}

/**
 * A partition is kept across a rebalance only if nobody else can have owned it in between: the same member,
 * in the same or the next generation. A new member id (the old one expired) or a skipped generation (a
 * SyncGroup refused by a later rebalance) means other members may have owned and advanced any of our
 * partitions: every one is revoked first, then assigned as new (its task restored). A generation below 0 is
 * ours: partitions given up locally (#checkMembership), none left to keep.
 */
export function membershipContinues(
  previous: Pick<GroupMetadata, 'member_id' | 'generation_id'> | null,
  assigned_total: number,
  member_id: string,
  generation_id: number,
): boolean {
  if (previous === null || previous.generation_id < 0 || assigned_total === 0) return true;
  return (
    previous.member_id === member_id &&
    (generation_id === previous.generation_id || generation_id === previous.generation_id + 1)
  );
}

export class PlatformaticGroupConsumer implements GroupConsumer {
  readonly #o: GroupConsumerOptions;
  readonly #client: BaseClientOptions;
  #consumer: PltConsumer | null = null;
  #h: GroupHandlers | null = null;
  #group: GroupMetadata | null = null;
  readonly #assigned = new Set<number>();
  readonly #positions = new Map<number, bigint>();
  readonly #epochs = new Map<number, number>();
  readonly #paused = new Set<number>();
  /** Partitions whose last batch was left untaken: not fetched again before this time. */
  readonly #parked = new Map<number, number>();
  readonly #busy = new Map<number, Promise<void>>();
  #running = false;
  #watchdog: NodeJS.Timeout | null = null;
  #member_since_ms = 0;
  #rejoining = false;
  #handlers_running = 0;
  /** At most one waiter per assigned partition (one batch per partition at a time). */
  readonly #slot_waiters: (() => void)[] = [];
  #wake: () => void = () => {};

  constructor(client: BaseClientOptions, o: GroupConsumerOptions) {
    this.#client = client;
    this.#o = o;
  }

  async start(h: GroupHandlers): Promise<void> {
    this.#h = h;
    const session_timeout_ms = this.#o.session_timeout_ms ?? 30_000;
    const { log, ...client } = this.#client;
    const consumer = new PltConsumer({
      ...client,
      groupId: this.#o.group_id,
      autocommit: false,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      maxWaitTime: this.#o.max_wait_ms,
      sessionTimeout: session_timeout_ms,
      rebalanceTimeout: session_timeout_ms,
      heartbeatInterval: Math.max(500, Math.floor(session_timeout_ms / 10)),
    });
    this.#consumer = consumer;
    consumer.on('consumer:group:join', (payload) => this.#onJoin(payload));
    consumer.on('error', (err: unknown) =>
      log.warn({ err: (err as Error)?.message }, 'kafka consumer error'),
    );
    consumer.topics.track(this.#o.topic);
    await classified('join group', () => consumer.joinGroup({}));
    this.#member_since_ms = Date.now();
    this.#running = true;
    this.#watchdog = setInterval(() => void this.#checkMembership(session_timeout_ms), membership_check_ms);
    this.#watchdog.unref();
    void this.#fetchLoop().catch((err) => {
      this.#running = false;
      this.#h?.onCrash?.(err, false);
    });
  }

  #onJoin(payload: {
    memberId: string;
    generationId?: number;
    assignments?: { topic: string; partitions: number[] }[];
  }) {
    const consumer = this.#consumer;
    if (!consumer) return;
    const partitions = payload.assignments?.find((a) => a.topic === this.#o.topic)?.partitions ?? [];
    const generation_id = payload.generationId ?? consumer.generationId;
    if (!membershipContinues(this.#group, this.#assigned.size, payload.memberId, generation_id))
      this.#revokeAll(
        'membership did not continue (new member id or a skipped generation): every partition revoked',
      );
    const next = new Set(partitions);
    for (const p of this.#assigned) {
      if (next.has(p)) continue;
      this.#assigned.delete(p);
      this.#positions.delete(p);
      this.#paused.delete(p);
      this.#bump(p);
    }
    for (const p of next) {
      if (this.#assigned.has(p)) continue;
      this.#assigned.add(p);
      this.#positions.delete(p); // read from the committed offset at the next fetch round
      this.#bump(p);
    }
    this.#group = {
      group_id: this.#o.group_id,
      generation_id,
      member_id: payload.memberId,
      coordinator_id: consumer.coordinatorId ?? -1,
    };
    this.#h?.onAssignment?.({ member_id: payload.memberId, partitions: [...next].sort((a, b) => a - b) });
    this.#wake();
  }

  /** Revokes every partition (told to the handler as an empty assignment); `why` is logged. */
  #revokeAll(why: string | null): void {
    const previous = this.#group;
    if (why !== null)
      this.#client.log.warn({ group: this.#o.group_id, previous, partitions: [...this.#assigned] }, why);
    for (const p of this.#assigned) {
      this.#positions.delete(p);
      this.#paused.delete(p);
      this.#bump(p);
    }
    this.#assigned.clear();
    this.#h?.onAssignment?.({ member_id: previous?.member_id ?? '', partitions: [] });
  }

  #bump(partition: number): void {
    this.#epochs.set(partition, (this.#epochs.get(partition) ?? 0) + 1);
  }

  #epoch(partition: number): number {
    return this.#epochs.get(partition) ?? 0;
  }

  seek(partition: number, offset: string): void {
    this.#positions.set(partition, BigInt(offset));
    this.#parked.delete(partition); // a seek (a restore done) is what a parked partition waited for
    this.#bump(partition);
    this.#wake();
  }

  pause(partitions: number[]): void {
    for (const p of partitions) this.#paused.add(p);
  }

  async commitOffsets(offsets: { partition: number; offset: string }[]): Promise<void> {
    const consumer = this.#requireConsumer();
    await classified('commit offsets', () =>
      consumer.commit({
        offsets: offsets.map((o) => ({
          topic: this.#o.topic,
          partition: o.partition,
          offset: BigInt(o.offset),
          leaderEpoch: -1,
        })),
      }),
    );
  }

  /**
   * The client stops heartbeating for good when a rejoin fails past its retries (a broker outage longer than
   * them), and then silently fetches for a membership the coordinator has expired. A member without a
   * successful heartbeat for a session timeout has lost its partitions: they are revoked here, and the group
   * joined again (as a new member, if the old one expired), which assigns partitions anew (#onJoin).
   */
  async #checkMembership(session_timeout_ms: number): Promise<void> {
    const consumer = this.#consumer;
    if (!consumer || !this.#running || this.#rejoining) return;
    const last_ms = Math.max(consumer.lastHeartbeat?.getTime() ?? 0, this.#member_since_ms);
    if (Date.now() - last_ms < session_timeout_ms) return;
    this.#rejoining = true;
    this.#client.log.warn(
      { group: this.#o.group_id, silent_ms: Date.now() - last_ms },
      'no successful heartbeat for a session timeout: partitions revoked, joining the group again',
    );
    try {
      this.#revokeAll(null);
      // Until the join answers: a generation no coordinator accepts.
      if (this.#group) this.#group = { ...this.#group, generation_id: -1 };
      await classified('rejoin group', () => consumer.joinGroup({}));
      this.#member_since_ms = Date.now();
    } catch (err) {
      this.#client.log.warn({ err: (err as Error)?.message }, 'rejoining the group failed; retried');
      this.#member_since_ms = Date.now() - session_timeout_ms + membership_retry_ms;
    } finally {
      this.#rejoining = false;
    }
  }

  /**
   * Waits for the batches being handled, not for a fetch in flight: during a broker outage a fetch can take
   * as long as the request timeout, longer than a shutdown may wait. The loop ends by itself after it.
   */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#wake();
    const slow = setTimeout(() => {
      this.#client.log.warn(
        {
          group: this.#o.group_id,
          busy: [...this.#busy.keys()],
          handlers_running: this.#handlers_running,
          slot_waiters: this.#slot_waiters.length,
        },
        'consumer stop: batch handlers still running after 3 s',
      );
    }, 3_000);
    await Promise.all(this.#busy.values());
    clearTimeout(slow);
  }

  async disconnect(): Promise<void> {
    await this.stop();
    const consumer = this.#consumer;
    this.#consumer = null;
    if (!consumer) return;
    // The callback forms: the promise overloads are shadowed by the callback ones for these arguments.
    // Bounded: a LeaveGroup the broker never answers must not hold a shutdown (the session expires anyway).
    await withinMs(leave_ms_max, new Promise<void>((resolve) => consumer.leaveGroup(false, () => resolve())));
    await closeWithin(consumer);
  }

  #requireConsumer(): PltConsumer {
    if (!this.#consumer) throw new Error('kafka port invariant: consumer used before start');
    return this.#consumer;
  }

  /** Bounded per round: one fetch per partition leader; errors back off up to error_backoff_ms_max. */
  async #fetchLoop(): Promise<void> {
    let backoff_ms = error_backoff_ms_first;
    while (this.#running) {
      const now_ms = Date.now();
      const ready = [...this.#assigned].filter(
        (p) => !this.#paused.has(p) && !this.#busy.has(p) && (this.#parked.get(p) ?? 0) <= now_ms,
      );
      if (ready.length === 0) {
        await this.#sleep(idle_wait_ms);
        continue;
      }
      try {
        await this.#initPositions(ready);
        // Every ready partition is fetched; partitions_concurrently_max bounds the handlers (#handle).
        await this.#fetchRound(ready.filter((p) => this.#positions.has(p)));
        backoff_ms = error_backoff_ms_first;
      } catch (err) {
        if (!this.#running) return;
        this.#client.log.warn(
          { err: (err as Error)?.message, type: protocolType(err) },
          'kafka fetch failed; retrying',
        );
        this.#consumer?.clearMetadata();
        await this.#sleep(backoff_ms);
        backoff_ms = Math.min(backoff_ms * 2, error_backoff_ms_max);
      }
    }
  }

  /** The committed offset of each partition without a position, else `from` (earliest or latest). */
  async #initPositions(partitions: number[]): Promise<void> {
    const missing = partitions.filter((p) => !this.#positions.has(p));
    if (missing.length === 0) return;
    const consumer = this.#requireConsumer();
    const epochs = new Map(missing.map((p) => [p, this.#epoch(p)]));
    const topic = this.#o.topic;
    const committed = await consumer.listCommittedOffsets({ topics: [{ topic, partitions: missing }] });
    const listed = await consumer.listOffsets({
      topics: [topic],
      partitions: { [topic]: missing },
      timestamp: this.#o.from === 'earliest' ? -2n : -1n,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    for (const p of missing) {
      if (this.#epoch(p) !== epochs.get(p) || this.#positions.has(p)) continue; // seeked meanwhile
      const c = committed.get(topic)?.[p];
      const position = c !== undefined && c >= 0n ? c : listed.get(topic)?.[p];
      if (position !== undefined) this.#positions.set(p, position);
    }
  }

  async #fetchRound(partitions: number[]): Promise<void> {
    if (partitions.length === 0) return;
    const consumer = this.#requireConsumer();
    const metadata = await consumer.metadata({ topics: [this.#o.topic] });
    const topic = metadata.topics.get(this.#o.topic);
    if (!topic) throw new Error(`kafka port invariant: no metadata for ${this.#o.topic}`);
    const by_leader = new Map<number, number[]>();
    for (const p of partitions) {
      const leader = topic.partitions[p]?.leader ?? -1;
      by_leader.set(leader, [...(by_leader.get(leader) ?? []), p]);
    }
    await Promise.all(
      [...by_leader].map(async ([leader, list]) => {
        const requested = new Map(
          list.map((p) => [p, { offset: this.#positions.get(p)!, epoch: this.#epoch(p) }]),
        );
        const broker = metadata.brokers.get(leader);
        if (!broker) {
          throw new KafkaPortError(`no broker ${leader} in metadata`, 'NOT_LEADER_OR_FOLLOWER', true, {
            cause: null,
          });
        }
        const response = await this.#fetchFrom(broker, topic.id, list, requested);
        for (const t of response.responses) {
          for (const part of t.partitions) this.#deliver(part, requested.get(part.partitionIndex));
        }
      }),
    );
    this.#h?.onFetch?.();
  }

  /**
   * One Fetch request, read_committed, sent through the client's protocol layer: its own `fetch` filters
   * aborted transactions with a bug (an abort marker whose transaction the response does not list throws
   * inside its socket handler, which ends the process), so aborted records are filtered here
   * (committedBatches).
   */
  async #fetchFrom(
    broker: unknown,
    topic_id: string,
    list: number[],
    requested: Map<number, { offset: bigint; epoch: number }>,
  ): Promise<FetchResponse> {
    const consumer = this.#requireConsumer();
    const topics = [
      {
        topicId: topic_id,
        partitions: list.map((p) => ({
          partition: p,
          fetchOffset: requested.get(p)!.offset,
          partitionMaxBytes: this.#o.max_bytes_per_partition ?? 1_048_576,
          currentLeaderEpoch: -1,
          lastFetchedEpoch: -1,
        })),
      },
    ];
    const response = await protocolCall<FetchResponse>(consumer, 'Fetch', broker, [
      fetchWaitMs(this.#o.max_wait_ms, this.#busy.size),
      1,
      fetch_bytes_max,
      FetchIsolationLevels.READ_COMMITTED,
      0,
      0,
      topics,
      [],
      '',
    ]);
    for (const t of response.responses)
      for (const part of t.partitions) part.records = committedBatches(part);
    return response;
  }

  #deliver(part: FetchedPartition, requested: { offset: bigint; epoch: number } | undefined): void {
    const p = part.partitionIndex;
    if (!requested || !part.records || part.records.length === 0) return;
    if (this.#epoch(p) !== requested.epoch || !this.#assigned.has(p)) return; // seeked or revoked meanwhile
    const messages: InRecord[] = [];
    let last = requested.offset - 1n;
    for (const batch of part.records) {
      const batch_last = batch.firstOffset + BigInt(batch.lastOffsetDelta);
      if (batch_last > last) last = batch_last;
      if (batch.attributes & is_control) continue;
      for (const record of batch.records) {
        const offset = batch.firstOffset + BigInt(record.offsetDelta);
        if (offset >= requested.offset)
          messages.push({ offset: offset.toString(), value: record.value, headers: record.headers }); // headers: tracing
      }
    }
    if (last < requested.offset) return;
    const handled = this.#handle(p, messages, last, requested.epoch, part.highWatermark);
    this.#busy.set(p, handled);
  }

  /** Waits for one of partitions_concurrently_max handler slots; the returned function frees it. */
  async #slot(): Promise<() => void> {
    const max = this.#o.partitions_concurrently_max ?? 1;
    while (this.#handlers_running >= max) await new Promise<void>((r) => this.#slot_waiters.push(r));
    this.#handlers_running++;
    return () => {
      this.#handlers_running--;
      this.#slot_waiters.shift()?.();
    };
  }

  async #handle(p: number, messages: InRecord[], last: bigint, epoch: number, high: bigint): Promise<void> {
    const release = await this.#slot();
    try {
      await this.#handleInSlot(p, messages, last, epoch, high);
    } finally {
      release();
    }
  }

  async #handleInSlot(
    p: number,
    messages: InRecord[],
    last: bigint,
    epoch: number,
    high: bigint,
  ): Promise<void> {
    const manual = this.#o.manual_resolve ?? false;
    let resolved: bigint | null = null;
    const current = () => this.#running && this.#epoch(p) === epoch && this.#assigned.has(p);
    const batch: FetchedBatch = {
      partition: p,
      // The generation now, while the partition stayed ours since the fetch (a revocation bumps the epoch):
      // a commit that reaches the coordinator after a later rebalance is refused with ILLEGAL_GENERATION.
      get group() {
        return groupOf();
      },
      messages,
      high_watermark: high.toString(),
      current,
      resolveOffset: (offset) => {
        if (current()) resolved = BigInt(offset);
      },
      heartbeat: async () => {}, // the client heartbeats on its own timer
      pause: () => {
        this.#paused.add(p);
        return () => {
          this.#paused.delete(p);
          this.#wake();
        };
      },
    };
    const fetch_group = this.#group;
    const groupOf = () => (current() ? this.#group : fetch_group);
    try {
      await this.#h!.onBatch(batch);
      if (this.#epoch(p) === epoch) {
        const last_data = messages.length > 0 ? BigInt(messages[messages.length - 1]!.offset) : null;
        if (!manual || last_data === null || resolved === last_data) this.#positions.set(p, last + 1n);
        else if (resolved !== null) this.#positions.set(p, resolved + 1n);
        // Nothing taken (no task for the partition, or one still restoring): fetching the same records again
        // at once would loop hot (gigabytes a minute); the next try waits a little.
        else this.#parked.set(p, Date.now() + refetch_wait_ms);
      }
      this.#h!.onBatchEnd?.(p, last.toString());
    } catch (err) {
      // The batch is fetched again; the handler's owner decides whether that is fatal.
      this.#h!.onCrash?.(err, true);
    } finally {
      this.#busy.delete(p);
      this.#wake();
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

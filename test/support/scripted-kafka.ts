import { randomUUID } from 'node:crypto';
import type {
  Admin,
  FetchedBatch,
  GroupConsumer,
  GroupHandlers,
  InRecord,
  KafkaPort,
  ProduceAck,
  TopicRecords,
  TransactionalProducer,
  TransactionSteps,
} from '../../src/streams/kafka-port.js';
import { refetch_wait_ms } from '../../src/streams/kafka-port.js';
import { connectionError, protocolError } from './kafka-errors.js';

/**
 * A scripted, in-memory Kafka behind the port (src/streams/kafka-port.ts): what the stream processor and the
 * changelog replay use (one broker, one consumer group member), with the transaction semantics that matter
 * for exactly-once:
 *
 * - records of a transaction are invisible to read_committed readers, and hold the last stable offset (LSO)
 *   back, until its markers are written; EndTxn answers BEFORE the markers are written (they follow after
 *   `marker_delay_ms`), as a real coordinator does, and meanwhile AddOffsetsToTxn, AddPartitionsToTxn and
 *   InitProducerId of that transactional id are answered CONCURRENT_TRANSACTIONS;
 * - InitProducerId bumps the epoch (fencing older producers, which get INVALID_PRODUCER_EPOCH) and aborts an
 *   ongoing transaction of the id; as a client does, the producer retries CONCURRENT_TRANSACTIONS there;
 * - consumed offsets sent in a transaction become the group's committed offsets only when it commits.
 *
 * Faults are scripted per step: the n-th AddOffsetsToTxn, Produce or EndTxn (counted over the whole cluster,
 * from 1) answers the given fault instead. `end_txn_timeout_after_commit` commits and still fails.
 */
export type Fault =
  | 'busy'
  | 'coordinator_loading'
  | 'not_coordinator'
  | 'fenced'
  | 'timeout'
  | 'end_txn_timeout_after_commit'
  /** TxnOffsetCommit refused: the group moved to a new generation (a rebalance during the transaction). */
  | 'illegal_generation';
export type Step = 'offsets' | 'produce' | 'end_txn';

interface Entry {
  value: Buffer | null;
  key: string | null;
  control: boolean;
  status: 'plain' | 'open' | 'committed' | 'aborted';
  txn: number | null;
}

interface TxnState {
  epoch: number;
  state: 'empty' | 'ongoing' | 'completing';
  serial: number;
  partitions: Set<string>;
  /** group → `topic#partition` → offset, committed with the transaction. */
  offsets: Map<string, Map<string, string>>;
}

export class ScriptedCluster {
  readonly logs = new Map<string, Entry[][]>();
  readonly committed = new Map<string, Map<string, Map<number, string>>>();
  readonly txn_ids = new Map<string, TxnState>();
  /** `delay_ms`: the request is answered (with the fault) only after that long, as a slow broker would. */
  readonly faults: { step: Step; nth: number; fault: Fault; delay_ms?: number }[] = [];
  readonly step_counts: Record<Step, number> = { offsets: 0, produce: 0, end_txn: 0 };
  readonly fired: string[] = [];
  marker_delay_ms = 30;
  #txn_serial = 0;
  readonly member_id = `member-${randomUUID()}`;
  /** Set by the group consumer once started: see rebalance(). */
  #rebalance: (() => void) | null = null;

  createTopic(topic: string, partitions: number): void {
    this.logs.set(
      topic,
      Array.from({ length: partitions }, () => []),
    );
  }

  log(topic: string, partition: number): Entry[] {
    const log = this.logs.get(topic)?.[partition];
    if (!log) throw protocolError('UNKNOWN_TOPIC_OR_PARTITION', 3, true);
    return log;
  }

  /** The first offset of an open transaction, else the end: what read_committed readers may see below. */
  lso(topic: string, partition: number): number {
    const log = this.log(topic, partition);
    const open = log.findIndex((e) => e.status === 'open');
    return open < 0 ? log.length : open;
  }

  /** Non-transactional append (the gateway's idempotent producer). */
  append(topic: string, partition: number, value: Buffer, key: string | null = null): number {
    const log = this.log(topic, partition);
    log.push({ value, key, control: false, status: 'plain', txn: null });
    return log.length - 1;
  }

  /** Committed data records of a partition, in order (what a read_committed reader gets). */
  committedValues(topic: string, partition: number): Buffer[] {
    return this.log(topic, partition)
      .filter((e) => !e.control && (e.status === 'committed' || e.status === 'plain'))
      .map((e) => e.value!);
  }

  /** Takes the scripted fault of this step's next request, if any, after its delay. */
  async nextFault(step: Step): Promise<Fault | null> {
    const n = ++this.step_counts[step];
    const index = this.faults.findIndex((f) => f.step === step && f.nth === n);
    if (index < 0) return null;
    const { fault, delay_ms } = this.faults.splice(index, 1)[0]!;
    if (delay_ms !== undefined) await sleep(delay_ms);
    this.fired.push(`${step}#${n}:${fault}`);
    return fault;
  }

  txnState(id: string): TxnState {
    let state = this.txn_ids.get(id);
    if (!state) {
      state = { epoch: -1, state: 'empty', serial: 0, partitions: new Set(), offsets: new Map() };
      this.txn_ids.set(id, state);
    }
    return state;
  }

  /** EndTxn or an abort by InitProducerId: answered now, markers written after marker_delay_ms. */
  endTxn(id: string, commit: boolean): void {
    const txn = this.txnState(id);
    if (txn.state !== 'ongoing') return;
    txn.state = 'completing';
    const serial = txn.serial;
    const partitions = [...txn.partitions];
    const offsets = txn.offsets;
    setTimeout(() => {
      for (const key of partitions) {
        const [topic, p] = splitKey(key);
        const log = this.log(topic, p);
        for (const e of log)
          if (e.txn === serial && e.status === 'open') e.status = commit ? 'committed' : 'aborted';
        log.push({
          value: null,
          key: null,
          control: true,
          status: commit ? 'committed' : 'aborted',
          txn: serial,
        });
      }
      if (commit) {
        for (const [group, topics] of offsets) {
          const g = this.committed.get(group) ?? new Map<string, Map<number, string>>();
          this.committed.set(group, g);
          for (const [key, offset] of topics) {
            const [topic, p] = splitKey(key);
            const t = g.get(topic) ?? new Map<number, string>();
            g.set(topic, t);
            t.set(p, offset);
          }
        }
      }
      txn.partitions = new Set();
      txn.offsets = new Map();
      txn.state = 'empty';
    }, this.marker_delay_ms);
  }

  /** True while a transaction (open or completing) holds offsets of the group for the topic. */
  pendingOffsets(group_id: string, topic: string): boolean {
    for (const txn of this.txn_ids.values()) {
      const keys = txn.state === 'empty' ? [] : [...(txn.offsets.get(group_id)?.keys() ?? [])];
      if (keys.some((key) => splitKey(key)[0] === topic)) return true;
    }
    return false;
  }

  beginIfNeeded(id: string): TxnState {
    const txn = this.txnState(id);
    if (txn.state === 'completing') throw protocolError('CONCURRENT_TRANSACTIONS', 51, true);
    if (txn.state === 'empty') {
      txn.state = 'ongoing';
      txn.serial = ++this.#txn_serial;
    }
    return txn;
  }

  /**
   * Every partition revoked, then assigned back to the same member in the same generation: what a follower
   * of a stable group gets when it joins again (the coordinator answers its JoinGroup with the current
   * generation), e.g. after our consumer gave its partitions up for want of heartbeats during an outage.
   * Batches fetched before become stale; positions restart from the committed offsets.
   */
  rebalance(): void {
    if (!this.#rebalance) throw new Error('scripted kafka: rebalance() before the consumer started');
    this.#rebalance();
  }

  onRebalance(fn: () => void): void {
    this.#rebalance = fn;
  }

  /** The Kafka port (src/streams/kafka-port.ts) over this cluster: what the engine is wired to. */
  port(): KafkaPort {
    return {
      admin: () => new ScriptedAdmin(this),
      consumer: (o) => new ScriptedConsumer(this, o.group_id, o.topic, o.manual_resolve ?? false),
      transactionalProducer: (o) => new ScriptedProducer(this, o.transactional_id),
      producer: () => {
        throw new Error('scripted kafka: the gateway producer is not modelled');
      },
    };
  }
}

function splitKey(key: string): [string, number] {
  const at = key.lastIndexOf('#');
  return [key.slice(0, at), Number(key.slice(at + 1))];
}

function faultError(fault: Fault): Error {
  switch (fault) {
    case 'busy':
      return protocolError('CONCURRENT_TRANSACTIONS', 51, true);
    case 'coordinator_loading':
      return protocolError('COORDINATOR_LOAD_IN_PROGRESS', 14, true);
    case 'not_coordinator':
      return protocolError('NOT_COORDINATOR', 16, true);
    case 'fenced':
      return protocolError('PRODUCER_FENCED', 90, false);
    case 'illegal_generation':
      return protocolError('ILLEGAL_GENERATION', 22, false);
    case 'timeout':
    case 'end_txn_timeout_after_commit':
      return connectionError('Request timed out');
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class ScriptedProducer implements TransactionalProducer {
  #epoch = -1;
  #in_txn = false;
  constructor(
    readonly cluster: ScriptedCluster,
    readonly transactional_id: string,
  ) {}

  /** InitProducerId: fences older epochs; retried while the id's previous transaction completes. */
  async connect(): Promise<void> {
    const id = this.transactional_id;
    for (let attempt = 0; attempt < 100; attempt++) {
      const txn = this.cluster.txnState(id);
      if (txn.state === 'ongoing') this.cluster.endTxn(id, false); // the new epoch aborts what the old left open
      if (txn.state === 'empty') {
        txn.epoch++;
        this.#epoch = txn.epoch;
        return;
      }
      await sleep(5);
    }
    throw protocolError('CONCURRENT_TRANSACTIONS', 51, true);
  }

  async disconnect(): Promise<void> {}

  #checkEpoch(): void {
    if (this.cluster.txnState(this.transactional_id).epoch !== this.#epoch) {
      throw protocolError('INVALID_PRODUCER_EPOCH', 47, false);
    }
  }

  async transaction(): Promise<TransactionSteps> {
    if (this.#epoch < 0) throw new Error('scripted kafka: transaction() before connect()');
    if (this.#in_txn) throw new Error('scripted kafka: a transaction is already ongoing');
    this.#in_txn = true;
    const id = this.transactional_id;
    const cluster = this.cluster;
    let ended = false;
    let touched = false;
    const guard = () => {
      if (ended) throw new Error('scripted kafka: transaction ended');
    };
    return {
      sendOffsets: async (o) => {
        guard();
        const fault = await cluster.nextFault('offsets');
        if (fault) throw faultError(fault);
        this.#checkEpoch();
        const txn = cluster.beginIfNeeded(id);
        touched = true;
        const group = txn.offsets.get(o.consumerGroupId) ?? new Map<string, string>();
        txn.offsets.set(o.consumerGroupId, group);
        for (const t of o.topics)
          for (const p of t.partitions) group.set(`${t.topic}#${p.partition}`, p.offset);
      },
      sendBatch: async (b: { topicMessages: TopicRecords[] }) => {
        guard();
        const fault = await cluster.nextFault('produce');
        if (fault) throw faultError(fault);
        this.#checkEpoch();
        // Clients retry AddPartitionsToTxn's CONCURRENT_TRANSACTIONS inside the produce (bounded).
        let txn: TxnState | null = null;
        for (let attempt = 0; txn === null; attempt++) {
          try {
            txn = cluster.beginIfNeeded(id);
          } catch (err) {
            if (attempt >= 50) throw err;
            await sleep(5);
          }
        }
        touched = true;
        const out: ProduceAck[] = [];
        for (const t of b.topicMessages) {
          const by_partition = new Map<number, typeof t.messages>();
          for (const m of t.messages) {
            const list = by_partition.get(m.partition) ?? [];
            list.push(m);
            by_partition.set(m.partition, list);
          }
          for (const [partition, messages] of by_partition) {
            const log = cluster.log(t.topic, partition);
            txn.partitions.add(`${t.topic}#${partition}`);
            const base = log.length;
            for (const m of messages) {
              log.push({
                value: Buffer.from(m.value),
                key: m.key,
                control: false,
                status: 'open',
                txn: txn.serial,
              });
            }
            out.push({ topicName: t.topic, partition, baseOffset: String(base) });
          }
        }
        return out;
      },
      commit: async () => {
        guard();
        ended = true;
        this.#in_txn = false;
        const fault = await cluster.nextFault('end_txn');
        if (fault && fault !== 'end_txn_timeout_after_commit') throw faultError(fault);
        this.#checkEpoch();
        if (touched) cluster.endTxn(id, true);
        if (fault) throw faultError(fault);
      },
      abort: async () => {
        guard();
        ended = true;
        this.#in_txn = false;
        if (touched && cluster.txnState(id).epoch === this.#epoch) cluster.endTxn(id, false);
      },
    };
  }
}

/** The only member of its group: every partition assigned, at the group's committed offsets. */
class ScriptedConsumer implements GroupConsumer {
  #running = false;
  #stopped: Promise<void> = Promise.resolve();
  readonly #position = new Map<number, number>();
  readonly #paused = new Set<number>();
  readonly #seek_generation = new Map<number, number>();
  /** Partitions whose last batch was not taken, until when they wait (bounded by the partition count). */
  readonly #parked = new Map<number, number>();

  constructor(
    readonly cluster: ScriptedCluster,
    readonly group_id: string,
    readonly topic: string,
    /** GroupConsumerOptions.manual_resolve: without it a batch counts as processed once its handler returns. */
    readonly manual_resolve: boolean,
  ) {}

  seek(partition: number, offset: string): void {
    this.#position.set(partition, Number(offset));
    this.#seek_generation.set(partition, (this.#seek_generation.get(partition) ?? 0) + 1);
    this.#parked.delete(partition); // a seek (a restore done) is the news the parked partition waited for
  }
  pause(partitions: number[]): void {
    for (const p of partitions) this.#paused.add(p);
  }

  async start(h: GroupHandlers): Promise<void> {
    const partitions = this.cluster.logs.get(this.topic)?.length ?? 0;
    const all = Array.from({ length: partitions }, (_, p) => p);
    const committed = this.cluster.committed.get(this.group_id)?.get(this.topic);
    for (const p of all) this.#position.set(p, Number(committed?.get(p) ?? 0));
    this.#running = true;
    h.onAssignment?.({ member_id: this.cluster.member_id, partitions: all });
    this.cluster.onRebalance(() => {
      for (const p of all) this.#seek_generation.set(p, (this.#seek_generation.get(p) ?? 0) + 1);
      h.onAssignment?.({ member_id: this.cluster.member_id, partitions: [] });
      const now = this.cluster.committed.get(this.group_id)?.get(this.topic);
      for (const p of all) this.#position.set(p, Number(now?.get(p) ?? 0));
      h.onAssignment?.({ member_id: this.cluster.member_id, partitions: all });
    });
    // Fetching starts after start() returns, as with a real client: seeks and pauses made right after apply.
    this.#stopped = sleep(0).then(() => this.#loop(all, h));
  }

  async #loop(all: number[], h: GroupHandlers): Promise<void> {
    // One fetch round at a time, its partitions' batches handled concurrently: each partition has at most
    // one batch in flight.
    while (this.#running) {
      const now_ms = Date.now();
      const ready = all.filter((p) => !this.#paused.has(p) && (this.#parked.get(p) ?? 0) <= now_ms);
      const delivered = await Promise.all(ready.map((p) => this.#fetch(p, h)));
      h.onFetch?.();
      // A real fetch is I/O: timers and worker messages run between rounds. Without this yield a round that
      // settles in microtasks only (every batch refused at once) starved the event loop and hung the suite.
      await new Promise((r) => setImmediate(r));
      if (!delivered.includes(true)) await sleep(2);
    }
  }

  /** One fetch of one partition: data records between the position and the LSO, read_committed. */
  async #fetch(partition: number, h: GroupHandlers): Promise<boolean> {
    const from = this.#position.get(partition) ?? 0;
    const lso = this.cluster.lso(this.topic, partition);
    if (from >= lso) return false;
    const log = this.cluster.log(this.topic, partition);
    const messages: InRecord[] = [];
    for (let offset = from; offset < lso; offset++) {
      const e = log[offset]!;
      if (e.control || e.status === 'aborted') continue;
      messages.push({ offset: String(offset), value: e.value });
    }
    const generation = this.#seek_generation.get(partition) ?? 0;
    const stale = () => (this.#seek_generation.get(partition) ?? 0) !== generation;
    if (messages.length > 0) {
      let paused = false;
      const batch: FetchedBatch = {
        partition,
        group: null,
        messages,
        high_watermark: String(log.length),
        current: () => this.#running && !stale(),
        resolveOffset: (offset) => {
          if (!stale()) this.#position.set(partition, Number(offset) + 1);
        },
        heartbeat: async () => {},
        pause: () => {
          paused = true;
          this.#paused.add(partition);
          return () => this.#paused.delete(partition);
        },
      };
      await h.onBatch(batch);
      if (paused) return true;
      if (!this.manual_resolve && !stale())
        this.#position.set(partition, Number(messages.at(-1)!.offset) + 1);
      // Nothing taken (no task for the partition yet, or one restoring): as the platformatic adapter does,
      // the same records are fetched again after a short wait, not at once.
      if (!stale() && (this.#position.get(partition) ?? 0) === from) {
        this.#parked.set(partition, Date.now() + refetch_wait_ms);
        h.onBatchEnd?.(partition, String(lso - 1)); // the adapter reports every handled batch
        return false;
      }
    }
    // Control records and aborted data at the end of the range are stepped over, as the clients do.
    if (
      !stale() &&
      (this.#position.get(partition) ?? 0) >=
        (messages.length > 0 ? Number(messages.at(-1)!.offset) + 1 : from)
    ) {
      this.#position.set(partition, lso);
    }
    h.onBatchEnd?.(partition, String(lso - 1));
    return true;
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#stopped;
  }
  async disconnect(): Promise<void> {
    await this.stop();
  }
  async commitOffsets(): Promise<void> {
    throw new Error('scripted kafka: at-least-once commits are not modelled');
  }
}

class ScriptedAdmin implements Admin {
  constructor(readonly cluster: ScriptedCluster) {}
  async connect(): Promise<void> {}
  async disconnect(): Promise<void> {}
  async deleteGroups(): Promise<void> {}
  async listTopics(): Promise<string[]> {
    return [...this.cluster.logs.keys()];
  }
  async createTopics(topics: { topic: string; partitions: number }[]): Promise<void> {
    for (const t of topics)
      if (!this.cluster.logs.has(t.topic)) this.cluster.createTopic(t.topic, t.partitions);
  }
  async partitionCounts(topics: string[]): Promise<Map<string, number>> {
    return new Map(topics.map((t) => [t, this.cluster.logs.get(t)?.length ?? 0]));
  }
  async topicOffsets(topic: string) {
    const partitions = this.cluster.logs.get(topic)?.length ?? 0;
    return Array.from({ length: partitions }, (_, partition) => ({
      partition,
      low: '0',
      high: String(this.cluster.lso(topic, partition)),
      high_watermark: String(this.cluster.log(topic, partition).length),
    }));
  }
  /**
   * With requireStable (KIP-447), as the platformatic adapter reads them: while a transaction holds offsets
   * of the group for the topic, the coordinator answers UNSTABLE_OFFSET_COMMIT, and the adapter retries.
   */
  async groupOffsets(group_id: string, topic: string): Promise<Map<number, string>> {
    for (let attempt = 0; this.cluster.pendingOffsets(group_id, topic); attempt++) {
      if (attempt >= 1_000) throw protocolError('UNSTABLE_OFFSET_COMMIT', 88, true);
      await sleep(5);
    }
    const committed = this.cluster.committed.get(group_id)?.get(topic);
    const partitions = this.cluster.logs.get(topic)?.length ?? 0;
    return new Map(Array.from({ length: partitions }, (_, p) => [p, committed?.get(p) ?? '-1']));
  }
  async memberAssignment(group_id: string, member_id: string, topic: string): Promise<number[]> {
    // The processor's group owns every partition of the commands topic; any other member owns nothing.
    if (member_id !== this.cluster.member_id || !group_id.endsWith('.processor')) return [];
    return Array.from({ length: this.cluster.logs.get(topic)?.length ?? 0 }, (_, p) => p);
  }
}

import {
  FetchIsolationLevels,
  Admin as PltAdmin,
  Producer as PltProducer,
  type ProduceResult,
  type RetryDelayGetter,
} from '@platformatic/kafka';
import type { Logger } from '../../log.js';
import type {
  Admin,
  GroupConsumerOptions,
  KafkaPort,
  ProduceAck,
  Producer,
  TopicRecords,
  TransactionalProducer,
  TransactionSteps,
} from '../kafka-port.js';
import { close_ms_max, closeWithin, withinMs } from './bounded.js';
import { classified, KafkaPortError, protocolType } from './errors.js';
import { PlatformaticGroupConsumer } from './group-consumer.js';
import { protocolCall } from './protocol-call.js';

/**
 * The Kafka port on @platformatic/kafka 1.x (pure JavaScript, KIP-447). Its sharp edges, each handled here
 * and tested in test/integration/kafka-port.test.ts:
 * - CONCURRENT_TRANSACTIONS right after an EndTxn is retried after `retryDelay` (1 s by default): 20 ms here;
 * - InitProducerId is sent with producer id 0 / epoch 0 unless told otherwise, which Kafka 3.9 answers by
 *   fencing the NEW instance while an older one holds the id: -1 / -1 is passed, as the protocol says;
 * - concurrent calls of one operation on one producer are merged into one request (a second send or offset
 *   commit is silently dropped): every producer here runs one call at a time;
 * - a failed offset commit does not make the transaction abort-only: the engine aborts on any step error.
 */
export interface PlatformaticPortOptions {
  brokers: string[];
  client_id: string;
  log: Logger;
}

/**
 * Attempts of one request inside the client, and their waits: CONCURRENT_TRANSACTIONS (the coordinator still
 * writing the markers of the id's previous transaction, or aborting it for an InitProducerId that takes the
 * id over) first after 2 ms, doubling to 1 s: 14 attempts wait ≈ 6 s in all, about what the former
 * kafkajs adapter's producers waited. With one producer per node every transaction's first request meets
 * the previous one's markers (a few ms on one broker): a 20 ms first wait was most of a transaction at a
 * low rate. Other retriable errors after 250 ms each. The engine retries whole steps on top.
 */
const client_retries_max = 14;
const busy_retry_delay_ms_first = 2;
const busy_retry_delay_ms_max = 1_000;
const other_retry_delay_ms = 250;

type Transaction = Awaited<ReturnType<PltProducer['beginTransaction']>>;

export function retryDelayMs(attempt: number, error: unknown): number {
  if (protocolType(error) !== 'CONCURRENT_TRANSACTIONS') return other_retry_delay_ms;
  const exponent = Math.min(Math.max(attempt - 1, 0), 10);
  return Math.min(busy_retry_delay_ms_first * 2 ** exponent, busy_retry_delay_ms_max);
}

function baseOptions(o: PlatformaticPortOptions, suffix: string) {
  return {
    clientId: `${o.client_id}-${suffix}`,
    bootstrapBrokers: o.brokers,
    timeout: 30_000,
    retries: client_retries_max,
    retryDelay: ((_client, _operation, attempt, _retries, error) =>
      retryDelayMs(attempt, error)) as RetryDelayGetter,
    autocreateTopics: false,
  };
}

export function platformaticPort(o: PlatformaticPortOptions): KafkaPort {
  return {
    admin: (opts) => platformaticAdmin(o, opts?.quick ?? false),
    consumer: (opts: GroupConsumerOptions) =>
      new PlatformaticGroupConsumer({ ...baseOptions(o, 'consumer'), log: o.log }, opts),
    transactionalProducer: (opts) => new PlatformaticTransactionalProducer(o, opts),
    producer: () => platformaticProducer(o),
  };
}

/** One call at a time on one client: the client merges concurrent calls of one kind into one request. */
class Serial {
  #tail: Promise<unknown> = Promise.resolve();
  #reject_closed: (err: Error) => void = () => {};
  /**
   * Rejects once the client is closed: a call in flight on a closed client may never call back (seen in
   * rebalance-storm: a commit of a revoked partition's producer hung, its task's next chunk waited behind it,
   * and the node's shutdown behind that), so every call settles then.
   */
  readonly #closed = new Promise<never>((_, reject) => {
    this.#reject_closed = reject;
  });

  constructor() {
    this.#closed.catch(() => {});
  }

  run<T>(fn: () => Promise<T>): Promise<T> {
    const call = () => Promise.race([fn(), this.#closed]);
    const next = this.#tail.then(call, call);
    this.#tail = next.catch(() => {});
    return next;
  }

  close(what: string): void {
    this.#reject_closed(new KafkaPortError(`${what} closed`, null, false, { cause: null }));
  }
}

function toMessages(batch: { topicMessages: TopicRecords[] }) {
  const messages = [];
  for (const { topic, messages: records } of batch.topicMessages) {
    for (const r of records) {
      messages.push({
        topic,
        partition: r.partition,
        key: r.key === null ? undefined : Buffer.from(r.key),
        value: r.value,
        // Header keys and values both go on the wire as bytes (a string key fails the batch's CRC).
        ...(r.headers
          ? { headers: new Map(Object.entries(r.headers).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])) }
          : {}),
      });
    }
  }
  return messages;
}

/** Where the records of one send landed: the lowest offset per topic-partition (the base offset). */
function acksOf(offsets: { topic: string; partition: number; offset: bigint }[] | undefined): ProduceAck[] {
  const base = new Map<string, ProduceAck>();
  for (const o of offsets ?? []) {
    const key = `${o.topic}#${o.partition}`;
    const seen = base.get(key);
    if (!seen || BigInt(seen.baseOffset ?? '0') > o.offset)
      base.set(key, { topicName: o.topic, partition: o.partition, baseOffset: o.offset.toString() });
  }
  return [...base.values()];
}

function platformaticProducer(o: PlatformaticPortOptions): Producer {
  let producer: PltProducer | null = null;
  const serial = new Serial();
  return {
    connect: async () => {
      producer = new PltProducer({ ...baseOptions(o, 'producer'), idempotent: true, acks: -1 });
      await classified('producer connect', () => producer!.metadata({ topics: [] }).then(() => {}));
    },
    sendBatch: (batch) =>
      serial.run(async () => {
        if (!producer) throw new Error('kafka port invariant: producer used before connect');
        const p = producer;
        const result = await classified('produce', () => p.send({ messages: toMessages(batch) }));
        return acksOf(result.offsets);
      }),
    disconnect: async () => {
      serial.close('producer');
      if (producer) await closeWithin(producer);
    },
  };
}

class PlatformaticTransactionalProducer implements TransactionalProducer {
  readonly #o: PlatformaticPortOptions;
  readonly #id: string;
  readonly #timeout_ms: number;
  readonly #serial = new Serial();
  #producer: PltProducer | null = null;

  constructor(
    o: PlatformaticPortOptions,
    opts: { transactional_id: string; transaction_timeout_ms: number },
  ) {
    this.#o = o;
    this.#id = opts.transactional_id;
    this.#timeout_ms = opts.transaction_timeout_ms;
  }

  async connect(): Promise<void> {
    const producer = new PltProducer({
      ...baseOptions(this.#o, `txn-${this.#id}`),
      // The client sends its request timeout as InitProducerId's transaction timeout: one value for both.
      timeout: this.#timeout_ms,
      idempotent: true,
      acks: -1,
      transactionalId: this.#id,
      // "No previous producer": the coordinator bumps the epoch, fencing every older instance of the id.
      producerId: -1n,
      producerEpoch: -1,
    });
    this.#producer = producer;
    // InitProducerId: the client sends it at the first beginTransaction; an empty transaction is cancelled
    // locally (nothing was sent for it), so connect() returns only once this instance holds the id.
    await classified('init transactional id', async () => {
      const txn = await producer.beginTransaction();
      await txn.cancel();
    });
  }

  transaction(): Promise<TransactionSteps> {
    const producer = this.#producer;
    if (!producer) throw new Error('kafka port invariant: transactional producer used before connect');
    return this.#serial.run(async () => {
      const txn = await classified('begin transaction', () => producer.beginTransaction());
      return this.#steps(producer, txn);
    });
  }

  #steps(producer: PltProducer, txn: Transaction): TransactionSteps {
    const serial = this.#serial;
    return {
      sendOffsets: ({ consumerGroupId, topics, group }) =>
        serial.run(async () => {
          if (!group || group.group_id !== consumerGroupId) {
            throw new Error(
              `kafka port invariant: offsets of ${consumerGroupId} without their group generation`,
            );
          }
          await classified('add offsets to transaction', () =>
            txn.addConsumer({ groupId: consumerGroupId } as never),
          );
          await classified('txn offset commit', () => txnOffsetCommit(producer, this.#id, group, topics));
        }),
      sendBatch: (batch) =>
        serial.run(async () => {
          const result: ProduceResult = await classified('transactional produce', () =>
            txn.send({ messages: toMessages(batch) }),
          );
          return acksOf(result.offsets);
        }),
      commit: () => serial.run(() => classified('end transaction (commit)', () => txn.commit())),
      abort: () =>
        serial.run(async () => {
          // After PRODUCER_FENCED the client's abort fails the same way and leaves its transaction set:
          // cancel releases it locally (the coordinator aborts on its own, or at the next fence).
          try {
            await txn.abort();
          } catch {
            await txn.cancel().catch(() => {});
          }
        }),
    };
  }

  async disconnect(): Promise<void> {
    const producer = this.#producer;
    this.#producer = null;
    this.#serial.close(`transactional producer ${this.#id}`);
    if (producer) await closeWithin(producer);
  }
}

/**
 * One TxnOffsetCommit carrying every partition (the client's addOffset sends one request per partition, and
 * merges concurrent ones into one, dropping the others). v3+ carries the generation and member id: KIP-447.
 */
async function txnOffsetCommit(
  producer: PltProducer,
  transactional_id: string,
  group: { group_id: string; generation_id: number; member_id: string; coordinator_id: number },
  topics: { topic: string; partitions: { partition: number; offset: string }[] }[],
): Promise<void> {
  const metadata = await producer.metadata({ topics: topics.map((t) => t.topic) });
  const broker = metadata.brokers.get(group.coordinator_id);
  if (!broker)
    throw new KafkaPortError('group coordinator unknown', 'NOT_COORDINATOR', true, { cause: null });
  const request = topics.map((t) => ({
    name: t.topic,
    partitions: t.partitions.map((p) => ({
      partitionIndex: p.partition,
      committedOffset: BigInt(p.offset),
      committedLeaderEpoch: metadata.topics.get(t.topic)?.partitions[p.partition]?.leaderEpoch ?? -1,
      committedMetadata: null,
    })),
  }));
  const { producerId, producerEpoch } = producer as unknown as { producerId: bigint; producerEpoch: number };
  await protocolCall(producer, 'TxnOffsetCommit', broker, [
    transactional_id,
    group.group_id,
    producerId,
    producerEpoch,
    group.generation_id,
    group.member_id,
    null,
    request,
  ]);
}

function platformaticAdmin(o: PlatformaticPortOptions, quick: boolean): Admin {
  const options = { ...baseOptions(o, 'admin'), ...(quick ? { retries: 1, timeout: 3_000 } : {}) };
  let admin: PltAdmin | null = null;
  const a = () => {
    if (!admin) throw new Error('kafka port invariant: admin used before connect');
    return admin;
  };
  return {
    connect: async () => {
      admin = new PltAdmin(options);
      await classified('admin connect', () =>
        a()
          .metadata({ topics: [] })
          .then(() => {}),
      );
    },
    disconnect: async () => {
      // The admin's close takes no force flag (its base class's close(callback)).
      if (admin) await withinMs(close_ms_max, admin.close());
      admin = null;
    },
    listTopics: () => classified('list topics', () => a().listTopics()),
    createTopics: async (topics) => {
      for (const t of topics) {
        await classified(`create topic ${t.topic}`, () =>
          a().createTopics({
            topics: [t.topic],
            partitions: t.partitions,
            replicas: t.replication_factor,
            configs: Object.entries(t.configs).map(([name, value]) => ({ name, value })),
          }),
        );
      }
      await waitForLeaders(
        a(),
        topics.map((t) => t.topic),
      );
    },
    partitionCounts: async (topics) => {
      const metadata = await classified('metadata', () => a().metadata({ topics, forceUpdate: true }));
      return new Map([...metadata.topics].map(([name, t]) => [name, t.partitionsCount]));
    },
    topicOffsets: async (topic) => {
      const metadata = await classified('metadata', () => a().metadata({ topics: [topic] }));
      const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
      const list = async (timestamp: bigint, isolationLevel: 0 | 1 = FetchIsolationLevels.READ_COMMITTED) => {
        const partitions = Array.from({ length: count }, (_, partitionIndex) => ({
          partitionIndex,
          timestamp,
        }));
        const [listed] = await classified('list offsets', () =>
          a().listOffsets({
            topics: [{ name: topic, partitions }],
            isolationLevel,
          }),
        );
        return new Map((listed?.partitions ?? []).map((p) => [p.partitionIndex, p.offset]));
      };
      const [low, high, watermark] = [
        await list(-2n),
        await list(-1n),
        await list(-1n, FetchIsolationLevels.READ_UNCOMMITTED),
      ];
      return Array.from({ length: count }, (_, partition) => ({
        partition,
        low: String(low.get(partition) ?? 0n),
        high: String(high.get(partition) ?? 0n),
        high_watermark: String(watermark.get(partition) ?? 0n),
      }));
    },
    groupOffsets: async (group_id, topic) => {
      // Every partition named: an empty list asks for none (and without one the broker answers only the
      // partitions that have a commit, where the port promises '-1').
      const metadata = await classified('metadata', () => a().metadata({ topics: [topic] }));
      const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
      const partitionIndexes = Array.from({ length: count }, (_, p) => p);
      const groups = await stableOffsets(() =>
        a().listConsumerGroupOffsets({
          groups: [{ groupId: group_id, topics: [{ name: topic, partitionIndexes }] }],
          requireStable: true,
        }),
      );
      const offsets = new Map<number, string>();
      for (const t of groups[0]?.topics ?? []) {
        if (t.name !== topic) continue;
        for (const p of t.partitions) offsets.set(p.partitionIndex, p.committedOffset.toString());
      }
      return offsets;
    },
    memberAssignment: async (group_id, member_id, topic) => {
      const groups = await classified('describe group', () => a().describeGroups({ groups: [group_id] }));
      const member = groups.get(group_id)?.members.get(member_id);
      return member?.assignments?.get(topic)?.partitions ?? [];
    },
    deleteGroups: async (group_ids) => {
      await classified('delete groups', () => a().deleteGroups({ groups: group_ids }));
    },
  };
}

/**
 * Committed offsets with requireStable (KIP-447): while a transaction holding offsets of the group is open,
 * the coordinator answers UNSTABLE_OFFSET_COMMIT instead of offsets that could still change. A restore reads
 * them right after fencing, when the previous owner's last transaction may still be completing: waited for
 * here (20 ms doubling to 320 ms, 40 attempts ≈ 11 s, within the 30 s transaction timeout).
 */
async function stableOffsets<T>(list: () => Promise<T>): Promise<T> {
  let wait_ms = 20;
  for (let attempt = 1; ; attempt++) {
    try {
      return await classified('list group offsets', list);
    } catch (err) {
      if (protocolType(err) !== 'UNSTABLE_OFFSET_COMMIT' || attempt >= unstable_attempts_max) throw err;
      await new Promise((r) => setTimeout(r, wait_ms));
      wait_ms = Math.min(wait_ms * 2, 320);
    }
  }
}
const unstable_attempts_max = 40;

/** createTopics returns before every partition has a leader; the node's first requests would fail on it. */
async function waitForLeaders(admin: PltAdmin, topics: string[]): Promise<void> {
  const deadline_ms = Date.now() + 30_000;
  for (let attempt = 0; attempt < 300 && Date.now() < deadline_ms; attempt++) {
    const metadata = await admin.metadata({ topics, forceUpdate: true }).catch(() => null);
    const ready =
      metadata !== null &&
      topics.every((t) => metadata.topics.get(t)?.partitions.every((p) => p.leader >= 0));
    if (ready) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new KafkaPortError(
    `topics ${topics.join(', ')} have no leaders after 30 s`,
    'LEADER_NOT_AVAILABLE',
    true,
    {
      cause: null,
    },
  );
}

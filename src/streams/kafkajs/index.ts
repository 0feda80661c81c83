import {
  AssignerProtocol,
  type Consumer,
  type EachBatchPayload,
  type Kafka,
  type Producer as KafkajsProducer,
  Partitioners,
} from 'kafkajs';
import type { Logger } from '../../log.js';
import type {
  Admin,
  FetchedBatch,
  GroupConsumer,
  GroupConsumerOptions,
  GroupHandlers,
  KafkaPort,
  Producer,
  TransactionalProducer,
} from '../kafka-port.js';
import { coordinator_retry_policy } from '../transaction.js';
import { createKafka } from './client.js';
import { installTransactionalRetries } from './retries.js';

/**
 * The Kafka port on kafkajs 2.x. kafkajs lacks KIP-447 (its TxnOffsetCommit carries no group generation), so
 * the engine keeps one transactional producer per input partition on it.
 */
export function kafkajsPort(kafka: Kafka): KafkaPort {
  return {
    admin: (opts) => kafkajsAdmin(kafka, opts?.quick ?? false),
    consumer: (opts) => new KafkajsGroupConsumer(kafka, opts),
    transactionalProducer: (opts) => kafkajsTransactionalProducer(kafka, opts),
    producer: (opts) => kafkajsIdempotentProducer(kafka, opts?.retries_max),
  };
}

/** The node's port: one kafkajs instance, its coordinator-busy answers retried (retries.ts). */
export function createKafkajsPort(opts: {
  brokers: string[];
  client_id: string;
  log: Logger;
  onCoordinatorRetry: (error: string) => void;
}): KafkaPort {
  const kafka = createKafka(opts);
  // kafkajs sends AddOffsetsToTxn and EndTxn once: their coordinator-busy answers are retried here.
  installTransactionalRetries(kafka, coordinator_retry_policy, opts.onCoordinatorRetry);
  return kafkajsPort(kafka);
}

function kafkajsAdmin(kafka: Kafka, quick: boolean): Admin {
  const admin = kafka.admin(quick ? { retry: { retries: 1, initialRetryTime: 200, maxRetryTime: 500 } } : {});
  return {
    connect: () => admin.connect(),
    disconnect: () => admin.disconnect(),
    listTopics: () => admin.listTopics(),
    createTopics: async (topics) => {
      await admin.createTopics({
        waitForLeaders: true,
        topics: topics.map((t) => ({
          topic: t.topic,
          numPartitions: t.partitions,
          replicationFactor: t.replication_factor,
          configEntries: Object.entries(t.configs).map(([name, value]) => ({ name, value })),
        })),
      });
    },
    partitionCounts: async (topics) => {
      const metadata = await admin.fetchTopicMetadata({ topics });
      return new Map(metadata.topics.map((t) => [t.name, t.partitions.length]));
    },
    // kafkajs lists offsets read_committed: `high` is the last stable offset.
    topicOffsets: async (topic) =>
      (await admin.fetchTopicOffsets(topic)).map(({ partition, low, high }) => ({ partition, low, high })),
    groupOffsets: async (group_id, topic) => {
      const [entry] = await admin.fetchOffsets({ groupId: group_id, topics: [topic] });
      return new Map((entry?.partitions ?? []).map((p) => [p.partition, p.offset]));
    },
    memberAssignment: async (group_id, member_id, topic) => {
      const { groups } = await admin.describeGroups([group_id]);
      const member = groups[0]?.members.find((m) => m.memberId === member_id);
      if (!member || member.memberAssignment.length === 0) return [];
      return AssignerProtocol.MemberAssignment.decode(member.memberAssignment)?.assignment[topic] ?? [];
    },
    deleteGroups: async (group_ids) => {
      await admin.deleteGroups(group_ids);
    },
  };
}

class KafkajsGroupConsumer implements GroupConsumer {
  readonly #consumer: Consumer;
  readonly #o: GroupConsumerOptions;

  constructor(kafka: Kafka, o: GroupConsumerOptions) {
    this.#o = o;
    this.#consumer = kafka.consumer({
      groupId: o.group_id,
      readUncommitted: false,
      maxWaitTimeInMs: o.max_wait_ms,
      ...(o.session_timeout_ms !== undefined
        ? {
            // After a kill -9 the group waits this long for the dead member before its partitions move.
            sessionTimeout: o.session_timeout_ms,
            heartbeatInterval: Math.max(500, Math.floor(o.session_timeout_ms / 10)),
          }
        : {}),
      ...(o.max_bytes_per_partition !== undefined ? { maxBytesPerPartition: o.max_bytes_per_partition } : {}),
    });
  }

  async start(h: GroupHandlers): Promise<void> {
    const c = this.#consumer;
    const topic = this.#o.topic;
    await c.connect();
    const { onAssignment, onCrash, onFetch, onBatchEnd } = h;
    if (onAssignment) {
      c.on(c.events.GROUP_JOIN, ({ payload }) =>
        onAssignment({ member_id: payload.memberId, partitions: payload.memberAssignment[topic] ?? [] }),
      );
    }
    if (onCrash) c.on(c.events.CRASH, ({ payload }) => onCrash(payload.error, payload.restart));
    if (onFetch) c.on(c.events.FETCH, () => onFetch());
    if (onBatchEnd) {
      c.on(c.events.END_BATCH_PROCESS, ({ payload }) => onBatchEnd(payload.partition, payload.lastOffset));
    }
    await c.subscribe({ topic, fromBeginning: this.#o.from === 'earliest' });
    await c.run({
      autoCommit: false,
      eachBatchAutoResolve: !this.#o.manual_resolve,
      partitionsConsumedConcurrently: this.#o.partitions_concurrently_max ?? 1,
      eachBatch: (payload) => h.onBatch(fetchedBatch(payload)),
    });
  }

  seek(partition: number, offset: string): void {
    this.#consumer.seek({ topic: this.#o.topic, partition, offset });
  }

  pause(partitions: number[]): void {
    this.#consumer.pause([{ topic: this.#o.topic, partitions }]);
  }

  async commitOffsets(offsets: { partition: number; offset: string }[]): Promise<void> {
    await this.#consumer.commitOffsets(offsets.map((o) => ({ topic: this.#o.topic, ...o })));
  }

  stop(): Promise<void> {
    return this.#consumer.stop();
  }

  disconnect(): Promise<void> {
    return this.#consumer.disconnect();
  }
}

function fetchedBatch(payload: EachBatchPayload): FetchedBatch {
  const { batch } = payload;
  return {
    partition: batch.partition,
    group: null,
    messages: batch.messages,
    high_watermark: batch.highWatermark,
    current: () => payload.isRunning() && !payload.isStale(),
    resolveOffset: (offset) => payload.resolveOffset(offset),
    heartbeat: () => payload.heartbeat(),
    pause: () => payload.pause(),
  };
}

function kafkajsTransactionalProducer(
  kafka: Kafka,
  opts: { transactional_id: string; transaction_timeout_ms: number },
): TransactionalProducer {
  const producer = kafka.producer({
    transactionalId: opts.transactional_id,
    transactionTimeout: opts.transaction_timeout_ms,
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner, // records name their partition; silences a warning
    // Right after a commit the coordinator answers CONCURRENT_TRANSACTIONS until its markers are written;
    // kafkajs' default 300 ms first backoff made each transaction ~155 ms, 20 ms makes it ~27 ms.
    retry: { retries: 10, initialRetryTime: 20, maxRetryTime: 1000 },
  });
  return {
    connect: async () => {
      await producer.connect();
      // kafkajs initializes the transactional id at the first transaction(); an empty one sends nothing
      // else (abort of a transaction without partitions or offsets is local).
      const txn = await producer.transaction();
      await txn.abort();
    },
    transaction: async () => {
      const txn = await producer.transaction();
      return {
        // kafkajs' TxnOffsetCommit carries no generation: fencing rests on one transactional id per partition.
        sendOffsets: ({ consumerGroupId, topics }) => txn.sendOffsets({ consumerGroupId, topics }),
        sendBatch: (batch) => txn.sendBatch(batch),
        commit: () => txn.commit(),
        abort: () => txn.abort(),
      };
    },
    disconnect: () => producer.disconnect(),
  };
}

function kafkajsIdempotentProducer(kafka: Kafka, retries_max: number | undefined): Producer {
  const producer: KafkajsProducer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    ...(retries_max !== undefined ? { retry: { retries: retries_max } } : {}),
    // Every record names its partition; this only silences kafkajs' start-up warning about its default.
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  return {
    connect: () => producer.connect(),
    sendBatch: (batch) => producer.sendBatch(batch),
    disconnect: () => producer.disconnect(),
  };
}

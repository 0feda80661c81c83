import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { createLogger } from '../../src/log.js';
import { kafkaErrorType } from '../../src/streams/kafka-errors.js';
import type {
  FetchedBatch,
  GroupConsumer,
  GroupMetadata,
  InRecord,
  Admin as KafkaAdmin,
  KafkaPort,
  ProduceAck,
  TransactionSteps,
} from '../../src/streams/kafka-port.js';
import { platformaticPort } from '../../src/streams/platformatic/index.js';
import { brokers } from './helpers.js';

/**
 * The Kafka port's contract (src/streams/kafka-port.ts), on the real broker, against the adapter
 * (@platformatic/kafka): what the engine relies on of admin, the idempotent producer, transactions with
 * consumed offsets, aborts, fencing, and the group consumer's seek and pause. Fixtures (topics, reference reads, cleanup) go
 * through a plain kafkajs client, so that a broken adapter fails the case that uses it, not every case.
 */

const makePort = (): KafkaPort =>
  platformaticPort({
    brokers,
    client_id: 'port-test-platformatic',
    log: createLogger('silent', 'port-test'),
  });

const reference = new Kafka({ brokers, clientId: 'port-test-reference', logLevel: logLevel.NOTHING });

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `done` until it holds or `timeout_ms` passed: every wait in this file is bounded. */
async function waitFor(what: string, done: () => boolean, timeout_ms = 20_000): Promise<void> {
  const deadline_ms = Date.now() + timeout_ms;
  while (!done()) {
    if (Date.now() > deadline_ms) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** One transaction at a time on one transactional producer, whatever the consumer runs concurrently. */
class Serial {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => {});
    return next;
  }
}

/**
 * A topic's offsets as `{partition, low, high}`, sorted; `high_watermark`, where the adapter reads it, must equal
 * `high` (the last stable offset) because no test transaction is open when this is called.
 */
async function settledOffsets(
  admin: KafkaAdmin,
  topic: string,
): Promise<{ partition: number; low: string; high: string }[]> {
  const offsets = await admin.topicOffsets(topic);
  for (const o of offsets) {
    if (o.high_watermark !== undefined) {
      assert.equal(
        o.high_watermark,
        o.high,
        `partition ${o.partition}: nothing open, so LSO = high watermark`,
      );
    }
  }
  return offsets
    .map(({ partition, low, high }) => ({ partition, low, high }))
    .sort((x, y) => x.partition - y.partition);
}

const text = (v: Buffer | null) => (v === null ? null : v.toString());

const name = 'platformatic';
describe(`kafka port: ${name}`, { timeout: 120_000 }, () => {
  const prefix = `port-${name}-${randomUUID().slice(0, 8)}`;
  const port = makePort();
  const admin = port.admin();
  const ref_admin = reference.admin();
  const topics: string[] = [];
  const groups: string[] = [];
  let serial = 0;
  const topicName = (suffix: string) => {
    const topic = `${prefix}-${suffix}`;
    topics.push(topic);
    return topic;
  };
  const groupName = (suffix: string) => {
    const group = `${prefix}-${suffix}-${++serial}`;
    groups.push(group);
    return group;
  };

  /** A fixture topic, created by the reference client (case 1 tests the adapter's createTopics). */
  async function fixtureTopic(suffix: string, partitions: number): Promise<string> {
    const topic = topicName(suffix);
    await ref_admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
    });
    return topic;
  }

  /** Plain (non-transactional) records written by the reference client: sentinels and inputs. */
  async function referenceProduce(topic: string, messages: { partition: number; value: string }[]) {
    const producer = reference.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      await producer.send({ topic, acks: -1, messages });
    } finally {
      await producer.disconnect();
    }
  }

  /**
   * What the adapter's read_committed group consumer delivers of `topic` from the earliest offset, until
   * `done` holds of what it delivered. A committed sentinel written after the records under test makes "it
   * saw none of them" checkable: the reader has passed them once it delivers the sentinel.
   */
  async function portRead(
    topic: string,
    partitions: number,
    done: (records: { partition: number; offset: string; value: string | null }[]) => boolean,
  ) {
    const records: { partition: number; offset: string; value: string | null }[] = [];
    const crashes: unknown[] = [];
    const consumer = port.consumer({
      group_id: groupName('read'),
      topic,
      from: 'earliest',
      max_wait_ms: 50,
      partitions_concurrently_max: partitions,
      session_timeout_ms: 10_000,
    });
    try {
      await consumer.start({
        onBatch: async (batch) => {
          for (const m of batch.messages)
            records.push({ partition: batch.partition, offset: m.offset, value: text(m.value) });
        },
        onCrash: (err) => crashes.push(err),
      });
      await waitFor(`the port consumer to read ${topic}`, () => done(records) || crashes.length > 0);
      assert.deepEqual(crashes, [], 'the reader did not crash');
    } finally {
      await consumer.disconnect();
    }
    return records;
  }

  /** The same read by the reference client (kafkajs, read_committed), with keys and headers. */
  async function referenceRead(
    topic: string,
    done: (records: { partition: number; key: string | null; value: string | null }[]) => boolean,
  ) {
    const records: {
      partition: number;
      key: string | null;
      value: string | null;
      headers: Record<string, string>;
    }[] = [];
    const consumer = reference.consumer({
      groupId: groupName('ref'),
      readUncommitted: false,
      maxWaitTimeInMs: 50,
    });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
          records.push({ partition, key: text(message.key), value: text(message.value), headers });
        },
      });
      await waitFor(`the reference consumer to read ${topic}`, () => done(records));
    } finally {
      await consumer.disconnect();
    }
    return records;
  }

  before(async () => {
    await ref_admin.connect();
    await admin.connect();
  });

  after(async () => {
    await admin.disconnect().catch(() => {});
    // Cleanup is best effort: a failed deletion must not hide the result of the cases.
    if (groups.length > 0) await ref_admin.deleteGroups(groups).catch(() => {});
    if (topics.length > 0) await ref_admin.deleteTopics({ topics }).catch(() => {});
    await ref_admin.disconnect().catch(() => {});
  });

  it('admin: creates topics with their configs, lists them, counts partitions, lists offsets', async () => {
    const [a, b] = [topicName('admin-a'), topicName('admin-b')];
    await admin.createTopics(
      [a, b].map((topic) => ({
        topic,
        partitions: 4,
        replication_factor: 1,
        configs: { 'retention.ms': '3600000' },
      })),
    );
    const listed = await admin.listTopics();
    assert.ok(listed.includes(a) && listed.includes(b), `listTopics names ${a} and ${b}`);
    const counts = await admin.partitionCounts([a, b]);
    assert.equal(counts.get(a), 4);
    assert.equal(counts.get(b), 4);
    // Right after creation (createTopics waits for the leaders): every partition is empty.
    for (const topic of [a, b]) {
      assert.deepEqual(
        await settledOffsets(admin, topic),
        [0, 1, 2, 3].map((partition) => ({ partition, low: '0', high: '0' })),
      );
    }
    // The config reached the broker (an adapter that dropped it would create topics with the default).
    const described = await ref_admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 2 /* TOPIC */, name: a, configNames: ['retention.ms'] }],
    });
    const entry = described.resources[0]?.configEntries.find((e) => e.configName === 'retention.ms');
    assert.equal(entry?.configValue, '3600000');
  });

  it('idempotent producer: concurrent sendBatch calls both land, with keys, headers and acks', async () => {
    const topic = await fixtureTopic('produce', 2);
    const producer = port.producer();
    await producer.connect();
    let acks: ProduceAck[][];
    try {
      const batchFor = (partition: number) => ({
        topicMessages: [
          {
            topic,
            messages: Array.from({ length: 50 }, (_, i) => ({
              partition,
              key: `k${partition}-${i}`,
              value: Buffer.from(`v${partition}-${i}`),
              ...(partition === 1 && i === 7 ? { headers: { traceparent: 'x' } } : {}),
            })),
          },
        ],
        acks: -1 as const,
      });
      // Started together: a client that merges concurrent calls of one kind into one request (the
      // platformatic client does) must not drop either one.
      acks = await Promise.all([producer.sendBatch(batchFor(0)), producer.sendBatch(batchFor(1))]);
    } finally {
      await producer.disconnect();
    }
    assert.deepEqual(
      acks.map((a) =>
        a.map(({ topicName, partition, baseOffset }) => ({ topicName, partition, baseOffset })),
      ),
      [
        [{ topicName: topic, partition: 0, baseOffset: '0' }],
        [{ topicName: topic, partition: 1, baseOffset: '0' }],
      ],
    );
    const offsets = await admin.topicOffsets(topic);
    assert.equal(
      offsets.reduce((sum, o) => sum + Number(o.high), 0),
      100,
    );
    assert.deepEqual(
      offsets.map((o) => o.high),
      ['50', '50'],
    );
    // What landed, read back by the reference client: string keys, values, the one header.
    const read = await referenceRead(topic, (r) => r.length >= 100);
    assert.equal(read.length, 100);
    const by_key = new Map(read.map((r) => [r.key, r]));
    assert.equal(by_key.size, 100, 'every key once');
    assert.deepEqual(by_key.get('k0-3'), { partition: 0, key: 'k0-3', value: 'v0-3', headers: {} });
    assert.deepEqual(by_key.get('k1-7'), {
      partition: 1,
      key: 'k1-7',
      value: 'v1-7',
      headers: { traceparent: 'x' },
    });
  });

  it('transactions commit consumed offsets and records together (consume-transform-produce)', async () => {
    const commands = await fixtureTopic('commands', 4);
    const output = await fixtureTopic('output', 4);
    const group = groupName('processor');
    // The inputs, by the port's producer: 10 per partition.
    const producer = port.producer();
    await producer.connect();
    try {
      await producer.sendBatch({
        topicMessages: [
          {
            topic: commands,
            messages: Array.from({ length: 40 }, (_, i) => ({
              partition: i % 4,
              key: `c${i}`,
              value: Buffer.from(`cmd-${i % 4}-${Math.floor(i / 4)}`),
            })),
          },
        ],
        acks: -1,
      });
    } finally {
      await producer.disconnect();
    }

    const txn_producer = port.transactionalProducer({
      transactional_id: `${prefix}-processor`,
      transaction_timeout_ms: 30_000,
    });
    const consumer = port.consumer({
      group_id: group,
      topic: commands,
      from: 'earliest',
      max_wait_ms: 50,
      manual_resolve: true,
      partitions_concurrently_max: 4,
      session_timeout_ms: 10_000,
    });
    const assignments: { member_id: string; partitions: number[] }[] = [];
    const batch_groups: (GroupMetadata | null)[] = [];
    const crashes: unknown[] = [];
    const serial = new Serial();
    let processed = 0;
    try {
      await txn_producer.connect();
      await consumer.start({
        onAssignment: (a) => assignments.push({ ...a, partitions: [...a.partitions] }),
        onCrash: (err) => crashes.push(err),
        onBatch: async (batch) => {
          if (batch.messages.length === 0) return; // transaction markers only
          const last = batch.messages[batch.messages.length - 1]!.offset;
          batch_groups.push(batch.group);
          // Batches of different partitions are handled concurrently; one producer holds one transaction.
          await serial.run(async () => {
            const txn = await txn_producer.transaction();
            try {
              await txn.sendOffsets({
                consumerGroupId: group,
                topics: [
                  {
                    topic: commands,
                    partitions: [{ partition: batch.partition, offset: String(BigInt(last) + 1n) }],
                  },
                ],
                group: batch.group,
              });
              await txn.sendBatch({
                topicMessages: [
                  {
                    topic: output,
                    messages: batch.messages.map((m) => ({
                      partition: batch.partition,
                      key: null,
                      value: Buffer.from(`out:${text(m.value)}`),
                    })),
                  },
                ],
                acks: -1,
              });
              await txn.commit();
            } catch (err) {
              await txn.abort().catch(() => {});
              throw err;
            }
          });
          batch.resolveOffset(last);
          processed += batch.messages.length;
        },
      });
      await waitFor('40 commands processed', () => processed >= 40 || crashes.length > 0, 60_000);
      assert.deepEqual(crashes, [], 'no batch failed');
      // The coordinator's view of this member, through the port's admin, while it is still a member.
      const member = assignments[assignments.length - 1]!;
      assert.deepEqual(
        [...(await admin.memberAssignment(group, member.member_id, commands))].sort(),
        [0, 1, 2, 3],
      );
      await consumer.stop();
    } finally {
      await consumer.disconnect().catch(() => {});
      await txn_producer.disconnect().catch(() => {});
    }
    assert.equal(processed, 40, 'each command was handled once');
    assert.ok(assignments.length >= 1, 'onAssignment was called');
    assert.deepEqual(
      [...assignments[assignments.length - 1]!.partitions].sort(),
      [0, 1, 2, 3],
      'the only member holds all 4 partitions',
    );
    for (const g of batch_groups) {
      assert.ok(g !== null, 'a KIP-447 adapter names the generation of every batch');
      assert.equal(g.group_id, group);
      assert.ok(g.generation_id >= 1, `generation ${g.generation_id}`);
      assert.ok(g.member_id.length > 0);
    }

    // The offsets committed in the transactions: after the 10 records of each partition. The reference
    // client's view here (did the transactions commit them?), the port admin's last (does it read them?).
    const [by_reference] = await ref_admin.fetchOffsets({ groupId: group, topics: [commands] });
    assert.deepEqual(
      new Map(by_reference?.partitions.map((p) => [p.partition, p.offset])),
      new Map([0, 1, 2, 3].map((p) => [p, '10'])),
      'the transactions committed the offsets (reference client)',
    );
    // 10 records and at least one commit marker per partition; the last stable offset is past them.
    const ends = await admin.topicOffsets(output);
    for (const e of ends) assert.ok(Number(e.high) >= 11, `partition ${e.partition} ends at ${e.high}`);
    assert.ok(ends.reduce((sum, e) => sum + Number(e.high), 0) > 40, 'the markers count in the offsets');
    // Read back read_committed by the port's consumer: exactly the 40 outputs, each once, in its partition.
    await referenceProduce(
      output,
      [0, 1, 2, 3].map((partition) => ({ partition, value: 'sentinel' })),
    );
    const read = await portRead(output, 4, (r) => r.filter((x) => x.value === 'sentinel').length >= 4);
    const outputs = read.filter((r) => r.value !== 'sentinel');
    assert.equal(outputs.length, 40);
    assert.deepEqual(
      outputs.map((r) => `${r.partition}:${r.value}`).sort(),
      Array.from({ length: 40 }, (_, i) => `${i % 4}:out:cmd-${i % 4}-${Math.floor(i / 4)}`).sort(),
    );
    assert.deepEqual(
      await admin.groupOffsets(group, commands),
      new Map([0, 1, 2, 3].map((p) => [p, '10'])),
      'admin.groupOffsets reads the committed offsets',
    );
  });

  it('an aborted transaction is invisible to read_committed readers', async () => {
    const topic = await fixtureTopic('aborted', 1);
    const txn_producer = port.transactionalProducer({
      transactional_id: `${prefix}-aborter`,
      transaction_timeout_ms: 30_000,
    });
    try {
      await txn_producer.connect();
      const txn = await txn_producer.transaction();
      const acks = await txn.sendBatch({
        topicMessages: [
          {
            topic,
            messages: Array.from({ length: 5 }, (_, i) => ({
              partition: 0,
              key: `a${i}`,
              value: Buffer.from(`aborted-${i}`),
            })),
          },
        ],
        acks: -1,
      });
      assert.equal(acks[0]?.baseOffset, '0');
      // While it is open, an adapter that reads the high watermark shows the last stable offset behind it.
      const open = await admin.topicOffsets(topic);
      if (open[0]?.high_watermark !== undefined) {
        assert.deepEqual(
          open.map(({ high, high_watermark }) => ({ high, high_watermark })),
          [{ high: '0', high_watermark: '5' }],
        );
      }
      await txn.abort();
    } finally {
      await txn_producer.disconnect().catch(() => {});
    }
    // 5 records and the abort marker: the last stable offset moved past them (no open transaction left).
    assert.deepEqual(await settledOffsets(admin, topic), [{ partition: 0, low: '0', high: '6' }]);
    await referenceProduce(topic, [{ partition: 0, value: 'sentinel' }]);
    // The broker's side (the abort reached it), by the reference client, then the adapter's own reader.
    const by_reference = await referenceRead(topic, (r) => r.some((x) => x.value === 'sentinel'));
    assert.deepEqual(
      by_reference.map((r) => r.value),
      ['sentinel'],
    );
    const by_port = await portRead(topic, 1, (r) => r.some((x) => x.value === 'sentinel'));
    assert.deepEqual(
      by_port.map((r) => `${r.offset}:${r.value}`),
      ['6:sentinel'],
    );
  });

  it('fencing: a second producer of a transactional id fences the first', async () => {
    const topic = await fixtureTopic('fenced', 1);
    const transactional_id = `${prefix}-fenced`;
    const a = port.transactionalProducer({ transactional_id, transaction_timeout_ms: 30_000 });
    const b = port.transactionalProducer({ transactional_id, transaction_timeout_ms: 30_000 });
    const record = (value: string) => ({
      topicMessages: [{ topic, messages: [{ partition: 0, key: value, value: Buffer.from(value) }] }],
      acks: -1 as const,
    });
    try {
      await a.connect();
      // InitProducerId of the same id: bumps the epoch, A is a zombie from here on.
      await b.connect();
      let failed: { step: string; err: unknown } | null = null;
      let txn: TransactionSteps | null = null;
      let step = 'transaction';
      try {
        txn = await a.transaction();
        step = 'sendBatch';
        await txn.sendBatch(record('from-A'));
        step = 'commit';
        await txn.commit();
      } catch (err) {
        failed = { step, err };
        await txn?.abort().catch(() => {});
      }
      assert.ok(failed !== null, 'the fenced producer could not commit');
      console.log(
        JSON.stringify({ adapter: name, fenced_at: failed.step, type: kafkaErrorType(failed.err) }),
      );
      assert.ok(['sendBatch', 'commit'].includes(failed.step), `failed at ${failed.step}: ${failed.err}`);
      assert.ok(
        ['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH'].includes(kafkaErrorType(failed.err) ?? ''),
        `fenced error type: ${kafkaErrorType(failed.err)} (${failed.err})`,
      );
      const txn_b = await b.transaction();
      await txn_b.sendBatch(record('from-B'));
      await txn_b.commit();
    } finally {
      await a.disconnect().catch(() => {});
      await b.disconnect().catch(() => {});
    }
    await referenceProduce(topic, [{ partition: 0, value: 'sentinel' }]);
    const by_reference = await referenceRead(topic, (r) => r.some((x) => x.value === 'sentinel'));
    assert.deepEqual(
      by_reference.map((r) => r.value),
      ['from-B', 'sentinel'],
    );
    const by_port = await portRead(topic, 1, (r) => r.some((x) => x.value === 'sentinel'));
    assert.deepEqual(
      by_port.map((r) => r.value),
      ['from-B', 'sentinel'],
    );
  });

  it('group consumer: seek makes the batch stale and moves the position; pause stops deliveries', async () => {
    const topic = await fixtureTopic('seek', 1);
    const values = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => ({ partition: 0, value: `r${from + i}` }));
    await referenceProduce(topic, values(0, 20));
    const consumer: GroupConsumer = port.consumer({
      group_id: groupName('seek'),
      topic,
      from: 'earliest',
      max_wait_ms: 50,
      manual_resolve: true,
      partitions_concurrently_max: 1,
      session_timeout_ms: 10_000,
    });
    const batches: { batch: FetchedBatch; messages: InRecord[]; current_after: boolean | null }[] = [];
    const crashes: unknown[] = [];
    let resume_inside: (() => void) | null = null;
    const first = (i: number) => batches[i]?.messages[0]?.offset;
    try {
      await consumer.start({
        onCrash: (err) => crashes.push(err),
        onBatch: async (batch) => {
          if (batch.messages.length === 0) return;
          const entry = { batch, messages: [...batch.messages], current_after: null as boolean | null };
          batches.push(entry);
          const last = batch.messages[batch.messages.length - 1]!.offset;
          if (batches.length === 1) {
            // Before resolving anything: the seek makes this batch stale.
            assert.equal(batch.current(), true, 'a fresh batch is current');
            consumer.seek(batch.partition, '15');
            entry.current_after = batch.current();
            return;
          }
          batch.resolveOffset(last);
          // The third batch pauses its own partition from inside the handler.
          if (batches.length === 3) resume_inside = batch.pause();
        },
      });
      await waitFor('the first two batches', () => batches.length >= 2 || crashes.length > 0);
      assert.deepEqual(crashes, []);
      assert.equal(first(0), '0');
      assert.equal(batches[0]!.current_after, false, 'seeked: the batch is no longer current');
      assert.equal(first(1), '15', 'the next batch starts where the seek said');
      assert.deepEqual(
        batches[1]!.messages.map((m) => m.offset),
        ['15', '16', '17', '18', '19'],
      );

      // The consumer's pause: nothing of the partition is delivered, though there are records to fetch.
      consumer.pause([0]);
      await sleep(200); // a fetch in flight when pausing may still land; let it
      const paused_at = batches.length;
      await referenceProduce(topic, values(20, 25));
      await sleep(1_000);
      assert.equal(batches.length, paused_at, 'no deliveries while paused');
      // A batch's pause() returns the resume; deliveries go on from the last resolved offset.
      batches[1]!.batch.pause()();
      await waitFor('a batch after resuming', () => batches.length > paused_at);
      assert.equal(batches[paused_at]!.messages[0]?.offset, '20');

      // The third batch paused its partition itself: again nothing, until its resume function is called.
      await waitFor('the third batch to pause', () => resume_inside !== null);
      await sleep(200);
      const paused_inside_at = batches.length;
      await referenceProduce(topic, values(25, 30));
      await sleep(1_000);
      assert.equal(batches.length, paused_inside_at, 'no deliveries while paused by the batch');
      resume_inside!();
      await waitFor('a batch after the batch resumed', () => batches.length > paused_inside_at);
      assert.equal(batches[paused_inside_at]!.messages[0]?.offset, '25');
      assert.deepEqual(crashes, []);
    } finally {
      await consumer.disconnect().catch(() => {});
    }
  });
});

// One transactional producer, back-to-back transactions of 10 records each: how long each step of a
// transaction takes on this machine's broker, through the node's own Kafka port. Not part of a suite.
// `node --import tsx bench/txn-steps.ts [transactions]` (KAFKA_BROKERS, default 127.0.0.1:19092).
import { performance, type RecordableHistogram } from 'node:perf_hooks';
import { newHistogram, recordUs, summarize } from '../loadtest/stats.js';
import { createLogger } from '../src/log.js';
import { parseBrokers } from '../src/streams/kafka-port.js';
import { platformaticPort } from '../src/streams/platformatic/index.js';

const transactions_total = Number(process.argv[2] ?? 200);
const brokers = parseBrokers(process.env.KAFKA_BROKERS ?? '127.0.0.1:19092');
const log = createLogger('warn', 'txn-steps');
const kafka = platformaticPort({ brokers, client_id: 'txn-steps', log });
const topic = `txn-steps-${Date.now()}`;
const admin = kafka.admin();
await admin.connect();
await admin.createTopics([{ topic, partitions: 8, replication_factor: 1, configs: {} }]);
const producer = kafka.transactionalProducer({
  transactional_id: `${topic}.tx`,
  transaction_timeout_ms: 30_000,
});
await producer.connect();
type Step = 'begin' | 'send' | 'commit' | 'total';
const steps = new Map<Step, RecordableHistogram>(
  (['begin', 'send', 'commit', 'total'] as const).map((step) => [step, newHistogram()]),
);
const record = (step: Step, ms: number) => recordUs(steps.get(step)!, ms * 1000);
const value = Buffer.alloc(400, 1);
for (let i = 0; i < transactions_total; i++) {
  const t0 = performance.now();
  const txn = await producer.transaction();
  const t1 = performance.now();
  const messages = Array.from({ length: 10 }, (_, k) => ({ partition: k % 8, key: null, value }));
  await txn.sendBatch({ topicMessages: [{ topic, messages }], acks: -1 });
  const t2 = performance.now();
  await txn.commit();
  const t3 = performance.now();
  record('begin', t1 - t0);
  record('send', t2 - t1);
  record('commit', t3 - t2);
  record('total', t3 - t0);
}
for (const [step, histogram] of steps) {
  const s = summarize(histogram);
  console.log(
    `${step.padEnd(7)} mean ${s.mean_ms.toFixed(2)} ms  p50 ${s.p50_ms.toFixed(2)}  p99 ${s.p99_ms.toFixed(2)}`,
  );
}
await producer.disconnect();
await admin.disconnect();

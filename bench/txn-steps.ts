// One transactional producer, back-to-back transactions of 10 records each: how long each step of a
// transaction takes on this machine's broker, through the node's own Kafka port. Not part of a suite.
// `node --import tsx bench/txn-steps.ts [transactions]` (KAFKA_BROKERS, default 127.0.0.1:19092).
import { performance } from 'node:perf_hooks';
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
const steps: Record<'begin' | 'send' | 'commit' | 'total', number[]> = {
  begin: [],
  send: [],
  commit: [],
  total: [],
};
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
  steps.begin.push(t1 - t0);
  steps.send.push(t2 - t1);
  steps.commit.push(t3 - t2);
  steps.total.push(t3 - t0);
}
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;
for (const [name, xs] of Object.entries(steps)) {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(
    `${name.padEnd(7)} mean ${mean.toFixed(2)} ms  p50 ${q(xs, 0.5).toFixed(2)}  p99 ${q(xs, 0.99).toFixed(2)}`,
  );
}
await producer.disconnect();
await admin.disconnect();

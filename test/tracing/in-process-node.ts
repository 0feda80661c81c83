import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { Lanes } from '../../src/actors/lanes.js';
import { type Config, loadConfig } from '../../src/config.js';
import { ApiKeys } from '../../src/gateway/auth.js';
import { CommandSender } from '../../src/gateway/commands.js';
import { createGateway } from '../../src/gateway/index.js';
import { KafkaLedger } from '../../src/gateway/ledger.js';
import { ReplyWaiter } from '../../src/gateway/replies.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { Checkpoints } from '../../src/streams/checkpoints.js';
import type { KafkaPort } from '../../src/streams/kafka-port.js';
import { platformaticPort } from '../../src/streams/platformatic/index.js';
import { StreamProcessor } from '../../src/streams/processor.js';
import { ensureTopics, replyTopic, type TopicNames, topicNames } from '../../src/streams/topics.js';
import { brokers, redis_url, uniqueName } from '../integration/helpers.js';

export interface InProcessNode {
  base: string;
  config: Config;
  names: TopicNames;
  /** Every log line (JSON) of the node, newest last (bounded). */
  logs: string[];
  stop(): Promise<void>;
}

const LOG_LINES_MAX = 20_000;

/**
 * A whole node in this process, wired as src/node.ts wires it (stream processor on real lanes, reply waiter,
 * command sender, Kafka ledger, gateway), against the real broker and Redis, on its own topic and key
 * prefix: what a test needs when it must see inside the node (here: the tracer provider it registers).
 * `env` are config keys as environment variables (PARTITIONS, LOG_LEVEL, …).
 */
export async function startInProcessNode(env: Record<string, string> = {}): Promise<InProcessNode> {
  const topic_prefix = uniqueName('trc');
  const config = loadConfig({
    PORT: '0',
    NODE_ID: 'trc-node',
    TOPIC_PREFIX: topic_prefix,
    REDIS_KEY_PREFIX: `test:${topic_prefix}:`,
    REDIS_URL: redis_url,
    KAFKA_BROKERS: brokers.join(','),
    PARTITIONS: '4',
    LANES: '1',
    SESSION_TIMEOUT_MS: '6000',
    ...env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(chunk.toString());
      if (logs.length > LOG_LINES_MAX) logs.shift();
      done();
    },
  });
  const log = createLogger(config.log_level, config.node_id, sink);
  const metrics = createMetrics();
  const kafka: KafkaPort = platformaticPort({ brokers, client_id: `trc-${config.node_id}`, log });
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, {
    prefix: topic_prefix,
    node_id: config.node_id,
    partitions: config.partitions,
    replication_factor: 1,
  });
  await admin.disconnect();
  const names = topicNames(topic_prefix);
  const reply_topic = replyTopic(topic_prefix, config.node_id);
  const redis = new Redis(config.redis_url);
  const lanes = new Lanes({ lanes: 1, partitions_total: config.partitions, lane_queue_max: 1024 });
  const checkpoints = new Checkpoints({
    redis,
    log,
    metrics,
    key_prefix: `${config.redis_key_prefix}${topic_prefix}:`,
    log_interval_ms: 10_000,
  });
  const waiter = new ReplyWaiter({
    kafka,
    topic: reply_topic,
    group_id: `${topic_prefix}.gateway.${config.node_id}`,
    timeout_ms: config.reply_timeout_ms,
    pending_max: config.pending_replies_max,
    session_timeout_ms: config.session_timeout_ms,
    log,
    metrics,
  });
  const processor = new StreamProcessor({
    kafka,
    lanes,
    checkpoints,
    names,
    app_id: topic_prefix,
    partitions_total: config.partitions,
    batch_size_max: config.batch_size_max,
    checkpoint_interval_ms: config.checkpoint_interval_ms,
    checkpoint_dirty_max: config.checkpoint_dirty_max,
    session_timeout_ms: config.session_timeout_ms,
    restore_timeout_ms: config.startup_timeout_ms,
    // as src/node.ts: one transaction per node commit (transaction_scope auto/node), else per partition
    transactions:
      config.transaction_scope_effective === 'node'
        ? {
            per: 'node',
            node_id: config.node_id,
            commit_interval_ms: config.commit_interval_ms,
            records_max: config.commit_records_max,
          }
        : { per: 'partition' },
    log,
    metrics,
    local_replies: { topic: reply_topic, deliver: (replies) => waiter.deliverCommitted(replies) },
  });
  const sender = new CommandSender({
    kafka,
    topic: names.commands,
    linger_ms: config.produce_linger_ms,
    batch_max: config.produce_batch_max,
    metrics,
    log,
  });
  await Promise.all([processor.start(), waiter.start(), sender.start()]);
  const ledger = new KafkaLedger({ sender, waiter, reply_topic, partitions_total: config.partitions, log });
  const stack = createGateway({
    config,
    keys: ApiKeys.parse(config.api_keys),
    ledger,
    feed: null,
    ready: () => processor.ready && waiter.ready,
    log,
    metrics,
  });
  const port = await stack.gateway.listen();
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base, config.startup_timeout_ms);
  return {
    base,
    config,
    names,
    logs,
    stop: async () => {
      stack.gateway.close();
      await processor.stop();
      await Promise.allSettled([waiter.stop(), sender.stop(), lanes.close(), stack.dispose()]);
      redis.disconnect();
    },
  };
}

async function waitReady(base: string, timeout_ms: number): Promise<void> {
  const deadline_ms = Date.now() + timeout_ms;
  while (Date.now() < deadline_ms) {
    const ready = await fetch(`${base}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`in-process node not ready after ${timeout_ms} ms`);
}

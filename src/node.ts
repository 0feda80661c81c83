import { Redis } from 'ioredis';
import { Lanes } from './actors/lanes.js';
import { type Config, ConfigError, loadConfig, riskRules } from './config.js';
import { ApiKeys, dev_api_key } from './gateway/auth.js';
import { CommandSender } from './gateway/commands.js';
import { createGateway } from './gateway/index.js';
import { KafkaLedger } from './gateway/ledger.js';
import { ReplyWaiter } from './gateway/replies.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { Checkpoints } from './streams/checkpoints.js';
import { type KafkaPort, parseBrokers } from './streams/kafka-port.js';
import { platformaticPort } from './streams/platformatic/index.js';
import { StreamProcessor } from './streams/processor.js';
import { ensureTopics, replyTopic, topicNames } from './streams/topics.js';
import { startTracing } from './tracing.js';

/** Composition root: config → Redis → Kafka topics → lanes → stream processor → replies → gateway. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = createLogger(config.log_level, config.node_id);
  const metrics = createMetrics();
  const tracing = await startTracing({ node_id: config.node_id, log }); // null unless OTEL_* ask for it
  const keys = ApiKeys.parse(config.api_keys);
  const brokers = parseBrokers(config.kafka_brokers || `127.0.0.1:${config.kafka_local_port}`);
  const redis = await connectRedis(config, log);
  const client_id = `${config.kafka_client_id}-${config.node_id}`;
  const kafka = platformaticPort({ brokers, client_id, log });
  await prepareTopics(kafka, config, brokers, log);

  const names = topicNames(config.topic_prefix);
  const reply_topic = replyTopic(config.topic_prefix, config.node_id);
  const lanes = new Lanes({
    lanes: config.lanes_effective,
    partitions_total: config.partitions,
    lane_queue_max: config.lane_batches_in_flight_max * config.partitions,
    onLaneLost: (lane, why) => {
      log.fatal({ lane, why }, 'lane worker lost: its partitions lost their actor state; stopping');
      process.exitCode = 1;
      process.kill(process.pid, 'SIGTERM');
    },
    domain_config: {
      risk_rules: riskRules(config),
      payment_rows_reserved: config.payment_rows_reserved,
      record_rows_reserved: config.record_rows_reserved,
    },
  });
  const checkpoints = new Checkpoints({
    redis,
    log,
    metrics,
    key_prefix: `${config.redis_key_prefix}${config.topic_prefix}:`,
    log_interval_ms: 10_000,
  });
  const waiter = new ReplyWaiter({
    kafka,
    topic: reply_topic,
    group_id: `${config.topic_prefix}.gateway.${config.node_id}`,
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
    app_id: config.topic_prefix,
    partitions_total: config.partitions,
    batch_size_max: config.batch_size_max,
    checkpoint_interval_ms: config.checkpoint_interval_ms,
    checkpoint_dirty_max: config.checkpoint_dirty_max,
    lane_batches_in_flight_max: config.lane_batches_in_flight_max,
    session_timeout_ms: config.session_timeout_ms,
    restore_timeout_ms: config.startup_timeout_ms,
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
  const timed = async (name: string, p: Promise<void>) => {
    const t0 = Date.now();
    await p;
    log.info({ ms: Date.now() - t0 }, `${name} started`);
  };
  await Promise.all([
    timed('processor', processor.start()),
    timed('waiter', waiter.start()),
    timed('sender', sender.start()),
  ]);
  const ledger = new KafkaLedger({ sender, waiter, reply_topic, partitions_total: config.partitions, log });
  const { gateway, dispose: disposeGateway } = createGateway({
    config,
    keys,
    ledger,
    feed: { kafka, events_topic: names.events },
    ready: () => processor.ready && waiter.ready,
    notReady: () => processor.notReady,
    log,
    metrics,
  });
  const port = await gateway.listen();
  log.info(
    {
      url: `${config.tls_cert_file ? 'https' : 'http'}://${config.host}:${port}`,
      brokers,
      lanes: config.lanes_effective,
      partitions: config.partitions,
    },
    config.api_keys ? 'payment node listening' : `payment node listening; dev API key ${dev_api_key}`,
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    gateway.drain();
    // The step running when the deadline passes is named in the log: that is where a shutdown hangs.
    let step = 'replies';
    const deadline = setTimeout(() => {
      log.error({ step }, 'shutdown timed out; exiting');
      process.exit(1);
    }, config.shutdown_timeout_ms);
    // In-flight requests are waiting for replies: keep the processor running until they are answered.
    await waiter.drained(config.shutdown_timeout_ms / 2);
    gateway.close();
    await processor.stop((name) => {
      step = `processor: ${name}`;
    });
    step = 'clients';
    await Promise.allSettled([waiter.stop(), sender.stop(), lanes.close(), disposeGateway()]);
    await tracing?.shutdown(2000); // flushes the spans of the last chunks
    redis.disconnect();
    clearTimeout(deadline);
    log.info('stopped');
    process.exit(process.exitCode ?? 0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`payment node: ${err.message}\n`);
    process.exit(2);
  }
}

async function connectRedis(config: Config, log: Logger): Promise<Redis> {
  const redis = new Redis(config.redis_url, {
    lazyConnect: true,
    // Commands fail at once while Redis is away: checkpoints are an accelerator and must never block payments.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    // Every request with an Idempotency-Key costs a fence SET: commands issued in the same tick leave in one
    // socket write instead of one each (one write per command was 7.6 % of the main thread at 5,500/s).
    enableAutoPipelining: true,
  });
  redis.on('error', () => {}); // reconnection is automatic; failures are counted where commands fail
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    unreachable(
      log,
      `Redis unreachable at ${config.redis_url} (${(err as Error).message})`,
      'start one (redis-server --daemonize yes --port 6379) or set REDIS_URL',
    );
  }
  return redis;
}

async function prepareTopics(kafka: KafkaPort, config: Config, brokers: string[], log: Logger) {
  const admin = kafka.admin({ quick: true });
  try {
    await admin.connect();
  } catch (err) {
    unreachable(
      log,
      `Kafka unreachable at ${brokers.join(',')} (${(err as Error).message})`,
      config.kafka_brokers
        ? 'check KAFKA_BROKERS'
        : 'start the local broker with `npm run kafka -- start`, or use `npm start`',
    );
  }
  try {
    await ensureTopics(admin, {
      prefix: config.topic_prefix,
      node_id: config.node_id,
      partitions: config.partitions,
      replication_factor: config.replication_factor,
    });
  } finally {
    await admin.disconnect();
  }
}

function unreachable(log: Logger, what: string, how: string): never {
  log.fatal({ how }, what);
  process.stderr.write(`payment node: ${what}\n  → ${how}\n`);
  process.exit(1);
}

main().catch((err) => {
  process.stderr.write(`payment node: failed to start: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});

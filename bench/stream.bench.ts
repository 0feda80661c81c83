/**
 * Stream processing benchmark: `npm run bench:stream [-- --quick | --commands N] [--partitions P]
 * [--accounts A] [--batch-size B] [--checkpoint-accounts C] [--loops-only]`. Needs the local broker
 * (127.0.0.1:19092, or KAFKA_BROKERS) and Redis (REDIS_URL); leaves neither topics nor keys behind.
 *
 *   1. preload N commands (default 300,000, --quick 100,000; the size is --commands 1000000, which
 *      takes ≈ 15 min on the shared 2-core VM instead of the < 10 min asked for the default) into two fresh
 *      commands topics (P = 8), accounts = N / 10
 *   2. exactly-once: the real StreamProcessor + Lanes + Checkpoints (as src/node.ts wires them) on topic 1,
 *      measured until the group's committed offsets stop moving (client commands and their legs applied)
 *   3. baseline, same run: the same loop at-least-once (no transactions) on topic 2
 *   4. broker raw limit: kafka-producer-perf-test, same record count and size, acks=all
 *   5. restore: a fresh processor replays the exactly-once run's changelog with no checkpoint (events/s);
 *      a restart with that run's checkpoints; a restart with C accounts checkpointed (default 1,000,000)
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pino from 'pino';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import { Checkpoints } from '../src/streams/checkpoints.js';
import { parseBrokers } from '../src/streams/kafka-port.js';
import { platformaticPort } from '../src/streams/platformatic/index.js';
import { replayPartitions } from '../src/streams/restore.js';
import { ensureTopics, replyTopic, topicNames } from '../src/streams/topics.js';
import { rawKafka } from './raw-kafka.js';
import { writeSyntheticCheckpoints } from './stream-checkpoint.js';
import {
  type CpuSample,
  cpuDelta,
  type Env,
  machineLine,
  runLoop,
  runRestore,
  sampleCpu,
} from './stream-run.js';
import { generateWorkload, preload } from './stream-workload.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    commands: { type: 'string' },
    partitions: { type: 'string', default: '8' },
    accounts: { type: 'string' },
    'batch-size': { type: 'string' },
    'checkpoint-accounts': { type: 'string' },
    /** Only the preload and the two loops (for batch-size or partition-count experiments). */
    'loops-only': { type: 'boolean', default: false },
  },
});
const int = (text: string | undefined, fallback: number) => (text === undefined ? fallback : Number(text));
const COMMANDS = int(args.commands, args.quick ? 100_000 : 300_000);
const PARTITIONS = int(args.partitions, 8);
const ACCOUNTS = int(args.accounts, Math.floor(COMMANDS / 10));
const CHECKPOINT_ACCOUNTS = int(args['checkpoint-accounts'], args.quick ? 100_000 : 1_000_000);
const repo_root = fileURLToPath(new URL('..', import.meta.url));

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const say = (line: string) => process.stdout.write(`${line}\n`);
const note = (line: string) => process.stderr.write(`${line}\n`);

const run_id = Date.now().toString(36);
const prefix = `bench-stream-${run_id}`;
const config = loadConfig();
const key_prefix = `${config.redis_key_prefix}bench-stream-${run_id}:`;
const BATCH = int(args['batch-size'], config.batch_size_max);
const created_topics: string[] = [];

async function main(): Promise<void> {
  const env = await connect();
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await cleanUp(env);
  };
  const onSignal = () => void cleanup().finally(() => process.exit(1));
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    say(
      `bench:stream ${COMMANDS.toLocaleString('en-US')} commands, ${ACCOUNTS.toLocaleString('en-US')} ` +
        `accounts, P=${PARTITIONS}, lanes=${config.lanes_effective}, batch_size_max=${BATCH}, node ${process.version}`,
    );
    say(`machine at start: ${machineLine()}`);
    await phases(env);
    say(`machine at end: ${machineLine()}`);
  } finally {
    await cleanup();
    env.redis.disconnect();
    await env.admin.disconnect();
  }
}

async function connect(): Promise<Env> {
  const log = createLogger('warn', 'bench-stream', pino.destination(2));
  const brokers = parseBrokers(config.kafka_brokers || `127.0.0.1:${config.kafka_local_port}`);
  // Fixtures (preload, topic admin, end offsets) on a plain kafkajs client; the processor on the node's port.
  const kafka = rawKafka(brokers, `bench-stream-${run_id}`);
  const admin = kafka.admin();
  await admin.connect();
  const redis = new Redis(config.redis_url, { maxRetriesPerRequest: 1 });
  const server_info = await redis.info('server');
  const redis_pid = Number(/process_id:(\d+)/.exec(server_info)?.[1] ?? Number.NaN);
  return {
    kafka,
    port: platformaticPort({ brokers, client_id: `bench-stream-${run_id}`, log }),
    admin,
    redis,
    log,
    config,
    partitions_total: PARTITIONS,
    broker_pid: brokerPid(),
    redis_pid: Number.isFinite(redis_pid) ? redis_pid : null,
  };
}

function brokerPid(): number | null {
  try {
    const dir = process.env.KAFKA_CACHE_DIR ?? `${repo_root}.cache/kafka`;
    return Number(readFileSync(`${dir}/run/kafka.pid`, 'utf8').trim()) || null;
  } catch {
    return null;
  }
}

/** A loaded broker can answer metadata before the new partitions are hosted: retry a few times (bounded). */
async function retried<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const errors: string[] = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await fn();
    } catch (err) {
      errors.push((err as Error).message);
      await new Promise((r) => setTimeout(r, 1_000 * (attempt + 1)));
    }
  }
  throw new Error(`${what} failed 5 times: ${errors.join('; ')}`);
}

async function createStreamTopics(env: Env, topic_prefix: string) {
  const names = topicNames(topic_prefix);
  created_topics.push(names.commands, names.events, replyTopic(topic_prefix, 'bench'));
  await retried(`topics ${topic_prefix}`, async () => {
    const admin = env.port.admin();
    await admin.connect();
    try {
      await ensureTopics(admin, {
        prefix: topic_prefix,
        node_id: 'bench',
        partitions: PARTITIONS,
        replication_factor: 1,
      });
    } finally {
      await admin.disconnect();
    }
  });
  return names;
}

async function phases(env: Env): Promise<void> {
  const t_gen = performance.now();
  const workload = generateWorkload({
    commands_total: COMMANDS,
    accounts_total: ACCOUNTS,
    partitions_total: PARTITIONS,
  });
  const record_bytes = (workload.value_bytes + workload.key_bytes) / COMMANDS;
  say(
    `workload: generated in ${fmt((performance.now() - t_gen) / 1000, 1)} s; mean record ` +
      `${fmt(record_bytes, 1)} B (value ${fmt(workload.value_bytes / COMMANDS, 1)} + key ` +
      `${fmt(workload.key_bytes / COMMANDS, 1)}); ${JSON.stringify(workload.by_type)}`,
  );
  const eos = await createStreamTopics(env, `${prefix}-eos`);
  const alo = await createStreamTopics(env, `${prefix}-alo`);
  const preload_eos = await preload(env.kafka, eos.commands, workload.messages, PARTITIONS);
  say(
    `preload 1 (eos topic): ${fmt(preload_eos.records_per_s)} records/s (${fmt(preload_eos.elapsed_ms)} ms)`,
  );
  const preload_alo = await preload(env.kafka, alo.commands, workload.messages, PARTITIONS);
  say(
    `preload 2 (alo topic): ${fmt(preload_alo.records_per_s)} records/s (${fmt(preload_alo.elapsed_ms)} ms)`,
  );
  workload.messages.length = 0; // let the records go before the runs

  const timeout_ms = Math.max(300_000, COMMANDS * 2);
  const loopOn = (e: Env, names: typeof eos, guarantee: 'exactly_once' | 'at_least_once', app_id: string) =>
    runLoop(e, {
      names,
      app_id,
      key_prefix: `${key_prefix}${app_id}:`,
      batch_size_max: BATCH,
      guarantee,
      records_min: COMMANDS,
      timeout_ms,
      progress: note,
    });
  const r_eos = await loopOn(env, eos, 'exactly_once', `${prefix}-eos`);
  reportLoop(r_eos);
  const r_alo = await loopOn(env, alo, 'at_least_once', `${prefix}-alo`);
  reportLoop(r_alo);
  if (args['loops-only']) {
    say(`ratio: EOS/ALO = ${fmt(r_eos.elapsed_s > 0 ? r_alo.elapsed_s / r_eos.elapsed_s : 0, 2)}`);
    return;
  }
  const perf = await perfTest(env, Math.round(record_bytes));
  const eos_client_per_s = COMMANDS / r_eos.elapsed_s;
  const alo_client_per_s = COMMANDS / r_alo.elapsed_s;
  say(
    `ratios: EOS/ALO = ${fmt(eos_client_per_s / alo_client_per_s, 2)}; ` +
      `EOS/broker raw = ${fmt(eos_client_per_s / perf.records_per_s, 3)} ` +
      `(EOS incl. legs / broker raw = ${fmt(r_eos.records_applied / r_eos.elapsed_s / perf.records_per_s, 3)})`,
  );
  // The limit of this machine: every record a command costs the broker (the command itself, its events and
  // follow-up legs, transaction markers), from the topics' end offsets after the EOS run.
  const written = (await topicsEnd(env, [eos.commands, eos.events])) / COMMANDS;
  const ceiling_per_s = perf.records_per_s / written;
  say(
    `broker-bound ceiling: ${fmt(perf.records_per_s)} raw records/s ÷ ${fmt(written, 2)} records written per ` +
      `command = ${fmt(ceiling_per_s)} commands/s; EOS ${fmt((100 * eos_client_per_s) / ceiling_per_s, 1)} % ` +
      `of it (goal ≥ 35 %), at-least-once ${fmt((100 * alo_client_per_s) / ceiling_per_s, 1)} %`,
  );
  await restorePhases(env, eos);
}

/** Sum of the topics' end offsets (read_committed listing: markers included below the last stable offset). */
async function topicsEnd(env: Env, topics: string[]): Promise<number> {
  let total = 0;
  for (const topic of topics)
    for (const p of await env.admin.fetchTopicOffsets(topic)) total += Number(p.high);
  return total;
}

function reportLoop(r: Awaited<ReturnType<typeof runLoop>>): void {
  const t = r.transactions;
  if (r.guarantee === 'exactly_once')
    say(
      `  transactions ${fmt(t.count / r.elapsed_s)}/s, ${fmt(COMMANDS / Math.max(1, t.count), 1)} client ` +
        'commands per transaction (goal at saturation: > 100)',
    );
  say(
    `${r.guarantee}: ${fmt(COMMANDS / r.elapsed_s)} client commands/s; ` +
      `${fmt(r.records_applied / r.elapsed_s)} records/s incl. legs (${fmt(r.records_applied)} records in ` +
      `${fmt(r.elapsed_s, 2)} s; ready after ${fmt(r.ready_ms)} ms)`,
  );
  say(
    `  batches ${fmt(r.batches.count)} (mean ${fmt(r.batches.sum / Math.max(1, r.batches.count))} records); ` +
      `produce+commit mean ${fmt((t.sum / Math.max(1, t.count)) * 1000, 1)} ms, p50 ≤ ` +
      `${ms(t.quantile(0.5))}, p99 ≤ ${ms(t.quantile(0.99))}; aborted ${r.aborted}`,
  );
  say(`  cpu ${cpuLine(r.cpu, r.elapsed_s)}`);
}

function ms(seconds: number): string {
  return Number.isFinite(seconds) ? `${fmt(seconds * 1000, 1)} ms` : '∞ (> 1 s)';
}

function cpuLine(c: CpuSample, wall_s: number): string {
  const cores = (s: number) => fmt(s / wall_s, 2);
  return (
    `(cores used over ${fmt(wall_s, 1)} s): node main thread ${cores(c.node_main_s)}, node other threads ` +
    `(lanes, GC, libuv) ${cores(c.node_total_s - c.node_main_s)}, broker ${cores(c.broker_s)}, ` +
    `redis ${cores(c.redis_s)}, whole machine ${cores(c.system_busy_s)}; CPU pressure (some task waiting ` +
    `for a CPU) ${fmt((100 * c.pressure_s) / wall_s)} % of the time`
  );
}

/** kafka-producer-perf-test with the same count and mean record size (key + value), acks=all. */
async function perfTest(env: Env, record_size: number): Promise<{ records_per_s: number }> {
  const topic = `${prefix}-perf`;
  created_topics.push(topic);
  await retried(`topic ${topic}`, async () => {
    if ((await env.admin.listTopics()).includes(topic)) return;
    await env.admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    });
  });
  const brokers = config.kafka_brokers || `127.0.0.1:${config.kafka_local_port}`;
  const cmd = [
    `${repo_root}tools/kafka/kafka.sh`,
    'tool',
    'producer-perf-test',
    ...['--topic', topic, '--num-records', String(COMMANDS), '--record-size', String(record_size)],
    ...['--throughput', '-1', '--producer-props', `bootstrap.servers=${brokers}`, 'acks=all'],
  ];
  const cpu0 = sampleCpu(env);
  const t0 = performance.now();
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('bash', cmd, { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`perf test exit ${code}`))));
  });
  const wall_s = (performance.now() - t0) / 1000;
  const cpu = cpuDelta(cpu0, sampleCpu(env));
  const summary = out.trim().split('\n').at(-1) ?? '';
  const match = /([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max/.exec(
    summary,
  );
  if (!match) throw new Error(`perf test output not understood: ${summary}`);
  const records_per_s = Number(match[1]);
  say(
    `broker raw (kafka-producer-perf-test, ${fmt(COMMANDS)} x ${record_size} B, acks=all, defaults otherwise): ` +
      `${fmt(records_per_s)} records/s, ${match[2]} MB/s, ${match[3]} ms avg latency`,
  );
  say(
    `  cpu over the tool's whole run incl. JVM start (${fmt(wall_s, 1)} s): broker ` +
      `${fmt(cpu.broker_s / wall_s, 2)} cores, machine ${fmt(cpu.system_busy_s / wall_s, 2)}, CPU pressure ` +
      `${fmt((100 * cpu.pressure_s) / wall_s)} %`,
  );
  return { records_per_s };
}

async function restorePhases(env: Env, eos: ReturnType<typeof topicNames>): Promise<void> {
  const [events_end] = [await env.admin.fetchTopicOffsets(eos.events)];
  const events_total = events_end.reduce((a, p) => a + Number(p.high), 0);
  const app_id = `${prefix}-eos`;
  const none = await runRestore(env, {
    names: eos,
    app_id,
    key_prefix: `${key_prefix}none:`,
    batch_size_max: BATCH,
  });
  say(
    `restore without checkpoint: ${fmt(none.events_replayed)} events (changelog end offsets sum ` +
      `${fmt(events_total)}) replayed in ${fmt(none.restore_s, 2)} s = ` +
      `${fmt(none.events_replayed / none.restore_s)} events/s; ready ${fmt(none.ready_ms)} ms after start; ` +
      `${fmt(none.accounts)} accounts`,
  );
  say(`  cpu ${cpuLine(none.cpu, none.ready_ms / 1000)}`);
  const raw = await rawRead(env, eos.events);
  const replay_events_per_s = none.events_replayed / none.restore_s;
  say(
    `raw read of the same events topic (the restore's reader, read_committed, no lane): ${fmt(raw.events)} ` +
      `events in ${fmt(raw.seconds, 2)} s = ${fmt(raw.events / raw.seconds)} events/s; replay during restore ` +
      `is ${fmt((100 * replay_events_per_s) / (raw.events / raw.seconds), 1)} % of it (goal ≥ 50 %)`,
  );
  const sizes = await checkpointEntries(env, `${key_prefix}${app_id}:`);
  const own = await runRestore(env, {
    names: eos,
    app_id,
    key_prefix: `${key_prefix}${app_id}:`,
    batch_size_max: BATCH,
  });
  say(
    `restart with the run's checkpoints (${sizes}): ready ${fmt(own.ready_ms)} ms after start (restore ` +
      `${fmt(own.restore_s, 2)} s, ${fmt(own.events_replayed)} tail events replayed, ${fmt(own.accounts)} accounts)`,
  );
  const ckpt = await createStreamTopics(env, `${prefix}-ckpt`);
  const ckpt_app = `${prefix}-ckpt`;
  const checkpoints = new Checkpoints({
    redis: env.redis,
    log: env.log,
    metrics: createMetrics(),
    key_prefix: `${key_prefix}${ckpt_app}:`,
    log_interval_ms: 10_000,
  });
  const synthetic = await writeSyntheticCheckpoints(
    checkpoints,
    CHECKPOINT_ACCOUNTS,
    PARTITIONS,
    config.checkpoint_dirty_max,
  );
  say(
    `synthetic checkpoint: ${fmt(synthetic.accounts)} accounts (${fmt(synthetic.bytes / 1e6, 1)} MB of account ` +
      `records) built in ${fmt(synthetic.build_ms / 1000, 1)} s, written in ${fmt(synthetic.write_ms / 1000, 1)} s`,
  );
  const big = await runRestore(env, {
    names: ckpt,
    app_id: ckpt_app,
    key_prefix: `${key_prefix}${ckpt_app}:`,
    batch_size_max: BATCH,
  });
  say(
    `restart with ${fmt(big.accounts)} accounts checkpointed: ready ${fmt(big.ready_ms)} ms after start ` +
      `(restore ${fmt(big.restore_s, 2)} s; lanes booted before the clock in ${fmt(big.lanes_boot_ms)} ms)`,
  );
  say(`  cpu ${cpuLine(big.cpu, big.ready_ms / 1000)}`);
}

/**
 * Reads every partition of `topic` from the start with the restore's own reader (replayPartitions on the
 * node's port) and a handler that only counts: the restore's ceiling on this broker, without the lanes.
 */
async function rawRead(env: Env, topic: string): Promise<{ events: number; seconds: number }> {
  const targets = new Map(
    Array.from({ length: PARTITIONS }, (_, p) => [p, { from: 0n, to_min: 0n, settled: true }] as const),
  );
  let events = 0;
  const t0 = performance.now();
  await replayPartitions({
    kafka: env.port,
    topic,
    group_prefix: `${prefix}-rawread`,
    targets,
    timeout_ms: 600_000,
    log: env.log,
    onEvents: async (_partition, values) => {
      events += values.length;
    },
  });
  return { events, seconds: (performance.now() - t0) / 1000 };
}

/** Entries per kind in the checkpoint hashes under `prefix` (see src/streams/checkpoint.lua). */
async function checkpointEntries(env: Env, prefix: string): Promise<string> {
  const counts = { accounts: 0, payments: 0, tokens: 0, idempotency_records: 0 };
  let cursor = '0';
  do {
    const [next, keys] = await env.redis.scan(cursor, 'MATCH', `${prefix}ckpt:*:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const n = await env.redis.hlen(key);
      if (key.endsWith(':a')) counts.accounts += n;
      else if (key.endsWith(':p')) counts.payments += n;
      else if (key.endsWith(':t')) counts.tokens += n;
      else counts.idempotency_records += n;
    }
  } while (cursor !== '0');
  return Object.entries(counts)
    .map(([k, n]) => `${fmt(n)} ${k}`)
    .join(', ');
}

async function cleanUp(env: Env): Promise<void> {
  try {
    if (created_topics.length > 0) await env.admin.deleteTopics({ topics: created_topics, timeout: 30_000 });
  } catch (err) {
    note(`cleanup: deleteTopics failed: ${(err as Error).message}`);
  }
  try {
    const groups = await env.admin.listGroups();
    const ours = groups.groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
    if (ours.length > 0) await env.admin.deleteGroups(ours);
  } catch (err) {
    note(`cleanup: deleteGroups failed: ${(err as Error).message}`);
  }
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await env.redis.scan(cursor, 'MATCH', `${key_prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await env.redis.unlink(...keys);
  } while (cursor !== '0');
  note(`cleanup: ${created_topics.length} topics, Redis keys ${deleted} (${key_prefix}*)`);
}

main().catch((err) => {
  note(`bench:stream failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});

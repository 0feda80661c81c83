/**
 * Runs of the real StreamProcessor + Lanes + Checkpoints, wired as src/node.ts wires them, for the stream
 * benchmark: a processing run until the group's committed offsets stop moving, and a restore run until the
 * processor is ready. Also CPU accounting per process/thread from /proc (where the time goes).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Admin, Kafka } from 'kafkajs';
import type { Histogram } from 'prom-client';
import { Lanes } from '../src/actors/lanes.js';
import type { Config } from '../src/config.js';
import type { Logger } from '../src/log.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import { Checkpoints } from '../src/streams/checkpoints.js';
import type { KafkaPort } from '../src/streams/kafka-port.js';
import { StreamProcessor } from '../src/streams/processor.js';
import { replayPartitions } from '../src/streams/restore.js';
import type { TopicNames } from '../src/streams/topics.js';
import type { CommitterFactory } from '../src/streams/transaction.js';

/**
 * What exactly-once costs is measured against this: no transactions, a plain idempotent producer per
 * partition, and the consumer commits the offset after the records are produced, so a crash between the two
 * applies the chunk twice. Bench only: the node has no way to select it.
 */
const atLeastOnceCommitter: CommitterFactory = (ctx) => {
  const producer = ctx.kafka.producer();
  return {
    connect: () => producer.connect(),
    commit: async ({ offset, records }) => {
      const acks = records.length > 0 ? await producer.sendBatch({ topicMessages: records, acks: -1 }) : [];
      await ctx.commitOffsets([{ partition: offset.partition, offset: offset.offset.toString() }]);
      return acks;
    },
    disconnect: () => producer.disconnect(),
  };
};

export interface Env {
  /** A plain kafkajs client for the fixtures (preload, admin): independent of the node's client. */
  kafka: Kafka;
  /** The node's port (@platformatic/kafka): what the processor and the replay use. */
  port: KafkaPort;
  admin: Admin;
  redis: Redis;
  log: Logger;
  config: Config;
  partitions_total: number;
  broker_pid: number | null;
  redis_pid: number | null;
}

interface Wired {
  processor: StreamProcessor;
  lanes: Lanes;
  metrics: Metrics;
  /** Worker threads started and their modules loaded (under tsx: compiled), before any clock starts. */
  lanes_boot_ms: number;
}

async function wire(
  env: Env,
  o: {
    names: TopicNames;
    app_id: string;
    key_prefix: string;
    batch_size_max: number;
    guarantee: 'exactly_once' | 'at_least_once';
  },
): Promise<Wired> {
  const { config, partitions_total } = env;
  const metrics = createMetrics();
  const t0 = performance.now();
  const lanes = new Lanes({
    lanes: config.lanes_effective,
    partitions_total,
    lane_queue_max: config.lane_batches_in_flight_max * partitions_total,
  });
  await lanes.stats();
  const lanes_boot_ms = performance.now() - t0;
  const checkpoints = new Checkpoints({
    redis: env.redis,
    log: env.log,
    metrics,
    key_prefix: o.key_prefix,
    log_interval_ms: 10_000,
  });
  const processor = new StreamProcessor({
    kafka: env.port,
    lanes,
    checkpoints,
    names: o.names,
    app_id: o.app_id,
    partitions_total,
    batch_size_max: o.batch_size_max,
    checkpoint_interval_ms: config.checkpoint_interval_ms,
    checkpoint_dirty_max: config.checkpoint_dirty_max,
    session_timeout_ms: config.session_timeout_ms,
    restore_timeout_ms: 600_000,
    log: env.log,
    metrics,
    ...(o.guarantee === 'at_least_once' ? { committer: atLeastOnceCommitter } : {}),
    // As the node does (transaction_scope auto): one transaction per node commit.
    ...(o.guarantee === 'exactly_once'
      ? {
          transactions: {
            per: 'node' as const,
            node_id: o.app_id,
            commit_interval_ms: config.commit_interval_ms,
            records_max: config.commit_records_max,
          },
        }
      : {}),
  });
  return { processor, lanes, metrics, lanes_boot_ms };
}

export interface HistogramSummary {
  count: number;
  sum: number;
  /** Upper bound of the bucket holding the q-quantile (coarse: the histogram's own buckets). */
  quantile: (q: number) => number;
}

export async function summarize(h: Histogram): Promise<HistogramSummary> {
  const { values } = await h.get();
  let count = 0;
  let sum = 0;
  const buckets: { le: number; n: number }[] = [];
  for (const v of values) {
    if (v.metricName?.endsWith('_count')) count = v.value;
    else if (v.metricName?.endsWith('_sum')) sum = v.value;
    else if (v.metricName?.endsWith('_bucket')) {
      const le = v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le);
      buckets.push({ le, n: v.value });
    }
  }
  buckets.sort((a, b) => a.le - b.le);
  const quantile = (q: number) => buckets.find((b) => b.n >= q * count)?.le ?? Number.POSITIVE_INFINITY;
  return { count, sum, quantile };
}

/** CPU seconds (user + system) of a process, or of one thread of this process. */
function cpuSeconds(stat_path: string): number {
  try {
    const text = readFileSync(stat_path, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ (100)
  } catch {
    return Number.NaN;
  }
}

export interface CpuSample {
  node_main_s: number;
  node_total_s: number;
  broker_s: number;
  redis_s: number;
  system_busy_s: number;
  /** Time during which some runnable task waited for a CPU (PSI "some"), seconds. */
  pressure_s: number;
}

function cpuPressureSeconds(): number {
  try {
    const total = /some .*total=(\d+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1];
    return Number(total) / 1e6;
  } catch {
    return Number.NaN;
  }
}

function systemBusySeconds(): number {
  const [cpu] = readFileSync('/proc/stat', 'utf8').split('\n');
  const f = cpu!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return (total - idle) / 100;
}

export function sampleCpu(env: Env): CpuSample {
  return {
    node_main_s: cpuSeconds(`/proc/self/task/${process.pid}/stat`),
    node_total_s: cpuSeconds('/proc/self/stat'),
    broker_s: env.broker_pid ? cpuSeconds(`/proc/${env.broker_pid}/stat`) : Number.NaN,
    redis_s: env.redis_pid ? cpuSeconds(`/proc/${env.redis_pid}/stat`) : Number.NaN,
    system_busy_s: systemBusySeconds(),
    pressure_s: cpuPressureSeconds(),
  };
}

export function cpuDelta(a: CpuSample, b: CpuSample): CpuSample {
  return {
    node_main_s: b.node_main_s - a.node_main_s,
    node_total_s: b.node_total_s - a.node_total_s,
    broker_s: b.broker_s - a.broker_s,
    redis_s: b.redis_s - a.redis_s,
    system_busy_s: b.system_busy_s - a.system_busy_s,
    pressure_s: b.pressure_s - a.pressure_s,
  };
}

/** Thread count of this process, for the report (lanes, libuv, V8 helpers). */
export function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

async function waitReady(processor: StreamProcessor, timeout_ms: number): Promise<void> {
  const deadline = performance.now() + timeout_ms;
  while (!processor.ready) {
    if (performance.now() > deadline) throw new Error(`processor not ready after ${timeout_ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface LoopResult {
  guarantee: string;
  /** Command records applied (client commands + follow-up legs), from the batch-size histogram. */
  records_applied: number;
  elapsed_s: number;
  ready_ms: number;
  transactions: HistogramSummary;
  batches: HistogramSummary;
  aborted: number;
  cpu: CpuSample;
}

/**
 * Starts a processor on `names`, waits until ready (group joined, nothing to restore), then measures until
 * every committed offset of the group stopped moving for `quiet_ms` after at least `records_min` records were
 * applied and a read_committed scan finds no data record after them. The end time is the first poll that saw
 * the final offsets (poll every 100 ms). Transaction commit markers take offsets too, so "committed = high
 * watermark" cannot be the criterion under exactly-once.
 */
export async function runLoop(
  env: Env,
  o: {
    names: TopicNames;
    app_id: string;
    key_prefix: string;
    batch_size_max: number;
    guarantee: 'exactly_once' | 'at_least_once';
    records_min: number;
    timeout_ms: number;
    progress: (line: string) => void;
  },
): Promise<LoopResult> {
  const { processor, lanes, metrics } = await wire(env, o);
  const t_start = performance.now();
  try {
    await processor.start();
    await waitReady(processor, 60_000);
    const t0 = performance.now();
    const cpu0 = sampleCpu(env);
    const t_end = await waitQuiet(env, `${o.app_id}.processor`, o.names.commands, {
      applied: async () => (await summarize(metrics.batch_size_commands)).sum,
      records_min: o.records_min,
      quiet_ms: 3_000,
      timeout_ms: o.timeout_ms,
      started: t0,
      progress: o.progress,
    });
    const cpu = cpuDelta(cpu0, sampleCpu(env));
    return {
      guarantee: o.guarantee,
      records_applied: (await summarize(metrics.batch_size_commands)).sum,
      elapsed_s: (t_end - t0) / 1000,
      ready_ms: t0 - t_start,
      transactions: await summarize(metrics.transaction_commit_duration_seconds),
      batches: await summarize(metrics.batch_size_commands),
      aborted: (await metrics.transactions_aborted_total.get()).values[0]?.value ?? 0,
      cpu,
    };
  } finally {
    await processor.stop();
    await lanes.close();
  }
}

async function waitQuiet(
  env: Env,
  group_id: string,
  topic: string,
  o: {
    applied: () => Promise<number>;
    records_min: number;
    quiet_ms: number;
    timeout_ms: number;
    started: number;
    progress: (line: string) => void;
  },
): Promise<number> {
  let last_signature = '';
  let last_change = performance.now();
  let verify_after = 0;
  let last_progress = last_change;
  for (;;) {
    const now = performance.now();
    if (now - o.started > o.timeout_ms) throw new Error(`not drained after ${o.timeout_ms} ms`);
    const [offsets] = await env.admin.fetchOffsets({ groupId: group_id, topics: [topic] });
    const applied = await o.applied();
    const signature = `${applied}|${offsets?.partitions.map((p) => p.offset).join(',')}`;
    if (signature !== last_signature) {
      last_signature = signature;
      last_change = now;
    } else if (applied >= o.records_min && now - last_change >= o.quiet_ms && now >= verify_after) {
      // Quiet is not proof (a loaded machine can stall a few seconds): no data record may follow the
      // committed offsets.
      const tail = await recordsAfterCommitted(env, group_id, topic);
      if (tail === 0) return last_change;
      o.progress(`  … quiet but ${tail} records after the committed offsets; waiting`);
      verify_after = performance.now() + o.quiet_ms;
    }
    if (now - last_progress >= 10_000) {
      last_progress = now;
      const rate = Math.round(applied / ((now - o.started) / 1000));
      o.progress(`  … ${applied.toLocaleString('en-US')} records applied, ${rate.toLocaleString('en-US')}/s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Data records (read_committed; markers excluded) between the group's committed offsets and the end. */
async function recordsAfterCommitted(env: Env, group_id: string, topic: string): Promise<number> {
  const [offsets] = await env.admin.fetchOffsets({ groupId: group_id, topics: [topic] });
  const targets = new Map<number, { from: bigint }>();
  for (const p of offsets?.partitions ?? []) {
    targets.set(p.partition, { from: BigInt(p.offset === '-1' ? '0' : p.offset) });
  }
  const result = await replayPartitions({
    kafka: env.port,
    topic,
    group_prefix: `${group_id}.verify`,
    targets,
    timeout_ms: 120_000,
    log: env.log,
    onEvents: async () => {},
  });
  return result.events_replayed;
}

export interface RestoreResult {
  lanes_boot_ms: number;
  /** From processor.start() (lanes already up) to ready: group join, checkpoint load, replay. */
  ready_ms: number;
  restore_s: number;
  events_replayed: number;
  accounts: number;
  cpu: CpuSample;
}

/** A fresh processor (fresh lanes) on `names`; time from start() to ready, and what the restore did. */
export async function runRestore(
  env: Env,
  o: { names: TopicNames; app_id: string; key_prefix: string; batch_size_max: number },
): Promise<RestoreResult> {
  const { processor, lanes, metrics, lanes_boot_ms } = await wire(env, { ...o, guarantee: 'exactly_once' });
  try {
    const cpu0 = sampleCpu(env);
    const t0 = performance.now();
    await processor.start();
    await waitReady(processor, 600_000);
    const ready_ms = performance.now() - t0;
    const cpu = cpuDelta(cpu0, sampleCpu(env));
    const stats = await lanes.stats();
    return {
      lanes_boot_ms,
      ready_ms,
      restore_s: (await summarize(metrics.restore_duration_seconds)).sum,
      events_replayed: (await metrics.restore_events_replayed_total.get()).values[0]?.value ?? 0,
      accounts: stats.reduce((a, s) => a + s.accounts, 0),
      cpu,
    };
  } finally {
    await processor.stop();
    await lanes.close();
  }
}

/**
 * The machine is shared: load average, CPU pressure (share of time some task waited for a CPU, last 60 s)
 * and a tight integer loop (≈ 0.4 ns/iteration on an unshared modern core) put the figures in context.
 */
export function machineLine(): string {
  const [l1 = 0, l5 = 0] = loadavg();
  let pressure = 'n/a';
  try {
    pressure = `${/avg60=([\d.]+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1]} %`;
  } catch {}
  const t0 = process.hrtime.bigint();
  let x = 0;
  for (let i = 0; i < 50_000_000; i++) x = (x + i * 7) | 0;
  const ns = Number(process.hrtime.bigint() - t0) / 50_000_000;
  if (x === 0.5) throw new Error('unreachable');
  return `load average ${l1.toFixed(2)} (1 min) ${l5.toFixed(2)} (5 min); CPU pressure ${pressure}; int loop ${ns.toFixed(2)} ns/iteration`;
}

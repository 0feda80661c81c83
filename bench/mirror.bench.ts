/**
 * `npm run bench:mirror`: what MirrorMaker 2's exactly-once source (KIP-618) costs, EOS on against EOS off,
 * in ONE run on the same two local brokers (tools/kafka/kafka.sh on free ports) with the project's
 * mm2.properties (tools/kafka/mirror/mm2.properties), each mode with its own topic and its own MM2 workers.
 *
 * Per mode:
 * 1. Latency and RPO under steady load: a transactional producer (as the node writes its events topic)
 *    commits `rate` records/s in transactions every 50 ms to the primary; a read_committed consumer of the
 *    secondary's copy sees each record. Latency = seen on the secondary − committed on the primary.
 *    RPO = sampled every 100 ms, the age of the oldest committed record the secondary does not show yet:
 *    what a failover at that instant would lose.
 * 2. SIGKILL: the same load; MM2 is SIGKILLed mid-load and restarted; once the copy holds every record,
 *    duplicates = records seen − distinct records.
 * 3. Backlog catch-up: MM2 stopped, `backlog` records committed to the primary, MM2 started; records/s from
 *    the first backlog record seen on the secondary to the last.
 *
 *   node --import tsx bench/mirror.bench.ts [--quick] [--rate 1000] [--seconds 20] [--backlog 100000]
 */
import { randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { repo_root, ScriptBroker, sleep } from '../test/chaos/env.js';
import { copyOf, MirrorMaker, topicRegex } from '../test/region/mirror-maker.js';

const quick = process.argv.includes('--quick');
const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const RATE_PER_S = arg('rate', 1_000);
const STEADY_S = arg('seconds', quick ? 8 : 20);
const BACKLOG_RECORDS = arg('backlog', quick ? 20_000 : 100_000);
const TXN_INTERVAL_MS = 50;
const RPO_SAMPLE_MS = 100;
const COPY_TIMEOUT_MS = 120_000;
const PARTITIONS = 8;
const PAD = 'x'.repeat(200); // an event record is a few hundred bytes
const say = (line: string) => process.stdout.write(`${line}\n`);

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** The secondary's copy, read_committed from the beginning: how often each record id was seen, and when. */
class CopyTail {
  readonly counts = new Map<string, number>();
  readonly first_seen_ms = new Map<string, number>();
  received = 0;
  readonly #kafka: Kafka;
  readonly #topic: string;
  #consumer: ReturnType<Kafka['consumer']> | null = null;

  constructor(brokers: string[], topic: string) {
    this.#kafka = new Kafka({ brokers, clientId: 'mirror-bench-tail', logLevel: logLevel.NOTHING });
    this.#topic = topic;
  }

  async start(): Promise<void> {
    const admin = this.#kafka.admin();
    await admin.connect();
    const deadline_ms = Date.now() + COPY_TIMEOUT_MS;
    while (!(await admin.listTopics()).includes(this.#topic)) {
      if (Date.now() > deadline_ms) throw new Error(`${this.#topic} never appeared on the secondary`);
      await sleep(200);
    }
    await admin.disconnect();
    this.#consumer = this.#kafka.consumer({
      groupId: `mirror-bench-${randomUUID()}`,
      readUncommitted: false,
      maxWaitTimeInMs: 50,
    });
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topic: this.#topic, fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const now = Date.now();
        for (const m of batch.messages) {
          const id = m.key?.toString() ?? '';
          this.received++;
          const n = this.counts.get(id) ?? 0;
          this.counts.set(id, n + 1);
          if (n === 0) this.first_seen_ms.set(id, now);
        }
      },
    });
  }

  /** Resolves when every id is seen (bounded). */
  async waitFor(ids: string[], timeout_ms = COPY_TIMEOUT_MS): Promise<void> {
    const deadline_ms = Date.now() + timeout_ms;
    let i = 0;
    while (Date.now() < deadline_ms) {
      while (i < ids.length && this.counts.has(ids[i]!)) i++;
      if (i === ids.length) return;
      await sleep(50);
    }
    throw new Error(`copy ${this.#topic}: ${ids.length - i} of ${ids.length} records never arrived`);
  }

  async stop(): Promise<void> {
    await this.#consumer?.disconnect();
  }
}

/** Commits records to the primary in transactions: `rate` per second, or as fast as it can. */
class Writer {
  readonly committed_ms = new Map<string, number>();
  readonly order: string[] = [];
  #next = 0;
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #tag: string;

  constructor(kafka: Kafka, topic: string, tag: string) {
    this.#topic = topic;
    this.#tag = tag;
    this.#producer = kafka.producer({
      transactionalId: `mirror-bench-${tag}-${randomUUID()}`,
      idempotent: true,
      maxInFlightRequests: 1,
      // README trap: the next transaction's first send meets CONCURRENT_TRANSACTIONS for a moment.
      retry: { initialRetryTime: 20, retries: 20 },
    });
  }

  connect = () => this.#producer.connect();
  disconnect = () => this.#producer.disconnect();

  async commit(count: number): Promise<void> {
    const messages = [];
    for (let k = 0; k < count; k++) {
      const id = `${this.#tag}-${this.#next++}`;
      messages.push({ key: id, value: `{"id":"${id}","pad":"${PAD}"}`, partition: this.#next % PARTITIONS });
    }
    const txn = await this.#producer.transaction();
    try {
      await txn.send({ topic: this.#topic, messages });
      await txn.commit();
    } catch (err) {
      await txn.abort().catch(() => {});
      throw err;
    }
    const now = Date.now();
    for (const m of messages) {
      this.committed_ms.set(m.key, now);
      this.order.push(m.key);
    }
  }

  /** `rate` records/s for `seconds`, one transaction per TXN_INTERVAL_MS; `on_tick` after each. */
  async steady(seconds: number, on_tick?: () => void): Promise<void> {
    const per_txn = Math.max(1, Math.round((RATE_PER_S * TXN_INTERVAL_MS) / 1000));
    const end_ms = Date.now() + seconds * 1000;
    let due_ms = Date.now();
    while (Date.now() < end_ms) {
      await this.commit(per_txn);
      on_tick?.();
      due_ms += TXN_INTERVAL_MS;
      const wait_ms = due_ms - Date.now();
      if (wait_ms > 0) await sleep(wait_ms);
    }
  }
}

interface ModeResult {
  mode: string;
  latency_ms: { p50: number; p99: number; max: number; samples: number };
  /** What the writer reached of RATE_PER_S (it falls short when the machine is busy). */
  steady_rate_per_s: number;
  rpo_ms: { p50: number; p99: number; max: number };
  kill: { records: number; received: number; duplicates: number; restart_ms: number };
  backlog: { records: number; records_per_s: number; catch_up_ms: number };
}

async function runMode(primary: ScriptBroker, secondary: ScriptBroker, exactly_once: boolean) {
  const mode = exactly_once ? 'eos' : 'noeos';
  const topic = `mirror_bench_${mode}_${randomUUID().slice(0, 6)}.events`;
  const kafka = new Kafka({ brokers: primary.brokers, clientId: 'mirror-bench', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }] });
  await admin.disconnect();
  const internal = (name: string) => `secondary.${name}.storage.topic = mm2-${name}s-${mode}.internal`;
  const mm2 = new MirrorMaker({
    source: primary.brokers,
    target: secondary.brokers,
    topics: topicRegex(topic),
    exactly_once,
    cache_dir: join(repo_root, '.cache', `mirror-bench-${mode}-${process.pid}`),
    // Each mode its own workers: a group, config/offset/status topics (and so transactional ids) of its own.
    extra_properties: [
      `secondary.group.id = mm2-bench-${mode}`,
      internal('offset'),
      internal('config'),
      internal('status'),
    ],
  });
  try {
    const result = await measure(mm2, kafka, topic, secondary, mode);
    await mm2.dispose();
    return result;
  } catch (err) {
    await mm2.kill().catch(() => {}); // never leave a JVM behind; its log stays for a look
    throw err;
  }
}

async function measure(
  mm2: MirrorMaker,
  kafka: Kafka,
  topic: string,
  secondary: ScriptBroker,
  mode: string,
): Promise<ModeResult> {
  const writer = new Writer(kafka, topic, mode);
  await writer.connect();
  await writer.commit(1); // the topic has data before MM2's first look
  say(`[${mode}] starting MirrorMaker (log ${mm2.log_file})`);
  await mm2.start();
  const tail = new CopyTail(secondary.brokers, copyOf(topic));
  await tail.start();
  await tail.waitFor(writer.order);

  // 1. Steady load: latency and RPO.
  const steady_from = writer.order.length;
  const rpo_samples: number[] = [];
  let oldest = steady_from;
  let last_sample_ms = 0;
  const sample = () => {
    const now = Date.now();
    if (now - last_sample_ms < RPO_SAMPLE_MS) return;
    last_sample_ms = now;
    while (oldest < writer.order.length && tail.counts.has(writer.order[oldest]!)) oldest++;
    const id = writer.order[oldest];
    rpo_samples.push(id === undefined ? 0 : now - writer.committed_ms.get(id)!);
  };
  const sampler = setInterval(sample, RPO_SAMPLE_MS / 2);
  await writer.steady(STEADY_S, sample);
  const steady_ids = writer.order.slice(steady_from);
  const steady_rate_per_s = Math.round(steady_ids.length / STEADY_S);
  await tail.waitFor(steady_ids);
  clearInterval(sampler);
  const latencies = steady_ids
    .map((id) => tail.first_seen_ms.get(id)! - writer.committed_ms.get(id)!)
    .sort((a, b) => a - b);
  rpo_samples.sort((a, b) => a - b);
  say(
    `[${mode}] steady: latency p50 ${percentile(latencies, 0.5)} ms, p99 ${percentile(latencies, 0.99)} ms`,
  );

  // 2. SIGKILL mid-load, restart at once.
  const kill_from = writer.order.length;
  const received_before = tail.received;
  let restart_ms = 0;
  const killer = (async () => {
    await sleep(Math.max(2_000, (STEADY_S * 1000) / 4));
    restart_ms = await mm2.killAndRestart();
  })();
  // Its failure surfaces here, after the load, not as an unhandled rejection while the load runs.
  const killed = killer.then(
    () => null,
    (err: unknown) => err,
  );
  await writer.steady(Math.max(6, STEADY_S / 2));
  const kill_error = await killed;
  if (kill_error) throw kill_error;
  const kill_ids = writer.order.slice(kill_from);
  await tail.waitFor(kill_ids);
  await sleep(2_000); // re-delivered records of the dead worker may trail the last new one
  const records_total = writer.order.length;
  const received_total = tail.received;
  const duplicates = received_total - tail.counts.size;
  say(
    `[${mode}] SIGKILL: ${kill_ids.length} records written around it, ${received_total - received_before} ` +
      `received, duplicates in the whole copy ${duplicates} (restart ${restart_ms} ms)`,
  );

  // 3. Backlog: MM2 down while BACKLOG_RECORDS are committed, then started.
  await mm2.stop();
  const backlog_from = writer.order.length;
  for (let left = BACKLOG_RECORDS; left > 0; left -= 1_000) await writer.commit(Math.min(1_000, left));
  const backlog_ids = writer.order.slice(backlog_from);
  await mm2.start();
  await tail.waitFor(backlog_ids, COPY_TIMEOUT_MS * 2);
  const seen = backlog_ids.map((id) => tail.first_seen_ms.get(id)!);
  const catch_up_ms = Math.max(1, Math.max(...seen) - Math.min(...seen));
  const records_per_s = Math.round((backlog_ids.length / catch_up_ms) * 1000);
  say(`[${mode}] backlog: ${backlog_ids.length} records in ${catch_up_ms} ms = ${records_per_s} records/s`);

  await tail.stop();
  await writer.disconnect();
  const result: ModeResult = {
    mode,
    latency_ms: {
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      max: latencies.at(-1) ?? Number.NaN,
      samples: latencies.length,
    },
    steady_rate_per_s,
    rpo_ms: {
      p50: percentile(rpo_samples, 0.5),
      p99: percentile(rpo_samples, 0.99),
      max: rpo_samples.at(-1) ?? Number.NaN,
    },
    kill: { records: records_total, received: received_total, duplicates, restart_ms },
    backlog: { records: backlog_ids.length, records_per_s, catch_up_ms },
  };
  return result;
}

async function main(): Promise<void> {
  say(
    `bench:mirror ${new Date().toISOString()} on ${cpus().length}× ${cpus()[0]?.model ?? '?'}, Node ` +
      `${process.version}, load average ${loadavg()[0]!.toFixed(2)}; rate ${RATE_PER_S}/s for ${STEADY_S} s, ` +
      `backlog ${BACKLOG_RECORDS}`,
  );
  const [primary, secondary] = await Promise.all([
    ScriptBroker.ephemeral('mirror-bench-primary'),
    ScriptBroker.ephemeral('mirror-bench-secondary'),
  ]);
  const results: ModeResult[] = [];
  try {
    await Promise.all([primary.start(), secondary.start()]);
    say(`primary ${primary.brokers}, secondary ${secondary.brokers}`);
    results.push(await runMode(primary, secondary, true));
    results.push(await runMode(primary, secondary, false));
  } finally {
    await Promise.all([primary.dispose(), secondary.dispose()]);
  }
  const [on, off] = results as [ModeResult, ModeResult];
  say('');
  say('| MirrorMaker 2 | EOS on | EOS off | on / off |');
  say('|---|---|---|---|');
  const row = (name: string, a: number, b: number, unit: string) =>
    say(
      `| ${name} | ${a.toLocaleString('en')} ${unit} | ${b.toLocaleString('en')} ${unit} | ${b > 0 ? `${(a / b).toFixed(2)}×` : '–'} |`,
    );
  row('steady load reached', on.steady_rate_per_s, off.steady_rate_per_s, 'records/s');
  row('replication latency p50', on.latency_ms.p50, off.latency_ms.p50, 'ms');
  row('replication latency p99', on.latency_ms.p99, off.latency_ms.p99, 'ms');
  row('replication latency max', on.latency_ms.max, off.latency_ms.max, 'ms');
  row('RPO (replication lag) p50', on.rpo_ms.p50, off.rpo_ms.p50, 'ms');
  row('RPO (replication lag) p99', on.rpo_ms.p99, off.rpo_ms.p99, 'ms');
  row('backlog catch-up', on.backlog.records_per_s, off.backlog.records_per_s, 'records/s');
  say(
    `| duplicates in the copy after a SIGKILL | ${on.kill.duplicates} of ${on.kill.records} | ` +
      `${off.kill.duplicates} of ${off.kill.records} | |`,
  );
  say(`| restart after SIGKILL | ${on.kill.restart_ms} ms | ${off.kill.restart_ms} ms | |`);
  say('');
  say(JSON.stringify(results));
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench:mirror: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);

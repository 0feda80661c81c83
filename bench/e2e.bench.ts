/**
 * End-to-end benchmark: `npm run bench:e2e [-- --quick] [--duration S] [--rate R] [--connections C]
 * [--ws-connections N --pipeline P] [--threads T] [--accounts A] [--partitions P] [--pg-pool N]
 * [--skip hello,node,ws,fastify,broker] [--cpu-prof DIR]`.
 *
 * Everything through the same generator (loadtest/), the same workload and the same machine, in one run:
 *   1. baseline (a) uWebSockets.js hello world: closed loop, C connections (the machine's HTTP ceiling)
 *   2. the node (dist/node.js, fresh topics): closed-loop HTTP (C connections), WebSocket pipelined
 *   3. baseline (b) Fastify + PostgreSQL (bench/baselines/fastify-pg.ts): closed loop, then open loop at
 *      half its closed-loop capacity (the "common rate")
 *   4. the node, open loop at the common rate and at the goal rate (default 10,000/s), then --verify
 *   5. baseline (c) the broker's raw produce limit (kafka-producer-perf-test, acks=all) with the mean
 *      size of the node's own command records (key + value + headers), read back from its topic
 * Prints one table and the ratios; writes the JSON of every run under loadtest/reports/bench-e2e-<time>/.
 * Needs: `npm run build` (dist/), the broker (KAFKA_BROKERS or 127.0.0.1:19092), Redis, PostgreSQL
 * (PG_URL, default postgres://postgres@127.0.0.1:5432/test). Leaves no topics, keys or schemas behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { parseOptions } from '../loadtest/options.js';
import type { Report } from '../loadtest/report.js';
import { runLoadtest, type SeededAccounts, seedAccounts, summaryText } from '../loadtest/run.js';
import { createLogger } from '../src/log.js';
import { platformaticPort } from '../src/streams/platformatic/index.js';
import { ensureTopics, replyTopic, topicNames } from '../src/streams/topics.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    rate: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '64' },
    'ws-connections': { type: 'string', default: '8' },
    pipeline: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    accounts: { type: 'string' },
    partitions: { type: 'string' },
    'pg-pool': { type: 'string', default: '16' },
    'perf-records': { type: 'string' },
    skip: { type: 'string', default: '' },
    'cpu-prof': { type: 'string' },
  },
});
const QUICK = args.quick ?? false;
const DURATION_S = Number(args.duration ?? (QUICK ? 10 : 30));
const WARMUP_S = Number(args.warmup ?? (QUICK ? 2 : 5));
const GOAL_RATE = Number(args.rate);
const ACCOUNTS = Number(args.accounts ?? (QUICK ? 2000 : 10000));
const SKIP = new Set((args.skip ?? '').split(',').filter(Boolean));
const repo_root = fileURLToPath(new URL('..', import.meta.url));
const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:19092').split(',');
const redis_url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const run_id = Date.now().toString(36);
const prefix = `bench-e2e-${run_id}`;
/** The node's topic prefix. */
const node_prefix = prefix;
/** Row names of the node's runs. */
const nodeName = (run: string) => `node, ${run}`;
const report_dir = join(
  repo_root,
  'loadtest',
  'reports',
  `bench-e2e-${new Date().toISOString().replace(/[:.]/g, '-')}`,
);
const PORTS = {
  hello: 18180 + (process.pid % 50) * 3,
  node: 18181 + (process.pid % 50) * 3,
  fastify: 18182 + (process.pid % 50) * 3,
};
// Payments only (no deposits): balances then only move between the seeded accounts, so one --verify at
// the end covers every phase that ran on the node's accounts.
const MIX = 'create=75,capture=15,refund=10';

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const say = (line: string) => process.stdout.write(`${line}\n`);
const note = (line: string) => process.stderr.write(`${line}\n`);

interface Row {
  name: string;
  command: string;
  per_s: number;
  p50_ms: number | null;
  p99_ms: number | null;
  p999_ms: number | null;
  errors: number | null;
  report: Report | null;
  extra?: string;
  /** Node runs: records the node wrote during the run (end offsets of its topics), per answered payment. */
  records_per_answer?: number;
}
const rows: Row[] = [];
const children: ChildProcess[] = [];

function loadOptions(url: string, extra: string[], label: string) {
  return parseOptions([
    ...['--url', url, '--duration', String(DURATION_S), '--warmup', String(WARMUP_S)],
    ...['--threads', args.threads!, '--accounts', String(ACCOUNTS), '--mix', MIX, '--timeout', '10000'],
    ...['--connections-max', '2048', '--progress', 'plain', '--no-report', '--label', label],
    ...extra,
  ]);
}

async function phase(
  name: string,
  url: string,
  extra: string[],
  accounts: SeededAccounts | undefined,
): Promise<Report> {
  note(`\n== ${name}`);
  const o = loadOptions(url, extra, name);
  const node_run = name.startsWith('node');
  const end_before = node_run ? await nodeTopicsEnd() : 0;
  const report = await runLoadtest(o, { accounts, log: note });
  const written = node_run ? (await nodeTopicsEnd()) - end_before : 0;
  // Warm-up included on both sides: the offsets moved during the whole run.
  const answered = report.timeline.reduce((n, p) => n + p.completed - p.errors, 0);
  writeFileSync(
    join(report_dir, `${name.replace(/[^a-z0-9]+/gi, '-')}.json`),
    `${JSON.stringify(report, null, 2)}\n`,
  );
  note(summaryText(report));
  const l = report.results.latency;
  rows.push({
    name,
    command: `npm run loadtest -- ${extra.filter((a) => a !== '--no-seed').join(' ')}`.trim(),
    per_s: report.results.ok_per_s,
    p50_ms: l.p50_ms,
    p99_ms: l.p99_ms,
    p999_ms: l.p999_ms,
    errors: report.results.errors,
    report,
    ...(node_run && answered > 0 ? { records_per_answer: written / answered } : {}),
  });
  return report;
}

/**
 * Sum of the end offsets of the node's topics (commands with their follow-up legs, events, its reply topic):
 * every record it wrote, transaction markers included (the broker writes and replicates those too).
 */
async function nodeTopicsEnd(): Promise<number> {
  const kafka = new Kafka({ brokers, clientId: 'bench-e2e-offsets', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const names = topicNames(node_prefix);
    let total = 0;
    for (const topic of [names.commands, names.events, replyTopic(node_prefix, `bench-${run_id}`)]) {
      for (const p of await admin.fetchTopicOffsets(topic)) total += Number(p.high);
    }
    return total;
  } finally {
    await admin.disconnect();
  }
}

async function startServer(name: string, cmd: string[], env: Record<string, string>, ready_url: string) {
  const child = spawn(process.execPath, cmd, {
    cwd: repo_root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const output: string[] = [];
  const keep = (d: Buffer) => {
    output.push(d.toString());
    if (output.length > 200) output.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}:\n${output.join('')}`);
    const ok = await fetch(ready_url).then(
      (r) => r.status < 500,
      () => false,
    );
    if (ok) return { child, output };
    await new Promise((r) => setTimeout(r, 250));
  }
  child.kill('SIGKILL');
  throw new Error(`${name} not ready in 120 s:\n${output.join('')}`);
}

async function stopServer(child: ChildProcess, timeout_ms = 20_000): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeout_ms);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------- phases

async function helloPhase(): Promise<void> {
  const url = `http://127.0.0.1:${PORTS.hello}`;
  const { child } = await startServer(
    'uws-hello',
    ['--import', 'tsx', 'bench/baselines/uws-hello.ts', String(PORTS.hello)],
    {},
    `${url}/`,
  );
  try {
    await phase(
      '(a) uWS hello world, closed loop',
      url,
      ['--connections', args.connections!, '--no-seed', '--mix', 'create=1'],
      undefined,
    );
  } finally {
    await stopServer(child);
  }
}

async function fastifyPhases(): Promise<number> {
  const url = `http://127.0.0.1:${PORTS.fastify}`;
  const schema = `bench_e2e_${run_id}`;
  const { child } = await startServer(
    'fastify-pg',
    ['--import', 'tsx', 'bench/baselines/fastify-pg.ts', String(PORTS.fastify), schema],
    { PG_POOL: args['pg-pool']! },
    `${url}/v1/accounts/none`,
  );
  try {
    const o = loadOptions(url, [], 'seed');
    const accounts = await seedAccounts(o, note);
    const closed = await phase(
      '(b) Fastify + PostgreSQL, closed loop',
      url,
      ['--connections', args.connections!],
      accounts,
    );
    const rate = Math.max(50, Math.round((closed.results.ok_per_s * 0.5) / 50) * 50);
    await phase(`(b) Fastify + PostgreSQL, open loop ${rate}/s`, url, ['--rate', String(rate)], accounts);
    return rate;
  } finally {
    await stopServer(child);
  }
}

interface NodeRun {
  child: ChildProcess;
  url: string;
  accounts: SeededAccounts;
}

async function startNode(): Promise<NodeRun> {
  const url = `http://127.0.0.1:${PORTS.node}`;
  const env: Record<string, string> = {
    KAFKA_BROKERS: brokers.join(','),
    REDIS_URL: redis_url,
    TOPIC_PREFIX: node_prefix,
    REDIS_KEY_PREFIX: `${node_prefix}:`,
    NODE_ID: `bench-${run_id}`,
    PORT: String(PORTS.node),
    LOG_LEVEL: 'warn',
    // The per-merchant limit (default 5,000/s) would cap the bench: the generator is one merchant.
    RATE_LIMIT_PER_S: '10000000',
    RATE_LIMIT_BURST: '10000000',
    // The default risk rules (20 payments a minute per account) would turn most of the load into
    // `402 velocity_exceeded`: a few thousand accounts at thousands of payments/s pay several times a second.
    RISK_VELOCITY_COUNT_MAX: '10000',
    RISK_AMOUNT_PER_DAY_MAX: '1000000000000',
  };
  if (args.partitions) env.PARTITIONS = args.partitions;
  const cmd = ['dist/node.js'];
  if (args['cpu-prof']) cmd.unshift('--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`);
  await precreateTopics(env.NODE_ID!);
  const child = await startNodeRetrying(cmd, env, url);
  const ready = Date.now() + 120_000;
  while (Date.now() < ready && (await fetch(`${url}/readyz`).then((r) => r.status)) !== 200)
    await new Promise((r) => setTimeout(r, 250));
  const accounts = await seedAccounts(loadOptions(url, [], 'seed'), note);
  return { child, url, accounts };
}

/**
 * Creates the node's topics before it starts and waits until every partition answers ListOffsets. Why:
 * on a loaded broker, partitions of a just-created 64-partition topic can answer NOT_LEADER for a while
 * after `createTopics({waitForLeaders})` returns, and the node treats that error at assignment as fatal
 * (reported to the stream owners). The node then finds its topics existing, as in production.
 */
async function precreateTopics(node_id: string): Promise<void> {
  // The node's own ensureTopics, over the node's client (the port's admin).
  const log = createLogger('silent', 'bench-e2e');
  const admin = platformaticPort({ brokers, client_id: 'bench-e2e', log }).admin();
  await admin.connect();
  try {
    await ensureTopics(admin, {
      prefix: node_prefix,
      node_id,
      partitions: Number(args.partitions ?? 64),
      replication_factor: 1,
    });
    const names = topicNames(node_prefix);
    const deadline = Date.now() + 60_000;
    for (let attempt = 0; attempt < 120 && Date.now() < deadline; attempt++) {
      const ok = await Promise.all(
        [names.commands, names.events, replyTopic(node_prefix, node_id)].map((t) => admin.topicOffsets(t)),
      ).then(
        () => true,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await admin.disconnect();
  }
}

/** Starts the node; one more try if it dies during startup (see precreateTopics). */
async function startNodeRetrying(
  cmd: string[],
  env: Record<string, string>,
  url: string,
): Promise<ChildProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await startServer('node', cmd, env, `${url}/readyz`)).child;
    } catch (e) {
      if (attempt >= 2) throw e;
      note(`node failed to start (${String(e).split('\n')[0]}); retrying once`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

async function commandRecordSize(): Promise<number> {
  const kafka = new Kafka({ brokers, clientId: 'bench-e2e', logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `${prefix}-size`, readUncommitted: false });
  let bytes = 0;
  let records = 0;
  await consumer.connect();
  await consumer.subscribe({ topic: `${prefix}.commands`, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          let h = 0;
          for (const [k, v] of Object.entries(m.headers ?? {})) h += k.length + (v ? String(v).length : 0);
          bytes += (m.key?.length ?? 0) + (m.value?.length ?? 0) + h;
          records++;
        }
        if (records >= 5000) resolve();
      },
    });
    setTimeout(resolve, 15_000);
  });
  await done;
  await consumer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteGroups([`${prefix}-size`]).catch(() => {});
  await admin.disconnect();
  return records > 0 ? Math.round(bytes / records) : 0;
}

async function brokerPhase(record_size: number, partitions: number): Promise<void> {
  note('\n== (c) broker raw produce limit');
  const kafka = new Kafka({ brokers, clientId: 'bench-e2e', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `${prefix}-perf`;
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
  });
  const records = Number(args['perf-records'] ?? (QUICK ? 200_000 : 1_000_000));
  const cmd = [
    `${repo_root}tools/kafka/kafka.sh`,
    ...['tool', 'producer-perf-test', '--topic', topic, '--num-records', String(records)],
    ...['--record-size', String(record_size), '--throughput', '-1'],
    ...['--producer-props', `bootstrap.servers=${brokers.join(',')}`, 'acks=all'],
  ];
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('bash', cmd, { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      let text = '';
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString();
      });
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0 ? resolve(text) : reject(new Error(`producer-perf-test exit ${code}`)),
      );
    });
    const summary = out.trim().split('\n').at(-1) ?? '';
    const m =
      /([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency(?:, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th)?/.exec(
        summary,
      );
    if (!m) throw new Error(`producer-perf-test output not understood: ${summary}`);
    note(summary);
    rows.push({
      name: `(c) broker raw produce, ${fmt(records)} × ${record_size} B, acks=all`,
      command: `bash tools/kafka/kafka.sh tool producer-perf-test --num-records ${records} --record-size ${record_size} --throughput -1 --producer-props acks=all`,
      per_s: Number(m[1]),
      p50_ms: m[5] ? Number(m[5]) : null,
      p99_ms: m[7] ? Number(m[7]) : null,
      p999_ms: m[8] ? Number(m[8]) : null,
      errors: null,
      report: null,
      extra: `${m[2]} MB/s`,
    });
  } finally {
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
  }
}

async function cleanupNode(): Promise<void> {
  const kafka = new Kafka({ brokers, clientId: 'bench-e2e-cleanup', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter(
    (t) => t.startsWith(`${prefix}.`) || t.startsWith(`${prefix}-`),
  );
  if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => {});
  const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
  if (groups.length > 0) await admin.deleteGroups(groups).catch(() => {});
  await admin.disconnect();
  const redis = new Redis(redis_url);
  let cursor = '0';
  for (let i = 0; i < 100_000; i++) {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
    if (cursor === '0') break;
  }
  await redis.quit();
}

// ---------------------------------------------------------------- main

function printTable(): void {
  const machine = `${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? '?'}), Node ${process.versions.node}, load ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`;
  say(
    `\nEnd to end (${QUICK ? 'quick' : 'full'}; ${DURATION_S} s measured + ${WARMUP_S} s warm-up per run; ${machine})`,
  );
  say(
    `workload: ${fmt(ACCOUNTS)} customers / ${fmt(Math.max(1, Math.floor(ACCOUNTS / 10)))} merchants, mix ${MIX}, capture ratio 0.7, amounts uniform 100..10000, Idempotency-Key on every request, 5 % retried`,
  );
  const ceiling = brokerCeiling();
  say(
    '| run | answers/s (2xx + 402) | p50 ms | p99 ms | p99.9 ms | errors | records/answer | share of ceiling |',
  );
  say('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const per = r.records_per_answer === undefined ? '–' : r.records_per_answer.toFixed(2);
    const share =
      ceiling === null || r.report === null ? '–' : `${((100 * r.per_s) / ceiling.per_s).toFixed(1)} %`;
    say(
      `| ${r.name} | ${fmt(r.per_s)}${r.extra ? ` (${r.extra})` : ''} | ${r.p50_ms ?? '–'} | ${r.p99_ms ?? '–'} | ${r.p999_ms ?? '–'} | ${r.errors ?? '–'} | ${per} | ${share} |`,
    );
  }
  if (ceiling)
    say(
      `\nbroker-bound ceiling: ${fmt(ceiling.raw)} raw records/s ÷ ${ceiling.records_per_answer.toFixed(2)} records per answered payment (node, closed loop HTTP) = ${fmt(ceiling.per_s)} payments/s`,
    );
}

/**
 * This machine's limit for the node: the broker's raw produce rate (same record size, acks=all) divided by
 * the records the node actually wrote per answered payment in its closed-loop run.
 */
function brokerCeiling(): { raw: number; records_per_answer: number; per_s: number } | null {
  const broker = rows.find((r) => r.name.includes('broker raw'));
  const per = rows.find((r) => r.name.includes(nodeName('closed loop HTTP')))?.records_per_answer;
  if (!broker || per === undefined || per <= 0) return null;
  return { raw: broker.per_s, records_per_answer: per, per_s: broker.per_s / per };
}

function ratio(a: Row | undefined, b: Row | undefined): string {
  if (!a || !b || b.per_s === 0) return 'n/a';
  return `${(a.per_s / b.per_s).toFixed(2)}×`;
}

function printRatios(common_rate: number | null): void {
  const find = (s: string) => rows.find((r) => r.name.includes(s));
  const node_closed = find(nodeName('closed loop HTTP'));
  const node_ws = find(nodeName('WebSocket'));
  const hello = find('uWS hello');
  const fastify = find('Fastify + PostgreSQL, closed');
  const fastify_open = find('Fastify + PostgreSQL, open');
  const node_common = common_rate === null ? undefined : find(nodeName(`open loop ${common_rate}/s`));
  const node_goal = find(nodeName(`open loop ${GOAL_RATE}/s`));
  const broker = find('broker raw');
  say('\nratios (same run):');
  say(
    `  node HTTP closed loop / uWS hello world: ${ratio(node_closed, hello)} (share of the machine's HTTP ceiling)`,
  );
  say(`  node HTTP closed loop / Fastify + PostgreSQL: ${ratio(node_closed, fastify)} (goal ≥ 5×)`);
  const ceiling = brokerCeiling();
  if (ceiling && node_closed)
    say(
      `  node HTTP closed loop / broker-bound ceiling: ${((100 * node_closed.per_s) / ceiling.per_s).toFixed(1)} % (goal ≥ 25 %)`,
    );
  if (node_common && fastify_open)
    say(
      `  p99 at ${common_rate}/s open loop: node ${node_common.p99_ms} ms vs Fastify + PostgreSQL ${fastify_open.p99_ms} ms (goal: lower)`,
    );
  say(`  node WebSocket pipelined / node HTTP closed loop: ${ratio(node_ws, node_closed)}`);
  say(
    `  node HTTP closed loop / broker raw produce records/s: ${ratio(node_closed, broker)} (a payment costs ≥ 3 records: command, event, reply; legs more)`,
  );
  say('goals (issue 13):');
  const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
  if (node_closed && fastify)
    say(
      `  closed-loop HTTP ≥ 5× Fastify + PostgreSQL: ${ratio(node_closed, fastify)} → ${met(node_closed.per_s >= 5 * fastify.per_s)}`,
    );
  if (node_closed && ceiling)
    say(`  closed-loop HTTP ≥ 25 % of the ceiling: → ${met(node_closed.per_s >= 0.25 * ceiling.per_s)}`);
  if (node_common && fastify_open) {
    const p99 = node_common.p99_ms ?? 1e9;
    const ok = p99 <= 50 && p99 <= 2 * (fastify_open.p99_ms ?? 0);
    say(
      `  p99 at ${common_rate}/s ≤ 50 ms and ≤ 2× Fastify's (${fastify_open.p99_ms} ms): ${p99} ms → ${met(ok)}`,
    );
  }
  if (node_ws && node_closed)
    say(
      `  WebSocket pipelined ≥ 3× HTTP closed loop: ${ratio(node_ws, node_closed)} → ${met(node_ws.per_s >= 3 * node_closed.per_s)}`,
    );
  if (node_goal)
    say(
      `  at ${fmt(GOAL_RATE)}/s open loop: answered ${fmt(node_goal.per_s)}/s, p99 ${node_goal.p99_ms} ms, errors ${node_goal.errors}`,
    );
}

async function main(): Promise<number> {
  if (!existsSync(join(repo_root, 'dist', 'node.js')))
    throw new Error('dist/node.js missing: npm run build first');
  mkdirSync(report_dir, { recursive: true });
  let common_rate: number | null = null;
  let record_size = 0;
  let verify_ok = true;
  let node: NodeRun | null = null;
  try {
    if (!SKIP.has('hello')) await helloPhase();
    if (!SKIP.has('node')) {
      node = await startNode();
      await phase(
        nodeName('closed loop HTTP'),
        node.url,
        ['--connections', args.connections!],
        node.accounts,
      );
      if (!SKIP.has('ws'))
        await phase(
          nodeName('WebSocket pipelined'),
          node.url,
          ['--ws', '--connections', args['ws-connections']!, '--pipeline', args.pipeline!],
          node.accounts,
        );
      if (!SKIP.has('fastify')) {
        // Fastify runs while the node idles: same machine, same run.
        common_rate = await fastifyPhases();
      }
      if (common_rate !== null)
        await phase(
          nodeName(`open loop ${common_rate}/s`),
          node.url,
          ['--rate', String(common_rate)],
          node.accounts,
        );
      const last = await phase(
        nodeName(`open loop ${GOAL_RATE}/s`),
        node.url,
        ['--rate', String(GOAL_RATE), '--verify', '--verify-sample', '5000'],
        node.accounts,
      );
      verify_ok = verify_ok && (last.verify?.ok ?? false);
      record_size = await commandRecordSize();
      await stopServer(node.child);
      node = null;
    }
    if (record_size > 0) {
      note(`node command records: mean ${record_size} B (key + value + headers)`);
      if (!SKIP.has('broker')) await brokerPhase(record_size, Number(args.partitions ?? 64));
    }
  } finally {
    for (const c of children) if (c.exitCode === null) await stopServer(c);
    if (!SKIP.has('node')) await cleanupNode().catch((e: unknown) => note(`cleanup: ${String(e)}`));
  }
  printTable();
  printRatios(common_rate);
  if (args['cpu-prof'])
    say(
      `cpu profiles: ${readdirSync(args['cpu-prof']).length} files in ${args['cpu-prof']} (summary: node --import tsx bench/stream-profile.ts ${args['cpu-prof']}/*.cpuprofile)`,
    );
  writeFileSync(
    join(report_dir, 'summary.json'),
    `${JSON.stringify(
      rows.map(({ report, ...r }) => r),
      null,
      2,
    )}\n`,
  );
  say(`reports: ${report_dir}`);
  if (!verify_ok) say('VERIFY FAILED on the node (see the last run report)');
  return verify_ok ? 0 : 1;
}

process.once('SIGINT', () => {
  for (const c of children) c.kill('SIGTERM');
  void cleanupNode().finally(() => process.exit(130));
});
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    note(`bench:e2e: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);

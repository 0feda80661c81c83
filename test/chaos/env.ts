import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { freePort, type NodeProcess, startNode } from '../integration/helpers.js';
import { post } from '../support/load-driver.js';
import { FaultProxy } from './fault-proxy.js';

/**
 * The processes a chaos scenario plays with: its own Kafka broker (tools/kafka/kafka.sh on other ports and
 * another cache directory, or a broker launched here that advertises a fault proxy), its own Redis, and
 * payment nodes (dist/node.js through test/integration/helpers.ts). Nothing here touches the shared broker
 * on 19092 or the shared Redis on 6379 unless a scenario is given them explicitly.
 */
export const repo_root = resolve(import.meta.dirname, '../..');
export const chaos_dir = join(repo_root, '.cache', 'chaos');

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a command to its end (bounded: SIGKILL after timeout_ms) and gives its exit code and output. */
export function run(cmd: string, args: string[], env: Record<string, string>, timeout_ms: number) {
  return new Promise<{ code: number | null; output: string }>((done) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, cwd: repo_root });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout_ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

export interface Broker {
  readonly brokers: string[];
  start(): Promise<void>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** The chaos broker: tools/kafka/kafka.sh with its own ports and cache (never the shared 19092 one). */
export class ScriptBroker implements Broker {
  readonly port: number;
  readonly cache_dir: string;
  readonly #env: Record<string, string>;

  constructor(opts: { port?: number; controller_port?: number; cache_dir?: string; libs_dir?: string } = {}) {
    this.port = opts.port ?? 29092;
    this.cache_dir = opts.cache_dir ?? join(repo_root, '.cache', 'kafka-chaos');
    this.#env = {
      KAFKA_PORT: String(this.port),
      KAFKA_CONTROLLER_PORT: String(opts.controller_port ?? this.port + 1),
      KAFKA_CACHE_DIR: this.cache_dir,
      KAFKA_HEAP_OPTS: '-Xms256m -Xmx768m',
      ...(opts.libs_dir ? { KAFKA_LIBS_DIR: opts.libs_dir } : {}),
    };
  }

  /**
   * A throwaway broker on free ports with its own data directory (the jars are shared through
   * KAFKA_LIBS_DIR), so that two `npm test` runs on one machine never kill each other's broker.
   * `dispose()` removes it.
   */
  static async ephemeral(name: string): Promise<ScriptBroker> {
    const shared = new ScriptBroker();
    await shared.fetch();
    const cache_dir = join(repo_root, '.cache', `kafka-chaos-${name}-${process.pid}`);
    rmSync(cache_dir, { recursive: true, force: true });
    mkdirSync(cache_dir, { recursive: true });
    return new ScriptBroker({
      port: await freePort(),
      controller_port: await freePort(),
      cache_dir,
      libs_dir: join(shared.cache_dir, 'libs'),
    });
  }

  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.cache_dir, { recursive: true, force: true });
  }

  get brokers(): string[] {
    return [`127.0.0.1:${this.port}`];
  }

  async #cmd(command: string, timeout_ms = 150_000): Promise<void> {
    const { code, output } = await run('bash', ['tools/kafka/kafka.sh', command], this.#env, timeout_ms);
    if (code !== 0) throw new Error(`kafka.sh ${command} exited ${code}:\n${output}`);
  }

  start = () => this.#cmd('start');
  kill = () => this.#cmd('kill', 30_000);
  stop = () => this.#cmd('stop', 60_000);
  reset = () => this.#cmd('reset', 60_000);
  fetch = () => this.#cmd('fetch', 300_000);
}

/**
 * A broker that advertises a fault proxy: clients bootstrap through the proxy and the metadata sends them
 * back to it, so every client byte crosses the proxy. Two listeners: CLIENT (advertised as the proxy's
 * port) and INTERNAL (the broker's own inter-broker traffic, e.g. transaction markers, not proxied).
 * Launched here rather than by kafka.sh, which has one listener advertised as itself; same jars.
 */
export class ProxiedBroker implements Broker {
  readonly proxy: FaultProxy;
  readonly #ports: { proxy: number; client: number; internal: number; controller: number };
  readonly #dir: string;
  readonly #libs = join(repo_root, '.cache', 'kafka-chaos', 'libs');
  #child: ChildProcess | null = null;
  #proxy_listening = false;

  /** `dir_name`: its data under .cache/ (a test beside a running chaos suite takes its own ports and dir). */
  constructor(base_port = 29192, dir_name = 'kafka-chaos-proxy') {
    this.#dir = join(repo_root, '.cache', dir_name);
    this.#ports = {
      proxy: base_port,
      client: base_port + 2,
      internal: base_port + 3,
      controller: base_port + 4,
    };
    this.proxy = new FaultProxy({ upstream: { host: '127.0.0.1', port: this.#ports.client } });
  }

  get brokers(): string[] {
    return [`127.0.0.1:${this.#ports.proxy}`];
  }

  async start(): Promise<void> {
    await new ScriptBroker().fetch(); // the jars (into .cache/kafka-chaos/libs)
    if (!this.#proxy_listening) {
      await this.proxy.listen(this.#ports.proxy);
      this.#proxy_listening = true;
    }
    const props = this.#writeConfig();
    const java = (cls: string, args: string[], timeout_ms = 60_000) =>
      run('java', ['-Xmx256m', '-cp', `${this.#libs}/*`, cls, ...args], {}, timeout_ms);
    const id = (await java('kafka.tools.StorageTool', ['random-uuid'])).output.trim().split('\n').pop()!;
    const formatted = await java('kafka.tools.StorageTool', ['format', '-t', id, '-c', props]);
    if (formatted.code !== 0) throw new Error(`storage format failed:\n${formatted.output}`);
    const out = openSync(join(this.#dir, 'kafka.out'), 'a');
    this.#child = spawn(
      'java',
      [
        '-Xms256m',
        '-Xmx768m',
        '-XX:+UseG1GC',
        `-Dlog4j.configuration=file:${join(this.#dir, 'log4j.properties')}`,
        `-Dkafka.logs.dir=${join(this.#dir, 'logs')}`,
        '-cp',
        `${this.#libs}/*`,
        'kafka.Kafka',
        props,
      ],
      { stdio: ['ignore', out, out] },
    );
    await this.#waitAnswering(90_000);
  }

  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    if (this.#proxy_listening) await this.proxy.close();
    this.#proxy_listening = false;
    rmSync(this.#dir, { recursive: true, force: true });
  }

  #writeConfig(): string {
    rmSync(this.#dir, { recursive: true, force: true });
    mkdirSync(join(this.#dir, 'logs'), { recursive: true });
    const p = this.#ports;
    const props = join(this.#dir, 'server.properties');
    writeFileSync(
      props,
      [
        'process.roles=broker,controller',
        'node.id=1',
        `controller.quorum.voters=1@127.0.0.1:${p.controller}`,
        `listeners=CLIENT://127.0.0.1:${p.client},INTERNAL://127.0.0.1:${p.internal},CONTROLLER://127.0.0.1:${p.controller}`,
        `advertised.listeners=CLIENT://127.0.0.1:${p.proxy},INTERNAL://127.0.0.1:${p.internal}`,
        'controller.listener.names=CONTROLLER',
        'inter.broker.listener.name=INTERNAL',
        'listener.security.protocol.map=CONTROLLER:PLAINTEXT,CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT',
        `log.dirs=${join(this.#dir, 'data')}`,
        'offsets.topic.replication.factor=1',
        'transaction.state.log.replication.factor=1',
        'transaction.state.log.min.isr=1',
        'min.insync.replicas=1',
        'default.replication.factor=1',
        'offsets.topic.num.partitions=8',
        'transaction.state.log.num.partitions=8',
        'group.initial.rebalance.delay.ms=0',
        'auto.create.topics.enable=false',
        'num.network.threads=2',
        'num.io.threads=4',
        'background.threads=4',
        'log.cleaner.threads=1',
        'log.cleaner.dedupe.buffer.size=33554432',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(this.#dir, 'log4j.properties'),
      [
        'log4j.rootLogger=WARN, f',
        'log4j.appender.f=org.apache.log4j.FileAppender',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a log4j property reference, not JS
        'log4j.appender.f.File=${kafka.logs.dir}/server.log',
        'log4j.appender.f.layout=org.apache.log4j.PatternLayout',
        'log4j.appender.f.layout.ConversionPattern=[%d] %p %m (%c)%n',
        'log4j.logger.kafka.server.KafkaServer=INFO',
        '',
      ].join('\n'),
    );
    return props;
  }

  async #waitAnswering(timeout_ms: number): Promise<void> {
    const deadline_ms = Date.now() + timeout_ms;
    while (Date.now() < deadline_ms) {
      if (this.#child?.exitCode !== null) throw new Error('proxied broker exited during start');
      if (await brokerAnswers(this.brokers)) return;
      await sleep(500);
    }
    throw new Error(`proxied broker not answering after ${timeout_ms} ms`);
  }
}

export async function brokerAnswers(brokers: string[]): Promise<boolean> {
  const kafka = new Kafka({
    brokers,
    clientId: 'chaos-probe',
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin({ retry: { retries: 0 } });
  try {
    await admin.connect();
    await admin.listTopics();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** A Redis of the scenario's own (no persistence: a restart is also a flush), on a free port. */
export class ChaosRedis {
  port = 0;
  #child: ChildProcess | null = null;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    this.#child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    const deadline_ms = Date.now() + 10_000;
    while (Date.now() < deadline_ms) {
      if (await portOpen(this.port)) return;
      await sleep(50);
    }
    throw new Error(`redis-server on ${this.port} did not start`);
  }

  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  async flushAll(): Promise<void> {
    const redis = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    await redis.flushall();
    await redis.quit();
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = tcpConnect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

/**
 * One node identity (NODE_ID, port) that can be killed and restarted; `ready` is what a load balancer with
 * health checks would know (false from the kill until the restarted node answers /readyz).
 */
export class NodeSlot {
  node: NodeProcess | null = null;
  ready = false;
  starting: Promise<void> | null = null;
  readonly outputs: string[][] = [];
  readonly #env: Record<string, string>;

  constructor(
    readonly node_id: string,
    readonly port: number,
    env: Record<string, string>,
  ) {
    this.#env = { ...env, NODE_ID: node_id, PORT: String(port) };
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.node !== null && this.node.child.exitCode === null && this.node.child.signalCode === null;
  }

  /** Starts the node and resolves when it is ready; a start already under way is joined. */
  start(ready_timeout_ms = 120_000): Promise<void> {
    if (this.starting) return this.starting;
    this.starting = startNode(this.#env, ready_timeout_ms)
      .then((node) => {
        this.node = node;
        this.outputs.push(node.output);
        this.ready = true;
      })
      .finally(() => {
        this.starting = null;
      });
    return this.starting;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    this.ready = false;
    const node = this.node;
    if (!node || node.child.exitCode !== null) return node?.child.exitCode ?? null;
    node.child.kill(signal);
    return node.exited;
  }

  log(): string {
    return this.outputs.map((o) => o.join('')).join('\n----- restart -----\n');
  }

  /**
   * The last lines of the current run's output at pino level ≥ 50 (error, fatal) or not JSON (a crash's
   * stack): why a node died, for a failure message that CI prints.
   */
  errorTail(lines_max = 6): string {
    const lines = (this.outputs.at(-1) ?? []).join('').split('\n');
    const picked = lines.filter((line) => {
      if (line.trim() === '') return false;
      if (!line.startsWith('{')) return true;
      return /"level":(5|6)0/.test(line);
    });
    return picked
      .slice(-lines_max)
      .map((line) => line.slice(0, 400))
      .join('\n');
  }
}

export function nodeEnv(opts: {
  brokers: string[];
  redis_url: string;
  topic_prefix: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  return {
    KAFKA_BROKERS: opts.brokers.join(','),
    REDIS_URL: opts.redis_url,
    TOPIC_PREFIX: opts.topic_prefix,
    REDIS_KEY_PREFIX: `chaos:${opts.topic_prefix}:`,
    PARTITIONS: '8',
    LANES: '1',
    LOG_LEVEL: process.env.CHAOS_NODE_LOG_LEVEL ?? 'warn',
    CHECKPOINT_INTERVAL_MS: '500',
    SESSION_TIMEOUT_MS: '6000',
    REPLY_TIMEOUT_MS: '2000',
    RATE_LIMIT_PER_S: '100000',
    RATE_LIMIT_BURST: '100000',
    // The walkers pay once a round and the random mix reuses 300 customers: the default 20 payments a
    // minute per account would make most answers 402 velocity_exceeded, leaving captures and refunds rare.
    RISK_VELOCITY_COUNT_MAX: '10000',
    ...opts.extra,
  };
}

export async function makeSlots(count: number, env: Record<string, string>): Promise<NodeSlot[]> {
  const slots: NodeSlot[] = [];
  for (let i = 0; i < count; i++) slots.push(new NodeSlot(`chaos-${i}`, await freePort(), env));
  return slots;
}

export function uniquePrefix(name: string): string {
  return `chaos_${name}_${randomUUID().slice(0, 6)}`;
}

/** Opens customers (funded) and merchants, with bounded retries per request. */
export async function openAccounts(
  base: () => string,
  prefix: string,
  customers_total: number,
  merchants_total: number,
) {
  const customers = Array.from({ length: customers_total }, (_, i) => `${prefix}_c${i}`);
  const merchants = Array.from({ length: merchants_total }, (_, i) => `${prefix}_m${i}`);
  const ok = async (path: string, body: unknown, key: string) => {
    for (let attempt = 0; attempt < 30; attempt++) {
      const res = await post(base(), path, body, key).catch(() => null);
      if (res && res.status === 201) return;
      if (res && res.status < 500 && res.status !== 202)
        throw new Error(`${path} ${key}: ${res.status} ${JSON.stringify(res.body)}`);
      await sleep(300);
    }
    throw new Error(`${path} ${key}: no 201 after 30 attempts`);
  };
  const all = [
    ...customers.map((id) => ({ id, kind: 'customer' })),
    ...merchants.map((id) => ({ id, kind: 'merchant' })),
  ];
  for (let i = 0; i < all.length; i += 50) {
    await Promise.all(
      all.slice(i, i + 50).map(async ({ id, kind }) => {
        await ok('/v1/accounts', { id, currency: 'USD', kind }, `open-${id}`);
        if (kind === 'customer')
          await ok('/v1/deposits', { account: id, amount: 1_000_000, currency: 'USD' }, `fund-${id}`);
      }),
    );
  }
  return { customers, merchants };
}

/** Deletes a scenario's topics (and the node groups go with their members). */
export async function deleteTopics(brokers: string[], topic_prefix: string): Promise<void> {
  const kafka = new Kafka({ brokers, clientId: 'chaos-cleanup', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${topic_prefix}.`));
    if (topics.length > 0) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

export async function deleteRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const keys = await redis.keys(`${prefix}*`);
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
  } finally {
    redis.disconnect();
  }
}

/**
 * Target (b) of `npm run bench:gateway`: the real gateway (uWS routes, API-key auth, rate limit, body read,
 * JSON parse, validation, merchant scoping, command build, metrics) in front of the real `CommandSender`
 * (micro-batched idempotent producer, acks=all, to the local broker), with the committed reply
 * short-circuited. `BENCH_REPLY` says when a request is answered:
 *
 * - `ack` (default): the real `KafkaLedger` with its `ReplyWaiter` replaced by a stub holding a synthetic
 *   201 reply, so the answer leaves once the broker acknowledged the batch holding the command (no stream
 *   processor, no reply topic, no consumer).
 * - `handoff`: answered as soon as the command is handed to `CommandSender.send` (queued for the next
 *   batch); the produce still runs in this process, and a full produce queue answers 503 like the real
 *   ledger.
 *
 *   node --import tsx bench/gateway-server.ts      env: PORT, BENCH_TOPIC, BENCH_PARTITIONS, BENCH_REPLY, …
 *
 * Prints `listening <port>` when ready; on SIGTERM stops (flushing the producer) and prints
 * `stats {…}` before exiting 0 (so `--cpu-prof` writes its profile).
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { loadConfig } from '../src/config.js';
import type { Command, Reply } from '../src/domain/index.js';
import { ApiKeys } from '../src/gateway/auth.js';
import { CommandSender } from '../src/gateway/commands.js';
import { createGateway } from '../src/gateway/index.js';
import { errorReply, KafkaLedger, type Ledger } from '../src/gateway/ledger.js';
import type { ReplyWaiter } from '../src/gateway/replies.js';
import type { TraceContext } from '../src/gateway/trace.js';
import { createLogger, type Logger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import { partitionOf } from '../src/protocol/route.js';
import { parseBrokers } from '../src/streams/kafka-port.js';
import { platformaticPort } from '../src/streams/platformatic/index.js';

/** What a committed `create_payment` reply looks like (the payment view), made from the command itself. */
export function syntheticReply(command: Command): Reply {
  if (command.type !== 'create_payment') return { ok: true, status: 200, body: { id: command.command_id } };
  return {
    ok: true,
    status: 201,
    body: {
      id: command.payment_id,
      object: 'payment',
      status: command.capture ? 'succeeded' : 'requires_capture',
      amount: command.amount,
      currency: command.currency,
      source: command.source,
      destination: command.destination,
      capture_method: command.capture ? 'automatic' : 'manual',
      amount_capturable: command.capture ? 0 : command.amount,
      amount_received: command.capture ? command.amount : 0,
      amount_refunded: 0,
      decline_code: null,
      failure_code: null,
      cancellation_reason: null,
      created_ms: command.time_ms,
      expires_ms: null,
      description: command.description,
      metadata: command.metadata,
    },
  };
}

/**
 * The Kafka ledger with the reply short-circuited: `KafkaLedger.call` registers its waiter synchronously
 * (before its first await), so the stub knows which command it answers; the answer is released only after
 * `CommandSender.send` resolved, i.e. after the broker's ack of the batch.
 */
export class ShortCircuitLedger implements Ledger {
  readonly #inner: KafkaLedger;
  #current: Command | null = null;
  answered_ok = 0;
  ledger_errors = 0;

  constructor(opts: { sender: CommandSender; partitions_total: number; log: Logger }) {
    const stub = {
      full: false,
      wait: (_request_id: string): Promise<Reply | null> => {
        const command = this.#current;
        if (command === null) throw new Error('bench ledger invariant: wait() outside call()');
        return Promise.resolve(syntheticReply(command));
      },
      cancel: (_request_id: string): void => {},
    };
    this.#inner = new KafkaLedger({
      sender: opts.sender,
      waiter: stub as unknown as ReplyWaiter,
      reply_topic: 'bench.gateway.replies.unused',
      partitions_total: opts.partitions_total,
      log: opts.log,
    });
  }

  async call(command: Command, trace: TraceContext): Promise<Reply | null> {
    this.#current = command;
    let pending: Promise<Reply | null>;
    try {
      pending = this.#inner.call(command, trace);
    } finally {
      this.#current = null;
    }
    const reply = await pending;
    if (reply?.ok) this.answered_ok++;
    else this.ledger_errors++;
    return reply;
  }
}

/**
 * Answers once the command is handed to the producer's queue, without waiting for the broker: what the
 * gateway costs in CPU when broker round trips are taken out of the request's latency. The command is
 * built and routed as `KafkaLedger.call` does; beyond the sender's queue bound (batch_max × 64 commands
 * not yet acknowledged) it answers 503 `overloaded`, as the real ledger does.
 */
export class HandoffLedger implements Ledger {
  readonly #sender: CommandSender;
  readonly #partitions_total: number;
  readonly #queue_max: number;
  readonly #log: Logger;
  #unacked = 0;
  answered_ok = 0;
  ledger_errors = 0;
  acked = 0;
  produce_failed = 0;

  constructor(opts: { sender: CommandSender; partitions_total: number; queue_max: number; log: Logger }) {
    this.#sender = opts.sender;
    this.#partitions_total = opts.partitions_total;
    this.#queue_max = opts.queue_max;
    this.#log = opts.log;
  }

  async call(command: Command, trace: TraceContext): Promise<Reply | null> {
    if (this.#unacked >= this.#queue_max) {
      this.ledger_errors++;
      return errorReply('overloaded', 'too many commands queued');
    }
    const partition = partitionOf(command, this.#partitions_total);
    if (partition === null) throw new Error(`routing invariant: ${command.type} names no owner`);
    const envelope = {
      command,
      reply_to: 'bench.gateway.replies.unused',
      request_id: randomUUID(),
      traceparent: trace.traceparent,
    };
    this.#unacked++;
    this.#sender.send(envelope, partition, command.command_id).then(
      () => {
        this.#unacked--;
        this.acked++;
      },
      (err: Error) => {
        this.#unacked--;
        if (this.produce_failed++ === 0) this.#log.warn({ err: err.message }, 'bench: produce failed');
      },
    );
    this.answered_ok++;
    return syntheticReply(command);
  }
}

async function main(): Promise<void> {
  const topic = process.env.BENCH_TOPIC;
  if (!topic) throw new Error('BENCH_TOPIC is required');
  const {
    BENCH_TOPIC: _t,
    BENCH_PARTITIONS: _p,
    BENCH_REPLY: _r,
    BENCH_STDIN_WATCH: _w,
    ...env
  } = process.env;
  const config = loadConfig(env);
  const partitions_total = Number(process.env.BENCH_PARTITIONS ?? config.partitions);
  const log = createLogger(config.log_level, 'bench-gateway', pino.destination(2));
  const metrics = createMetrics();
  const brokers = parseBrokers(config.kafka_brokers || `127.0.0.1:${config.kafka_local_port}`);
  const sender = new CommandSender({
    kafka: platformaticPort({ brokers, client_id: `bench-gateway-${process.pid}`, log }),
    topic,
    linger_ms: config.produce_linger_ms,
    batch_max: config.produce_batch_max,
    metrics,
  });
  await sender.start();
  const mode = process.env.BENCH_REPLY ?? 'ack';
  if (mode !== 'ack' && mode !== 'handoff') throw new Error('BENCH_REPLY must be ack or handoff');
  const ledger =
    mode === 'ack'
      ? new ShortCircuitLedger({ sender, partitions_total, log })
      : new HandoffLedger({ sender, partitions_total, queue_max: config.produce_batch_max * 64, log });
  const stack = createGateway({
    config,
    keys: ApiKeys.parse(config.api_keys),
    ledger,
    feed: null,
    ready: () => true,
    log,
    metrics,
  });
  const port = await stack.gateway.listen();
  process.stdout.write(`listening ${port}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    stack.gateway.close();
    void (async () => {
      await sender.stop().catch(() => {});
      await stack.dispose();
      const batches = await metrics.produce_batch_size_commands.get();
      const sum = batches.values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
      const count = batches.values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
      const stats = {
        mode,
        answered_ok: ledger.answered_ok,
        ledger_errors: ledger.ledger_errors,
        ...(ledger instanceof HandoffLedger
          ? { acked: ledger.acked, produce_failed: ledger.produce_failed }
          : {}),
        batches: count,
        batch_mean: count > 0 ? Math.round((10 * sum) / count) / 10 : 0,
      };
      process.stdout.write(`stats ${JSON.stringify(stats)}\n`, () => process.exit(0));
    })();
  };
  process.on('SIGTERM', stop);
  // The bench holds our stdin open: if it dies without stopping us, stdin ends and we stop too.
  if (process.env.BENCH_STDIN_WATCH === '1') process.stdin.on('end', stop).resume();
}

main().catch((err) => {
  process.stderr.write(`bench gateway-server: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});

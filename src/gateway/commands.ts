import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { type CommandEnvelope, encode } from '../protocol/wire.js';
import { producerStateLost } from '../streams/kafka-errors.js';
import type { KafkaPort, OutRecord, ProduceAck, Producer } from '../streams/kafka-port.js';

/** A command waiting in the produce queue (exported for bench/tracing.bench.ts). */
export interface Queued {
  message: OutRecord;
  /** The record's offset, once the broker acknowledged it (null if the ack named no base offset). */
  resolve: (offset: number | null) => void;
  reject: (err: Error) => void;
}

/** Thrown by `send` when the produce queue is full: the caller answers 503 `overloaded`. */
export class ProduceQueueFull extends Error {
  override name = 'ProduceQueueFull';
}

/**
 * Produces client commands to the commands topic on the partition the caller chose from the owner's shard
 * (never a client's default partitioner). The port's producer has no linger (each sendBatch is one produce
 * request, one at a time), so commands are micro-batched here: the
 * first queued command arms a `linger_ms` timer; the batch leaves when the timer fires or `batch_max`
 * commands are waiting, as ONE `sendBatch` (acks=all, idempotent producer). One batch is in flight at a
 * time; what arrives meanwhile forms the next batch, so batches grow with load and latency stays at
 * ~ one broker round trip + linger. A command the broker accepted is durable before its reply is awaited.
 *
 *   send() → queue (≤ queue_max) ──linger or batch_max──▶ sendBatch ──ack──▶ resolve each
 *
 * Every failed batch replaces the producer (a new producer id, sequences from 0) before the next batch
 * leaves; what queues meanwhile waits (bounded by queue_max, then 503). A failure can be ambiguous: the
 * request reached the broker and only its answer was lost. The clients advance a partition's sequence
 * number only on success, so the next batch would reuse the landed batch's sequence, and the broker would
 * answer it as a duplicate: success, nothing appended, an acknowledged command missing from the log (found
 * by chaos network-faults; test/chaos/produce-unknown-outcome.test.ts). A lost producer state
 * (OUT_OF_ORDER_SEQUENCE_NUMBER after a broker restart, …) would also fail every later batch the same way.
 */
export class CommandSender {
  #producer: Producer;
  readonly #create: () => Producer;
  readonly #log: Logger | null;
  readonly #topic: string;
  readonly #linger_ms: number;
  readonly #batch_max: number;
  readonly #queue_max: number;
  readonly #metrics: Metrics;
  #queue: Queued[] = [];
  #timer: NodeJS.Timeout | null = null;
  #in_flight = false;

  #stopped = false;
  #connected = false;

  constructor(opts: {
    kafka: KafkaPort;
    topic: string;
    linger_ms: number;
    batch_max: number;
    metrics: Metrics;
    log?: Logger;
    /** Tests only: where producers come from (default: the port's idempotent producer). */
    createProducer?: () => Producer;
  }) {
    this.#topic = opts.topic;
    this.#linger_ms = opts.linger_ms;
    this.#batch_max = opts.batch_max;
    this.#queue_max = opts.batch_max * 64;
    this.#metrics = opts.metrics;
    this.#log = opts.log ?? null;
    this.#create = opts.createProducer ?? (() => opts.kafka.producer());
    this.#producer = this.#create();
  }

  async start(): Promise<void> {
    await this.#connect();
  }

  get topic(): string {
    return this.#topic;
  }

  /**
   * Resolves once the broker acknowledged the command (acks=all), with the record's offset; rejects on
   * failure or a full queue.
   */
  send(envelope: CommandEnvelope, partition: number, key: string): Promise<number | null> {
    if (this.#queue.length >= this.#queue_max)
      return Promise.reject(new ProduceQueueFull('produce queue full'));
    const headers = envelope.traceparent ? { traceparent: envelope.traceparent } : undefined;
    const message: OutRecord = { partition, key, value: encode(envelope), ...(headers ? { headers } : {}) };
    return new Promise((resolve, reject) => {
      this.#queue.push({ message, resolve, reject });
      this.#schedule();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    while (this.#in_flight || this.#queue.length > 0) {
      if (!this.#in_flight) this.#flush();
      await new Promise((r) => setTimeout(r, 5));
    }
    await this.#producer.disconnect();
  }

  #schedule(): void {
    if (this.#in_flight) return; // the batch in flight flushes the queue when it completes
    if (this.#queue.length >= this.#batch_max) this.#flush();
    else if (this.#timer === null) this.#timer = setTimeout(() => this.#flush(), this.#linger_ms);
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#in_flight || this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, this.#batch_max);
    this.#in_flight = true;
    this.#metrics.produce_batch_size_commands.observe(batch.length);
    this.#send(batch.map((q) => q.message))
      .then(
        (acks) => resolveOffsets(batch, acks),
        async (err: Error) => {
          for (const queued of batch) queued.reject(err);
          if (!this.#stopped) await this.#replaceProducer(err);
        },
      )
      .finally(() => {
        this.#in_flight = false;
        if (this.#queue.length > 0) this.#flush();
      });
  }

  /** The new producer connects before the next batch leaves (#send), which retries if the broker is away. */
  async #replaceProducer(cause: Error): Promise<void> {
    const reason = producerStateLost(cause) ? 'state_lost' : 'outcome_unknown';
    this.#metrics.produce_producer_replaced_total.inc({ reason });
    this.#log?.warn({ err: cause.message, reason }, 'command batch failed; replacing the producer');
    const old = this.#producer;
    this.#producer = this.#create();
    this.#connected = false;
    await old.disconnect().catch(() => {});
  }

  async #connect(): Promise<void> {
    await this.#producer.connect();
    this.#connected = true;
  }

  async #send(messages: OutRecord[]): Promise<ProduceAck[]> {
    if (!this.#connected) await this.#connect();
    return this.#producer.sendBatch({ topicMessages: [{ topic: this.#topic, messages }], acks: -1 });
  }
}

/**
 * A batch's records of one partition are appended in order from the ack's base offset, so the i-th record
 * of partition p in the batch is at base(p) + i. Offsets stay far below 2^53: plain numbers are exact.
 * Cost: one small Map per batch (≤ its partitions) and one lookup per command.
 */
export function resolveOffsets(batch: Queued[], acks: ProduceAck[]): void {
  const next_by_partition = new Map<number, number>();
  for (const ack of acks)
    if (ack.baseOffset !== undefined) next_by_partition.set(ack.partition, Number(ack.baseOffset));
  for (const queued of batch) {
    const partition = queued.message.partition;
    const offset = next_by_partition.get(partition);
    if (offset === undefined) {
      queued.resolve(null);
      continue;
    }
    next_by_partition.set(partition, offset + 1);
    queued.resolve(offset);
  }
}

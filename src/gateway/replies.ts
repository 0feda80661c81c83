import { randomUUID } from 'node:crypto';
import type { Reply } from '../domain/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { decode, type ReplyRecord } from '../protocol/wire.js';
import type { GroupConsumer, KafkaPort } from '../streams/kafka-port.js';

interface Pending {
  deadline_ms: number;
  resolve: (reply: Reply | null) => void;
}

/**
 * Correlates committed replies (the node's reply topic, read_committed) with waiting requests. All requests
 * share one timeout, so the Map's insertion order is deadline order and one coarse timer expires from the
 * front: O(expired) per tick, no setTimeout per request.
 */
export class ReplyWaiter {
  readonly #pending = new Map<string, Pending>();
  readonly #consumer: GroupConsumer;
  readonly #topic: string;
  readonly #timeout_ms: number;
  readonly #pending_max: number;
  readonly #metrics: Metrics;
  #timer: NodeJS.Timeout | null = null;
  #joined = false;

  constructor(opts: {
    kafka: KafkaPort;
    topic: string;
    group_id: string;
    timeout_ms: number;
    pending_max: number;
    session_timeout_ms: number;
    log: Logger;
    metrics: Metrics;
  }) {
    this.#topic = opts.topic;
    this.#timeout_ms = opts.timeout_ms;
    this.#pending_max = opts.pending_max;
    this.#metrics = opts.metrics;
    // A fresh group per process incarnation: a killed predecessor's member would otherwise hold the reply
    // partition until its session expires, and nothing is lost by skipping replies nobody waits for. The
    // group commits no offsets, so the broker drops it as soon as it is empty.
    // Only replies to requests made from now on matter; older ones have no waiter.
    this.#consumer = opts.kafka.consumer({
      group_id: `${opts.group_id}.${randomUUID()}`,
      topic: opts.topic,
      from: 'latest',
      max_wait_ms: 10,
      session_timeout_ms: opts.session_timeout_ms,
    });
  }

  get ready(): boolean {
    return this.#joined;
  }

  get full(): boolean {
    return this.#pending.size >= this.#pending_max;
  }

  async start(): Promise<void> {
    await this.#consumer.start({
      onAssignment: () => {
        this.#joined = true;
      },
      onBatch: async (batch) => {
        let delivered = 0;
        for (const message of batch.messages)
          if (message.value && this.#deliver(decode<ReplyRecord>(message.value))) delivered++;
        if (delivered > 0) this.#metrics.replies_delivered_total.inc({ path: 'topic' }, delivered);
      },
    });
    this.#timer = setInterval(() => this.#expire(Date.now()), 25);
    this.#timer.unref();
  }

  /** Resolves with the committed reply, or null after the reply timeout. Callers check `full` first. */
  wait(request_id: string): Promise<Reply | null> {
    if (this.full) throw new Error('reply waiter invariant: wait() called while full');
    return new Promise((resolve) => {
      this.#pending.set(request_id, { deadline_ms: Date.now() + this.#timeout_ms, resolve });
      this.#metrics.replies_pending.set(this.#pending.size);
    });
  }

  /** Resolves when no request waits any more, or after timeout_ms. */
  async drained(timeout_ms: number): Promise<void> {
    const deadline_ms = Date.now() + timeout_ms;
    while (this.#pending.size > 0 && Date.now() < deadline_ms) await new Promise((r) => setTimeout(r, 20));
  }

  /** Replies of a transaction that has committed on this node (the processor's local delivery). */
  deliverCommitted(records: readonly ReplyRecord[]): void {
    let delivered = 0;
    for (const record of records) if (this.#deliver(record)) delivered++;
    if (delivered > 0) this.#metrics.replies_delivered_total.inc({ path: 'local' }, delivered);
  }

  cancel(request_id: string): void {
    this.#pending.get(request_id)?.resolve(null);
    this.#pending.delete(request_id);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    for (const entry of this.#pending.values()) entry.resolve(null);
    this.#pending.clear();
    await this.#consumer.disconnect();
  }

  /** True when a request was waiting for it. */
  #deliver(record: ReplyRecord): boolean {
    const entry = this.#pending.get(record.request_id);
    if (!entry) return false;
    this.#pending.delete(record.request_id);
    entry.resolve(record.reply);
    return true;
  }

  #expire(now_ms: number): void {
    for (const [request_id, entry] of this.#pending) {
      if (entry.deadline_ms > now_ms) break;
      this.#pending.delete(request_id);
      entry.resolve(null);
    }
    this.#metrics.replies_pending.set(this.#pending.size);
  }
}

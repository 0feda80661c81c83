import { randomUUID } from 'node:crypto';
import type { DomainEvent } from '../domain/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { decode } from '../protocol/wire.js';
import type { GroupConsumer, KafkaPort } from '../streams/kafka-port.js';
import { encodeFrame } from './frames.js';
import { type MerchantScope, type MerchantScopes, tagOfOwnedId } from './scope.js';

export type Publish = (
  scope: MerchantScope,
  frame: { json: () => string; msgpack: () => Uint8Array },
) => number;

/**
 * Committed payment outcomes for WebSocket subscribers. Reads the events topic with read_committed (so
 * only outcomes of committed transactions are seen), from the end, in a group of its own per process
 * incarnation; the merchant of an event is the tag inside its payment id (see scope.ts). Started lazily by
 * the first subscription, because it reads every partition's events: cost ≈ one decode per event on the
 * main thread, which a node pays only while someone listens. Delivery is at most once per connection
 * (a socket that was away misses outcomes; `GET /v1/payments/:id` is the way to catch up).
 */
export class OutcomeFeed {
  readonly #kafka: KafkaPort;
  readonly #topic: string;
  readonly #group_id: string;
  readonly #session_timeout_ms: number;
  readonly #scopes: MerchantScopes;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  #publish: Publish | null = null;
  #consumer: GroupConsumer | null = null;
  #started: Promise<void> | null = null;

  constructor(opts: {
    kafka: KafkaPort;
    topic: string;
    group_id: string;
    session_timeout_ms: number;
    scopes: MerchantScopes;
    log: Logger;
    metrics: Metrics;
  }) {
    this.#kafka = opts.kafka;
    this.#topic = opts.topic;
    this.#group_id = opts.group_id;
    this.#session_timeout_ms = opts.session_timeout_ms;
    this.#scopes = opts.scopes;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
  }

  attach(publish: Publish): void {
    this.#publish = publish;
  }

  /** Idempotent; resolves once the consumer has joined and fetched (its start offsets are fixed). */
  start(): Promise<void> {
    if (this.#started === null) {
      this.#started = this.#start().catch((err) => {
        this.#started = null; // a later subscription tries again
        throw err;
      });
    }
    return this.#started;
  }

  async stop(): Promise<void> {
    const consumer = this.#consumer;
    this.#consumer = null;
    this.#started = null;
    if (consumer) await consumer.disconnect();
  }

  async #start(): Promise<void> {
    const consumer = this.#kafka.consumer({
      group_id: `${this.#group_id}.${randomUUID()}`,
      topic: this.#topic,
      from: 'latest',
      max_wait_ms: 50,
      session_timeout_ms: this.#session_timeout_ms,
    });
    this.#consumer = consumer;
    let joined = false;
    let resolveFetched = () => {};
    const fetched = new Promise<void>((resolve) => {
      resolveFetched = resolve;
    });
    await consumer.start({
      onAssignment: () => {
        joined = true;
      },
      onFetch: () => {
        if (joined) resolveFetched();
      },
      onBatch: async (batch) => {
        for (const message of batch.messages) if (message.value) this.#deliver(message.value);
      },
    });
    await fetched;
    this.#log.info({ topic: this.#topic }, 'outcome feed started');
  }

  #deliver(bytes: Buffer): void {
    let event: DomainEvent;
    try {
      event = decode<DomainEvent>(bytes);
    } catch {
      return; // not ours to judge: the stream processor owns the events topic
    }
    const outcome = outcomeOf(event, this.#scopes);
    if (outcome === null || this.#publish === null) return;
    const frame = { channel: 'payments', event: event.type, data: outcome.data };
    const sent = this.#publish(outcome.scope, {
      json: () => encodeFrame(frame, false) as string,
      msgpack: () => encodeFrame(frame, true) as Uint8Array,
    });
    if (sent > 0) this.#metrics.outcomes_published_total.inc();
  }
}

/** The subscriber-facing outcome of a payment event, or null for events that are not payment outcomes. */
export function outcomeOf(
  event: DomainEvent,
  scopes: MerchantScopes,
): { scope: MerchantScope; data: Record<string, unknown> } | null {
  if (!('payment_id' in event) || event.type.startsWith('transfer_')) return null;
  const tag = tagOfOwnedId(event.payment_id);
  const scope = tag === null ? undefined : scopes.byTag(tag);
  if (scope === undefined) return null;
  const base = { payment_id: event.payment_id, time_ms: event.time_ms };
  switch (event.type) {
    case 'payment_created':
    case 'payment_declined': {
      const declined = event.type === 'payment_declined';
      const status = declined
        ? 'declined'
        : event.capture_method === 'automatic'
          ? 'succeeded'
          : 'requires_capture';
      const data = {
        ...base,
        status,
        amount: event.amount,
        currency: event.currency,
        source: scope.external(event.source),
        destination: scope.external(event.payee_account_id),
        decline_code: declined ? event.decline_code : null,
      };
      return { scope, data };
    }
    case 'payment_captured':
      return { scope, data: { ...base, status: 'succeeded', amount_captured: event.amount_captured } };
    case 'payment_canceled':
    case 'payment_expired':
      return { scope, data: { ...base, status: 'canceled', amount_released: event.amount_released } };
    case 'payment_failed':
      return { scope, data: { ...base, status: 'failed', failure_code: event.failure_code } };
    case 'refund_created':
    case 'refund_succeeded':
    case 'refund_failed': {
      const status =
        event.type === 'refund_created'
          ? 'pending'
          : event.type === 'refund_succeeded'
            ? 'succeeded'
            : 'failed';
      return { scope, data: { ...base, refund_id: event.refund_id, status, amount: event.amount } };
    }
    default:
      return null;
  }
}

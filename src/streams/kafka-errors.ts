/**
 * Classifying Kafka port failures (kafka-port.ts) by their flags and class names (never by message text):
 * the adapter's errors carry the protocol error name as `type` and `retriable`; the engine may wrap them
 * (a cause of its own errors), so the cause chain is walked, to a fixed depth.
 */
const transient_error_names = new Set(['RestoreTimeoutError']);

/** Retriable by the port's classification (a connection/timeout failure included) anywhere in the chain. */
export function isTransient(err: unknown): boolean {
  for (
    let e = err as { name?: unknown; retriable?: unknown; cause?: unknown } | undefined, depth = 0;
    e && depth < 8;
    depth++
  ) {
    if (e.retriable === true || (typeof e.name === 'string' && transient_error_names.has(e.name)))
      return true;
    e = e.cause as typeof e;
  }
  return false;
}

/** The Kafka protocol error name (e.g. INVALID_PRODUCER_EPOCH) anywhere in a port error's cause chain. */
export function kafkaErrorType(err: unknown): string | null {
  for (let e = err as { type?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 8; depth++) {
    if (typeof e.type === 'string') return e.type;
    e = e.cause as typeof e;
  }
  return null;
}

/**
 * Protocol errors after which an idempotent (non-transactional) producer cannot go on: its producer id or
 * sequence numbers no longer match the broker's (seen after a broker restart: every later batch fails with
 * OUT_OF_ORDER_SEQUENCE_NUMBER). librdkafka treats them as fatal; a client that retries nothing stays stuck.
 * The remedy is a new producer (a new producer id, sequences from 0).
 */
const producer_state_lost_types = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
]);

export function producerStateLost(err: unknown): boolean {
  const type = kafkaErrorType(err);
  return type !== null && producer_state_lost_types.has(type);
}

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** One registry per node process; every part registers its instruments here. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    http_request_duration_seconds: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Gateway request latency from first byte to response, by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.5, 1, 2.5],
      registers: [registry],
    }),
    transaction_commit_duration_seconds: new Histogram({
      name: 'transaction_commit_duration_seconds',
      help: 'Kafka transaction latency from begin to commit, per batch',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    batch_size_commands: new Histogram({
      name: 'batch_size_commands',
      help: 'Commands per applied batch',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers: [registry],
    }),
    transaction_partitions: new Histogram({
      name: 'transaction_partitions',
      help: 'Partitions (task commits) per node transaction, with one transactional producer per node',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers: [registry],
    }),
    transactions_aborted_total: new Counter({
      name: 'transactions_aborted_total',
      help: 'Kafka transactions aborted or failed; the partition state was rebuilt after each',
      registers: [registry],
    }),
    transaction_retries_total: new Counter({
      name: 'transaction_retries_total',
      help: 'Transactional steps retried on a coordinator-busy answer (not failures), by protocol error',
      labelNames: ['error'] as const,
      registers: [registry],
    }),
    offsets_deferred_total: new Counter({
      name: 'offsets_deferred_total',
      help: 'Read-only chunks answered without a transaction of their own; their offset rode in a later one',
      registers: [registry],
    }),
    checkpoints_dropped_total: new Counter({
      name: 'checkpoints_dropped_total',
      help: 'Checkpoints deleted because a restore found them disagreeing with the changelog, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    restore_duration_seconds: new Histogram({
      name: 'restore_duration_seconds',
      help: 'Time to restore a set of partitions (checkpoint load + changelog replay)',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
    restore_events_replayed_total: new Counter({
      name: 'restore_events_replayed_total',
      help: 'Events replayed from the changelog during restores',
      registers: [registry],
    }),
    restore_failures_total: new Counter({
      name: 'restore_failures_total',
      help: 'Restore attempts that failed on a transient broker error and were retried (broker away or loading)',
      registers: [registry],
    }),
    checkpoint_age_seconds: new Gauge({
      name: 'checkpoint_age_seconds',
      help: 'Seconds since the oldest successful checkpoint among owned partitions with unsaved changes',
      registers: [registry],
    }),
    checkpoint_duration_seconds: new Histogram({
      name: 'checkpoint_duration_seconds',
      help: 'Time to snapshot a partition on its lane and write it to Redis',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    consumer_lag_records: new Gauge({
      name: 'consumer_lag_records',
      help: 'Commands not yet committed per owned partition (high watermark - next offset), at the last batch',
      labelNames: ['partition'] as const,
      registers: [registry],
    }),
    lane_queue_depth_tasks: new Gauge({
      name: 'lane_queue_depth_tasks',
      help: 'Tasks queued on a lane behind the running one',
      labelNames: ['lane'] as const,
      registers: [registry],
    }),
    lane_pauses_total: new Counter({
      name: 'lane_pauses_total',
      help: 'Times a partition was paused because its lane had lane_batches_in_flight_max batches queued',
      registers: [registry],
    }),
    lane_actors: new Gauge({
      name: 'lane_actors',
      help: 'Account actors held by a lane (all its partitions)',
      labelNames: ['lane'] as const,
      registers: [registry],
    }),
    checkpoint_failures_total: new Counter({
      name: 'checkpoint_failures_total',
      help: 'Checkpoint writes to Redis that failed (processing continues; Redis is an accelerator)',
      registers: [registry],
    }),
    produce_producer_replaced_total: new Counter({
      name: 'gateway_produce_producer_replaced_total',
      help: 'Command producers replaced after a failed batch: reason outcome_unknown (the batch may have landed) or state_lost (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    replies_delivered_total: new Counter({
      name: 'gateway_replies_delivered_total',
      help: 'Committed replies matched to a waiting request, by path: local (this node committed it) or topic (another node did, through the reply topic)',
      labelNames: ['path'] as const,
      registers: [registry],
    }),
    replies_pending: new Gauge({
      name: 'gateway_replies_pending',
      help: 'Requests waiting for a committed reply',
      registers: [registry],
    }),
    operations_total: new Counter({
      name: 'gateway_operations_total',
      help: 'API operations answered, by operation, transport (http, ws) and status code',
      labelNames: ['op', 'transport', 'status'] as const,
      registers: [registry],
    }),
    produce_batch_size_commands: new Histogram({
      name: 'gateway_produce_batch_size_commands',
      help: 'Commands per produce request of the gateway (micro-batches)',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers: [registry],
    }),
    rate_limited_total: new Counter({
      name: 'gateway_rate_limited_total',
      help: 'Requests refused by the per-merchant rate limit (429)',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    idempotency_fence_skipped_total: new Counter({
      name: 'gateway_idempotency_fence_skipped_total',
      help: 'Idempotency-Key checks done without the Redis fence (Redis unavailable; actors still dedupe)',
      registers: [registry],
    }),
    ws_connections: new Gauge({
      name: 'gateway_ws_connections',
      help: 'Open WebSocket connections',
      registers: [registry],
    }),
    ws_refused_total: new Counter({
      name: 'gateway_ws_refused_total',
      help: 'WebSocket requests refused before running, by reason (in_flight, backpressure, draining)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    outcomes_published_total: new Counter({
      name: 'gateway_outcomes_published_total',
      help: 'Committed payment outcomes published to subscribed WebSockets',
      registers: [registry],
    }),
    node_ready: new Gauge({
      name: 'payment_node_ready',
      help: '1 while /readyz answers 200 (every assigned partition restored, not draining), else 0; read at scrape',
      registers: [registry],
    }),
    stream_tasks: new Gauge({
      name: 'stream_tasks',
      help: 'Partitions held by this node, by task state (CREATED, RESTORING, RUNNING, FAILED), every second',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    vault_operations_total: new Counter({
      name: 'vault_operations_total',
      help: 'Card vault operations on Redis, by operation (store, remove, reveal) and result (ok, error)',
      labelNames: ['op', 'result'] as const,
      registers: [registry],
    }),
    vault_operation_duration_seconds: new Histogram({
      name: 'vault_operation_duration_seconds',
      help: 'Card vault operation latency (encrypt/decrypt and the Redis round trip), by operation',
      labelNames: ['op'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
      registers: [registry],
    }),
    vault_token_access_denied_total: new Counter({
      name: 'vault_token_access_denied_total',
      help: 'Card tokens refused because the presenting merchant does not own them (a security event), by owner: other_merchant (a configured merchant) or unknown',
      labelNames: ['owner'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

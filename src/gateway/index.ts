import { Redis } from 'ioredis';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { KafkaPort } from '../streams/kafka-port.js';
import type { ApiKeys } from './auth.js';
import { IdempotencyFence } from './fence.js';
import type { Ledger } from './ledger.js';
import { Operations } from './ops.js';
import { OutcomeFeed } from './outcomes.js';
import { RateLimiter } from './rate-limit.js';
import { MerchantScopes } from './scope.js';
import { Gateway } from './server.js';
import { Vault } from './vault.js';

/** Buckets are only made for authenticated merchants; this bound only matters with very many keys. */
const RATE_LIMIT_BUCKETS_MAX = 100_000;

export interface GatewayStack {
  gateway: Gateway;
  vault: Vault;
  /** Stops the outcome feed and the gateway's Redis connection (after `gateway.close()`). */
  dispose(): Promise<void>;
}

/**
 * Builds the gateway from config around a ledger (Kafka in the node, an in-memory one in tests). The
 * gateway has its own Redis connection for the idempotency fence and the vault: it fails fast while Redis
 * is away (no offline queue, short command timeout) and never waits behind checkpoint writes.
 */
export function createGateway(opts: {
  config: Config;
  keys: ApiKeys;
  ledger: Ledger;
  /** With the events topic: WebSocket subscriptions to committed payment outcomes. */
  feed: { kafka: KafkaPort; events_topic: string } | null;
  ready: () => boolean;
  notReady?: () => unknown;
  log: Logger;
  metrics: Metrics;
}): GatewayStack {
  const { config, log, metrics } = opts;
  const redis = gatewayRedis(config.redis_url);
  const key_prefix = `${config.redis_key_prefix}${config.topic_prefix}:`;
  const scopes = new MerchantScopes(opts.keys.merchants());
  const vault = new Vault({
    redis,
    key_prefix,
    keys: config.vault_keys,
    active_key_id: config.vault_active_key_id,
    fingerprint_key: config.vault_fingerprint_key,
    audit: { metrics, log, scopes },
  });
  const fence = new IdempotencyFence({
    redis,
    key_prefix,
    ttl_s: config.idempotency_fence_ttl_s,
    metrics,
    log,
  });
  const ops = new Operations({ ledger: opts.ledger, fence, vault, log, metrics });
  const outcomes = opts.feed
    ? new OutcomeFeed({
        kafka: opts.feed.kafka,
        topic: opts.feed.events_topic,
        group_id: `${config.topic_prefix}.outcomes.${config.node_id}`,
        session_timeout_ms: config.session_timeout_ms,
        scopes,
        log,
        metrics,
      })
    : null;
  const gateway = new Gateway({
    host: config.host,
    port: config.port,
    request_body_max_bytes: config.request_body_max_bytes,
    tls: config.tls_cert_file ? { cert_file: config.tls_cert_file, key_file: config.tls_key_file } : null,
    keys: opts.keys,
    scopes,
    ops,
    limiter: new RateLimiter({
      rate_per_s: config.rate_limit_per_s,
      burst: config.rate_limit_burst,
      buckets_max: RATE_LIMIT_BUCKETS_MAX,
    }),
    ws: {
      payload_max_bytes: config.request_body_max_bytes + 1024, // the body plus the frame's envelope
      in_flight_max: config.ws_in_flight_max,
      idle_timeout_s: config.ws_idle_timeout_s,
      backpressure_max_bytes: config.ws_backpressure_max_bytes,
    },
    outcomes,
    ready: opts.ready,
    ...(opts.notReady ? { notReady: opts.notReady } : {}),
    log,
    metrics,
  });
  const dispose = async () => {
    await outcomes?.stop().catch(() => {});
    redis.disconnect();
  };
  return { gateway, vault, dispose };
}

function gatewayRedis(url: string): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 500,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  redis.on('error', () => {}); // failures are answered where commands fail (fence skipped, vault 503)
  return redis;
}

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import type { RiskRules } from './domain/index.js';

/**
 * Configuration: config/default.json, then an optional JSON file named by CONFIG_FILE, then one environment
 * variable per key (the key in UPPER_SNAKE case: `port` ← `PORT`). Unknown keys and invalid values stop the
 * node with a message naming the key: a typo in production must not silently fall back to a default.
 */
const schema = z
  .object({
    node_env: z.enum(['development', 'test', 'production']),
    node_id: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'letters, digits, _ and -, at most 64'),
    host: z.string().min(1),
    port: z.number().int().min(0).max(65535),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    kafka_brokers: z.string(),
    kafka_local_port: z.number().int().min(1).max(65535),
    kafka_client_id: z.string().min(1),
    /** auto: node (one transaction per node commit, KIP-447); partition: one transactional producer each. */
    transaction_scope: z.enum(['auto', 'partition', 'node']),
    commit_interval_ms: z.number().int().min(0).max(1000),
    commit_records_max: z.number().int().min(1).max(100_000),
    topic_prefix: z.string().regex(/^[a-zA-Z0-9._-]{1,100}$/, 'a valid Kafka topic name prefix'),
    partitions: z.number().int().min(1).max(1024),
    replication_factor: z.number().int().min(1).max(7),
    redis_url: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL'),
    redis_key_prefix: z.string().min(1).max(64),
    api_keys: z.string(),
    lanes: z.number().int().min(0).max(64),
    batch_size_max: z.number().int().min(1).max(10_000),
    lane_batches_in_flight_max: z.number().int().min(1).max(1024),
    reply_timeout_ms: z.number().int().min(10).max(60_000),
    pending_replies_max: z.number().int().min(1).max(1_000_000),
    request_body_max_bytes: z.number().int().min(256).max(1_048_576),
    checkpoint_interval_ms: z.number().int().min(10).max(3_600_000),
    checkpoint_dirty_max: z.number().int().min(1).max(1_000_000),
    session_timeout_ms: z.number().int().min(3000).max(300_000),
    startup_timeout_ms: z.number().int().min(1000).max(600_000),
    shutdown_timeout_ms: z.number().int().min(100).max(120_000),
    rate_limit_per_s: z.number().int().min(1).max(10_000_000),
    rate_limit_burst: z.number().int().min(1).max(10_000_000),
    produce_linger_ms: z.number().int().min(0).max(50),
    produce_batch_max: z.number().int().min(1).max(10_000),
    idempotency_fence_ttl_s: z
      .number()
      .int()
      .min(86_400)
      .max(30 * 86_400),
    vault_keys: z
      .string()
      .regex(
        /^[a-zA-Z0-9_-]{1,32}:[A-Za-z0-9+/]{43}=(,[a-zA-Z0-9_-]{1,32}:[A-Za-z0-9+/]{43}=)*$/,
        'kid:base64 32-byte key,…',
      ),
    vault_active_key_id: z.string().regex(/^[a-zA-Z0-9_-]{1,32}$/, 'a key id listed in vault_keys'),
    vault_fingerprint_key: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'a base64 32-byte key'),
    ws_in_flight_max: z.number().int().min(1).max(65_536),
    ws_idle_timeout_s: z.number().int().min(8).max(960),
    ws_backpressure_max_bytes: z
      .number()
      .int()
      .min(65_536)
      .max(64 * 1_048_576),
    risk_velocity_count_max: z.number().int().min(1).max(10_000),
    risk_velocity_window_ms: z.number().int().min(1000).max(86_400_000),
    risk_amount_per_day_max: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    risk_single_payment_max: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    payment_rows_reserved: z
      .number()
      .int()
      .min(1)
      .max(1 << 24),
    record_rows_reserved: z
      .number()
      .int()
      .min(1)
      .max(1 << 24),
    tls_cert_file: z.string(),
    tls_key_file: z.string(),
  })
  .strict();

export type Config = z.infer<typeof schema> & {
  lanes_effective: number;
  transaction_scope_effective: 'partition' | 'node';
};
export type ConfigKey = keyof z.infer<typeof schema>;

/** The node-wide default risk rules of new accounts (the domain's RiskRules), from the risk_* keys. */
export function riskRules(config: Config): RiskRules {
  return {
    velocity_count_max: config.risk_velocity_count_max,
    velocity_window_ms: config.risk_velocity_window_ms,
    amount_per_day_max: config.risk_amount_per_day_max,
    single_payment_max: config.risk_single_payment_max,
  };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const defaults_url = new URL('../config/default.json', import.meta.url);

export function configKeys(): ConfigKey[] {
  return Object.keys(schema.shape) as ConfigKey[];
}

/** Pure: the same inputs give the same config; tests pass their own env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const merged: Record<string, unknown> = { ...readJson(defaults_url.pathname, 'config/default.json') };
  if (env.CONFIG_FILE) Object.assign(merged, readJson(env.CONFIG_FILE, `CONFIG_FILE (${env.CONFIG_FILE})`));
  for (const key of configKeys()) {
    const raw = env[key.toUpperCase()];
    if (raw !== undefined) merged[key] = coerce(key, raw, merged[key]);
  }
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.join('.') || (issue as { keys?: string[] }).keys?.join(', ') || '?';
    throw new ConfigError(`invalid configuration key "${key}" (env ${key.toUpperCase()}): ${issue.message}`);
  }
  const config = parsed.data;
  refuseInsecureProduction(config);
  const lanes_effective = config.lanes > 0 ? config.lanes : Math.max(1, availableParallelism() - 1);
  return { ...config, lanes_effective, transaction_scope_effective: transactionScope(config) };
}

function transactionScope(config: z.infer<typeof schema>): 'partition' | 'node' {
  return config.transaction_scope === 'auto' ? 'node' : config.transaction_scope;
}

function readJson(path: string, label: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`cannot read ${label}: ${(err as Error).message}`);
  }
}

/** Environment values are strings; the type of the default decides how to read them. */
function coerce(key: string, raw: string, current: unknown): unknown {
  if (typeof current !== 'number') return raw;
  if (!/^-?\d+$/.test(raw.trim())) {
    throw new ConfigError(
      `invalid configuration key "${key}" (env ${key.toUpperCase()}): expected an integer`,
    );
  }
  return Number(raw);
}

/** The development vault keys shipped in config/default.json: fine on a laptop, refused in production. */
export const DEV_VAULT_KEY = '1KN3R9HbvAET7p92gX/zpqm+dMCW+Q8LP/BCYkm724k=';
export const DEV_FINGERPRINT_KEY = 'k51tFo/vxe16Zc1p4rzyqNcZD+yeqXxMIE32oTBkkUA=';

function refuseInsecureProduction(config: z.infer<typeof schema>): void {
  if (!config.vault_keys.split(',').some((entry) => entry.startsWith(`${config.vault_active_key_id}:`))) {
    throw new ConfigError(
      'invalid configuration key "vault_active_key_id" (env VAULT_ACTIVE_KEY_ID): not listed in vault_keys',
    );
  }
  if ((config.tls_cert_file === '') !== (config.tls_key_file === '')) {
    throw new ConfigError(
      'invalid configuration key "tls_key_file" (env TLS_KEY_FILE): set both tls_cert_file and tls_key_file, or neither',
    );
  }
  if (config.node_env !== 'production') return;
  if (config.api_keys.trim() === '') {
    throw new ConfigError(
      'invalid configuration key "api_keys" (env API_KEYS): production requires real API keys',
    );
  }
  if (config.vault_keys.includes(DEV_VAULT_KEY)) {
    throw new ConfigError(
      'invalid configuration key "vault_keys" (env VAULT_KEYS): production refuses the development vault key',
    );
  }
  if (config.vault_fingerprint_key === DEV_FINGERPRINT_KEY) {
    throw new ConfigError(
      'invalid configuration key "vault_fingerprint_key" (env VAULT_FINGERPRINT_KEY): production refuses the development key',
    );
  }
}

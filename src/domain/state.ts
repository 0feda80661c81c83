import { assert } from './assert.js';
import type { Currency } from './currency.js';
import { worldAccountId } from './ids.js';
import type { AccountState, DomainConfig, PartitionState, RiskRules } from './types.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

export const DEFAULT_RISK_RULES: Readonly<RiskRules> = {
  velocity_count_max: 20,
  velocity_window_ms: 60_000,
  amount_per_day_max: 10_000_000,
  single_payment_max: 1_000_000,
};

export const DEFAULT_DOMAIN_CONFIG: Readonly<DomainConfig> = {
  authorization_expiry_ms: 7 * DAY_MS,
  idempotency_retention_ms: DAY_MS,
  idempotency_records_max: 1_000_000,
  expirations_per_tick_max: 1_000,
  refunds_per_payment_max: 100,
  risk_rules: DEFAULT_RISK_RULES,
};

/** The world account's currency is a placeholder: it is the counterpart of deposits in any currency. */
const WORLD_CURRENCY = 'xxx' as Currency;

function assertPositiveInteger(value: number, name: string): void {
  assert(
    Number.isSafeInteger(value) && value > 0,
    `config: ${name} must be a positive safe integer, got ${value}`,
  );
}

export function assertRiskRules(rules: RiskRules): void {
  assertPositiveInteger(rules.velocity_count_max, 'velocity_count_max');
  assert(
    rules.velocity_count_max <= 10_000,
    'config: velocity_count_max must be <= 10000 (it bounds a per-account list)',
  );
  assertPositiveInteger(rules.velocity_window_ms, 'velocity_window_ms');
  assertPositiveInteger(rules.amount_per_day_max, 'amount_per_day_max');
  assertPositiveInteger(rules.single_payment_max, 'single_payment_max');
}

export function resolveConfig(config: Partial<DomainConfig> = {}): DomainConfig {
  const resolved: DomainConfig = {
    ...DEFAULT_DOMAIN_CONFIG,
    ...config,
    risk_rules: { ...DEFAULT_RISK_RULES, ...config.risk_rules },
  };
  assertPositiveInteger(resolved.authorization_expiry_ms, 'authorization_expiry_ms');
  assertPositiveInteger(resolved.idempotency_retention_ms, 'idempotency_retention_ms');
  assert(resolved.idempotency_retention_ms >= DAY_MS, 'config: idempotency_retention_ms must be >= 24 h');
  assertPositiveInteger(resolved.idempotency_records_max, 'idempotency_records_max');
  assertPositiveInteger(resolved.expirations_per_tick_max, 'expirations_per_tick_max');
  assertPositiveInteger(resolved.refunds_per_payment_max, 'refunds_per_payment_max');
  assertRiskRules(resolved.risk_rules);
  return resolved;
}

export function createPartitionState(partition: number, config?: Partial<DomainConfig>): PartitionState {
  assert(
    Number.isSafeInteger(partition) && partition >= 0,
    `partition must be a non-negative integer, got ${partition}`,
  );
  const state: PartitionState = {
    partition,
    config: resolveConfig(config),
    accounts: new Map(),
    payments: new Map(),
    tokens: new Map(),
    idempotency: new Map(),
    idempotency_previous: new Map(),
    idempotency_generation_started_ms: 0,
    idempotency_evicted_early_count: 0,
    authorizations: new Map(),
  };
  const world = newAccount(worldAccountId(partition), WORLD_CURRENCY, 'world', 0, 0, null);
  state.accounts.set(world.id, world);
  return state;
}

/** Every account object is built here so all share one hidden class (fast property access, small heap). */
export function newAccount(
  id: AccountState['id'],
  currency: Currency,
  kind: AccountState['kind'],
  overdraft_limit: number,
  created_ms: number,
  risk_rules: RiskRules | null,
): AccountState {
  return {
    id,
    currency,
    kind,
    status: 'active',
    overdraft_limit,
    posted: 0,
    pending: 0,
    created_ms,
    risk_rules,
    velocity_times_ms: null,
    day_index: 0,
    day_amount: 0,
  };
}

export function worldOf(state: PartitionState): AccountState {
  const world = state.accounts.get(worldAccountId(state.partition));
  assert(world !== undefined, `partition ${state.partition} lost its world account`);
  return world;
}

export function availableOf(account: AccountState): number {
  return account.posted - account.pending;
}

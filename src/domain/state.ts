import { assert } from './assert.js';
import type { Currency } from './currency.js';
import { worldAccountId } from './ids.js';
import { PaymentTable } from './payment-table.js';
import { RecordTable, type StoredRecord } from './record-table.js';
import type {
  AccountState,
  DomainConfig,
  PartitionState,
  PaymentState,
  RiskRules,
  TokenState,
} from './types.js';

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
  payment_rows_reserved: 4096,
  record_rows_reserved: 4096,
  risk_rules: DEFAULT_RISK_RULES,
};

/** Rows a new partition's payment table holds before it first doubles (a few hundred KB). */
export const PAYMENT_ROWS_INITIAL = 4096;
/** The same for each idempotency generation. */
export const RECORD_ROWS_INITIAL = 4096;
/** Bound on a configured reservation (rows per table): 2^24 payment rows are ~1.8 GB. */
export const TABLE_ROWS_RESERVED_MAX = 1 << 24;

/**
 * The reservation rule, for every way a table is made (new partition, checkpoint restore, snapshot): room for
 * `rows_expected` or the configured reservation, whichever is more; pages mapped when a reservation above
 * the built-in size was configured. `reserved` is undefined in configs saved before the keys existed.
 */
function reservedTable<T extends { touchPages(): void }>(
  reserved: number | undefined,
  rows_initial: number,
  rows_expected: number,
  make: (rows: number) => T,
): T {
  const rows_reserved = reserved ?? rows_initial;
  const table = make(Math.max(rows_reserved, rows_expected, rows_initial));
  if (rows_reserved > rows_initial) table.touchPages();
  return table;
}

/** A partition's payment table; `make` builds it from a row count (default: an empty table). */
export function paymentTableFor(
  config: DomainConfig,
  rows_expected: number,
  make: (rows: number) => PaymentTable = (rows) => new PaymentTable(rows),
): PaymentTable {
  return reservedTable(config.payment_rows_reserved, PAYMENT_ROWS_INITIAL, rows_expected, make);
}

/** An idempotency generation's table, as paymentTableFor. */
export function recordTableFor(
  config: DomainConfig,
  rows_expected: number,
  make: (rows: number) => RecordTable = (rows) => new RecordTable(rows),
): RecordTable {
  return reservedTable(config.record_rows_reserved, RECORD_ROWS_INITIAL, rows_expected, make);
}

/** The world account's currency is a placeholder: it is the counterpart of deposits in any currency. */
const WORLD_CURRENCY = 'xxx' as Currency;

function assertPositiveInteger(value: number, name: string): void {
  assert(
    Number.isSafeInteger(value) && value > 0,
    `config: ${name} must be a positive safe integer, got ${value}`,
  );
}

/** Bound on any account's velocity list (velocity_count_max can be no higher). */
export const VELOCITY_COUNT_LIMIT = 10_000;

export function assertRiskRules(rules: RiskRules): void {
  assertPositiveInteger(rules.velocity_count_max, 'velocity_count_max');
  assert(
    rules.velocity_count_max <= VELOCITY_COUNT_LIMIT,
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
  for (const key of ['payment_rows_reserved', 'record_rows_reserved'] as const) {
    assertPositiveInteger(resolved[key], key);
    assert(
      resolved[key] <= TABLE_ROWS_RESERVED_MAX,
      'config: %s must be <= %s',
      key,
      TABLE_ROWS_RESERVED_MAX,
    );
  }
  assertRiskRules(resolved.risk_rules);
  return resolved;
}

export function createPartitionState(partition: number, config?: Partial<DomainConfig>): PartitionState {
  assert(
    Number.isSafeInteger(partition) && partition >= 0,
    `partition must be a non-negative integer, got ${partition}`,
  );
  const resolved = resolveConfig(config);
  const state: PartitionState = {
    partition,
    config: resolved,
    accounts: new Map(),
    payments: paymentTableFor(resolved, 0),
    tokens: new Map(),
    idempotency: recordTableFor(resolved, 0),
    idempotency_previous: recordTableFor(resolved, 0),
    idempotency_generation_started_ms: 0,
    idempotency_evicted_early_count: 0,
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
  assert(world !== undefined, 'partition %s lost its world account', state.partition);
  return world;
}

export function availableOf(account: AccountState): number {
  return account.posted - account.pending;
}

/** Everything a partition's state holds, as plain values: what "two states are equal" means. */
export interface CanonicalState {
  partition: number;
  config: DomainConfig;
  accounts: Map<string, AccountState>;
  payments: Map<string, PaymentState>;
  /** Open authorizations in expiry-queue order: [payment id, expires_ms]. */
  open_authorizations: [string, number][];
  tokens: Map<string, TokenState>;
  idempotency: Map<string, StoredRecord>;
  idempotency_previous: Map<string, StoredRecord>;
  idempotency_generation_started_ms: number;
  idempotency_evicted_early_count: number;
}

/**
 * The state without its storage layout (table capacities, index slots, queue entries already closed), so
 * fold = live, snapshot round-trip and checkpoint restore compare what the ledger knows, not how it is
 * laid out in memory. Cold path: tests, tools.
 */
export function canonicalState(state: PartitionState): CanonicalState {
  return {
    partition: state.partition,
    config: state.config,
    accounts: new Map(state.accounts),
    payments: new Map(state.payments.entries()),
    open_authorizations: state.payments.openAuthorizations(),
    tokens: new Map(state.tokens),
    idempotency: new Map(state.idempotency),
    idempotency_previous: new Map(state.idempotency_previous),
    idempotency_generation_started_ms: state.idempotency_generation_started_ms,
    idempotency_evicted_early_count: state.idempotency_evicted_early_count,
  };
}

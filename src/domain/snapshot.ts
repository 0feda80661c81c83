import { Packr } from 'msgpackr';
import { assert } from './assert.js';
import type { PaymentId } from './ids.js';
import type {
  AccountState,
  DomainConfig,
  DomainEvent,
  PartitionState,
  PaymentState,
  TokenState,
} from './types.js';

/**
 * Snapshot codec (msgpackr). Records (`useRecords`) write each object shape once and then only values,
 * which is compact and fast for a million same-shaped accounts. Structures are NOT shared across snapshots:
 * each snapshot carries its own record definitions, so any old snapshot decodes without a registry.
 * `v` versions the layout below; decode refuses a version it does not know rather than guess.
 */
export const SNAPSHOT_VERSION = 1;

interface SnapshotV1 {
  v: 1;
  partition: number;
  config: DomainConfig;
  accounts: AccountState[];
  payments: PaymentState[];
  tokens: TokenState[];
  /** Idempotency records in insertion order; the key of each is its `command_id`. */
  idempotency: DomainEvent[];
  idempotency_previous: DomainEvent[];
  idempotency_generation_started_ms: number;
  idempotency_evicted_early_count: number;
  /** Expiry queue flattened: [payment_id, expires_ms, payment_id, expires_ms, ...] in queue order. */
  authorizations: (string | number)[];
}

const packr = new Packr({ useRecords: true, moreTypes: false, mapsAsObjects: true });

/**
 * msgpackr packs into one reusable arena: a result is overwritten by a later pack. Callers keep
 * snapshots (and transfer them between threads), so each result gets its own memory (one memcpy).
 */
function packOwned(value: unknown): Uint8Array {
  return new Uint8Array(packr.pack(value));
}

export function encodeSnapshot(state: PartitionState): Uint8Array {
  const authorizations: (string | number)[] = [];
  for (const [payment_id, expires_ms] of state.authorizations) authorizations.push(payment_id, expires_ms);
  const snapshot: SnapshotV1 = {
    v: SNAPSHOT_VERSION,
    partition: state.partition,
    config: state.config,
    accounts: [...state.accounts.values()],
    payments: [...state.payments.values()],
    tokens: [...state.tokens.values()],
    idempotency: [...state.idempotency.values()],
    idempotency_previous: [...state.idempotency_previous.values()],
    idempotency_generation_started_ms: state.idempotency_generation_started_ms,
    idempotency_evicted_early_count: state.idempotency_evicted_early_count,
    authorizations,
  };
  return packOwned(snapshot);
}

function recordsMap(records: DomainEvent[]): Map<string, DomainEvent> {
  const map = new Map<string, DomainEvent>();
  for (const record of records) map.set(record.command_id, record);
  return map;
}

export function decodeSnapshot(bytes: Uint8Array): PartitionState {
  const snapshot = packr.unpack(bytes) as SnapshotV1;
  assert(snapshot !== null && typeof snapshot === 'object', 'snapshot: not a record');
  assert(snapshot.v === SNAPSHOT_VERSION, `snapshot: unknown version ${String(snapshot.v)}`);
  const state: PartitionState = {
    partition: snapshot.partition,
    config: snapshot.config,
    accounts: new Map(),
    payments: new Map(),
    tokens: new Map(),
    idempotency: recordsMap(snapshot.idempotency),
    idempotency_previous: recordsMap(snapshot.idempotency_previous),
    idempotency_generation_started_ms: snapshot.idempotency_generation_started_ms,
    idempotency_evicted_early_count: snapshot.idempotency_evicted_early_count,
    authorizations: new Map(),
  };
  for (const account of snapshot.accounts) state.accounts.set(account.id, account);
  for (const payment of snapshot.payments) state.payments.set(payment.id, payment);
  for (const token of snapshot.tokens) state.tokens.set(token.id, token);
  const queue = snapshot.authorizations;
  assert(queue.length % 2 === 0, 'snapshot: authorization queue has an odd length');
  for (let i = 0; i < queue.length; i += 2)
    state.authorizations.set(queue[i] as PaymentId, queue[i + 1] as number);
  return state;
}

/**
 * One account actor, for incremental checkpoints of dirty actors (issue 5). Payments, tokens and
 * idempotency records are separate keyed entities: see encodePayment/encodeToken.
 */
export function encodeActor(account: AccountState): Uint8Array {
  return packOwned(account);
}

export function decodeActor(bytes: Uint8Array): AccountState {
  const account = packr.unpack(bytes) as AccountState;
  assert(typeof account?.id === 'string', 'actor: missing id');
  return account;
}

export function encodePayment(payment: PaymentState): Uint8Array {
  return packOwned(payment);
}

export function decodePayment(bytes: Uint8Array): PaymentState {
  const payment = packr.unpack(bytes) as PaymentState;
  assert(typeof payment?.id === 'string', 'payment: missing id');
  return payment;
}

export function encodeToken(token: TokenState): Uint8Array {
  return packOwned(token);
}

export function decodeToken(bytes: Uint8Array): TokenState {
  const token = packr.unpack(bytes) as TokenState;
  assert(typeof token?.id === 'string', 'token: missing id');
  return token;
}

import { Packr } from 'msgpackr';
import { assert } from './assert.js';
import { recordTableFor } from './idempotency.js';
import { PaymentTable } from './payment-table.js';
import type { RecordTable, StoredRecord } from './record-table.js';
import { PAYMENT_ROWS_INITIAL } from './state.js';
import type { AccountState, DomainConfig, PartitionState, PaymentState, TokenState } from './types.js';

/**
 * Snapshot codec (msgpackr). Records (`useRecords`) write each object shape once and then only values,
 * which is compact and fast for a million same-shaped accounts. Structures are NOT shared across snapshots:
 * each snapshot carries its own record definitions, so any old snapshot decodes without a registry.
 * `v` versions the layout below; decode refuses a version it does not know rather than guess.
 */
export const SNAPSHOT_VERSION = 2;

/**
 * v2 (current): payments carry no `command_id` (the event has it) and the expiry queue is not written: it
 * is the manual payments still requiring capture, in creation order, rebuilt from `payments`.
 * v1: as v2, plus `authorizations` (ignored on decode: the same queue) and `command_id` on payments.
 */
interface Snapshot {
  v: 1 | 2;
  partition: number;
  config: DomainConfig;
  accounts: AccountState[];
  payments: PaymentState[];
  tokens: TokenState[];
  /** Idempotency records in insertion order; the key of each is its `command_id`. v1: events only. */
  idempotency: StoredRecord[];
  idempotency_previous: StoredRecord[];
  idempotency_generation_started_ms: number;
  idempotency_evicted_early_count: number;
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
  const snapshot: Snapshot = {
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
  };
  return packOwned(snapshot);
}

function recordsTable(records: StoredRecord[]): RecordTable {
  const table = recordTableFor(records.length);
  for (const record of records) table.set(record.command_id, record);
  return table;
}

export function decodeSnapshot(bytes: Uint8Array): PartitionState {
  const snapshot = packr.unpack(bytes) as Snapshot;
  assert(snapshot !== null && typeof snapshot === 'object', 'snapshot: not a record');
  assert(snapshot.v === 1 || snapshot.v === 2, 'snapshot: unknown version %s', String(snapshot.v));
  const state: PartitionState = {
    partition: snapshot.partition,
    config: snapshot.config,
    accounts: new Map(),
    payments: new PaymentTable(Math.max(PAYMENT_ROWS_INITIAL, snapshot.payments.length)),
    tokens: new Map(),
    idempotency: recordsTable(snapshot.idempotency),
    idempotency_previous: recordsTable(snapshot.idempotency_previous),
    idempotency_generation_started_ms: snapshot.idempotency_generation_started_ms,
    idempotency_evicted_early_count: snapshot.idempotency_evicted_early_count,
  };
  for (const account of snapshot.accounts) state.accounts.set(account.id, account);
  for (const payment of snapshot.payments) state.payments.set(payment.id, withoutCommandId(payment));
  for (const token of snapshot.tokens) state.tokens.set(token.id, token);
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

/** Payments written before v2 carry the creating command's id; it now lives on the event only. */
function withoutCommandId(payment: PaymentState & { command_id?: string }): PaymentState {
  if (payment.command_id === undefined) return payment;
  const { command_id: _, ...rest } = payment;
  return rest;
}

export function decodePayment(bytes: Uint8Array): PaymentState {
  const payment = packr.unpack(bytes) as PaymentState;
  assert(typeof payment?.id === 'string', 'payment: missing id');
  return withoutCommandId(payment);
}

export function encodeToken(token: TokenState): Uint8Array {
  return packOwned(token);
}

export function decodeToken(bytes: Uint8Array): TokenState {
  const token = packr.unpack(bytes) as TokenState;
  assert(typeof token?.id === 'string', 'token: missing id');
  return token;
}

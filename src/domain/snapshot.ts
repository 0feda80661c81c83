import { Packr } from 'msgpackr';
import { assert } from './assert.js';
import { type PaymentColumns, PaymentTable } from './payment-table.js';
import { type RecordColumns, RecordTable, type StoredRecord } from './record-table.js';
import { paymentTableFor, recordTableFor } from './state.js';
import type { IndexKeys } from './string-index.js';
import type { AccountState, DomainConfig, PartitionState, PaymentState, TokenState } from './types.js';

/**
 * Snapshot codec (msgpackr). Records (`useRecords`) write each object shape once and then only values,
 * which is compact and fast for a million same-shaped accounts. Structures are NOT shared across snapshots:
 * each snapshot carries its own record definitions, so any old snapshot decodes without a registry.
 * `v` versions the layout below; decode refuses a version it does not know rather than guess.
 */
export const SNAPSHOT_VERSION = 3;

/**
 * v3 (current): payments and idempotency records as their tables' columns: typed arrays written as their
 * bytes (little-endian, checked), strings once each; accounts and tokens as records. Encoding is a copy of
 * the used part of each column, decoding a copy back plus rebuilding the id indexes, with no object per
 * payment or per leg record on either side.
 * v2: payments and records as objects (one each), no expiry queue (rebuilt from the payments).
 * v1: as v2, plus `authorizations` (ignored on decode: the same queue) and `command_id` on payments.
 */
interface SnapshotV3 {
  v: 3;
  little_endian: true;
  partition: number;
  config: DomainConfig;
  accounts: AccountState[];
  tokens: TokenState[];
  payments: WirePaymentColumns;
  idempotency: WireRecordColumns;
  idempotency_previous: WireRecordColumns;
  idempotency_generation_started_ms: number;
  idempotency_evicted_early_count: number;
}

interface SnapshotV2 {
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

/** Typed arrays travel as msgpack bin (their bytes); the rest of each column set as it is. */
type Wire<T> = { [K in keyof T]: T[K] extends Uint16Array | Uint32Array | Float64Array ? Uint8Array : T[K] };
type WireKeys = Wire<IndexKeys>;
type WirePaymentColumns = Omit<Wire<PaymentColumns>, 'keys' | 'amounts'> & {
  keys: WireKeys;
  amounts: Uint8Array[];
};
type WireRecordColumns = Omit<RecordColumns, 'keys'> & { keys: WireKeys };

const packr = new Packr({ useRecords: true, moreTypes: false, mapsAsObjects: true });
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * msgpackr packs into one reusable arena: a result is overwritten by a later pack. Callers keep
 * snapshots (and transfer them between threads), so each result gets its own memory (one memcpy).
 */
function packOwned(value: unknown): Uint8Array {
  return new Uint8Array(packr.pack(value));
}

function bytesOf(array: Uint16Array | Uint32Array | Float64Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** A fresh, aligned typed array from bin bytes (a decoded bin may sit at any offset of the input). */
function fromBytes<T extends Uint16Array | Uint32Array | Float64Array>(
  Type: { new (length: number): T; BYTES_PER_ELEMENT: number },
  bytes: Uint8Array,
): T {
  assert(bytes.byteLength % Type.BYTES_PER_ELEMENT === 0, 'snapshot: a column has a partial element');
  const array = new Type(bytes.byteLength / Type.BYTES_PER_ELEMENT);
  new Uint8Array(array.buffer).set(bytes);
  return array;
}

function keysToWire(keys: IndexKeys): WireKeys {
  return { ...keys, key_length: bytesOf(keys.key_length) };
}

function keysFromWire(keys: WireKeys): IndexKeys {
  return { ...keys, key_length: fromBytes(Uint16Array, keys.key_length) };
}

function paymentsToWire(c: PaymentColumns): WirePaymentColumns {
  return {
    ...c,
    keys: keysToWire(c.keys),
    payer: bytesOf(c.payer),
    payee: bytesOf(c.payee),
    currency: bytesOf(c.currency),
    amounts: c.amounts.map(bytesOf),
  };
}

function paymentsFromWire(c: WirePaymentColumns): PaymentColumns {
  return {
    ...c,
    keys: keysFromWire(c.keys),
    payer: fromBytes(Uint32Array, c.payer),
    payee: fromBytes(Uint32Array, c.payee),
    currency: fromBytes(Uint16Array, c.currency),
    amounts: c.amounts.map((bytes) => fromBytes(Float64Array, bytes)),
  };
}

function recordsToWire(table: RecordTable): WireRecordColumns {
  const columns = table.toColumns();
  return { ...columns, keys: keysToWire(columns.keys) };
}

function recordsFromWire(c: WireRecordColumns, config: DomainConfig): RecordTable {
  const columns = { ...c, keys: keysFromWire(c.keys) };
  return recordTableFor(config, 0, (rows) => RecordTable.fromColumns(columns, rows));
}

function paymentsFromColumns(c: WirePaymentColumns, config: DomainConfig): PaymentTable {
  const columns = paymentsFromWire(c);
  return paymentTableFor(config, 0, (rows) => PaymentTable.fromColumns(columns, rows));
}

export function encodeSnapshot(state: PartitionState): Uint8Array {
  assert(LITTLE_ENDIAN, 'snapshot: columns are written little-endian; this platform is not');
  const snapshot: SnapshotV3 = {
    v: SNAPSHOT_VERSION,
    little_endian: true,
    partition: state.partition,
    config: state.config,
    accounts: [...state.accounts.values()],
    tokens: [...state.tokens.values()],
    payments: paymentsToWire(state.payments.toColumns()),
    idempotency: recordsToWire(state.idempotency),
    idempotency_previous: recordsToWire(state.idempotency_previous),
    idempotency_generation_started_ms: state.idempotency_generation_started_ms,
    idempotency_evicted_early_count: state.idempotency_evicted_early_count,
  };
  return packOwned(snapshot);
}

export function decodeSnapshot(bytes: Uint8Array): PartitionState {
  const snapshot = packr.unpack(bytes) as SnapshotV3 | SnapshotV2;
  assert(snapshot !== null && typeof snapshot === 'object', 'snapshot: not a record');
  if (snapshot.v === 1 || snapshot.v === 2) return decodeObjects(snapshot);
  assert(snapshot.v === 3, 'snapshot: unknown version %s', String(snapshot.v));
  assert(snapshot.little_endian === true && LITTLE_ENDIAN, 'snapshot: byte order differs from this platform');
  const state: PartitionState = {
    partition: snapshot.partition,
    config: snapshot.config,
    accounts: new Map(),
    payments: paymentsFromColumns(snapshot.payments, snapshot.config),
    tokens: new Map(),
    idempotency: recordsFromWire(snapshot.idempotency, snapshot.config),
    idempotency_previous: recordsFromWire(snapshot.idempotency_previous, snapshot.config),
    idempotency_generation_started_ms: snapshot.idempotency_generation_started_ms,
    idempotency_evicted_early_count: snapshot.idempotency_evicted_early_count,
  };
  for (const account of snapshot.accounts) state.accounts.set(account.id, account);
  for (const token of snapshot.tokens) state.tokens.set(token.id, token);
  return state;
}

function recordsTable(records: StoredRecord[], config: DomainConfig): RecordTable {
  const table = recordTableFor(config, records.length);
  for (const record of records) table.set(record.command_id, record);
  return table;
}

/** v1 and v2: one object per payment and per record. */
function decodeObjects(snapshot: SnapshotV2): PartitionState {
  const state: PartitionState = {
    partition: snapshot.partition,
    config: snapshot.config,
    accounts: new Map(),
    payments: paymentTableFor(snapshot.config, snapshot.payments.length),
    tokens: new Map(),
    idempotency: recordsTable(snapshot.idempotency, snapshot.config),
    idempotency_previous: recordsTable(snapshot.idempotency_previous, snapshot.config),
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

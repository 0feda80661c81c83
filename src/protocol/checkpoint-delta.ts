import {
  type AccountState,
  type DomainEvent,
  decodeActor,
  decodePayment,
  decodeToken,
  encodeActor,
  encodePayment,
  encodeToken,
  type PartitionState,
  paymentTableFor,
  recordTableFor,
  type StoredRecord,
  worldAccountId,
} from '../domain/index.js';
import { decode, encodeOwned } from './wire.js';

/**
 * Incremental checkpoints. A lane remembers which entities of a partition changed since its last
 * checkpoint (from the events it applied), and a checkpoint carries only those: accounts, payments, tokens
 * and idempotency records, plus the small partition metadata. Redis holds one hash per entity kind and one
 * per idempotency generation (generations rotate whole, see src/domain/idempotency.ts), so a delta is a set
 * of field writes. `full` rewrites everything: the first checkpoint of a partition, and the one after a
 * failed write (whose delta is lost).
 *
 *   lane: apply/replay ──▶ DirtyTracker ──takeDelta──▶ CheckpointDelta ──▶ Redis (checkpoint.lua, atomic)
 *   restore: Redis parts ──▶ stateFromParts ──▶ lane
 */
export type Entry = [id: string, bytes: Uint8Array];

export interface CheckpointDelta {
  full: boolean;
  meta: Uint8Array;
  generation_current_id: string;
  generation_previous_id: string | null;
  /** True when the Redis hash of that generation must be rewritten whole (it rotated since). */
  records_current_full: boolean;
  records_previous_full: boolean;
  accounts: Entry[];
  payments: Entry[];
  tokens: Entry[];
  records_current: Entry[];
  records_previous: Entry[];
}

/** What Redis gives back on restore. */
export interface CheckpointParts {
  meta: Uint8Array;
  generation_current_id: string;
  generation_previous_id: string | null;
  accounts: Uint8Array[];
  payments: Uint8Array[];
  tokens: Uint8Array[];
  records_current: Uint8Array[];
  records_previous: Uint8Array[];
}

/**
 * v2: no expiry queue (the domain rebuilds it from the payments: manual ones still requiring capture, in
 * creation order). v1 also carried it as `authorizations`, which restore ignores.
 */
interface Meta {
  v: 1 | 2;
  partition: number;
  config: PartitionState['config'];
  idempotency_generation_started_ms: number;
  idempotency_evicted_early_count: number;
}

export class DirtyTracker {
  readonly accounts = new Set<string>();
  readonly payments = new Set<string>();
  readonly tokens = new Set<string>();
  readonly records = new Set<string>();
  /** Ids under which the store holds the idempotency generations (as of the last delta taken). */
  generation_current_id: string | null = null;
  generation_previous_id: string | null = null;
  full = true;

  get size(): number {
    return this.accounts.size + this.payments.size + this.tokens.size + this.records.size;
  }

  /** Every entity an event can change is named on the event. */
  track(partition: number, event: DomainEvent): void {
    this.accounts.add(event.account_id);
    if (event.type === 'deposited') this.accounts.add(worldAccountId(partition));
    const e = event as { payment_id?: string; token_id?: string };
    if (e.payment_id !== undefined) this.payments.add(e.payment_id);
    if (e.token_id !== undefined) this.tokens.add(e.token_id);
    this.records.add(event.command_id);
  }

  clear(): void {
    this.accounts.clear();
    this.payments.clear();
    this.tokens.clear();
    this.records.clear();
  }
}

/**
 * Idempotency generations are stored under ids of our own (the domain keeps only the current generation's
 * start). Records only ever go to the current generation, so without a rotation the previous one is
 * unchanged; after a rotation both are rewritten whole (once per retention period, or at the bound).
 */
export function takeDelta(state: PartitionState, dirty: DirtyTracker): CheckpointDelta {
  const full = dirty.full;
  const current_id = String(state.idempotency_generation_started_ms);
  const rotated = !full && dirty.generation_current_id !== current_id;
  const rewrite = full || rotated;
  let previous_id: string | null = null;
  if (state.idempotency_previous.size > 0) {
    previous_id = rewrite ? `${current_id}p` : dirty.generation_previous_id;
    if (previous_id === null) throw new Error('checkpoint invariant: previous generation has no stored id');
  }
  const delta: CheckpointDelta = {
    full,
    meta: encodeOwned(metaOf(state)),
    generation_current_id: current_id,
    generation_previous_id: previous_id,
    records_current_full: rewrite,
    records_previous_full: rewrite,
    accounts: entries(full ? state.accounts.keys() : dirty.accounts, state.accounts, encodeActor),
    payments: entries(full ? state.payments.keys() : dirty.payments, state.payments, encodePayment),
    tokens: entries(full ? state.tokens.keys() : dirty.tokens, state.tokens, encodeToken),
    records_current: entries(
      rewrite ? state.idempotency.keys() : dirty.records,
      state.idempotency,
      encodeOwned,
    ),
    records_previous: rewrite
      ? entries(state.idempotency_previous.keys(), state.idempotency_previous, encodeOwned)
      : [],
  };
  dirty.clear();
  dirty.full = false;
  dirty.generation_current_id = current_id;
  dirty.generation_previous_id = previous_id;
  return delta;
}

function entries<T>(
  ids: Iterable<string>,
  lookup: { get(id: string): T | undefined },
  encode: (value: T) => Uint8Array,
): Entry[] {
  const out: Entry[] = [];
  for (const id of ids) {
    const value = lookup.get(id);
    if (value !== undefined) out.push([id, encode(value)]);
  }
  return out;
}

function metaOf(state: PartitionState): Meta {
  return {
    v: 2,
    partition: state.partition,
    config: state.config,
    idempotency_generation_started_ms: state.idempotency_generation_started_ms,
    idempotency_evicted_early_count: state.idempotency_evicted_early_count,
  };
}

export function stateFromParts(parts: CheckpointParts): PartitionState {
  const meta = decode<Meta>(parts.meta);
  if (meta?.v !== 1 && meta?.v !== 2) throw new Error(`checkpoint: unknown meta version ${String(meta?.v)}`);
  const state: PartitionState = {
    partition: meta.partition,
    config: meta.config,
    accounts: new Map(),
    payments: paymentTableFor(meta.config, parts.payments.length),
    tokens: new Map(),
    idempotency: recordTableFor(meta.config, parts.records_current.length),
    idempotency_previous: recordTableFor(meta.config, parts.records_previous.length),
    idempotency_generation_started_ms: meta.idempotency_generation_started_ms,
    idempotency_evicted_early_count: meta.idempotency_evicted_early_count,
  };
  for (const bytes of parts.accounts) {
    const account: AccountState = decodeActor(bytes);
    state.accounts.set(account.id, account);
  }
  // Redis returns a hash in no useful order; payments go back in creation order (ties by id, so every
  // restore lays them out alike), which keeps the expiry queue the domain rebuilds in expiry order.
  const payments = parts.payments.map(decodePayment);
  payments.sort((a, b) => a.created_ms - b.created_ms || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const payment of payments) state.payments.set(payment.id, payment);
  for (const bytes of parts.tokens) {
    const token = decodeToken(bytes);
    state.tokens.set(token.id, token);
  }
  for (const bytes of parts.records_current) {
    const record = decode<StoredRecord>(bytes);
    state.idempotency.set(record.command_id, record);
  }
  for (const bytes of parts.records_previous) {
    const record = decode<StoredRecord>(bytes);
    state.idempotency_previous.set(record.command_id, record);
  }
  return state;
}

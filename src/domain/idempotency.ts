import type { StoredRecord } from './record-table.js';
import { hashKey } from './string-index.js';
import type { Command, DomainEvent, EventType, PartitionState } from './types.js';

/**
 * Idempotency records: command_id (or a leg's transfer id) -> the event that recorded its outcome (for a
 * leg, its type only: see record-table.ts).
 *
 * Two generations, like a rotating log:  previous ◀── current ◀── new records
 * A new generation starts when the current one is `idempotency_retention_ms` old; the previous one is
 * then dropped whole. So a record lives between 1x and 2x the retention (>= 24 h), and dropping costs
 * O(1) per record (the dropped table is cleared and reused as the next current one: its memory is already
 * paged in). Bound: a generation also rotates when it holds `idempotency_records_max / 2` records, so both
 * together never exceed `idempotency_records_max`; records dropped by such an early rotation are counted
 * in `idempotency_evicted_early_count` (alert on it).
 * Cost per command: one or two index lookups and one insert, no allocation.
 *
 * Payment creation is NOT recorded here: the payment itself (kept for ever) is its durable record, keyed by
 * the payment id the gateway derives from the idempotency key (see decideCreatePayment).
 */

/** Every command but payment creation asks this; the key is hashed once for both generations. */
export function findRecord(state: PartitionState, key: string): StoredRecord | undefined {
  const hash = hashKey(key);
  let row = state.idempotency.findHashed(key, hash);
  if (row >= 0) return state.idempotency.recordOf(row, key);
  row = state.idempotency_previous.findHashed(key, hash);
  return row >= 0 ? state.idempotency_previous.recordOf(row, key) : undefined;
}

/** The outcome type recorded under `key`, or null; builds nothing. */
export function recordType(state: PartitionState, key: string): EventType | null {
  const hash = hashKey(key);
  let row = state.idempotency.findHashed(key, hash);
  if (row >= 0) return state.idempotency.typeOf(row);
  row = state.idempotency_previous.findHashed(key, hash);
  return row >= 0 ? state.idempotency_previous.typeOf(row) : null;
}

export function sameFingerprint(command: Command, record: StoredRecord): boolean {
  const fingerprint = 'fingerprint' in record ? record.fingerprint : null;
  return (command.fingerprint ?? null) === fingerprint;
}

function generationRecordsMax(state: PartitionState): number {
  return Math.max(1, Math.floor(state.config.idempotency_records_max / 2));
}

/** Called by evolve for every event: the command's last event becomes its record. */
export function remember(state: PartitionState, event: DomainEvent): void {
  if (event.type === 'payment_created' || event.type === 'payment_declined') return;
  const age_ms = event.time_ms - state.idempotency_generation_started_ms;
  if (age_ms >= state.config.idempotency_retention_ms) {
    rotate(state, event.time_ms);
  } else if (
    state.idempotency.size >= generationRecordsMax(state) &&
    !state.idempotency.has(event.command_id)
  ) {
    // Over the bound before the retention passed: the previous generation goes early.
    state.idempotency_evicted_early_count += state.idempotency_previous.size;
    rotate(state, event.time_ms);
  }
  state.idempotency.set(event.command_id, event);
}

function rotate(state: PartitionState, now_ms: number): void {
  const recycled = state.idempotency_previous;
  recycled.clear();
  state.idempotency_previous = state.idempotency;
  state.idempotency = recycled;
  state.idempotency_generation_started_ms = now_ms;
}

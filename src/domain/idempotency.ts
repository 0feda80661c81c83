import type { Command, DomainEvent, PartitionState } from './types.js';

/**
 * Idempotency records: command_id (or a leg's transfer id) -> the event that recorded its outcome.
 *
 * Two generations, like a rotating log:  previous ◀── current ◀── new records
 * A new generation starts when the current one is `idempotency_retention_ms` old; the previous one is
 * then dropped whole. So a record lives between 1x and 2x the retention (>= 24 h), and dropping costs
 * O(1) (no per-record sweep, no Map holes to skip). Bound: a generation also rotates when it holds
 * `idempotency_records_max / 2` records, so both together never exceed `idempotency_records_max`; records
 * dropped by such an early rotation are counted in `idempotency_evicted_early_count` (alert on it).
 * Cost per command: one or two Map.get and one Map.set.
 *
 * Payment creation is NOT recorded here: the payment itself (kept for ever) is its durable record, keyed by
 * the payment id the gateway derives from the idempotency key (see decideCreatePayment).
 */

export function findRecord(state: PartitionState, key: string): DomainEvent | undefined {
  return state.idempotency.get(key) ?? state.idempotency_previous.get(key);
}

export function sameFingerprint(command: Command, record: DomainEvent): boolean {
  return (command.fingerprint ?? null) === record.fingerprint;
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
  state.idempotency_previous = state.idempotency;
  state.idempotency = new Map();
  state.idempotency_generation_started_ms = now_ms;
}

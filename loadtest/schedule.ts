/**
 * Open-loop (constant arrival rate) schedule. The aggregate rate R is split over W workers by
 * interleaving: request i of worker w is due at
 *
 *   start + offset_w + i · interval,   interval = W / R,   offset_w = w / R
 *
 *   worker 0: x . . x . . x        (W = 3; every x is one scheduled send; the union is evenly spaced at 1/R)
 *   worker 1: . x . . x . . x
 *   worker 2: . . x . . x . .
 *
 * Latency is measured from the *intended* time, not from when the request was actually written, so a slow
 * server (or a generator short of connections) shows up as queueing delay instead of being hidden by a
 * sender that politely waited (coordinated omission).
 */
export interface Schedule {
  start_ms: number;
  interval_ms: number;
  offset_ms: number;
  /** Number of sends of this worker whose intended time is before the end. */
  total: number;
}

export function makeSchedule(
  rate_per_s: number,
  workers: number,
  worker_index: number,
  start_ms: number,
  end_ms: number,
): Schedule {
  if (!(rate_per_s > 0) || !Number.isFinite(rate_per_s)) throw new Error(`rate must be > 0: ${rate_per_s}`);
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`workers must be ≥ 1: ${workers}`);
  if (!(worker_index >= 0 && worker_index < workers)) throw new Error(`worker index out of range`);
  const interval_ms = (workers * 1000) / rate_per_s;
  const offset_ms = (worker_index * 1000) / rate_per_s;
  const span_ms = end_ms - start_ms - offset_ms;
  const total = span_ms > 0 ? Math.ceil(span_ms / interval_ms) : 0;
  return { start_ms, interval_ms, offset_ms, total };
}

export function intendedMs(s: Schedule, i: number): number {
  return s.start_ms + s.offset_ms + i * s.interval_ms;
}

/** How many sends are due at `now_ms` (intended time ≤ now), capped at the schedule's total. */
export function dueCount(s: Schedule, now_ms: number): number {
  const elapsed = now_ms - s.start_ms - s.offset_ms;
  if (elapsed < 0) return 0;
  return Math.min(s.total, Math.floor(elapsed / s.interval_ms) + 1);
}

/** Splits `total` units (connections, rate share) over `parts` as evenly as possible. */
export function split(total: number, parts: number, index: number): number {
  const base = Math.floor(total / parts);
  return base + (index < total % parts ? 1 : 0);
}

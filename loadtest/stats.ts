import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

/**
 * Latency statistics on `perf_hooks.createHistogram` (HdrHistogram inside Node, 3 significant figures).
 * Values are recorded in microseconds; histograms are cloneable over `postMessage`, so each worker keeps
 * its own and the main thread merges them with `add` (no sampling, no averaging of percentiles).
 */
export const LATENCY_US_LOWEST = 1;
/** 2 minutes: anything slower is clamped (and is a timeout by any reasonable setting). */
export const LATENCY_US_HIGHEST = 120_000_000;

export function newHistogram(): RecordableHistogram {
  return createHistogram({ lowest: LATENCY_US_LOWEST, highest: LATENCY_US_HIGHEST, figures: 3 });
}

export function recordUs(histogram: RecordableHistogram, us: number): void {
  const clamped = Math.min(LATENCY_US_HIGHEST, Math.max(LATENCY_US_LOWEST, Math.round(us)));
  histogram.record(clamped);
}

/** The figures every report shows, in milliseconds. */
export interface LatencySummary {
  count: number;
  min_ms: number;
  mean_ms: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
}

/** Histogram-like view, so pure code and tests can summarise without a real histogram. */
export interface HistogramView {
  count: number;
  min: number;
  max: number;
  mean: number;
  percentile(p: number): number;
}

const us_to_ms = (us: number) => Math.round(us) / 1000;

export function summarize(h: HistogramView): LatencySummary {
  if (h.count === 0)
    return { count: 0, min_ms: 0, mean_ms: 0, p50_ms: 0, p90_ms: 0, p99_ms: 0, p999_ms: 0, max_ms: 0 };
  return {
    count: h.count,
    min_ms: us_to_ms(h.min),
    mean_ms: us_to_ms(h.mean),
    p50_ms: us_to_ms(h.percentile(50)),
    p90_ms: us_to_ms(h.percentile(90)),
    p99_ms: us_to_ms(h.percentile(99)),
    p999_ms: us_to_ms(h.percentile(99.9)),
    max_ms: us_to_ms(h.max),
  };
}

/** Percentiles for the distribution plot: evenly spaced on a log(1 / (1 − p)) axis, up to the max. */
export const DISTRIBUTION_PERCENTILES: readonly number[] = [
  0, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 99.75, 99.9, 99.95, 99.975, 99.99, 99.995, 99.999, 100,
];

export function distribution(h: HistogramView): Array<{ percentile: number; ms: number }> {
  if (h.count === 0) return [];
  return DISTRIBUTION_PERCENTILES.map((p) => ({
    percentile: p,
    ms: us_to_ms(p === 100 ? h.max : p === 0 ? h.min : h.percentile(p)),
  }));
}

/** Outcome counters keyed by `"<status> <code>"` (e.g. `"201"`, `"402 insufficient_funds"`, `"timeout"`). */
export type Counts = Record<string, number>;

export function addCounts(into: Counts, from: Counts): Counts {
  for (const [key, n] of Object.entries(from)) into[key] = (into[key] ?? 0) + n;
  return into;
}

export function sumCounts(counts: Counts, keep: (key: string) => boolean = () => true): number {
  let total = 0;
  for (const [key, n] of Object.entries(counts)) if (keep(key)) total += n;
  return total;
}

/**
 * Classifies an outcome key. 2xx are successes (`202` is the gateway's reply timeout: durable but not yet
 * answered, so it is listed apart); `402` is a decline, a normal business answer; everything else, including
 * transport failures and timeouts, is an error.
 */
export function outcomeClass(key: string): 'ok' | 'processing' | 'declined' | 'error' {
  if (key.startsWith('202')) return 'processing';
  if (key.startsWith('2')) return 'ok';
  if (key.startsWith('402')) return 'declined';
  return 'error';
}

/** One second of the run, merged over workers. */
export interface TimelinePoint {
  t_s: number;
  /** Requests whose scheduled (open loop) or actual (closed loop) send time fell into this second. */
  sent: number;
  completed: number;
  errors: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  warmup: boolean;
}

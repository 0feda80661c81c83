import { AsyncLocalStorage } from 'node:async_hooks';
import { Kafka, logLevel } from 'kafkajs';

/**
 * What the client sees and what the group lags, second by second, while a chaos scenario runs.
 *
 * Client side: `globalThis.fetch` is wrapped while the monitor is installed, so the load driver
 * (test/support/load-driver.ts, reused unchanged) and every other client of the scenario are measured
 * without changes: each attempt (a retry is a new attempt) lands in the bucket of the second it ended in.
 * Broker side: a sampler reads the processor group's committed offsets and the commands topic's end offsets
 * with its own admin client once a second (lag = end − committed per partition; a lag of 1 on an idle
 * partition is a transaction marker).
 *
 * Bounds: one bucket per second, at most `seconds_max` of them (older ones are dropped); latencies per
 * bucket at most `latencies_max` (a uniform reservoir past it), so memory is O(seconds_max × latencies_max).
 */
export interface Bucket {
  second: number;
  ok: number;
  /** HTTP 5xx answers. */
  errors_5xx: number;
  /** fetch rejected: refused, reset, aborted. */
  transport_errors: number;
  latencies_ms: number[];
  seen: number;
}

export interface Attempt {
  origin: string;
  started_ms: number;
  ended_ms: number;
  status: number;
  /** Error name/code of a transport failure, '' otherwise. */
  error: string;
}

const seconds_max = 3600;

/** Requests made inside `untracked(fn)` (duplicate storms, impatient clients, fuzzing) are not measured. */
const untracked_scope = new AsyncLocalStorage<true>();
export function untracked<T>(fn: () => Promise<T>): Promise<T> {
  return untracked_scope.run(true, fn);
}
const latencies_max = 4000;

export class Monitor {
  readonly buckets = new Map<number, Bucket>();
  /** Answers by HTTP status (and 'transport' for fetch failures), measured requests only. */
  readonly statuses: Record<string, number> = {};
  /** Max lag per partition at each sampled second (null: the broker did not answer). */
  readonly lag = new Map<number, number | null>();
  readonly #t0_ms = Date.now();
  #original_fetch: typeof fetch | null = null;
  #lag_timer: NodeJS.Timeout | null = null;
  #lag_busy = false;
  #kafka: Kafka | null = null;
  /** Optional per-attempt hook (drain scenario: which requests were in flight at SIGTERM). */
  onAttempt: ((attempt: Attempt) => void) | null = null;

  second(ms = Date.now()): number {
    return Math.floor((ms - this.#t0_ms) / 1000);
  }

  install(): this {
    if (this.#original_fetch) return this;
    const original = globalThis.fetch;
    this.#original_fetch = original;
    const wrapped: typeof fetch = async (input, init) => {
      if (untracked_scope.getStore()) return original(input, init);
      const started_ms = Date.now();
      const origin = originOf(input);
      try {
        const res = await original(input, init);
        this.#record(origin, started_ms, res.status, '');
        return res;
      } catch (err) {
        this.#record(origin, started_ms, 0, errorName(err));
        throw err;
      }
    };
    globalThis.fetch = wrapped;
    return this;
  }

  uninstall(): void {
    if (this.#original_fetch) globalThis.fetch = this.#original_fetch;
    this.#original_fetch = null;
    if (this.#lag_timer) clearInterval(this.#lag_timer);
    this.#lag_timer = null;
  }

  /** Samples the group's lag once a second against `brokers` until uninstall(). */
  sampleLag(brokers: string[], topic_prefix: string): void {
    this.#kafka = new Kafka({
      brokers,
      clientId: 'chaos-lag',
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1000,
      requestTimeout: 2000,
      retry: { retries: 0 },
    });
    const topic = `${topic_prefix}.commands`;
    const group = `${topic_prefix}.processor`;
    this.#lag_timer = setInterval(() => {
      if (this.#lag_busy || !this.#kafka) return;
      this.#lag_busy = true;
      const second = this.second();
      readLag(this.#kafka, topic, group)
        .then(
          (lag) => this.lag.set(second, lag),
          () => this.lag.set(second, null),
        )
        .finally(() => {
          this.#lag_busy = false;
        });
    }, 1000);
  }

  #record(origin: string, started_ms: number, status: number, error: string): void {
    const ended_ms = Date.now();
    this.onAttempt?.({ origin, started_ms, ended_ms, status, error });
    const key = status === 0 ? 'transport' : String(status);
    this.statuses[key] = (this.statuses[key] ?? 0) + 1;
    const second = this.second(ended_ms);
    let bucket = this.buckets.get(second);
    if (!bucket) {
      bucket = { second, ok: 0, errors_5xx: 0, transport_errors: 0, latencies_ms: [], seen: 0 };
      this.buckets.set(second, bucket);
      if (this.buckets.size > seconds_max) this.buckets.delete(this.buckets.keys().next().value!);
    }
    if (status === 0) bucket.transport_errors++;
    else if (status >= 500) bucket.errors_5xx++;
    else bucket.ok++;
    // Reservoir sampling keeps the percentile estimate unbiased past the bound.
    bucket.seen++;
    const latency_ms = ended_ms - started_ms;
    if (bucket.latencies_ms.length < latencies_max) bucket.latencies_ms.push(latency_ms);
    else {
      const slot = Math.floor(Math.random() * bucket.seen);
      if (slot < latencies_max) bucket.latencies_ms[slot] = latency_ms;
    }
  }

  /** Successful answers per second over [from, to) seconds. */
  okPerSecond(from: number, to: number): number {
    let ok = 0;
    for (let s = from; s < to; s++) ok += this.buckets.get(s)?.ok ?? 0;
    return to > from ? ok / (to - from) : 0;
  }

  p99(from: number, to: number): number | null {
    const all: number[] = [];
    for (let s = from; s < to; s++) all.push(...(this.buckets.get(s)?.latencies_ms ?? []));
    return percentile(all, 0.99);
  }

  errors(from: number, to: number): { errors_5xx: number; transport_errors: number } {
    let errors_5xx = 0;
    let transport_errors = 0;
    for (let s = from; s < to; s++) {
      errors_5xx += this.buckets.get(s)?.errors_5xx ?? 0;
      transport_errors += this.buckets.get(s)?.transport_errors ?? 0;
    }
    return { errors_5xx, transport_errors };
  }

  /** Highest lag sampled in [from, to); null if never sampled. */
  lagMax(from: number, to: number): number | null {
    let max: number | null = null;
    for (let s = from; s < to; s++) {
      const lag = this.lag.get(s);
      if (typeof lag === 'number') max = Math.max(max ?? 0, lag);
    }
    return max;
  }

  /** Latest lag sample at or before `second` (looking back at most 3 s). */
  lagAt(second: number): number | null | undefined {
    for (let s = second; s >= second - 3; s--) if (this.lag.has(s)) return this.lag.get(s);
    return undefined;
  }

  /**
   * A second is healthy when requests succeeded in it, none failed, its p99 is < p99_max_ms and the group
   * lag (when sampled) is < lag_max. Recovery is the first of `run` healthy seconds in a row at or after
   * `from`; null if none before `to`. With p99_max_ms = Infinity and lag_max = Infinity it is the moment
   * requests succeed again.
   */
  recoveredAt(from: number, to: number, p99_max_ms = 200, lag_max = 1000, run = 3): number | null {
    let streak = 0;
    for (let s = from; s < to; s++) {
      const b = this.buckets.get(s);
      const p99 = b ? percentile(b.latencies_ms, 0.99) : null;
      const lag = this.lagAt(s);
      const lag_ok =
        lag_max === Number.POSITIVE_INFINITY ||
        this.#kafka === null ||
        (lag !== null && lag !== undefined && lag < lag_max);
      const healthy =
        b !== undefined &&
        b.ok > 0 &&
        b.errors_5xx + b.transport_errors === 0 &&
        p99 !== null &&
        p99 < p99_max_ms &&
        lag_ok;
      streak = healthy ? streak + 1 : 0;
      if (streak === run) return s - run + 1;
    }
    return null;
  }

  /** One line per second: ok, 5xx, transport errors, p50, p99, lag (CSV). */
  timeline(): string {
    const rows = ['second,ok,errors_5xx,transport_errors,p50_ms,p99_ms,lag_max'];
    for (const b of this.buckets.values()) {
      const lag = this.lagAt(b.second);
      rows.push(
        [
          b.second,
          b.ok,
          b.errors_5xx,
          b.transport_errors,
          percentile(b.latencies_ms, 0.5),
          percentile(b.latencies_ms, 0.99),
          lag ?? '',
        ].join(','),
      );
    }
    return `${rows.join('\n')}\n`;
  }

  /** Waits (bounded) until recovered after `from` (see recoveredAt); returns the recovery second or null. */
  async waitRecovered(from: number, timeout_ms: number, p99_max_ms = 200): Promise<number | null> {
    const deadline_ms = Date.now() + timeout_ms;
    while (Date.now() < deadline_ms) {
      const at = this.recoveredAt(from, this.second(), p99_max_ms);
      if (at !== null) return at;
      await new Promise((r) => setTimeout(r, 500));
    }
    return this.recoveredAt(from, this.second(), p99_max_ms);
  }
}

export function percentile(values: number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function readLag(kafka: Kafka, topic: string, group: string): Promise<number> {
  const admin = kafka.admin({ retry: { retries: 0 } });
  await admin.connect();
  try {
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const by_partition = new Map(committed?.partitions.map((p) => [p.partition, BigInt(p.offset)]) ?? []);
    let lag_max = 0n;
    for (const end of ends) {
      const done = by_partition.get(end.partition) ?? -1n;
      const lag = BigInt(end.high) - (done < 0n ? 0n : done);
      if (lag > lag_max) lag_max = lag;
    }
    return Number(lag_max);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

function originOf(input: Parameters<typeof fetch>[0]): string {
  try {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    return new URL(url).origin;
  } catch {
    return '';
  }
}

function errorName(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string; name?: string } };
  return e?.cause?.code ?? e?.code ?? e?.cause?.name ?? e?.name ?? 'Error';
}

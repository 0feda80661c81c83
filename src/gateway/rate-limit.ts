/**
 * Per-merchant token buckets (per node). A bucket refills `rate_per_s` tokens per second up to `burst`;
 * a request takes one. Buckets are created on demand for authenticated merchants only, and the map is
 * bounded: past `buckets_max` the least recently created bucket is dropped (it restarts full, which can
 * only favour a merchant that was idle long enough to be evicted).
 */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; updated_ms: number }>();
  readonly #rate_per_ms: number;
  readonly #burst: number;
  readonly #buckets_max: number;

  constructor(opts: { rate_per_s: number; burst: number; buckets_max: number }) {
    this.#rate_per_ms = opts.rate_per_s / 1000;
    this.#burst = opts.burst;
    this.#buckets_max = opts.buckets_max;
  }

  /** 0 when the request may proceed, else the seconds to wait (the `Retry-After` value, at least 1). */
  take(merchant_id: string, now_ms: number): number {
    let bucket = this.#buckets.get(merchant_id);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#buckets_max) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
      bucket = { tokens: this.#burst, updated_ms: now_ms };
      this.#buckets.set(merchant_id, bucket);
    }
    const elapsed_ms = Math.max(0, now_ms - bucket.updated_ms);
    bucket.tokens = Math.min(this.#burst, bucket.tokens + elapsed_ms * this.#rate_per_ms);
    bucket.updated_ms = now_ms;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#rate_per_ms / 1000));
  }

  get size(): number {
    return this.#buckets.size;
  }
}

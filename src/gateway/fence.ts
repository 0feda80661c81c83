import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

export type FenceVerdict = 'first' | 'same' | 'conflict' | 'skipped';

/**
 * The Redis idempotency fence: (merchant, Idempotency-Key) → request fingerprint, SET NX with a 24 h life.
 * It catches what the actors cannot: the same key reused for a request that lands on another partition
 * (another payer, another account, another operation). The durable check stays in the actors (payment id
 * derived from merchant + key, fingerprint compared by the payer's actor), so when Redis is unreachable the
 * fence answers `skipped` and payments go on; only cross-partition reuse goes undetected meanwhile
 * (counted in gateway_idempotency_fence_skipped_total).
 */
export class IdempotencyFence {
  readonly #redis: Redis;
  readonly #key_prefix: string;
  readonly #ttl_s: number;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  #warned_ms = 0;

  constructor(opts: { redis: Redis; key_prefix: string; ttl_s: number; metrics: Metrics; log: Logger }) {
    this.#redis = opts.redis;
    this.#key_prefix = opts.key_prefix;
    this.#ttl_s = opts.ttl_s;
    this.#metrics = opts.metrics;
    this.#log = opts.log;
    this.#redis.defineCommand('fenceRelease', {
      numberOfKeys: 1,
      // KEYS[1] fence key; ARGV[1] fingerprint. Deletes only a fence that still holds this fingerprint.
      lua: "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    });
  }

  async check(merchant_id: string, key: string, fingerprint: string): Promise<FenceVerdict> {
    try {
      // SET NX GET (Redis >= 7): one round trip answers "was it free, and if not, what holds it".
      const previous = (await this.#redis.call(
        'SET',
        this.#keyOf(merchant_id, key),
        fingerprint,
        'NX',
        'GET',
        'EX',
        String(this.#ttl_s),
      )) as string | null;
      if (previous === null) return 'first';
      return previous === fingerprint ? 'same' : 'conflict';
    } catch (err) {
      this.#skipped(err);
      return 'skipped';
    }
  }

  /**
   * Frees a key whose request the ledger refused without recording anything (a 4xx other than a decline),
   * so the client may fix the body and retry with the same key, as it could without the fence.
   */
  async release(merchant_id: string, key: string, fingerprint: string): Promise<void> {
    try {
      await (this.#redis as unknown as { fenceRelease(k: string, fp: string): Promise<number> }).fenceRelease(
        this.#keyOf(merchant_id, key),
        fingerprint,
      );
    } catch (err) {
      this.#skipped(err);
    }
  }

  #keyOf(merchant_id: string, key: string): string {
    // Hashed: client keys may hold any printable character and up to 255 of them.
    const digest = createHash('sha256').update(`${merchant_id}\u0000${key}`, 'utf8').digest('hex');
    return `${this.#key_prefix}idem:${digest}`;
  }

  #skipped(err: unknown): void {
    this.#metrics.idempotency_fence_skipped_total.inc();
    const now_ms = Date.now();
    if (now_ms - this.#warned_ms < 10_000) return; // one warning per 10 s while Redis is away
    this.#warned_ms = now_ms;
    this.#log.warn({ err: (err as Error).message }, 'idempotency fence skipped: Redis unavailable');
  }
}

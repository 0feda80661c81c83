import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { brandOf } from './card.js';
import { type MerchantScope, type MerchantScopes, tagOfOwnedId } from './scope.js';

/**
 * The card vault. A PAN is encrypted with AES-256-GCM under the active key (random 96-bit IV per record,
 * the token id as additional authenticated data, so a record cannot be moved to another token), and only
 * the ciphertext is stored, in Redis under `<prefix>vault:<token id>` (production Redis must persist: AOF).
 * Records name their key id, so keys from earlier rotations still decrypt; `rewrap` moves records to the
 * active key. The CVC is never stored. The fingerprint is an HMAC of the PAN under its own key, which
 * stays the same across rotations so that the same card keeps the same fingerprint.
 *
 *   record = "v1.<kid>.<iv b64url>.<ciphertext b64url>.<tag b64url>"
 */
const RECORD_VERSION = 'v1';
const IV_BYTES = 12;
const KEY_BYTES = 32;
export const FINGERPRINT_LENGTH = 32;

type VaultOp = 'store' | 'remove' | 'reveal';
const VAULT_OPS: readonly VaultOp[] = ['store', 'remove', 'reveal'];
type TokenOwner = 'other_merchant' | 'unknown';

/** What the gateway's vault reports to; the CLI (`vault:rewrap`) runs without it. */
export interface VaultAudit {
  metrics: Metrics;
  log: Logger;
  /** The configured merchants, to tell another merchant's token from a forged or stale id. */
  scopes: MerchantScopes;
}

export interface CardMetadata {
  last4: string;
  brand: string;
  fingerprint: string;
}

export class Vault {
  readonly #redis: Redis;
  readonly #key_prefix: string;
  readonly #keys: ReadonlyMap<string, Buffer>;
  readonly #active_kid: string;
  readonly #fingerprint_key: Buffer;
  readonly #audit: VaultAudit | null;

  constructor(opts: {
    redis: Redis;
    key_prefix: string;
    keys: string;
    active_key_id: string;
    fingerprint_key: string;
    audit?: VaultAudit;
  }) {
    this.#redis = opts.redis;
    this.#key_prefix = `${opts.key_prefix}vault:`;
    this.#keys = parseVaultKeys(opts.keys);
    if (!this.#keys.has(opts.active_key_id))
      throw new Error(`vault key id ${opts.active_key_id} is not configured`);
    this.#active_kid = opts.active_key_id;
    this.#fingerprint_key = decodeKey(opts.fingerprint_key, 'vault_fingerprint_key');
    this.#audit = opts.audit ?? null;
    if (this.#audit) {
      // Every series exists from the start at 0, so an alert's increase() sees the first event too.
      const { metrics } = this.#audit;
      for (const owner of ['other_merchant', 'unknown'] satisfies TokenOwner[])
        metrics.vault_token_access_denied_total.inc({ owner }, 0);
      for (const op of VAULT_OPS)
        for (const result of ['ok', 'error']) metrics.vault_operations_total.inc({ op, result }, 0);
    }
    this.#redis.defineCommand('vaultSwap', {
      numberOfKeys: 1,
      // KEYS[1] record key; ARGV[1] expected record; ARGV[2] new record. Compare-and-set for rewrap.
      lua: "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0",
    });
  }

  get active_key_id(): string {
    return this.#active_kid;
  }

  metadata(pan: string): CardMetadata {
    return { last4: pan.slice(-4), brand: brandOf(pan), fingerprint: this.fingerprint(pan) };
  }

  fingerprint(pan: string): string {
    return createHmac('sha256', this.#fingerprint_key)
      .update(pan, 'utf8')
      .digest('base64url')
      .slice(0, FINGERPRINT_LENGTH);
  }

  /**
   * Encrypts and stores the PAN of a token; throws when Redis cannot take it (tokenization then fails).
   * Never overwrites: a token id only repeats for a retry with the same Idempotency-Key, whose first
   * attempt's record must stay (even if, with the fence skipped, the retry carried another card: the
   * ledger then answers 409 and the original PAN is intact).
   */
  async store(token_id: string, pan: string): Promise<void> {
    await this.#observed('store', async () => {
      await this.#redis.set(this.#key_prefix + token_id, this.seal(token_id, pan), 'NX');
    });
  }

  async remove(token_id: string): Promise<void> {
    await this.#observed('remove', async () => {
      await this.#redis.del(this.#key_prefix + token_id);
    });
  }

  /** The PAN of a token (operations and tests only: no API route reveals it). */
  async reveal(token_id: string): Promise<string | null> {
    return this.#observed('reveal', async () => {
      const record = await this.#redis.get(this.#key_prefix + token_id);
      return record === null ? null : this.open(token_id, record);
    });
  }

  /**
   * Whether `merchant` may use the card token `token_id` (a token id carries its merchant's tag, so this
   * needs no lookup). A token that is not the merchant's own is a security event: counted in
   * `vault_token_access_denied_total{owner}` and logged at warn with `security_event: "token_access_denied"`,
   * the merchant, the token id and, when known, its owner (ids only, never a PAN). The caller answers
   * 404 `not_found`, as for a token that does not exist, so the answer reveals nothing about other merchants.
   * One line per event: the per-merchant rate limit bounds how many a key can cause.
   */
  mayUse(merchant: MerchantScope, token_id: string, trace_id: string): boolean {
    if (merchant.ownsToken(token_id)) return true;
    if (this.#audit) {
      const tag = tagOfOwnedId(token_id);
      const owner_scope = tag === null ? undefined : this.#audit.scopes.byTag(tag);
      const owner: TokenOwner = owner_scope ? 'other_merchant' : 'unknown';
      this.#audit.metrics.vault_token_access_denied_total.inc({ owner });
      this.#audit.log.warn(
        {
          security_event: 'token_access_denied',
          merchant_id: merchant.merchant_id,
          token_id,
          token_owner: owner,
          token_merchant_id: owner_scope?.merchant_id,
          trace_id,
        },
        'card token of another merchant refused',
      );
    }
    return false;
  }

  seal(token_id: string, pan: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.#active_kid)!, iv);
    cipher.setAAD(Buffer.from(token_id, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(pan, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [RECORD_VERSION, this.#active_kid, b64(iv), b64(ciphertext), b64(tag)].join('.');
  }

  /** Decrypts a record under the key it names; throws on an unknown key id or a failed authentication. */
  open(token_id: string, record: string): string {
    const [version, kid, iv, ciphertext, tag] = record.split('.');
    const key = kid === undefined ? undefined : this.#keys.get(kid);
    if (version !== RECORD_VERSION || !key || !iv || !ciphertext || !tag)
      throw new Error(`vault record of ${token_id} has an unknown format or key id`);
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(token_id, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  }

  /**
   * Moves every record not under the active key to it, at most `records_max` per call (run it until
   * `remaining` is 0). Compare-and-set: a record changed meanwhile is left for the next run.
   */
  async rewrap(records_max: number): Promise<{ scanned: number; rewrapped: number; remaining: number }> {
    let cursor = '0';
    let scanned = 0;
    let rewrapped = 0;
    let remaining = 0;
    const marker = `.${this.#active_kid}.`;
    do {
      const [next, keys] = await this.#redis.scan(cursor, 'MATCH', `${this.#key_prefix}*`, 'COUNT', 200);
      cursor = next;
      for (const key of keys) {
        scanned++;
        const record = await this.#redis.get(key);
        if (record === null || record.startsWith(`${RECORD_VERSION}${marker}`)) continue;
        if (rewrapped >= records_max) {
          remaining++;
          continue;
        }
        const token_id = key.slice(this.#key_prefix.length);
        const sealed = this.seal(token_id, this.open(token_id, record));
        const swap = this.#redis as unknown as {
          vaultSwap(k: string, a: string, b: string): Promise<number>;
        };
        if ((await swap.vaultSwap(key, record, sealed)) === 1) rewrapped++;
        else remaining++;
      }
    } while (cursor !== '0');
    return { scanned, rewrapped, remaining };
  }

  async #observed<T>(op: VaultOp, run: () => Promise<T>): Promise<T> {
    if (!this.#audit) return run();
    const { metrics } = this.#audit;
    const started = performance.now();
    let result = 'error';
    try {
      const value = await run();
      result = 'ok';
      return value;
    } finally {
      metrics.vault_operations_total.inc({ op, result });
      metrics.vault_operation_duration_seconds.observe({ op }, (performance.now() - started) / 1000);
    }
  }
}

/** `kid:base64,kid:base64`; every key must be exactly 32 bytes. */
export function parseVaultKeys(spec: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  for (const entry of spec.split(',')) {
    const at = entry.indexOf(':');
    const kid = entry.slice(0, at).trim();
    if (at <= 0 || !/^[a-zA-Z0-9_-]{1,32}$/.test(kid))
      throw new Error('vault_keys entries must be kid:base64');
    if (keys.has(kid)) throw new Error(`vault key id ${kid} is listed twice`);
    keys.set(kid, decodeKey(entry.slice(at + 1).trim(), `vault key ${kid}`));
  }
  return keys;
}

function decodeKey(text: string, label: string): Buffer {
  const key = Buffer.from(text, 'base64');
  if (key.length !== KEY_BYTES) throw new Error(`${label} must be ${KEY_BYTES} bytes of base64`);
  return key;
}

function b64(bytes: Buffer): string {
  return bytes.toString('base64url');
}

import { hash, timingSafeEqual } from 'node:crypto';

export const dev_api_key = 'sk_test_local';
export const dev_merchant_id = 'merchant_local';

interface KeyEntry {
  merchant_id: string;
  key_sha256: Buffer;
}

/**
 * API keys are kept only as SHA-256 digests. A presented key is hashed, then compared with every stored
 * digest in constant time (no early exit), so neither the key nor which entry matched leaks through timing.
 */
export class ApiKeys {
  readonly #entries: KeyEntry[];

  private constructor(entries: KeyEntry[]) {
    this.#entries = entries;
  }

  /** `merchant:key,merchant:key`; empty means the development key only. */
  static parse(spec: string): ApiKeys {
    const trimmed = spec.trim();
    if (trimmed === '')
      return new ApiKeys([{ merchant_id: dev_merchant_id, key_sha256: sha256(dev_api_key) }]);
    const entries = trimmed.split(',').map((pair, index) => {
      const at = pair.indexOf(':');
      const merchant_id = pair.slice(0, at).trim();
      const key = pair.slice(at + 1).trim();
      if (at <= 0 || key.length < 16 || !/^[a-zA-Z0-9_-]{1,64}$/.test(merchant_id)) {
        throw new Error(
          `API_KEYS entry ${index + 1} must be merchant:key with a key of at least 16 characters`,
        );
      }
      return { merchant_id, key_sha256: sha256(key) };
    });
    return new ApiKeys(entries);
  }

  /** Every configured merchant id (a merchant may have several keys: listed once per key). */
  merchants(): string[] {
    return this.#entries.map((entry) => entry.merchant_id);
  }

  /** The merchant id for an `Authorization` header value, or null. */
  authenticate(header: string): string | null {
    if (!header.startsWith('Bearer ')) return null;
    const presented = sha256(header.slice(7).trim());
    let merchant: string | null = null;
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.key_sha256) && merchant === null) merchant = entry.merchant_id;
    }
    return merchant;
  }
}

function sha256(value: string): Buffer {
  return hash('sha256', value, 'buffer'); // one-shot: no Hash object per request
}

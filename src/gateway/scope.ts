import { createHash } from 'node:crypto';
import { parsePaymentId, parseTokenId } from '../domain/index.js';

/**
 * Merchant scoping, derived at the edge without any storage. The domain has no merchant notion, so every id
 * the gateway hands to the ledger carries the merchant's tag (8 hex of SHA-256(merchant id)):
 *
 *   account   <tag>_<client id>                (the client sees only <client id>; max 55 chars)
 *   payment   pay_<8 hex payer shard><tag><unique>
 *   token     tok_<8 hex holder shard><tag><unique>
 *
 * A request can only name ids with its own merchant's tag, so merchant B asking for A's `acct_x` reaches
 * B's `<tagB>_acct_x` (absent → 404), and A's payment ids are refused with 404 before any round trip.
 * Being derived, the check survives Redis loss, costs no lookup, and holds on every node. The tag is not a
 * secret: it only separates namespaces, the API key decides which namespace a request may use.
 */
export const TAG_LENGTH = 8;
const OWNED_ID_TAG_OFFSET = 4 + 8; // after 'pay_' / 'tok_' and the 8 hex shard
export const CLIENT_ACCOUNT_ID_LENGTH_MAX = 64 - TAG_LENGTH - 1;

export class MerchantScope {
  readonly merchant_id: string;
  readonly tag: string;
  readonly #account_prefix: string;
  /** uWS pub/sub topics of this merchant's committed payment outcomes (one per frame encoding). */
  readonly outcome_topics: { json: string; msgpack: string };

  constructor(merchant_id: string) {
    this.merchant_id = merchant_id;
    this.tag = merchantTag(merchant_id);
    this.#account_prefix = `${this.tag}_`;
    this.outcome_topics = { json: `outcomes/json/${this.tag}`, msgpack: `outcomes/msgpack/${this.tag}` };
  }

  /** The ledger's id of a client account id (validated by the caller). */
  account(client_id: string): string {
    return this.#account_prefix + client_id;
  }

  /** The client's id of a ledger account id of this merchant; other ids are returned unchanged. */
  external(ledger_id: string): string {
    return ledger_id.startsWith(this.#account_prefix)
      ? ledger_id.slice(this.#account_prefix.length)
      : ledger_id;
  }

  ownsPayment(id: string): boolean {
    return (
      parsePaymentId(id) !== null &&
      id.slice(OWNED_ID_TAG_OFFSET, OWNED_ID_TAG_OFFSET + TAG_LENGTH) === this.tag
    );
  }

  ownsToken(id: string): boolean {
    return (
      parseTokenId(id) !== null &&
      id.slice(OWNED_ID_TAG_OFFSET, OWNED_ID_TAG_OFFSET + TAG_LENGTH) === this.tag
    );
  }

  /** Removes this merchant's account prefix from a message text (domain messages quote ledger ids). */
  externalText(text: string): string {
    return text.replaceAll(this.#account_prefix, '');
  }
}

export function merchantTag(merchant_id: string): string {
  return createHash('sha256').update(merchant_id, 'utf8').digest('hex').slice(0, TAG_LENGTH);
}

/** The tag embedded in a payment or token id (for routing outcomes to subscribers), or null. */
export function tagOfOwnedId(id: string): string | null {
  if (parsePaymentId(id) === null && parseTokenId(id) === null) return null;
  return id.slice(OWNED_ID_TAG_OFFSET, OWNED_ID_TAG_OFFSET + TAG_LENGTH);
}

/** One scope per configured merchant; two merchants with the same tag would share data, so refuse them. */
export class MerchantScopes {
  readonly #by_merchant = new Map<string, MerchantScope>();
  readonly #by_tag = new Map<string, MerchantScope>();

  constructor(merchant_ids: readonly string[]) {
    for (const merchant_id of merchant_ids) {
      if (this.#by_merchant.has(merchant_id)) continue;
      const scope = new MerchantScope(merchant_id);
      const clash = this.#by_tag.get(scope.tag);
      if (clash) throw new Error(`merchants ${clash.merchant_id} and ${merchant_id} share tag ${scope.tag}`);
      this.#by_merchant.set(merchant_id, scope);
      this.#by_tag.set(scope.tag, scope);
    }
  }

  of(merchant_id: string): MerchantScope {
    const scope = this.#by_merchant.get(merchant_id);
    if (!scope) throw new Error(`scope invariant: merchant ${merchant_id} authenticated without a scope`);
    return scope;
  }

  byTag(tag: string): MerchantScope | undefined {
    return this.#by_tag.get(tag);
  }
}

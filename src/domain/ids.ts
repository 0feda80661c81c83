/**
 * Ids and routing. `shard(id)` is FNV-1a (32 bit, unsigned) over the UTF-8 bytes of an id; callers route
 * with `shard(id) % P`. Payment and token ids embed the owner's shard as 8 hex digits so capture, refund
 * and GET reach the owner's partition without a lookup:
 *
 *   pay_0a1b2c3d<unique>      tok_0a1b2c3d<unique>      (0a1b2c3d = shard(owner account id))
 */

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };
export type AccountId = Brand<string, 'AccountId'>;
export type PaymentId = Brand<string, 'PaymentId'>;
export type TokenId = Brand<string, 'TokenId'>;
export type RefundId = Brand<string, 'RefundId'>;
/** A positive safe integer in minor units (cents), parsed once by `parseAmount`. */
export type Amount = Brand<number, 'Amount'>;

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
export const ACCOUNT_ID_LENGTH_MAX = 64;
export const PAYMENT_ID_PREFIX = 'pay_';
export const TOKEN_ID_PREFIX = 'tok_';
const SHARD_HEX_LENGTH = 8;
const UNIQUE_LENGTH_MAX = 64;

function fnvStep(hash: number, byte: number): number {
  return Math.imul(hash ^ byte, FNV_PRIME);
}

/** Stable 32-bit hash of an id (FNV-1a over UTF-8 bytes). Cost: ~1 ns per char, no allocation. */
export function shard(id: string): number {
  let hash = FNV_OFFSET_BASIS;
  for (let i = 0; i < id.length; i++) {
    let code = id.charCodeAt(i);
    if (code < 0x80) {
      hash = fnvStep(hash, code);
      continue;
    }
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < id.length) {
      const low = id.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    } else if (code >= 0xd800 && code <= 0xdfff) {
      code = 0xfffd; // lone surrogate: TextEncoder writes U+FFFD, so do we.
    }
    if (code < 0x800) {
      hash = fnvStep(fnvStep(hash, 0xc0 | (code >> 6)), 0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      hash = fnvStep(hash, 0xe0 | (code >> 12));
      hash = fnvStep(fnvStep(hash, 0x80 | ((code >> 6) & 0x3f)), 0x80 | (code & 0x3f));
    } else {
      hash = fnvStep(fnvStep(hash, 0xf0 | (code >> 18)), 0x80 | ((code >> 12) & 0x3f));
      hash = fnvStep(fnvStep(hash, 0x80 | ((code >> 6) & 0x3f)), 0x80 | (code & 0x3f));
    }
  }
  return hash >>> 0;
}

function shardHex(shard_value: number): string {
  return (shard_value >>> 0).toString(16).padStart(SHARD_HEX_LENGTH, '0');
}

function isIdChar(code: number): boolean {
  return (
    (code >= 48 && code <= 57) ||
    (code >= 65 && code <= 90) ||
    (code >= 97 && code <= 122) ||
    code === 95 ||
    code === 45
  );
}

/** Client-chosen ids: 1..64 chars of [A-Za-z0-9_-]. Keeps keys, logs and topics free of surprises. */
function isIdText(text: string, length_max: number): boolean {
  if (text.length === 0 || text.length > length_max) return false;
  for (let i = 0; i < text.length; i++) if (!isIdChar(text.charCodeAt(i))) return false;
  return true;
}

export function parseAccountId(text: unknown): AccountId | null {
  return typeof text === 'string' && isIdText(text, ACCOUNT_ID_LENGTH_MAX) ? (text as AccountId) : null;
}

function ownedIdFor(prefix: string, shard_value: number, unique: string): string {
  if (!Number.isInteger(shard_value) || shard_value < 0 || shard_value > 0xffffffff) {
    throw new RangeError(`shard must be a uint32, got ${shard_value}`);
  }
  if (!isIdText(unique, UNIQUE_LENGTH_MAX))
    throw new RangeError('unique suffix must be 1..64 chars of [A-Za-z0-9_-]');
  return prefix + shardHex(shard_value) + unique;
}

function hexDigit(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

/** Parses `<prefix><8 lower-case hex><unique>` without allocating (hot path: every payment command). */
function shardOfOwnedId(prefix: string, id: string): number | null {
  if (typeof id !== 'string' || !id.startsWith(prefix)) return null;
  const unique_length = id.length - prefix.length - SHARD_HEX_LENGTH;
  if (unique_length < 1 || unique_length > UNIQUE_LENGTH_MAX) return null;
  let value = 0;
  const hex_end = prefix.length + SHARD_HEX_LENGTH;
  for (let i = prefix.length; i < hex_end; i++) {
    const digit = hexDigit(id.charCodeAt(i));
    if (digit < 0) return null;
    value = value * 16 + digit;
  }
  for (let i = hex_end; i < id.length; i++) if (!isIdChar(id.charCodeAt(i))) return null;
  return value;
}

/** `pay_<8 hex of the payer's shard><unique>`; unique is 1..64 chars of [A-Za-z0-9_-]. */
export function paymentIdFor(shard_value: number, unique: string): PaymentId {
  return ownedIdFor(PAYMENT_ID_PREFIX, shard_value, unique) as PaymentId;
}

/** The shard embedded in a payment id, or null when the id is malformed. */
export function shardOfPaymentId(id: string): number | null {
  return shardOfOwnedId(PAYMENT_ID_PREFIX, id);
}

export function parsePaymentId(text: unknown): PaymentId | null {
  return typeof text === 'string' && shardOfPaymentId(text) !== null ? (text as PaymentId) : null;
}

/** `tok_<8 hex of the card holder account's shard><unique>`. */
export function tokenIdFor(shard_value: number, unique: string): TokenId {
  return ownedIdFor(TOKEN_ID_PREFIX, shard_value, unique) as TokenId;
}

export function shardOfTokenId(id: string): number | null {
  return shardOfOwnedId(TOKEN_ID_PREFIX, id);
}

export function parseTokenId(text: unknown): TokenId | null {
  return typeof text === 'string' && shardOfTokenId(text) !== null ? (text as TokenId) : null;
}

/** Amounts are positive safe integers in minor units; floats, zero, negatives and overflow are refused. */
export function parseAmount(value: unknown): Amount | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? (value as Amount) : null;
}

/**
 * Each partition has one world account, the counterpart of deposits, so a deposit stays local to its
 * partition. Its id contains ':' which client ids can never contain, so it cannot be opened or paid to.
 */
export function worldAccountId(partition: number): AccountId {
  return `world:${partition}` as AccountId;
}

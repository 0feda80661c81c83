import {
  type ApiError,
  type ErrorCode,
  makeError,
  parseCurrency,
  parsePaymentId,
  parseTokenId,
} from '../domain/index.js';
import { isPan } from './card.js';
import { CLIENT_ACCOUNT_ID_LENGTH_MAX } from './scope.js';

/**
 * Request bodies are parsed once here, at the edge, into plain typed values; everything past this point
 * trusts them. Unknown fields are refused (a typo must not silently change a payment). Each failure names
 * the one field at fault in `param`. Limits mirror the domain's, so a request the gateway accepts is never
 * refused for its shape by the ledger.
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: ApiError };
type Body = Record<string, unknown>;

const id_pattern = /^[a-zA-Z0-9_-]+$/;
const DESCRIPTION_LENGTH_MAX = 1000;
const METADATA_KEYS_MAX = 50;
const METADATA_KEY_LENGTH_MAX = 40;
const METADATA_VALUE_LENGTH_MAX = 500;
const IDEMPOTENCY_KEY_LENGTH_MAX = 255;
/** Refuses invalid UTF-8 instead of replacing it; reusable, since every decode() call is complete. */
export const utf8 = new TextDecoder('utf-8', { fatal: true });

export function parseJsonObject(bytes: Buffer): Parsed<Body> {
  if (bytes.length === 0) return { ok: true, value: {} }; // e.g. a bodiless POST .../cancel
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch {
    return fail('invalid_json', 'request body is not valid UTF-8 JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail('invalid_request', 'request body must be a JSON object');
  }
  return { ok: true, value: value as Body };
}

/** Client account ids: 1..55 chars of [A-Za-z0-9_-] (the ledger id adds the merchant's 9-char tag). */
export function isAccountId(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= CLIENT_ACCOUNT_ID_LENGTH_MAX &&
    id_pattern.test(value)
  );
}

/** Printable ASCII, 1..255 chars; '' means no key. */
export function parseIdempotencyKey(header: string): Parsed<string> {
  if (header === '') return { ok: true, value: '' };
  if (header.length > IDEMPOTENCY_KEY_LENGTH_MAX || !/^[\x21-\x7e][\x20-\x7e]*$/.test(header)) {
    return fail(
      'invalid_request',
      'Idempotency-Key must be 1..255 printable ASCII characters',
      'idempotency_key',
    );
  }
  return { ok: true, value: header };
}

export interface OpenAccountRequest {
  id: string | null;
  currency: string;
  kind: 'customer' | 'merchant';
  overdraft_limit: number;
}

export function parseOpenAccount(body: Body): Parsed<OpenAccountRequest> {
  const unknown = unknownField(body, ['id', 'currency', 'kind', 'overdraft_limit']);
  if (unknown !== null) return unknownFail(unknown);
  if (body.id !== undefined && !isAccountId(body.id))
    return fail(
      'invalid_request',
      `id must be 1..${CLIENT_ACCOUNT_ID_LENGTH_MAX} chars of [a-zA-Z0-9_-]`,
      'id',
    );
  const currency = parseCurrency(body.currency);
  if (currency === null) return fail('invalid_request', 'currency must be an ISO 4217 code', 'currency');
  if (body.kind !== 'customer' && body.kind !== 'merchant') {
    return fail('invalid_request', 'kind must be "customer" or "merchant"', 'kind');
  }
  const overdraft = body.overdraft_limit === undefined ? 0 : body.overdraft_limit; // null is a wrong type
  if (!isAmount(overdraft, true)) {
    return fail('invalid_request', 'overdraft_limit must be a non-negative safe integer', 'overdraft_limit');
  }
  const id = (body.id as string | undefined) ?? null;
  return { ok: true, value: { id, currency, kind: body.kind, overdraft_limit: overdraft } };
}

export interface DepositRequest {
  account: string;
  amount: number;
  currency: string;
}

export function parseDeposit(body: Body): Parsed<DepositRequest> {
  const unknown = unknownField(body, ['account', 'amount', 'currency']);
  if (unknown !== null) return unknownFail(unknown);
  if (!isAccountId(body.account)) return fail('invalid_request', 'account must be an account id', 'account');
  if (!isAmount(body.amount, false)) return amountFail('amount');
  const currency = parseCurrency(body.currency);
  if (currency === null) return fail('invalid_request', 'currency must be an ISO 4217 code', 'currency');
  return { ok: true, value: { account: body.account, amount: body.amount, currency } };
}

export interface TokenRequest {
  account: string;
  pan: string;
  exp_month: number;
  exp_year: number;
}

/** The CVC is checked for shape and then dropped: it is never stored, logged or sent anywhere. */
export function parseToken(body: Body, now_ms: number): Parsed<TokenRequest> {
  const unknown = unknownField(body, ['account', 'card']);
  if (unknown !== null) return unknownFail(unknown);
  if (!isAccountId(body.account)) return fail('invalid_request', 'account must be an account id', 'account');
  const card = body.card;
  if (typeof card !== 'object' || card === null || Array.isArray(card))
    return fail('invalid_request', 'card must be an object', 'card');
  const c = card as Body;
  const unknown_card = unknownField(c, ['number', 'exp_month', 'exp_year', 'cvc']);
  if (unknown_card !== null) return unknownFail(`card.${unknown_card}`);
  const pan = typeof c.number === 'string' ? c.number.replace(/[ -]/g, '') : '';
  if (!isPan(pan))
    return fail('invalid_request', 'card number must be 13-19 digits and pass the Luhn check', 'card.number');
  if (!isIntIn(c.exp_month, 1, 12))
    return fail('invalid_request', 'exp_month must be 1..12', 'card.exp_month');
  if (!isIntIn(c.exp_year, 2000, 9999))
    return fail('invalid_request', 'exp_year must be a 4-digit year', 'card.exp_year');
  if (now_ms >= Date.UTC(c.exp_year, c.exp_month, 1))
    return fail('invalid_request', 'the card has expired', 'card.exp_year');
  if (typeof c.cvc !== 'string' || !/^[0-9]{3,4}$/.test(c.cvc))
    return fail('invalid_request', 'cvc must be 3 or 4 digits', 'card.cvc');
  return { ok: true, value: { account: body.account, pan, exp_month: c.exp_month, exp_year: c.exp_year } };
}

export interface PaymentRequest {
  amount: number;
  currency: string;
  source: string;
  destination: string;
  capture: boolean;
  description: string | null;
  metadata: Record<string, string> | null;
}

const payment_fields = ['amount', 'currency', 'source', 'destination', 'capture', 'description', 'metadata'];

export function parsePayment(body: Body): Parsed<PaymentRequest> {
  const unknown = unknownField(body, payment_fields);
  if (unknown !== null) return unknownFail(unknown);
  if (!isAmount(body.amount, false)) return amountFail('amount');
  const currency = parseCurrency(body.currency);
  if (currency === null) return fail('invalid_request', 'currency must be an ISO 4217 code', 'currency');
  const source = body.source;
  if (
    typeof source !== 'string' ||
    (!(isAccountId(source) && !source.startsWith('tok_')) && parseTokenId(source) === null)
  )
    return fail('invalid_request', 'source must be an account id or a tok_ card token', 'source');
  if (!isAccountId(body.destination))
    return fail('invalid_request', 'destination must be an account id', 'destination');
  if (body.destination === source)
    return fail('invalid_request', 'destination must differ from source', 'destination');
  const capture = body.capture ?? true;
  if (typeof capture !== 'boolean') return fail('invalid_request', 'capture must be a boolean', 'capture');
  const description = body.description ?? null;
  if (
    description !== null &&
    (typeof description !== 'string' || description.length > DESCRIPTION_LENGTH_MAX)
  )
    return fail(
      'invalid_request',
      `description must be a string of at most ${DESCRIPTION_LENGTH_MAX} chars`,
      'description',
    );
  const metadata = body.metadata ?? null;
  if (metadata !== null && !isMetadata(metadata))
    return fail(
      'invalid_request',
      'metadata must map at most 50 keys (<= 40 chars) to strings (<= 500 chars)',
      'metadata',
    );
  const value = {
    amount: body.amount,
    currency,
    source,
    destination: body.destination,
    capture,
    description,
    metadata,
  };
  return { ok: true, value };
}

export function parsePaymentIdParam(id: string | null, param: string): Parsed<string> {
  if (id === null || parsePaymentId(id) === null) return fail('not_found', 'no such payment', param);
  return { ok: true, value: id };
}

export function parseCapture(body: Body): Parsed<{ amount: number | null }> {
  const unknown = unknownField(body, ['amount']);
  if (unknown !== null) return unknownFail(unknown);
  if (body.amount !== undefined && !isAmount(body.amount, false)) return amountFail('amount');
  return { ok: true, value: { amount: (body.amount as number | undefined) ?? null } };
}

export function parseCancel(body: Body): Parsed<Record<string, never>> {
  const unknown = unknownField(body, []);
  if (unknown !== null) return unknownFail(unknown);
  return { ok: true, value: {} };
}

export function parseRefund(body: Body): Parsed<{ payment: string; amount: number | null }> {
  const unknown = unknownField(body, ['payment', 'amount']);
  if (unknown !== null) return unknownFail(unknown);
  if (typeof body.payment !== 'string' || parsePaymentId(body.payment) === null)
    return fail('invalid_request', 'payment must be a payment id', 'payment');
  if (body.amount !== undefined && !isAmount(body.amount, false)) return amountFail('amount');
  return { ok: true, value: { payment: body.payment, amount: (body.amount as number | undefined) ?? null } };
}

function isAmount(value: unknown, zero_allowed: boolean): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && (zero_allowed ? value >= 0 : value > 0);
}

function isIntIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

function isMetadata(value: unknown): value is Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const entries = Object.entries(value);
  if (entries.length > METADATA_KEYS_MAX) return false;
  return entries.every(
    ([k, v]) =>
      k.length > 0 &&
      k.length <= METADATA_KEY_LENGTH_MAX &&
      typeof v === 'string' &&
      v.length <= METADATA_VALUE_LENGTH_MAX,
  );
}

function unknownField(body: Body, allowed: string[]): string | null {
  for (const key of Object.keys(body)) if (!allowed.includes(key)) return key;
  return null;
}

function unknownFail<T>(field: string): Parsed<T> {
  // The field name is echoed, so cap it: a 16 KiB key must not come back in full.
  const shown = field.length > 64 ? `${field.slice(0, 64)}…` : field;
  return fail('invalid_request', `unknown field ${shown}`, shown);
}

function amountFail<T>(param: string): Parsed<T> {
  return fail('invalid_request', `${param} must be a positive safe integer in minor units`, param);
}

function fail<T>(code: ErrorCode, message: string, param?: string): Parsed<T> {
  return { ok: false, error: makeError(code, message, param) };
}

/**
 * ONE closed catalog of stable error codes, shared by the domain and the gateway. A client can switch on
 * `code`; the gateway maps `http_status`; retry logic reads `retryable` (never the message text).
 * test/domain/errors.test.ts pins this table, so a change here is deliberate.
 */
export type ErrorCode =
  // Request shape and transport (gateway).
  | 'invalid_request'
  | 'invalid_json'
  | 'authentication_required'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'resource_already_exists'
  | 'idempotency_key_reused'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'internal_error'
  | 'overloaded'
  | 'unavailable'
  | 'timeout'
  // Ledger outcomes (domain).
  | 'payment_declined'
  | 'account_frozen'
  | 'currency_mismatch'
  | 'payment_invalid_state'
  | 'authorization_expired'
  | 'amount_exceeds_capturable'
  | 'amount_exceeds_refundable';

/** Why a payment was declined (HTTP 402, recorded as a `payment_declined` event). */
export type DeclineCode =
  | 'insufficient_funds'
  | 'velocity_exceeded'
  | 'account_frozen'
  | 'currency_mismatch'
  | 'card_expired'
  | 'amount_too_large';

/** Why an accepted payment or refund failed later, on the other account's partition. */
export type FailureCode = 'destination_invalid' | 'insufficient_funds';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'idempotency_error'
  | 'rate_limit_error'
  | 'payment_declined'
  | 'api_error';

export interface ErrorSpec {
  readonly http_status: number;
  readonly type: ErrorType;
  readonly message: string;
  /** True when the same request may succeed later unchanged (client may retry with backoff). */
  readonly retryable: boolean;
}

export const ERROR_CATALOG: { readonly [C in ErrorCode]: ErrorSpec } = {
  invalid_request: {
    http_status: 400,
    type: 'invalid_request_error',
    message: 'The request is invalid.',
    retryable: false,
  },
  invalid_json: {
    http_status: 400,
    type: 'invalid_request_error',
    message: 'The body is not valid JSON.',
    retryable: false,
  },
  authentication_required: {
    http_status: 401,
    type: 'authentication_error',
    message: 'A valid API key is required.',
    retryable: false,
  },
  forbidden: {
    http_status: 403,
    type: 'permission_error',
    message: 'This key may not do that.',
    retryable: false,
  },
  not_found: {
    http_status: 404,
    type: 'invalid_request_error',
    message: 'No such resource.',
    retryable: false,
  },
  method_not_allowed: {
    http_status: 405,
    type: 'invalid_request_error',
    message: 'Method not allowed on this path.',
    retryable: false,
  },
  resource_already_exists: {
    http_status: 409,
    type: 'invalid_request_error',
    message: 'A resource with this id already exists.',
    retryable: false,
  },
  idempotency_key_reused: {
    http_status: 409,
    type: 'idempotency_error',
    message: 'This idempotency key was already used with a different request body.',
    retryable: false,
  },
  payload_too_large: {
    http_status: 413,
    type: 'invalid_request_error',
    message: 'The body is too large.',
    retryable: false,
  },
  unsupported_media_type: {
    http_status: 415,
    type: 'invalid_request_error',
    message: 'Content-Type must be application/json.',
    retryable: false,
  },
  rate_limited: {
    http_status: 429,
    type: 'rate_limit_error',
    message: 'Too many requests.',
    retryable: true,
  },
  internal_error: { http_status: 500, type: 'api_error', message: 'Internal error.', retryable: true },
  overloaded: {
    http_status: 503,
    type: 'api_error',
    message: 'The service is overloaded; retry later.',
    retryable: true,
  },
  unavailable: {
    http_status: 503,
    type: 'api_error',
    message: 'The service is unavailable; retry later.',
    retryable: true,
  },
  timeout: { http_status: 504, type: 'api_error', message: 'The request timed out.', retryable: true },
  payment_declined: {
    http_status: 402,
    type: 'payment_declined',
    message: 'The payment was declined.',
    retryable: false,
  },
  account_frozen: {
    http_status: 409,
    type: 'invalid_request_error',
    message: 'The account is frozen.',
    retryable: false,
  },
  currency_mismatch: {
    http_status: 400,
    type: 'invalid_request_error',
    message: 'The currency does not match the account currency.',
    retryable: false,
  },
  payment_invalid_state: {
    http_status: 409,
    type: 'invalid_request_error',
    message: 'The payment is not in a state that allows this operation.',
    retryable: false,
  },
  authorization_expired: {
    http_status: 409,
    type: 'invalid_request_error',
    message: 'The authorization expired and its hold was released.',
    retryable: false,
  },
  amount_exceeds_capturable: {
    http_status: 400,
    type: 'invalid_request_error',
    message: 'The amount exceeds the amount capturable.',
    retryable: false,
  },
  amount_exceeds_refundable: {
    http_status: 400,
    type: 'invalid_request_error',
    message: 'The amount exceeds the captured amount not yet refunded.',
    retryable: false,
  },
};

export const ERROR_CODES = Object.keys(ERROR_CATALOG) as readonly ErrorCode[];

export const DECLINE_CODES: readonly DeclineCode[] = [
  'insufficient_funds',
  'velocity_exceeded',
  'account_frozen',
  'currency_mismatch',
  'card_expired',
  'amount_too_large',
];

export const FAILURE_CODES: readonly FailureCode[] = ['destination_invalid', 'insufficient_funds'];

export interface ApiError {
  type: string;
  code: ErrorCode;
  message: string;
  param?: string;
  decline_code?: DeclineCode;
  payment_id?: string;
}

export function makeError(code: ErrorCode, message?: string, param?: string): ApiError {
  const spec = ERROR_CATALOG[code];
  const error: ApiError = { type: spec.type, code, message: message ?? spec.message };
  if (param !== undefined) error.param = param;
  return error;
}

export function isRetryable(code: ErrorCode): boolean {
  return ERROR_CATALOG[code].retryable;
}

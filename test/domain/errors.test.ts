import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DECLINE_CODES,
  ERROR_CATALOG,
  FAILURE_CODES,
  isRetryable,
  makeError,
} from '../../src/domain/index.js';

// Pins the catalog: changing a code or a status must be a deliberate edit of this table.
const PINNED: Record<string, [number, string, boolean]> = {
  invalid_request: [400, 'invalid_request_error', false],
  invalid_json: [400, 'invalid_request_error', false],
  authentication_required: [401, 'authentication_error', false],
  forbidden: [403, 'permission_error', false],
  not_found: [404, 'invalid_request_error', false],
  method_not_allowed: [405, 'invalid_request_error', false],
  resource_already_exists: [409, 'invalid_request_error', false],
  idempotency_key_reused: [409, 'idempotency_error', false],
  payload_too_large: [413, 'invalid_request_error', false],
  unsupported_media_type: [415, 'invalid_request_error', false],
  rate_limited: [429, 'rate_limit_error', true],
  internal_error: [500, 'api_error', true],
  overloaded: [503, 'api_error', true],
  unavailable: [503, 'api_error', true],
  timeout: [504, 'api_error', true],
  payment_declined: [402, 'payment_declined', false],
  account_frozen: [409, 'invalid_request_error', false],
  currency_mismatch: [400, 'invalid_request_error', false],
  payment_invalid_state: [409, 'invalid_request_error', false],
  authorization_expired: [409, 'invalid_request_error', false],
  amount_exceeds_capturable: [400, 'invalid_request_error', false],
  amount_exceeds_refundable: [400, 'invalid_request_error', false],
};

test('error catalog is pinned: codes, HTTP statuses, types, retryability', () => {
  const actual = Object.fromEntries(
    Object.entries(ERROR_CATALOG).map(([code, spec]) => [
      code,
      [spec.http_status, spec.type, spec.retryable],
    ]),
  );
  assert.deepEqual(actual, PINNED);
  for (const spec of Object.values(ERROR_CATALOG)) assert.ok(spec.message.length > 0);
});

test('decline and failure codes are pinned', () => {
  assert.deepEqual(
    [...DECLINE_CODES],
    [
      'insufficient_funds',
      'velocity_exceeded',
      'account_frozen',
      'currency_mismatch',
      'card_expired',
      'amount_too_large',
    ],
  );
  assert.deepEqual([...FAILURE_CODES], ['destination_invalid', 'insufficient_funds']);
});

test('makeError fills type and default message, keeps param', () => {
  assert.deepEqual(makeError('not_found', undefined, 'id'), {
    type: 'invalid_request_error',
    code: 'not_found',
    message: 'No such resource.',
    param: 'id',
  });
  assert.equal(makeError('overloaded', 'busy').message, 'busy');
  assert.equal('param' in makeError('overloaded'), false);
  assert.equal(isRetryable('overloaded'), true);
  assert.equal(isRetryable('idempotency_key_reused'), false);
});

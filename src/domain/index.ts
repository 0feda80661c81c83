/**
 * The ledger domain: a pure, deterministic decider. See types.ts for commands and events, errors.ts for
 * the error catalog, ids.ts for routing. Nothing here does I/O or reads a clock.
 */
export { InvariantError } from './assert.js';
export { CURRENCIES, type Currency, parseCurrency } from './currency.js';
export { apply, decide } from './decide.js';
export {
  type ApiError,
  DECLINE_CODES,
  type DeclineCode,
  ERROR_CATALOG,
  ERROR_CODES,
  type ErrorCode,
  type ErrorSpec,
  type ErrorType,
  FAILURE_CODES,
  type FailureCode,
  isRetryable,
  makeError,
} from './errors.js';
export { evolve } from './evolve.js';
export {
  type AccountId,
  type Amount,
  type Brand,
  PAYMENT_ID_PREFIX,
  type PaymentId,
  parseAccountId,
  parseAmount,
  parsePaymentId,
  parseTokenId,
  paymentIdFor,
  type RefundId,
  shard,
  shardOfPaymentId,
  shardOfTokenId,
  TOKEN_ID_PREFIX,
  type TokenId,
  tokenIdFor,
  worldAccountId,
} from './ids.js';
export { canTransition, INITIAL_PAYMENT_STATUSES, PAYMENT_TRANSITIONS } from './payment-status.js';
export { PaymentTable } from './payment-table.js';
export {
  isLegRecord,
  LEG_OUTCOME_TYPES,
  type LegRecord,
  RecordTable,
  type StoredRecord,
} from './record-table.js';
export {
  decodeActor,
  decodePayment,
  decodeSnapshot,
  decodeToken,
  encodeActor,
  encodePayment,
  encodeSnapshot,
  encodeToken,
  SNAPSHOT_VERSION,
} from './snapshot.js';
export {
  type CanonicalState,
  canonicalState,
  createPartitionState,
  DEFAULT_DOMAIN_CONFIG,
  DEFAULT_RISK_RULES,
  PAYMENT_ROWS_INITIAL,
  paymentTableFor,
  recordTableFor,
  resolveConfig,
} from './state.js';
export * from './types.js';
export { accountView, paymentView, replyFromEvent, tokenView } from './views.js';

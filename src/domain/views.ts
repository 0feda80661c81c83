import { assert } from './assert.js';
import { ERROR_CATALOG, type ErrorCode, makeError } from './errors.js';
import type { PaymentId } from './ids.js';
import type {
  AccountState,
  AccountStatus,
  DomainEvent,
  PartitionState,
  PaymentCanceledEvent,
  PaymentCapturedEvent,
  PaymentCreatedEvent,
  PaymentDeclinedEvent,
  PaymentState,
  PaymentStatus,
  RefundCreatedEvent,
  Reply,
  TokenState,
} from './types.js';

/**
 * Public views (response bodies) and the replies of accepted commands. A reply is a pure function of the
 * command's outcome event plus fields of existing entities that never change after creation, so the SAME
 * function answers the live command and, later, a retried one (from the event kept for idempotency).
 */

export function ok(status: number, body: Record<string, unknown>): Reply {
  return { ok: true, status, body };
}

export function fail(code: ErrorCode, message?: string, param?: string): Reply {
  const error = makeError(code, message, param);
  return { ok: false, status: statusOf(code), error };
}

function statusOf(code: ErrorCode): number {
  return ERROR_CATALOG[code].http_status;
}

export function accountView(
  account: AccountState,
  status: AccountStatus = account.status,
  posted: number = account.posted,
  pending: number = account.pending,
): Record<string, unknown> {
  return {
    id: account.id,
    object: 'account',
    currency: account.currency,
    kind: account.kind,
    status,
    overdraft_limit: account.overdraft_limit,
    available: posted - pending,
    pending,
    posted,
    created_ms: account.created_ms,
  };
}

/** Amounts of a payment at one moment; the rest of the view comes from fields fixed at creation. */
interface PaymentMoment {
  status: PaymentStatus;
  amount_capturable: number;
  amount_received: number;
  amount_refunded: number;
  /** Refunds accepted whose debit leg on the merchant's partition has not settled yet. */
  amount_refund_pending: number;
  failure_code: PaymentState['failure_code'];
  cancellation_reason: PaymentState['cancellation_reason'];
}

type PaymentFixed = Pick<
  PaymentState,
  | 'id'
  | 'source'
  | 'payee_account_id'
  | 'amount'
  | 'currency'
  | 'capture_method'
  | 'decline_code'
  | 'created_ms'
  | 'expires_ms'
  | 'description'
  | 'metadata'
>;

export function paymentView(
  fixed: PaymentFixed,
  moment: PaymentMoment = fixed as PaymentState,
): Record<string, unknown> {
  return {
    id: fixed.id,
    object: 'payment',
    status: moment.status,
    amount: fixed.amount,
    currency: fixed.currency,
    source: fixed.source,
    destination: fixed.payee_account_id,
    capture_method: fixed.capture_method,
    amount_capturable: moment.amount_capturable,
    amount_received: moment.amount_received,
    amount_refunded: moment.amount_refunded,
    amount_refund_pending: moment.amount_refund_pending,
    decline_code: fixed.decline_code,
    failure_code: moment.failure_code,
    cancellation_reason: moment.cancellation_reason,
    created_ms: fixed.created_ms,
    expires_ms: fixed.expires_ms,
    description: fixed.description,
    metadata: fixed.metadata,
  };
}

export function tokenView(token: TokenState): Record<string, unknown> {
  return {
    id: token.id,
    object: 'token',
    account: token.account_id,
    last4: token.last4,
    brand: token.brand,
    fingerprint: token.card_fingerprint,
    exp_month: token.exp_month,
    exp_year: token.exp_year,
    created_ms: token.created_ms,
  };
}

export function declineReply(payment_id: PaymentId, decline_code: PaymentState['decline_code']): Reply {
  assert(decline_code !== null, 'a decline reply needs a decline code');
  const error = makeError('payment_declined', `The payment was declined: ${decline_code}.`);
  error.decline_code = decline_code;
  error.payment_id = payment_id;
  return { ok: false, status: statusOf('payment_declined'), error };
}

/** The reply of a payment's creation, from its outcome event or (after the record expired) its state. */
export function paymentCreationReply(
  created: PaymentCreatedEvent | PaymentDeclinedEvent | PaymentState,
): Reply {
  const id = 'payment_id' in created ? created.payment_id : created.id;
  const decline_code = created.decline_code;
  if (decline_code !== null) return declineReply(id, decline_code);
  const manual = created.capture_method === 'manual';
  // The same fields, in the same order, as paymentView: built directly (every payment is answered so).
  return ok(201, {
    id,
    object: 'payment',
    status: manual ? 'requires_capture' : 'succeeded',
    amount: created.amount,
    currency: created.currency,
    source: created.source,
    destination: created.payee_account_id,
    capture_method: created.capture_method,
    amount_capturable: manual ? created.amount : 0,
    amount_received: manual ? 0 : created.amount,
    amount_refunded: 0,
    amount_refund_pending: 0,
    decline_code: null,
    failure_code: null,
    cancellation_reason: null,
    created_ms: 'created_ms' in created ? created.created_ms : created.time_ms,
    expires_ms: created.expires_ms,
    description: created.description,
    metadata: created.metadata,
  });
}

function accountOf(state: PartitionState, event: DomainEvent): AccountState {
  const account = state.accounts.get(event.account_id);
  assert(account !== undefined, 'event %s refers to missing account %s', event.event_id, event.account_id);
  return account;
}

function paymentOf(state: PartitionState, payment_id: PaymentId): PaymentState {
  const payment = state.payments.get(payment_id);
  assert(payment !== undefined, 'missing payment %s', payment_id);
  return payment;
}

function paymentCurrency(state: PartitionState, payment_id: PaymentId): string {
  const row = state.payments.find(payment_id);
  assert(row >= 0, 'missing payment %s', payment_id);
  return state.payments.currencyOf(row);
}

/**
 * Reply to the client command whose outcome is `event`; null for legs and timers. Reads only the event
 * and creation-time fields of entities, so it is valid before `evolve(event)` and any time after.
 */
export function replyFromEvent(state: PartitionState, event: DomainEvent): Reply | null {
  switch (event.type) {
    case 'account_opened':
      return ok(201, {
        id: event.account_id,
        object: 'account',
        currency: event.currency,
        kind: event.kind,
        status: 'active',
        overdraft_limit: event.overdraft_limit,
        available: 0,
        pending: 0,
        posted: 0,
        created_ms: event.time_ms,
      });
    case 'deposited':
      return ok(201, {
        id: event.command_id,
        object: 'deposit',
        account: event.account_id,
        amount: event.amount,
        currency: event.currency,
        balance: accountView(accountOf(state, event), 'active', event.posted_after, event.pending_after),
      });
    case 'account_frozen':
    case 'account_unfrozen': {
      const status = event.type === 'account_frozen' ? 'frozen' : 'active';
      return ok(200, accountView(accountOf(state, event), status, event.posted_after, event.pending_after));
    }
    case 'token_created':
      return ok(201, tokenView({ ...event, id: event.token_id, created_ms: event.time_ms }));
    case 'payment_created':
    case 'payment_declined':
      return paymentCreationReply(event);
    case 'payment_captured':
    case 'payment_canceled':
    case 'payment_expired':
    case 'refund_created':
      return paymentChangeReply(state, event);
    default:
      return null;
  }
}

/** Replies of capture, cancel (or a capture/cancel that found the authorization expired) and refund. */
function paymentChangeReply(
  state: PartitionState,
  event: PaymentCapturedEvent | PaymentCanceledEvent | RefundCreatedEvent,
): Reply {
  switch (event.type) {
    case 'payment_captured':
      return ok(
        200,
        paymentView(paymentOf(state, event.payment_id), {
          status: 'succeeded',
          amount_capturable: 0,
          amount_received: event.amount_captured,
          amount_refunded: 0,
          amount_refund_pending: 0,
          failure_code: null,
          cancellation_reason: null,
        }),
      );
    case 'payment_canceled':
      return ok(
        200,
        paymentView(paymentOf(state, event.payment_id), {
          status: 'canceled',
          amount_capturable: 0,
          amount_received: 0,
          amount_refunded: 0,
          amount_refund_pending: 0,
          failure_code: null,
          cancellation_reason: 'requested_by_customer',
        }),
      );
    case 'payment_expired':
      // Only a capture or cancel that found the authorization expired is answered (timers get no reply).
      return fail('authorization_expired', undefined, 'payment');
    case 'refund_created':
      return ok(201, {
        id: event.refund_id,
        object: 'refund',
        payment: event.payment_id,
        amount: event.amount,
        currency: paymentCurrency(state, event.payment_id),
        status: 'pending',
        failure_code: null,
        created_ms: event.time_ms,
      });
  }
}

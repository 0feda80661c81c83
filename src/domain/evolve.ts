import { assert } from './assert.js';
import { remember } from './idempotency.js';
import type { PaymentId } from './ids.js';
import { transition } from './payment-status.js';
import { availableOf, DAY_MS, newAccount, worldOf } from './state.js';
import type {
  AccountState,
  DomainEvent,
  PartitionState,
  PaymentCreatedEvent,
  PaymentDeclinedEvent,
  PaymentState,
  RefundState,
} from './types.js';

/**
 * evolve(state, event) applies one event IN PLACE and returns the same state. It only reads the event and
 * the state, so folding the events topic from a fresh state rebuilds the live state exactly. Every event
 * then becomes its command's idempotency record.
 * Cost (hot path): one or two Map.get, a few field writes, one Map.set for the record: ~100-200 ns.
 */
export function evolve(state: PartitionState, event: DomainEvent): PartitionState {
  switch (event.type) {
    case 'account_opened': {
      assert(!state.accounts.has(event.account_id), `account ${event.account_id} opened twice`);
      const account = newAccount(
        event.account_id,
        event.currency,
        event.kind,
        event.overdraft_limit,
        event.time_ms,
        event.risk_rules,
      );
      state.accounts.set(account.id, account);
      break;
    }
    case 'deposited': {
      const account = accountOf(state, event);
      account.posted += event.amount;
      worldOf(state).posted -= event.amount;
      break;
    }
    case 'account_frozen':
    case 'account_unfrozen':
      accountOf(state, event).status = event.type === 'account_frozen' ? 'frozen' : 'active';
      break;
    case 'token_created':
      state.tokens.set(event.token_id, {
        id: event.token_id,
        account_id: event.account_id,
        last4: event.last4,
        brand: event.brand,
        card_fingerprint: event.card_fingerprint,
        exp_month: event.exp_month,
        exp_year: event.exp_year,
        created_ms: event.time_ms,
      });
      break;
    case 'payment_created':
      evolvePaymentCreated(state, event);
      break;
    case 'payment_declined':
      assert(!state.payments.has(event.payment_id), `payment ${event.payment_id} created twice`);
      state.payments.set(event.payment_id, newPayment(event));
      break;
    default:
      evolvePaymentChange(state, event);
  }
  remember(state, event);
  return state;
}

function accountOf(state: PartitionState, event: DomainEvent): AccountState {
  const account = state.accounts.get(event.account_id);
  assert(account !== undefined, `event ${event.event_id} for missing account ${event.account_id}`);
  return account;
}

function paymentOf(state: PartitionState, payment_id: PaymentId): PaymentState {
  const payment = state.payments.get(payment_id);
  assert(payment !== undefined, `event for missing payment ${payment_id}`);
  return payment;
}

/** Debits must never take an account below its overdraft limit (the world account has none). */
function assertFunded(account: AccountState): void {
  assert(
    account.kind === 'world' || availableOf(account) >= -account.overdraft_limit,
    `account ${account.id} available ${availableOf(account)} below -overdraft ${account.overdraft_limit}`,
  );
  assert(account.pending >= 0, `account ${account.id} pending ${account.pending} < 0`);
}

/** Every payment object is built here so all share one hidden class. */
function newPayment(event: PaymentCreatedEvent | PaymentDeclinedEvent): PaymentState {
  const declined = event.type === 'payment_declined';
  const manual = event.capture_method === 'manual';
  return {
    id: event.payment_id,
    payer_account_id: event.account_id,
    source: event.source,
    payee_account_id: event.payee_account_id,
    amount: event.amount,
    currency: event.currency,
    capture_method: event.capture_method,
    status: declined ? 'declined' : manual ? 'requires_capture' : 'succeeded',
    amount_capturable: !declined && manual ? event.amount : 0,
    amount_received: !declined && !manual ? event.amount : 0,
    amount_refunded: 0,
    amount_refund_pending: 0,
    decline_code: event.decline_code,
    failure_code: null,
    cancellation_reason: null,
    created_ms: event.time_ms,
    expires_ms: event.expires_ms,
    command_id: event.command_id,
    fingerprint: event.fingerprint,
    description: event.description,
    metadata: event.metadata,
    refunds: null,
  };
}

function evolvePaymentCreated(state: PartitionState, event: PaymentCreatedEvent): void {
  assert(!state.payments.has(event.payment_id), `payment ${event.payment_id} created twice`);
  const payer = accountOf(state, event);
  const payment = newPayment(event);
  state.payments.set(payment.id, payment);
  if (payment.capture_method === 'manual') {
    payer.pending += event.amount;
    state.authorizations.set(payment.id, payment.expires_ms);
  } else {
    payer.posted -= event.amount;
  }
  assertFunded(payer);
  recordRisk(state, payer, event.amount, event.time_ms);
}

/** Risk counters of the payer: prune the velocity window, then count this payment. */
function recordRisk(state: PartitionState, payer: AccountState, amount: number, time_ms: number): void {
  const rules = payer.risk_rules ?? state.config.risk_rules;
  const window_start_ms = time_ms - rules.velocity_window_ms;
  const times = payer.velocity_times_ms ?? [];
  let kept = 0;
  for (let i = 0; i < times.length; i++) {
    const t = times[i]!;
    if (t > window_start_ms) times[kept++] = t;
  }
  times.length = kept;
  times.push(time_ms);
  assert(times.length <= rules.velocity_count_max, `account ${payer.id} velocity list over its bound`);
  payer.velocity_times_ms = times;
  const day_index = Math.floor(time_ms / DAY_MS);
  if (payer.day_index !== day_index) {
    payer.day_index = day_index;
    payer.day_amount = 0;
  }
  payer.day_amount += amount;
}

function refundOf(payment: PaymentState, refund_id: string): RefundState {
  const refund = payment.refunds?.find((r) => r.id === refund_id);
  assert(refund !== undefined, `payment ${payment.id} has no refund ${refund_id}`);
  return refund;
}

function assertPaymentAmounts(payment: PaymentState): void {
  assert(payment.amount_received <= payment.amount, `payment ${payment.id}: captured > authorized`);
  assert(
    payment.amount_refunded + payment.amount_refund_pending <= payment.amount_received,
    `payment ${payment.id}: refunded > captured`,
  );
}

/** Events that change an existing payment or move money for one. */
function evolvePaymentChange(state: PartitionState, event: DomainEvent): void {
  switch (event.type) {
    case 'payment_captured': {
      const payment = paymentOf(state, event.payment_id);
      const payer = accountOf(state, event);
      assert(
        event.amount_captured + event.amount_released === payment.amount_capturable,
        'capture must close the hold',
      );
      payer.pending -= payment.amount_capturable;
      payer.posted -= event.amount_captured;
      payment.amount_capturable = 0;
      payment.amount_received = event.amount_captured;
      transition(payment, 'succeeded');
      state.authorizations.delete(payment.id);
      assertFunded(payer);
      assertPaymentAmounts(payment);
      break;
    }
    case 'payment_canceled':
    case 'payment_expired': {
      const payment = paymentOf(state, event.payment_id);
      const payer = accountOf(state, event);
      assert(event.amount_released === payment.amount_capturable, 'cancel must release the whole hold');
      payer.pending -= event.amount_released;
      payment.amount_capturable = 0;
      payment.cancellation_reason = event.type === 'payment_expired' ? 'expired' : 'requested_by_customer';
      transition(payment, 'canceled');
      state.authorizations.delete(payment.id);
      assertFunded(payer);
      break;
    }
    default:
      evolveTransfer(state, event);
  }
}

/** Refunds and the cross-account legs, on either side. */
function evolveTransfer(state: PartitionState, event: DomainEvent): void {
  switch (event.type) {
    case 'refund_created': {
      const payment = paymentOf(state, event.payment_id);
      const refund: RefundState = {
        id: event.refund_id,
        amount: event.amount,
        status: 'pending',
        failure_code: null,
        created_ms: event.time_ms,
      };
      if (payment.refunds === null) payment.refunds = [refund];
      else payment.refunds.push(refund);
      payment.amount_refund_pending += event.amount;
      assertPaymentAmounts(payment);
      break;
    }
    case 'transfer_credited':
      accountOf(state, event).posted += event.amount;
      break;
    case 'transfer_debited': {
      const payee = accountOf(state, event);
      payee.posted -= event.amount;
      assertFunded(payee);
      break;
    }
    case 'transfer_rejected':
      break; // Nothing moved here; the event is the leg's idempotency record.
    case 'payment_failed': {
      const payment = paymentOf(state, event.payment_id);
      accountOf(state, event).posted += event.amount;
      transition(payment, 'failed');
      payment.failure_code = event.failure_code;
      break;
    }
    case 'refund_succeeded':
    case 'refund_failed': {
      const payment = paymentOf(state, event.payment_id);
      const refund = refundOf(payment, event.refund_id);
      assert(refund.status === 'pending', `refund ${refund.id} settled twice`);
      payment.amount_refund_pending -= event.amount;
      if (event.type === 'refund_succeeded') {
        refund.status = 'succeeded';
        payment.amount_refunded += event.amount;
        accountOf(state, event).posted += event.amount;
      } else {
        refund.status = 'failed';
        refund.failure_code = event.failure_code;
      }
      assertPaymentAmounts(payment);
      break;
    }
    default:
      assert(false, `evolve: unknown event type ${(event as { type: string }).type}`);
  }
}

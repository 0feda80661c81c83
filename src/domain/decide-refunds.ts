import { findPayment, paymentNotFound } from './decide-payments.js';
import { accepted, eventId, fingerprintOf, invalid, rejected } from './decision.js';
import { type PaymentId, parseAmount, type RefundId } from './ids.js';
import { STATUS_SUCCEEDED } from './payment-table.js';
import type { CreateRefundCommand, DebitLeg, Decision, PartitionState } from './types.js';
import { fail } from './views.js';

const REFUND_ID_LENGTH_MAX = 300;

/**
 * A refund reserves its amount on the payment (amount_refund_pending) and asks the payee, on its own
 * partition, to give the money back (a `debit` leg). Nothing moves until the payee accepts; the refund
 * then succeeds (`debit_settled`) or fails (`debit_rejected`). Refunds never exceed the captured amount.
 */
export function decideRefund(state: PartitionState, command: CreateRefundCommand): Decision {
  const row = findPayment(state, command.payment_id);
  if (row < 0) return paymentNotFound(command.payment_id, 'payment');
  const table = state.payments;
  if (table.status[row] !== STATUS_SUCCEEDED) {
    return rejected(
      fail('payment_invalid_state', `Payment is ${table.statusOf(row)}; only succeeded can be refunded.`),
    );
  }
  const refundable =
    table.amount_received[row]! - table.amount_refunded[row]! - table.amount_refund_pending[row]!;
  const amount = command.amount === undefined ? refundable : parseAmount(command.amount);
  if (amount === 0) return rejected(fail('amount_exceeds_refundable', 'Nothing left to refund.', 'amount'));
  if (amount === null) return invalid('amount must be a positive integer in minor units', 'amount');
  if (amount > refundable) return rejected(fail('amount_exceeds_refundable', undefined, 'amount'));
  const refunds = table.refunds.get(row);
  if ((refunds?.length ?? 0) >= state.config.refunds_per_payment_max) {
    return invalid(`a payment has at most ${state.config.refunds_per_payment_max} refunds`, 'payment');
  }
  const refund_id = (command.refund_id ?? 're_' + command.command_id) as RefundId;
  if (typeof refund_id !== 'string' || refund_id.length === 0 || refund_id.length > REFUND_ID_LENGTH_MAX) {
    return invalid('refund id must be a non-empty string', 'refund_id');
  }
  if (refunds?.some((r) => r.id === refund_id)) {
    return rejected(fail('resource_already_exists', undefined, 'refund_id'));
  }
  const payment_id = command.payment_id as PaymentId;
  const payer_account_id = table.payer[row]!;
  const leg: DebitLeg = {
    type: 'debit',
    command_id: refund_id + ':debit',
    time_ms: command.time_ms,
    account_id: table.payeeOf(row),
    payment_id,
    refund_id,
    payer_account_id,
    amount,
    currency: table.currencyOf(row),
  };
  const event = {
    type: 'refund_created' as const,
    event_id: eventId(command, 0),
    account_id: payer_account_id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: fingerprintOf(command),
    payment_id,
    refund_id,
    amount,
  };
  return accepted(state, command, event, [leg]);
}

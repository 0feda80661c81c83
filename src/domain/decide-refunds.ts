import { findPayment } from './decide-payments.js';
import { accepted, eventId, fingerprintOf, invalid, rejected } from './decision.js';
import { parseAmount, type RefundId } from './ids.js';
import type { CreateRefundCommand, DebitLeg, Decision, PartitionState } from './types.js';
import { fail } from './views.js';

const REFUND_ID_LENGTH_MAX = 300;

/**
 * A refund reserves its amount on the payment (amount_refund_pending) and asks the payee, on its own
 * partition, to give the money back (a `debit` leg). Nothing moves until the payee accepts; the refund
 * then succeeds (`debit_settled`) or fails (`debit_rejected`). Refunds never exceed the captured amount.
 */
export function decideRefund(state: PartitionState, command: CreateRefundCommand): Decision {
  const found = findPayment(state, command.payment_id, 'payment');
  if (found.error) return found.error;
  const payment = found.payment;
  if (payment.status !== 'succeeded') {
    return rejected(
      fail('payment_invalid_state', `Payment is ${payment.status}; only succeeded can be refunded.`),
    );
  }
  const refundable = payment.amount_received - payment.amount_refunded - payment.amount_refund_pending;
  const amount = command.amount === undefined ? refundable : parseAmount(command.amount);
  if (amount === 0) return rejected(fail('amount_exceeds_refundable', 'Nothing left to refund.', 'amount'));
  if (amount === null) return invalid('amount must be a positive integer in minor units', 'amount');
  if (amount > refundable) return rejected(fail('amount_exceeds_refundable', undefined, 'amount'));
  if ((payment.refunds?.length ?? 0) >= state.config.refunds_per_payment_max) {
    return invalid(`a payment has at most ${state.config.refunds_per_payment_max} refunds`, 'payment');
  }
  const refund_id = (command.refund_id ?? 're_' + command.command_id) as RefundId;
  if (typeof refund_id !== 'string' || refund_id.length === 0 || refund_id.length > REFUND_ID_LENGTH_MAX) {
    return invalid('refund id must be a non-empty string', 'refund_id');
  }
  if (payment.refunds?.some((r) => r.id === refund_id)) {
    return rejected(fail('resource_already_exists', undefined, 'refund_id'));
  }
  const leg: DebitLeg = {
    type: 'debit',
    command_id: refund_id + ':debit',
    time_ms: command.time_ms,
    account_id: payment.payee_account_id,
    payment_id: payment.id,
    refund_id,
    payer_account_id: payment.payer_account_id,
    amount,
    currency: payment.currency,
  };
  const event = {
    type: 'refund_created' as const,
    event_id: eventId(command, 0),
    account_id: payment.payer_account_id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: fingerprintOf(command),
    payment_id: payment.id,
    refund_id,
    amount,
  };
  return accepted(state, command, event, [leg]);
}

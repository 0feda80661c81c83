import { assert } from './assert.js';
import { accepted, eventId, rejected } from './decision.js';
import type { FailureCode } from './errors.js';
import { findRecord } from './idempotency.js';
import type { AccountId, PaymentId, RefundId } from './ids.js';
import { availableOf } from './state.js';
import type {
  AccountState,
  CreditLeg,
  CreditRejectedLeg,
  DebitLeg,
  DebitRejectedLeg,
  DebitSettledLeg,
  Decision,
  FollowUpCommand,
  PartitionState,
  PaymentState,
  TransferRejectedEvent,
} from './types.js';

/**
 * Cross-account legs. A leg's command_id is its transfer id, so a redelivered leg hits its idempotency
 * record (decide.ts) and changes nothing; on the payer's side the payment/refund status makes the result
 * legs idempotent for ever. Legs are produced by this code, so a malformed one is a bug: assert.
 *
 *   payer partition                         payee partition
 *   payment_created / payment_captured ──credit──▶ transfer_credited
 *                                                 └ transfer_rejected ──credit_rejected──▶ payment_failed
 *   refund_created ──debit──▶ transfer_debited ──debit_settled──▶ refund_succeeded
 *                             └ transfer_rejected ──debit_rejected──▶ refund_failed
 */

function assertLeg(command: FollowUpCommand): void {
  assert(Number.isSafeInteger(command.amount) && command.amount > 0, `leg ${command.command_id}: bad amount`);
  assert(typeof command.account_id === 'string', `leg ${command.command_id}: no account`);
  assert(typeof command.payment_id === 'string', `leg ${command.command_id}: no payment`);
}

/** Why a payee account cannot take part in a leg (missing, world, frozen, other currency); null if it can. */
function payeeProblem(payee: AccountState | undefined, currency: string): FailureCode | null {
  if (
    payee === undefined ||
    payee.kind === 'world' ||
    payee.status === 'frozen' ||
    payee.currency !== currency
  ) {
    return 'destination_invalid';
  }
  return null;
}

function rejectedTransfer(command: CreditLeg | DebitLeg, failure_code: FailureCode): TransferRejectedEvent {
  return {
    type: 'transfer_rejected',
    event_id: eventId(command, 0),
    account_id: command.account_id as AccountId,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: null,
    direction: command.type,
    payment_id: command.payment_id as PaymentId,
    refund_id: command.type === 'debit' ? (command.refund_id as RefundId) : null,
    payer_account_id: command.payer_account_id as AccountId,
    amount: command.amount,
    failure_code,
  };
}

export function decideCredit(state: PartitionState, command: CreditLeg): Decision {
  assertLeg(command);
  const payee = state.accounts.get(command.account_id as AccountId);
  let problem = payeeProblem(payee, command.currency);
  if (problem === null && payee!.posted + command.amount > Number.MAX_SAFE_INTEGER)
    problem = 'destination_invalid';
  if (problem !== null) {
    const back: CreditRejectedLeg = {
      type: 'credit_rejected',
      command_id: command.payment_id + ':credit_rejected',
      time_ms: command.time_ms,
      account_id: command.payer_account_id,
      payment_id: command.payment_id,
      amount: command.amount,
      failure_code: problem,
    };
    return accepted(state, command, rejectedTransfer(command, problem), [back]);
  }
  return accepted(state, command, {
    type: 'transfer_credited',
    event_id: eventId(command, 0),
    account_id: payee!.id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: null,
    payment_id: command.payment_id as PaymentId,
    payer_account_id: command.payer_account_id as AccountId,
    amount: command.amount,
  });
}

/**
 * A refund must not take back money the payee never got: if this payment's credit was refused here (its
 * record is kept >= 24 h, far longer than legs take), refuse the debit too.
 */
function creditWasRejected(state: PartitionState, payment_id: string): boolean {
  return findRecord(state, payment_id + ':credit')?.type === 'transfer_rejected';
}

export function decideDebit(state: PartitionState, command: DebitLeg): Decision {
  assertLeg(command);
  const payee = state.accounts.get(command.account_id as AccountId);
  let problem = payeeProblem(payee, command.currency);
  if (problem === null && creditWasRejected(state, command.payment_id)) problem = 'destination_invalid';
  if (problem === null && availableOf(payee!) - command.amount < -payee!.overdraft_limit)
    problem = 'insufficient_funds';
  const result = {
    command_id: command.refund_id + (problem === null ? ':settled' : ':rejected'),
    time_ms: command.time_ms,
    account_id: command.payer_account_id,
    payment_id: command.payment_id,
    refund_id: command.refund_id,
    amount: command.amount,
  };
  if (problem !== null) {
    const back: DebitRejectedLeg = { type: 'debit_rejected', ...result, failure_code: problem };
    return accepted(state, command, rejectedTransfer(command, problem), [back]);
  }
  const settled: DebitSettledLeg = { type: 'debit_settled', ...result };
  return accepted(
    state,
    command,
    {
      type: 'transfer_debited',
      event_id: eventId(command, 0),
      account_id: payee!.id,
      time_ms: command.time_ms,
      command_id: command.command_id,
      fingerprint: null,
      payment_id: command.payment_id as PaymentId,
      refund_id: command.refund_id as RefundId,
      payer_account_id: command.payer_account_id as AccountId,
      amount: command.amount,
    },
    [settled],
  );
}

function paymentOf(state: PartitionState, command: FollowUpCommand): PaymentState {
  const payment = state.payments.get(command.payment_id as PaymentId);
  assert(payment !== undefined, `leg ${command.command_id} for unknown payment ${command.payment_id}`);
  assert(payment.payer_account_id === command.account_id, `leg ${command.command_id} for another payer`);
  return payment;
}

/** The payee refused the credit: give the money back to the payer; the payment ends failed. */
export function decideCreditRejected(state: PartitionState, command: CreditRejectedLeg): Decision {
  assertLeg(command);
  const payment = paymentOf(state, command);
  if (payment.status === 'failed') return rejected(null); // Already applied: a duplicate.
  assert(
    payment.status === 'succeeded',
    `payment ${payment.id} is ${payment.status}; a credit cannot come back`,
  );
  assert(command.amount === payment.amount_received, `payment ${payment.id}: returned amount != captured`);
  return accepted(state, command, {
    type: 'payment_failed',
    event_id: eventId(command, 0),
    account_id: payment.payer_account_id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: null,
    payment_id: payment.id,
    amount: command.amount,
    failure_code: command.failure_code,
  });
}

/** The payee answered a refund's debit: settle (credit the payer) or fail the refund. */
export function decideDebitResult(
  state: PartitionState,
  command: DebitSettledLeg | DebitRejectedLeg,
): Decision {
  assertLeg(command);
  const payment = paymentOf(state, command);
  const refund = payment.refunds?.find((r) => r.id === command.refund_id);
  assert(refund !== undefined, `leg ${command.command_id} for unknown refund ${command.refund_id}`);
  assert(refund.amount === command.amount, `refund ${refund.id}: leg amount != refund amount`);
  if (refund.status !== 'pending') return rejected(null); // Already applied: a duplicate.
  const base = {
    event_id: eventId(command, 0),
    account_id: payment.payer_account_id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: null,
    payment_id: payment.id,
    refund_id: refund.id,
    amount: command.amount,
  };
  if (command.type === 'debit_settled')
    return accepted(state, command, { type: 'refund_succeeded', ...base });
  return accepted(state, command, { type: 'refund_failed', ...base, failure_code: command.failure_code });
}

import { assert } from './assert.js';
import { accepted, eventId, rejected } from './decision.js';
import type { FailureCode } from './errors.js';
import { recordType } from './idempotency.js';
import type { AccountId, PaymentId, RefundId } from './ids.js';
import { STATUS_FAILED, STATUS_SUCCEEDED } from './payment-table.js';
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
  assert(
    Number.isSafeInteger(command.amount) && command.amount > 0,
    'leg %s: bad amount',
    command.command_id,
  );
  assert(typeof command.account_id === 'string', 'leg %s: no account', command.command_id);
  assert(typeof command.payment_id === 'string', 'leg %s: no payment', command.command_id);
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
  return recordType(state, payment_id + ':credit') === 'transfer_rejected';
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

/** The row of the payment a result leg comes back for; it is this partition's (the payer's). */
function paymentRow(state: PartitionState, command: FollowUpCommand): number {
  const row = state.payments.find(command.payment_id);
  assert(row >= 0, 'leg %s for unknown payment %s', command.command_id, command.payment_id);
  assert(state.payments.payer[row] === command.account_id, 'leg %s for another payer', command.command_id);
  return row;
}

/** The payee refused the credit: give the money back to the payer; the payment ends failed. */
export function decideCreditRejected(state: PartitionState, command: CreditRejectedLeg): Decision {
  assertLeg(command);
  const table = state.payments;
  const row = paymentRow(state, command);
  if (table.status[row] === STATUS_FAILED) return rejected(null); // Already applied: a duplicate.
  assert(
    table.status[row] === STATUS_SUCCEEDED,
    'payment %s is %s; a credit cannot come back',
    command.payment_id,
    table.statusOf(row),
  );
  assert(
    command.amount === table.amount_received[row],
    'payment %s: returned amount != captured',
    command.payment_id,
  );
  return accepted(state, command, {
    type: 'payment_failed',
    event_id: eventId(command, 0),
    account_id: table.payer[row]!,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: null,
    payment_id: command.payment_id as PaymentId,
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
  const row = paymentRow(state, command);
  const refund = state.payments.refunds.get(row)?.find((r) => r.id === command.refund_id);
  assert(refund !== undefined, 'leg %s for unknown refund %s', command.command_id, command.refund_id);
  assert(refund.amount === command.amount, 'refund %s: leg amount != refund amount', refund.id);
  if (refund.status !== 'pending') return rejected(null); // Already applied: a duplicate.
  const base = {
    event_id: eventId(command, 0),
    account_id: state.payments.payer[row]!,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: null,
    payment_id: command.payment_id as PaymentId,
    refund_id: refund.id,
    amount: command.amount,
  };
  if (command.type === 'debit_settled')
    return accepted(state, command, { type: 'refund_succeeded', ...base });
  return accepted(state, command, { type: 'refund_failed', ...base, failure_code: command.failure_code });
}

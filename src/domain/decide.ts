import {
  decideCreateToken,
  decideDeposit,
  decideFreeze,
  decideGetAccount,
  decideOpenAccount,
} from './decide-accounts.js';
import { decideCredit, decideCreditRejected, decideDebit, decideDebitResult } from './decide-legs.js';
import {
  decideCancel,
  decideCapture,
  decideCreatePayment,
  decideExpireAuthorizations,
  decideGetPayment,
} from './decide-payments.js';
import { decideRefund } from './decide-refunds.js';
import { invalid, isClientCommand, rejected } from './decision.js';
import { evolve } from './evolve.js';
import { findRecord, sameFingerprint } from './idempotency.js';
import { isLegRecord, type StoredRecord } from './record-table.js';
import type { Command, Decision, PartitionState } from './types.js';
import { fail, replyFromEvent } from './views.js';

const COMMAND_ID_LENGTH_MAX = 256;

/**
 * decide(state, command) -> { events, reply, follow_ups }. Pure: reads `state`, never mutates it, reads
 * time only from `command.time_ms`. Input that a client could have sent wrong is answered with an error
 * reply (never a throw); broken invariants throw (see assert.ts).
 */
export function decide(state: PartitionState, command: Command): Decision {
  if (command === null || typeof command !== 'object') return invalid('command must be an object');
  if (typeof command.command_id !== 'string' || command.command_id.length === 0) {
    return invalid('command_id must be a non-empty string', 'command_id');
  }
  if (command.command_id.length > COMMAND_ID_LENGTH_MAX)
    return invalid('command_id is too long', 'command_id');
  if (!Number.isSafeInteger(command.time_ms) || command.time_ms < 0)
    return invalid('time_ms must be an integer', 'time_ms');
  if (command.fingerprint !== undefined && typeof command.fingerprint !== 'string') {
    return invalid('fingerprint must be a string', 'fingerprint');
  }
  // Reads: no record, no event; answered from the state after the batch's earlier commands.
  if (command.type === 'get_account') return decideGetAccount(state, command);
  if (command.type === 'get_payment') return decideGetPayment(state, command);
  // Payments are deduplicated by their payment id (durable), the rest by command id (>= 24 h).
  if (command.type === 'create_payment') return decideCreatePayment(state, command);
  const record = findRecord(state, command.command_id);
  if (record !== undefined) return decideRetry(state, command, record);
  return decideNew(state, command);
}

/** A command id seen before: same body -> the stored outcome again, no event; other body -> 409. */
function decideRetry(state: PartitionState, command: Command, record: StoredRecord): Decision {
  if (!isClientCommand(command)) return rejected(null); // A redelivered leg or tick: nothing to answer.
  // A client command id that names a leg's record is another request under a used key.
  if (isLegRecord(record) || !sameFingerprint(command, record))
    return rejected(fail('idempotency_key_reused', undefined, 'command_id'));
  return rejected(replyFromEvent(state, record));
}

function decideNew(state: PartitionState, command: Command): Decision {
  switch (command.type) {
    case 'open_account':
      return decideOpenAccount(state, command);
    case 'deposit':
      return decideDeposit(state, command);
    case 'freeze_account':
    case 'unfreeze_account':
      return decideFreeze(state, command);
    case 'create_token':
      return decideCreateToken(state, command);
    case 'capture_payment':
      return decideCapture(state, command);
    case 'cancel_payment':
      return decideCancel(state, command);
    case 'create_refund':
      return decideRefund(state, command);
    case 'expire_authorizations':
      return decideExpireAuthorizations(state, command);
    case 'credit':
      return decideCredit(state, command);
    case 'credit_rejected':
      return decideCreditRejected(state, command);
    case 'debit':
      return decideDebit(state, command);
    case 'debit_settled':
    case 'debit_rejected':
      return decideDebitResult(state, command);
    default:
      return invalid(`unknown command type ${String((command as { type?: unknown }).type)}`, 'type');
  }
}

/** What a lane calls: decide, then evolve every event in place. Returns the decision. */
export function apply(state: PartitionState, command: Command): Decision {
  const decision = decide(state, command);
  for (const event of decision.events) evolve(state, event);
  return decision;
}

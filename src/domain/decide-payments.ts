import { type Currency, parseCurrency } from './currency.js';
import { accepted, eventId, fingerprintOf, invalid, rejected } from './decision.js';
import type { DeclineCode } from './errors.js';
import {
  type AccountId,
  type Amount,
  type PaymentId,
  parseAccountId,
  parseAmount,
  parsePaymentId,
  shard,
  shardOfPaymentId,
} from './ids.js';
import { type PaymentTable, STATUS_REQUIRES_CAPTURE } from './payment-table.js';
import { availableOf, DAY_MS } from './state.js';
import type {
  AccountState,
  CancelPaymentCommand,
  CapturePaymentCommand,
  CreatePaymentCommand,
  CreditLeg,
  Decision,
  DomainEvent,
  ExpireAuthorizationsCommand,
  GetPaymentCommand,
  PartitionState,
  PaymentCanceledEvent,
  PaymentCreatedEvent,
  PaymentDeclinedEvent,
  PaymentState,
  TokenState,
} from './types.js';
import { fail, ok, paymentCreationReply, paymentView } from './views.js';

const DESCRIPTION_LENGTH_MAX = 1000;
const METADATA_KEYS_MAX = 50;
const METADATA_VALUE_LENGTH_MAX = 500;

type Payer = { account: AccountState; token: TokenState | null };

/** The account a payment charges: the source account itself or the owner of the card token. */
function resolvePayer(state: PartitionState, source: string): Payer | null {
  if (typeof source !== 'string') return null;
  if (source.startsWith('tok_')) {
    const token = state.tokens.get(source as TokenState['id']);
    if (token === undefined) return null;
    const account = state.accounts.get(token.account_id);
    return account === undefined ? null : { account, token };
  }
  const account_id = parseAccountId(source);
  const account = account_id === null ? undefined : state.accounts.get(account_id);
  return account === undefined ? null : { account, token: null };
}

function isMetadata(value: unknown): value is Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const entries = Object.entries(value);
  if (entries.length > METADATA_KEYS_MAX) return false;
  return entries.every(
    ([k, v]) => k.length <= 40 && typeof v === 'string' && v.length <= METADATA_VALUE_LENGTH_MAX,
  );
}

/** Card expiry: valid through the last millisecond of exp_month/exp_year (UTC). */
export function cardExpired(token: TokenState, time_ms: number): boolean {
  return time_ms >= Date.UTC(token.exp_year, token.exp_month, 1);
}

function velocityCount(account: AccountState, window_start_ms: number): number {
  const times = account.velocity_times_ms;
  if (times === null) return 0;
  let count = 0;
  for (let i = 0; i < times.length; i++) if (times[i]! > window_start_ms) count++;
  return count;
}

/** Risk and funds checks in a fixed order; null means accepted. Mirrors recordRisk in evolve. */
function declineCodeOf(
  state: PartitionState,
  payer: Payer,
  amount: number,
  currency: string,
  time_ms: number,
): DeclineCode | null {
  const account = payer.account;
  if (account.status === 'frozen') return 'account_frozen';
  if (currency !== account.currency) return 'currency_mismatch';
  if (payer.token !== null && cardExpired(payer.token, time_ms)) return 'card_expired';
  const rules = account.risk_rules ?? state.config.risk_rules;
  if (amount > rules.single_payment_max) return 'amount_too_large';
  if (velocityCount(account, time_ms - rules.velocity_window_ms) >= rules.velocity_count_max)
    return 'velocity_exceeded';
  const day_amount = account.day_index === Math.floor(time_ms / DAY_MS) ? account.day_amount : 0;
  if (day_amount + amount > rules.amount_per_day_max) return 'velocity_exceeded';
  if (availableOf(account) - amount < -account.overdraft_limit) return 'insufficient_funds';
  return null;
}

/** Existing payment id: same body -> its creation reply again (durable, beyond the 24 h records). */
function decideExistingPayment(command: CreatePaymentCommand, table: PaymentTable, row: number): Decision {
  if ((command.fingerprint ?? null) !== table.fingerprint[row]) {
    return rejected(fail('idempotency_key_reused', undefined, 'idempotency_key'));
  }
  return rejected(paymentCreationReply(table.toState(row)));
}

/** A create_payment whose fields passed validation. */
interface PaymentRequest {
  payment_id: PaymentId;
  payer: Payer;
  destination: AccountId;
  amount: Amount;
  currency: Currency;
  capture: boolean;
  description: string | null;
  metadata: Record<string, string> | null;
}

/** Field checks of a new payment, in request order; a Decision is the error answer. */
function parsePaymentRequest(
  state: PartitionState,
  command: CreatePaymentCommand,
  payment_id: PaymentId,
  payment_shard: number,
): PaymentRequest | Decision {
  const payer = resolvePayer(state, command.source);
  if (payer === null) return rejected(fail('not_found', `No such source: ${command.source}`, 'source'));
  if (payment_shard !== shard(payer.account.id))
    return invalid("payment id must embed the payer's shard", 'id');
  const destination = parseAccountId(command.destination);
  if (destination === null || destination === payer.account.id) {
    return invalid('destination must be another account id', 'destination');
  }
  const amount = parseAmount(command.amount);
  if (amount === null) return invalid('amount must be a positive integer in minor units', 'amount');
  const currency = parseCurrency(command.currency);
  if (currency === null) return invalid('currency must be an ISO 4217 code', 'currency');
  const capture = command.capture ?? true;
  if (typeof capture !== 'boolean') return invalid('capture must be a boolean', 'capture');
  const description = command.description ?? null;
  if (
    description !== null &&
    (typeof description !== 'string' || description.length > DESCRIPTION_LENGTH_MAX)
  ) {
    return invalid('description must be a string of at most 1000 chars', 'description');
  }
  const metadata = command.metadata ?? null;
  if (metadata !== null && !isMetadata(metadata))
    return invalid('metadata must map short keys to strings', 'metadata');
  return { payment_id, payer, destination, amount, currency, capture, description, metadata };
}

export function decideCreatePayment(state: PartitionState, command: CreatePaymentCommand): Decision {
  const payment_shard = shardOfPaymentId(command.payment_id);
  if (payment_shard === null) return invalid('payment id must be pay_<8 hex shard><unique>', 'id');
  const payment_id = command.payment_id as PaymentId;
  const existing_row = state.payments.find(payment_id);
  if (existing_row >= 0) return decideExistingPayment(command, state.payments, existing_row);
  const request = parsePaymentRequest(state, command, payment_id, payment_shard);
  if ('events' in request) return request;
  const decline_code = declineCodeOf(state, request.payer, request.amount, request.currency, command.time_ms);
  const automatic = request.capture;
  // One literal for both outcomes, so every outcome event shares one hidden class (no spread: it is slow).
  const event = {
    type: decline_code === null ? 'payment_created' : 'payment_declined',
    event_id: eventId(command, 0),
    account_id: request.payer.account.id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: fingerprintOf(command),
    payment_id,
    source: command.source,
    payee_account_id: request.destination,
    amount: request.amount,
    currency: request.currency,
    capture_method: automatic ? 'automatic' : 'manual',
    description: request.description,
    metadata: request.metadata,
    expires_ms:
      automatic || decline_code !== null ? 0 : command.time_ms + state.config.authorization_expiry_ms,
    decline_code,
  } as PaymentCreatedEvent | PaymentDeclinedEvent;
  if (decline_code !== null || !automatic) return accepted(state, command, event);
  return accepted(state, command, event, [
    creditLeg(command, payment_id, request.payer.account, request.destination, request.amount),
  ]);
}

/** The leg that brings captured money to the payee; its transfer id is derived from the payment id. */
export function creditLeg(
  command: { time_ms: number },
  payment_id: PaymentState['id'],
  payer: AccountState,
  payee_account_id: AccountId,
  amount: Amount | number,
): CreditLeg {
  return {
    type: 'credit',
    command_id: payment_id + ':credit',
    time_ms: command.time_ms,
    account_id: payee_account_id,
    payment_id,
    payer_account_id: payer.id,
    amount,
    currency: payer.currency,
  };
}

/** The row of a client-named payment, or -1 (answer it with `paymentNotFound`). */
export function findPayment(state: PartitionState, id: string): number {
  return parsePaymentId(id) === null ? -1 : state.payments.find(id);
}

export function paymentNotFound(id: string, param: string): Decision {
  return rejected(fail('not_found', `No such payment: ${id}`, param));
}

export function decideGetPayment(state: PartitionState, command: GetPaymentCommand): Decision {
  const row = findPayment(state, command.payment_id);
  if (row < 0) return paymentNotFound(command.payment_id, 'id');
  return rejected(ok(200, paymentView(state.payments.toState(row))));
}

function releaseEvent(
  command: CancelPaymentCommand | CapturePaymentCommand | ExpireAuthorizationsCommand,
  table: PaymentTable,
  row: number,
  payment_id: PaymentId,
  type: PaymentCanceledEvent['type'],
  index: number,
): PaymentCanceledEvent {
  return {
    type,
    event_id: eventId(command, index),
    account_id: table.payer[row]!,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: fingerprintOf(command),
    payment_id,
    amount_released: table.amount_capturable[row]!,
  };
}

/** Expiry is applied lazily by record time when a capture or cancel finds it due. */
function isExpired(table: PaymentTable, row: number, time_ms: number): boolean {
  return time_ms >= table.expires_ms[row]!;
}

function notCapturable(table: PaymentTable, row: number, verb: string): Decision {
  return rejected(
    fail('payment_invalid_state', `Payment is ${table.statusOf(row)}; only requires_capture can be ${verb}.`),
  );
}

export function decideCapture(state: PartitionState, command: CapturePaymentCommand): Decision {
  const row = findPayment(state, command.payment_id);
  if (row < 0) return paymentNotFound(command.payment_id, 'payment');
  const table = state.payments;
  const payment_id = command.payment_id as PaymentId;
  if (table.status[row] !== STATUS_REQUIRES_CAPTURE) return notCapturable(table, row, 'captured');
  if (isExpired(table, row, command.time_ms)) {
    return accepted(state, command, releaseEvent(command, table, row, payment_id, 'payment_expired', 0));
  }
  const capturable = table.amount_capturable[row]!;
  const amount = command.amount === undefined ? capturable : parseAmount(command.amount);
  if (amount === null) return invalid('amount must be a positive integer in minor units', 'amount');
  if (amount > capturable) return rejected(fail('amount_exceeds_capturable', undefined, 'amount'));
  const payer = state.accounts.get(table.payer[row]!)!;
  return accepted(
    state,
    command,
    {
      type: 'payment_captured',
      event_id: eventId(command, 0),
      account_id: payer.id,
      time_ms: command.time_ms,
      command_id: command.command_id,
      fingerprint: fingerprintOf(command),
      payment_id,
      amount_captured: amount,
      amount_released: capturable - amount,
    },
    [creditLeg(command, payment_id, payer, table.payeeOf(row), amount)],
  );
}

export function decideCancel(state: PartitionState, command: CancelPaymentCommand): Decision {
  const row = findPayment(state, command.payment_id);
  if (row < 0) return paymentNotFound(command.payment_id, 'payment');
  const table = state.payments;
  if (table.status[row] !== STATUS_REQUIRES_CAPTURE) return notCapturable(table, row, 'canceled');
  const type = isExpired(table, row, command.time_ms) ? 'payment_expired' : 'payment_canceled';
  return accepted(
    state,
    command,
    releaseEvent(command, table, row, command.payment_id as PaymentId, type, 0),
  );
}

/** Closed authorizations a tick may step over, per expiration it may emit (keeps a tick's work bounded). */
const EXPIRY_SKIPS_PER_EXPIRATION_MAX = 16;

/**
 * Timer: release due authorizations from the head of the expiry queue, at most
 * `expirations_per_tick_max` per tick. The queue is in creation order, so it is in expiry order up to
 * the skew between gateway clocks; an entry due slightly earlier than the head waits for the head.
 * Authorizations closed since they were queued are stepped over (evolve drops them once at the head).
 */
export function decideExpireAuthorizations(
  state: PartitionState,
  command: ExpireAuthorizationsCommand,
): Decision {
  const table = state.payments;
  const expirations_max = state.config.expirations_per_tick_max;
  const steps_max = expirations_max * EXPIRY_SKIPS_PER_EXPIRATION_MAX;
  const events: DomainEvent[] = [];
  for (let i = 0; i < table.queue_length && i < steps_max; i++) {
    if (events.length >= expirations_max) break;
    const row = table.queuedRow(i);
    if (table.status[row] !== STATUS_REQUIRES_CAPTURE) continue;
    if (table.expires_ms[row]! > command.time_ms) break;
    events.push(releaseEvent(command, table, row, table.idOf(row), 'payment_expired', events.length));
  }
  return { events, reply: null, follow_ups: [] };
}

import type { Currency } from './currency.js';
import type { ApiError, DeclineCode, FailureCode } from './errors.js';
import type { AccountId, PaymentId, RefundId, TokenId } from './ids.js';
import type { PaymentTable } from './payment-table.js';
import type { RecordTable } from './record-table.js';

// ---------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------

/** Per-account risk limits. An account may override the partition defaults when it is opened. */
export interface RiskRules {
  /** At most this many accepted payments per rolling `velocity_window_ms` (declines do not count). */
  velocity_count_max: number;
  velocity_window_ms: number;
  /** Sum of accepted payment amounts per UTC calendar day (day = floor(time_ms / 86_400_000)). */
  amount_per_day_max: number;
  /** Largest single payment amount. */
  single_payment_max: number;
}

export interface DomainConfig {
  /** An uncaptured authorization is released after this long (Stripe: 7 days). */
  authorization_expiry_ms: number;
  /** Idempotency records are kept at least this long by record time (>= 24 h). */
  idempotency_retention_ms: number;
  /**
   * Hard bound on idempotency records held per partition. When it is reached before records are 24 h old,
   * the oldest generation is dropped early and counted in `idempotency_evicted_early_count` (alert on it;
   * size the bound to 2 x peak non-payment commands/s x 24 h). Payment creation is deduplicated for ever by
   * the payment record and does not use these records.
   */
  idempotency_records_max: number;
  /** Fixed bound on the work of one `expire_authorizations` tick. */
  expirations_per_tick_max: number;
  /** Fixed bound on refunds per payment (each one is a record on the payment). */
  refunds_per_payment_max: number;
  /**
   * Rows a partition's payment table is created (and restored) with, at least. Above the built-in 4096 the
   * table's pages are also mapped at creation, so no batch pays a page fault or a table doubling for rows
   * below it (a doubling copies the table mid-batch). Size it to the partition's payments, ~110 B a row;
   * the table still grows past it. Absent in configs saved before it existed: the built-in value.
   */
  payment_rows_reserved: number;
  /** The same for each of the two idempotency generations (~60 B a row). */
  record_rows_reserved: number;
  risk_rules: RiskRules;
}

// ---------------------------------------------------------------------------------------------------------
// State. Balances are integer minor units:
//   posted    = settled balance: deposits, captured payments, received credits, refunds (money that moved).
//   pending   = sum of holds by open authorizations (payments with capture: false not yet captured/canceled).
//   available = posted - pending; it never goes below -overdraft_limit.
// ---------------------------------------------------------------------------------------------------------

export type AccountKind = 'customer' | 'merchant' | 'world';
export type AccountStatus = 'active' | 'frozen';

export interface AccountState {
  id: AccountId;
  currency: Currency;
  kind: AccountKind;
  status: AccountStatus;
  overdraft_limit: number;
  posted: number;
  pending: number;
  created_ms: number;
  /** Null: the partition's default rules apply. */
  risk_rules: RiskRules | null;
  /**
   * Record times of the last accepted payments, at most the velocity rule's count, in no order (a new one
   * replaces the oldest); velocity counts those inside the window. Null until the first payment.
   */
  velocity_times_ms: number[] | null;
  /** UTC day index of `day_amount` and the amount accepted on that day. */
  day_index: number;
  day_amount: number;
}

export type PaymentStatus = 'requires_capture' | 'succeeded' | 'canceled' | 'declined' | 'failed';
export type CaptureMethod = 'automatic' | 'manual';
export type RefundStatus = 'pending' | 'succeeded' | 'failed';
export type CancellationReason = 'requested_by_customer' | 'expired';

export interface RefundState {
  id: RefundId;
  amount: number;
  status: RefundStatus;
  failure_code: FailureCode | null;
  created_ms: number;
}

export interface PaymentState {
  id: PaymentId;
  /** The account charged (the owner of this payment; its shard is embedded in the id). */
  payer_account_id: AccountId;
  /** As given: the payer account id or a card token id. */
  source: string;
  payee_account_id: AccountId;
  amount: number;
  currency: Currency;
  capture_method: CaptureMethod;
  status: PaymentStatus;
  amount_capturable: number;
  /** Captured amount (what the payee receives); stays as captured even if the payment later fails. */
  amount_received: number;
  /** Sum of succeeded refunds. */
  amount_refunded: number;
  /** Sum of refunds still waiting for the payee's debit leg (reserved against `amount_received`). */
  amount_refund_pending: number;
  decline_code: DeclineCode | null;
  failure_code: FailureCode | null;
  cancellation_reason: CancellationReason | null;
  created_ms: number;
  /** Record time after which an uncaptured authorization is released (0 for automatic capture). */
  expires_ms: number;
  fingerprint: string | null;
  description: string | null;
  metadata: Record<string, string> | null;
  refunds: RefundState[] | null;
}

export interface TokenState {
  id: TokenId;
  account_id: AccountId;
  last4: string;
  brand: string;
  card_fingerprint: string;
  exp_month: number;
  exp_year: number;
  created_ms: number;
}

export interface PartitionState {
  partition: number;
  config: DomainConfig;
  /** Includes this partition's world account (`worldAccountId(partition)`). */
  accounts: Map<AccountId, AccountState>;
  /** Payments as columns; open authorizations (the expiry queue) are kept there too. */
  payments: PaymentTable;
  tokens: Map<TokenId, TokenState>;
  /**
   * Current generation of records: command_id (or transfer id for legs) -> the event that recorded its
   * outcome (a leg's: its type only, see record-table.ts). The reply of a retried command is rebuilt from
   * that event (`replyFromEvent`), so no reply is stored.
   */
  idempotency: RecordTable;
  /** The previous generation of records (see idempotency.ts), dropped whole at the next rotation. */
  idempotency_previous: RecordTable;
  idempotency_generation_started_ms: number;
  idempotency_evicted_early_count: number;
}

// ---------------------------------------------------------------------------------------------------------
// Commands. Every command: `type`, `command_id` (unique request id = idempotency key), `time_ms` (record
// time stamped by the gateway), optional `fingerprint` (hash of the request body; compared as a string).
// ---------------------------------------------------------------------------------------------------------

interface CommandBase {
  command_id: string;
  time_ms: number;
  fingerprint?: string;
}

export interface OpenAccountCommand extends CommandBase {
  type: 'open_account';
  account_id: string;
  currency: string;
  kind: 'customer' | 'merchant';
  overdraft_limit?: number;
  risk_rules?: Partial<RiskRules> | null;
}

export interface DepositCommand extends CommandBase {
  type: 'deposit';
  account_id: string;
  amount: number;
  currency: string;
}

export interface GetAccountCommand extends CommandBase {
  type: 'get_account';
  account_id: string;
}

export interface FreezeAccountCommand extends CommandBase {
  type: 'freeze_account' | 'unfreeze_account';
  account_id: string;
}

export interface CreateTokenCommand extends CommandBase {
  type: 'create_token';
  account_id: string;
  /** `tok_<8 hex of shard(account_id)><unique>` (see `tokenIdFor`). */
  token_id: string;
  last4: string;
  brand: string;
  card_fingerprint: string;
  exp_month: number;
  exp_year: number;
}

export interface CreatePaymentCommand extends CommandBase {
  type: 'create_payment';
  /** `pay_<8 hex of shard(payer)><unique>` (see `paymentIdFor`). */
  payment_id: string;
  /** Payer account id, or a `tok_...` card token of an account on this partition. */
  source: string;
  destination: string;
  amount: number;
  currency: string;
  /** Default true: debit now. False: hold funds, status `requires_capture`. */
  capture?: boolean;
  description?: string | null;
  metadata?: Record<string, string> | null;
}

export interface CapturePaymentCommand extends CommandBase {
  type: 'capture_payment';
  payment_id: string;
  /** Default: the whole amount capturable. A partial capture releases the rest. */
  amount?: number;
}

export interface CancelPaymentCommand extends CommandBase {
  type: 'cancel_payment';
  payment_id: string;
}

export interface CreateRefundCommand extends CommandBase {
  type: 'create_refund';
  payment_id: string;
  /** Default `re_<command_id>`. */
  refund_id?: string;
  /** Default: what remains refundable. */
  amount?: number;
}

export interface GetPaymentCommand extends CommandBase {
  type: 'get_payment';
  payment_id: string;
}

/** Timer command for one partition (no account): releases authorizations whose expiry passed. */
export interface ExpireAuthorizationsCommand extends CommandBase {
  type: 'expire_authorizations';
}

/**
 * Follow-up legs between partitions. `account_id` is the TARGET account: route to shard(account_id) % P.
 * `command_id` is the transfer id (deterministic from the payment/refund id), so a redelivered leg is
 * recognised and changes nothing. Legs carry the time of the command that started them.
 */
export interface CreditLeg extends CommandBase {
  type: 'credit';
  account_id: string;
  payment_id: string;
  payer_account_id: string;
  amount: number;
  currency: string;
}

/** Payee refused a credit (missing, frozen, other currency): the money goes back to the payer. */
export interface CreditRejectedLeg extends CommandBase {
  type: 'credit_rejected';
  account_id: string;
  payment_id: string;
  amount: number;
  failure_code: FailureCode;
}

/** Refund: ask the payee to give `amount` back. No money moves until the payee accepts. */
export interface DebitLeg extends CommandBase {
  type: 'debit';
  account_id: string;
  payment_id: string;
  refund_id: string;
  payer_account_id: string;
  amount: number;
  currency: string;
}

/** Payee was debited: credit the payer, the refund succeeds. */
export interface DebitSettledLeg extends CommandBase {
  type: 'debit_settled';
  account_id: string;
  payment_id: string;
  refund_id: string;
  amount: number;
}

/** Payee could not be debited: the refund fails, nothing moved. */
export interface DebitRejectedLeg extends CommandBase {
  type: 'debit_rejected';
  account_id: string;
  payment_id: string;
  refund_id: string;
  amount: number;
  failure_code: FailureCode;
}

export type ClientCommand =
  | OpenAccountCommand
  | DepositCommand
  | GetAccountCommand
  | FreezeAccountCommand
  | CreateTokenCommand
  | CreatePaymentCommand
  | CapturePaymentCommand
  | CancelPaymentCommand
  | CreateRefundCommand
  | GetPaymentCommand;

export type FollowUpCommand = CreditLeg | CreditRejectedLeg | DebitLeg | DebitSettledLeg | DebitRejectedLeg;

export type Command = ClientCommand | FollowUpCommand | ExpireAuthorizationsCommand;
export type CommandType = Command['type'];

// ---------------------------------------------------------------------------------------------------------
// Events. Every event: `type`, `event_id` = `<command_id>:<index>`, `account_id` (the actor it belongs to;
// it is on this partition), `time_ms`, `command_id`, `fingerprint` (of the command, null if none).
// The ONE event that records a payment's creation outcome is `payment_created` or `payment_declined`
// (exactly one of them per payment id): see PAYMENT_OUTCOME_EVENT_TYPES.
// ---------------------------------------------------------------------------------------------------------

interface EventBase {
  event_id: string;
  account_id: AccountId;
  time_ms: number;
  command_id: string;
  fingerprint: string | null;
}

export interface AccountOpenedEvent extends EventBase {
  type: 'account_opened';
  currency: Currency;
  kind: 'customer' | 'merchant';
  overdraft_limit: number;
  risk_rules: RiskRules | null;
}

/** Credits the account and debits the partition's world account. Balances after, for the reply. */
export interface DepositedEvent extends EventBase {
  type: 'deposited';
  amount: number;
  currency: Currency;
  posted_after: number;
  pending_after: number;
}

export interface AccountStatusChangedEvent extends EventBase {
  type: 'account_frozen' | 'account_unfrozen';
  posted_after: number;
  pending_after: number;
}

export interface TokenCreatedEvent extends EventBase {
  type: 'token_created';
  token_id: TokenId;
  last4: string;
  brand: string;
  card_fingerprint: string;
  exp_month: number;
  exp_year: number;
}

interface PaymentOutcomeFields {
  payment_id: PaymentId;
  source: string;
  payee_account_id: AccountId;
  amount: number;
  currency: Currency;
  capture_method: CaptureMethod;
  description: string | null;
  metadata: Record<string, string> | null;
  /** Record time when an uncaptured authorization is released; 0 unless accepted with capture: false. */
  expires_ms: number;
}

/** Accepted: automatic capture debits the payer now (status succeeded); manual holds it (requires_capture). */
export interface PaymentCreatedEvent extends EventBase, PaymentOutcomeFields {
  type: 'payment_created';
  decline_code: null;
}

export interface PaymentDeclinedEvent extends EventBase, PaymentOutcomeFields {
  type: 'payment_declined';
  decline_code: DeclineCode;
}

export interface PaymentCapturedEvent extends EventBase {
  type: 'payment_captured';
  payment_id: PaymentId;
  amount_captured: number;
  amount_released: number;
}

export interface PaymentCanceledEvent extends EventBase {
  type: 'payment_canceled' | 'payment_expired';
  payment_id: PaymentId;
  amount_released: number;
}

export interface RefundCreatedEvent extends EventBase {
  type: 'refund_created';
  payment_id: PaymentId;
  refund_id: RefundId;
  amount: number;
}

/** On the payee's partition: the credit leg was applied. */
export interface TransferCreditedEvent extends EventBase {
  type: 'transfer_credited';
  payment_id: PaymentId;
  payer_account_id: AccountId;
  amount: number;
}

/** On the payee's partition: the refund debit leg was applied. */
export interface TransferDebitedEvent extends EventBase {
  type: 'transfer_debited';
  payment_id: PaymentId;
  refund_id: RefundId;
  payer_account_id: AccountId;
  amount: number;
}

/** On the payee's partition: a leg was refused (no money moved here); `account_id` may not exist. */
export interface TransferRejectedEvent extends EventBase {
  type: 'transfer_rejected';
  direction: 'credit' | 'debit';
  payment_id: PaymentId;
  refund_id: RefundId | null;
  payer_account_id: AccountId;
  amount: number;
  failure_code: FailureCode;
}

/** On the payer's partition: the credit came back; the payer is re-credited, the payment is failed. */
export interface PaymentFailedEvent extends EventBase {
  type: 'payment_failed';
  payment_id: PaymentId;
  amount: number;
  failure_code: FailureCode;
}

export interface RefundSucceededEvent extends EventBase {
  type: 'refund_succeeded';
  payment_id: PaymentId;
  refund_id: RefundId;
  amount: number;
}

export interface RefundFailedEvent extends EventBase {
  type: 'refund_failed';
  payment_id: PaymentId;
  refund_id: RefundId;
  amount: number;
  failure_code: FailureCode;
}

export type DomainEvent =
  | AccountOpenedEvent
  | DepositedEvent
  | AccountStatusChangedEvent
  | TokenCreatedEvent
  | PaymentCreatedEvent
  | PaymentDeclinedEvent
  | PaymentCapturedEvent
  | PaymentCanceledEvent
  | RefundCreatedEvent
  | TransferCreditedEvent
  | TransferDebitedEvent
  | TransferRejectedEvent
  | PaymentFailedEvent
  | RefundSucceededEvent
  | RefundFailedEvent;
export type EventType = DomainEvent['type'];

/** The events that record a payment's creation outcome: exactly one per payment id. */
export const PAYMENT_OUTCOME_EVENT_TYPES: readonly EventType[] = ['payment_created', 'payment_declined'];

// ---------------------------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------------------------

export type Reply =
  | { ok: true; status: number; body: Record<string, unknown> }
  | { ok: false; status: number; error: ApiError };

export interface Decision {
  events: DomainEvent[];
  /** Null for follow-up legs and timer commands: only client commands are answered. */
  reply: Reply | null;
  /** Legs for other accounts: route each to partition shard(follow_up.account_id) % P. */
  follow_ups: FollowUpCommand[];
}

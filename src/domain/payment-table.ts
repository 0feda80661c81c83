import { assert } from './assert.js';
import { CURRENCIES, type Currency } from './currency.js';
import { DECLINE_CODES, type DeclineCode, FAILURE_CODES, type FailureCode } from './errors.js';
import type { AccountId, PaymentId } from './ids.js';
import { grown, hashKey, type IndexKeys, StringIndex, touchPages } from './string-index.js';
import type { CancellationReason, CaptureMethod, PaymentState, PaymentStatus, RefundState } from './types.js';

/**
 * A partition's payments as columns (struct of arrays), one row per payment in creation order, found by
 * id through a StringIndex. Payments are kept for ever (they deduplicate creation durably), so they are
 * the one table that grows with traffic; as objects they cost ~800 B and a GC copy each (BENCHMARKS.md),
 * as a row ~120 B in arrays that double when full. Strings that repeat (payees, currencies) are stored once
 * and referenced by number; rare fields (description, metadata, refunds) live in side maps keyed by row.
 *
 * `get(id)` materializes a PaymentState object (a copy) for views, snapshots and tests; `set` writes one
 * back. The ledger's hot path reads and writes the columns by row (evolve.ts, decide-*.ts).
 *
 * Open authorizations (the expiry queue) are the rows of manual payments in creation order, a ring of row
 * numbers. A row leaves the queue lazily: evolve pops the head while it is no longer requires_capture, so
 * the head is always the oldest open authorization; closed rows behind it are skipped by the expiry tick.
 */

export const PAYMENT_STATUSES: readonly PaymentStatus[] = [
  'requires_capture',
  'succeeded',
  'canceled',
  'declined',
  'failed',
];
export const STATUS_REQUIRES_CAPTURE = 0;
export const STATUS_SUCCEEDED = 1;
const STATUS_CANCELED = 2;
const STATUS_DECLINED = 3;
export const STATUS_FAILED = 4;
const CAPTURE_METHODS: readonly CaptureMethod[] = ['automatic', 'manual'];
export const METHOD_MANUAL = 1;
/** Index 0 is null in the nullable code lists. */
const DECLINES: readonly (DeclineCode | null)[] = [null, ...DECLINE_CODES];
const FAILURES: readonly (FailureCode | null)[] = [null, ...FAILURE_CODES];
const CANCELLATIONS: readonly (CancellationReason | null)[] = [null, 'requested_by_customer', 'expired'];
const CURRENCY_LIST: readonly Currency[] = [...CURRENCIES].sort() as Currency[];
const CURRENCY_CODES: ReadonlyMap<string, number> = new Map(CURRENCY_LIST.map((c, i) => [c, i]));

function codeOf<T>(list: readonly T[], value: T, name: string): number {
  const code = list.indexOf(value);
  assert(code >= 0, 'payment table: unknown %s %s', name, String(value));
  return code;
}

/** PAYMENT_STATUSES.indexOf(status), as a switch: every payment row and transition asks it. */
export function statusCode(status: PaymentStatus): number {
  switch (status) {
    case 'requires_capture':
      return STATUS_REQUIRES_CAPTURE;
    case 'succeeded':
      return STATUS_SUCCEEDED;
    case 'canceled':
      return STATUS_CANCELED;
    case 'declined':
      return STATUS_DECLINED;
    case 'failed':
      return STATUS_FAILED;
    default:
      return codeOf(PAYMENT_STATUSES, status, 'status');
  }
}

export function currencyCode(currency: string): number {
  // Most payments of a partition share a currency or two: skip the Map for a repeat of the last one.
  if (currency === last_currency) return last_currency_code;
  const code = CURRENCY_CODES.get(currency);
  assert(code !== undefined, 'payment table: unknown currency %s', currency);
  last_currency = currency;
  last_currency_code = code;
  return code;
}
let last_currency = '';
let last_currency_code = -1;

/** Strings that repeat across payments (payee account ids): each distinct one stored once. */
class StringPool {
  readonly #index: StringIndex;
  strings: string[] = [];

  constructor(capacity_initial: number) {
    this.#index = new StringIndex(capacity_initial);
  }

  intern(value: string): number {
    const row = this.#index.findOrInsertHashed(value, hashKey(value));
    if (row < 0) return ~row;
    this.strings.push(value);
    return row;
  }
}

/**
 * A payment table as arrays, for snapshots: the used part of every column (typed arrays as their bytes),
 * strings once each. Views into the table, not copies: encode before the table changes.
 */
export interface PaymentColumns {
  keys: IndexKeys;
  /** Distinct payer account ids, and each row's index into them. */
  payers: string[];
  payer: Uint32Array;
  /** Null where the source is the payer account itself (most rows). */
  source: (string | null)[];
  fingerprint: (string | null)[];
  payees: string[];
  payee: Uint32Array;
  currency: Uint16Array;
  amounts: Float64Array[];
  codes: Uint8Array[];
  description: [number, string][];
  metadata: [number, Record<string, string>][];
  refunds: [number, RefundState[]][];
}

/** The fields a new row takes (from the payment's outcome event, or a restored payment). */
export type NewPaymentRow = Pick<
  PaymentState,
  | 'id'
  | 'payer_account_id'
  | 'source'
  | 'payee_account_id'
  | 'amount'
  | 'currency'
  | 'capture_method'
  | 'status'
  | 'decline_code'
  | 'created_ms'
  | 'expires_ms'
  | 'fingerprint'
  | 'description'
  | 'metadata'
>;

export class PaymentTable {
  readonly index: StringIndex;
  readonly #payees: StringPool;
  row_capacity: number;
  /** References to strings held elsewhere (the payer account's id; the source when it is not the payer). */
  payer: AccountId[] = [];
  source: string[] = [];
  fingerprint: (string | null)[] = [];
  payee: Uint32Array;
  currency: Uint16Array;
  amount: Float64Array;
  amount_capturable: Float64Array;
  amount_received: Float64Array;
  amount_refunded: Float64Array;
  amount_refund_pending: Float64Array;
  created_ms: Float64Array;
  expires_ms: Float64Array;
  status: Uint8Array;
  capture_method: Uint8Array;
  decline_code: Uint8Array;
  failure_code: Uint8Array;
  cancellation_reason: Uint8Array;
  readonly description = new Map<number, string>();
  readonly metadata = new Map<number, Record<string, string>>();
  readonly refunds = new Map<number, RefundState[]>();
  /** Expiry queue: ring of manual rows, creation order; `queue_head` counts pops (see the header). */
  queue: Int32Array;
  queue_head = 0;
  queue_tail = 0;

  /** `index`: rows already indexed (a snapshot's), whose columns the caller fills. */
  constructor(row_capacity_initial: number, index?: StringIndex) {
    this.index = index ?? new StringIndex(row_capacity_initial);
    this.#payees = new StringPool(64);
    const n = this.index.row_capacity;
    this.row_capacity = n;
    this.payee = new Uint32Array(n);
    this.currency = new Uint16Array(n);
    this.amount = new Float64Array(n);
    this.amount_capturable = new Float64Array(n);
    this.amount_received = new Float64Array(n);
    this.amount_refunded = new Float64Array(n);
    this.amount_refund_pending = new Float64Array(n);
    this.created_ms = new Float64Array(n);
    this.expires_ms = new Float64Array(n);
    this.status = new Uint8Array(n);
    this.capture_method = new Uint8Array(n);
    this.decline_code = new Uint8Array(n);
    this.failure_code = new Uint8Array(n);
    this.cancellation_reason = new Uint8Array(n);
    this.queue = new Int32Array(64);
  }

  get size(): number {
    return this.index.size;
  }

  /** The row of a payment id, or -1. */
  find(id: string): number {
    return this.index.find(id);
  }

  has(id: string): boolean {
    return this.index.find(id) >= 0;
  }

  idOf(row: number): PaymentId {
    return this.index.keyOf(row) as PaymentId;
  }

  payeeOf(row: number): AccountId {
    return this.#payees.strings[this.payee[row]!]! as AccountId;
  }

  currencyOf(row: number): Currency {
    return CURRENCY_LIST[this.currency[row]!]!;
  }

  statusOf(row: number): PaymentStatus {
    return PAYMENT_STATUSES[this.status[row]!]!;
  }

  captureMethodOf(row: number): CaptureMethod {
    return CAPTURE_METHODS[this.capture_method[row]!]!;
  }

  declineCodeOf(row: number): DeclineCode | null {
    return DECLINES[this.decline_code[row]!]!;
  }

  setFailureCode(row: number, code: FailureCode | null): void {
    this.failure_code[row] = codeOf(FAILURES, code, 'failure code');
  }

  setCancellationReason(row: number, reason: CancellationReason | null): void {
    this.cancellation_reason[row] = codeOf(CANCELLATIONS, reason, 'cancellation reason');
  }

  /** Adds a payment (the id must be new) and returns its row. */
  insert(p: NewPaymentRow): number {
    if (this.index.size === this.row_capacity) this.#grow();
    const row = this.index.findOrInsertHashed(p.id, hashKey(p.id));
    assert(row >= 0, 'payment %s created twice', p.id);
    this.payer[row] = p.payer_account_id;
    this.source[row] = p.source === p.payer_account_id ? p.payer_account_id : p.source;
    this.fingerprint[row] = p.fingerprint;
    this.payee[row] = this.#payees.intern(p.payee_account_id);
    this.currency[row] = currencyCode(p.currency);
    this.amount[row] = p.amount;
    this.amount_capturable[row] = 0;
    this.amount_received[row] = 0;
    this.amount_refunded[row] = 0;
    this.amount_refund_pending[row] = 0;
    this.created_ms[row] = p.created_ms;
    this.expires_ms[row] = p.expires_ms;
    this.status[row] = statusCode(p.status);
    this.capture_method[row] = p.capture_method === 'manual' ? METHOD_MANUAL : 0;
    this.decline_code[row] = p.decline_code === null ? 0 : codeOf(DECLINES, p.decline_code, 'decline code');
    this.failure_code[row] = 0;
    this.cancellation_reason[row] = 0;
    if (p.description !== null) this.description.set(row, p.description);
    if (p.metadata !== null) this.metadata.set(row, p.metadata);
    return row;
  }

  // ---- expiry queue ----------------------------------------------------------------------------------

  get queue_length(): number {
    return this.queue_tail - this.queue_head;
  }

  /** The i-th queued row from the head (0 = head). */
  queuedRow(i: number): number {
    return this.queue[(this.queue_head + i) & (this.queue.length - 1)]!;
  }

  enqueueAuthorization(row: number): void {
    if (this.queue_length === this.queue.length) this.#growQueue();
    this.queue[this.queue_tail & (this.queue.length - 1)] = row;
    this.queue_tail++;
  }

  /** Drops closed authorizations from the head, so the head is the oldest open one (or the queue empty). */
  popClosedAuthorizations(): void {
    while (this.queue_length > 0 && this.status[this.queuedRow(0)] !== STATUS_REQUIRES_CAPTURE) {
      this.queue_head++;
    }
  }

  /** Open authorizations in queue order: [payment id, expires_ms] (snapshots, checkpoints, tests). */
  openAuthorizations(): [PaymentId, number][] {
    const out: [PaymentId, number][] = [];
    for (let i = 0; i < this.queue_length; i++) {
      const row = this.queuedRow(i);
      if (this.status[row] === STATUS_REQUIRES_CAPTURE) out.push([this.idOf(row), this.expires_ms[row]!]);
    }
    return out;
  }

  // ---- objects at the edge ---------------------------------------------------------------------------

  /**
   * One payment as an object (views, snapshots, tests); undefined when there is none. Its fields are copies,
   * but `refunds` is the table's own list: read it, do not change it.
   */
  get(id: string): PaymentState | undefined {
    const row = this.find(id);
    return row < 0 ? undefined : this.toState(row, id as PaymentId);
  }

  toState(row: number, id: PaymentId = this.idOf(row)): PaymentState {
    return {
      id,
      payer_account_id: this.payer[row]!,
      source: this.source[row]!,
      payee_account_id: this.payeeOf(row),
      amount: this.amount[row]!,
      currency: this.currencyOf(row),
      capture_method: this.captureMethodOf(row),
      status: this.statusOf(row),
      amount_capturable: this.amount_capturable[row]!,
      amount_received: this.amount_received[row]!,
      amount_refunded: this.amount_refunded[row]!,
      amount_refund_pending: this.amount_refund_pending[row]!,
      decline_code: this.declineCodeOf(row),
      failure_code: FAILURES[this.failure_code[row]!]!,
      cancellation_reason: CANCELLATIONS[this.cancellation_reason[row]!]!,
      created_ms: this.created_ms[row]!,
      expires_ms: this.expires_ms[row]!,
      fingerprint: this.fingerprint[row]!,
      description: this.description.get(row) ?? null,
      metadata: this.metadata.get(row) ?? null,
      refunds: this.refunds.get(row) ?? null,
    };
  }

  /**
   * Writes a whole payment (restore from a snapshot or checkpoint): a new row; over an existing row only the
   * fields a payment's life changes (status, amounts, codes, refunds), as its id, parties and amount do not.
   */
  set(id: string, payment: PaymentState): this {
    assert(payment.id === id, 'payment table: key %s for payment %s', id, payment.id);
    let row = this.find(id);
    if (row < 0) {
      row = this.insert(payment);
      if (payment.capture_method === 'manual') this.enqueueAuthorization(row);
    }
    this.status[row] = statusCode(payment.status);
    this.amount_capturable[row] = payment.amount_capturable;
    this.amount_received[row] = payment.amount_received;
    this.amount_refunded[row] = payment.amount_refunded;
    this.amount_refund_pending[row] = payment.amount_refund_pending;
    this.setFailureCode(row, payment.failure_code);
    this.setCancellationReason(row, payment.cancellation_reason);
    if (payment.refunds !== null && payment.refunds.length > 0) this.refunds.set(row, payment.refunds);
    else this.refunds.delete(row);
    this.popClosedAuthorizations();
    return this;
  }

  *keys(): IterableIterator<PaymentId> {
    for (let row = 0; row < this.size; row++) yield this.idOf(row);
  }

  *values(): IterableIterator<PaymentState> {
    for (let row = 0; row < this.size; row++) yield this.toState(row);
  }

  *entries(): IterableIterator<[PaymentId, PaymentState]> {
    for (let row = 0; row < this.size; row++) {
      const payment = this.toState(row);
      yield [payment.id, payment];
    }
  }

  [Symbol.iterator](): IterableIterator<[PaymentId, PaymentState]> {
    return this.entries();
  }

  /** Maps every page of the table's arrays now, so that rows up to its capacity never fault. */
  touchPages(): void {
    this.index.touchPages();
    for (const column of [this.payee, this.currency, ...this.#amountColumns(), ...this.#codeColumns()])
      touchPages(column);
  }

  // ---- snapshots -------------------------------------------------------------------------------------

  #amountColumns(): Float64Array[] {
    const c = [this.amount, this.amount_capturable, this.amount_received, this.amount_refunded];
    return [...c, this.amount_refund_pending, this.created_ms, this.expires_ms];
  }

  #codeColumns(): Uint8Array[] {
    const c = [this.status, this.capture_method, this.decline_code, this.failure_code];
    return [...c, this.cancellation_reason];
  }

  toColumns(): PaymentColumns {
    const n = this.size;
    const payer_pool = new Map<string, number>();
    const payer = new Uint32Array(n);
    const source: (string | null)[] = new Array(n);
    for (let row = 0; row < n; row++) {
      const id = this.payer[row]!;
      let index = payer_pool.get(id);
      if (index === undefined) {
        index = payer_pool.size;
        payer_pool.set(id, index);
      }
      payer[row] = index;
      source[row] = this.source[row] === id ? null : this.source[row]!;
    }
    return {
      keys: this.index.keys(),
      payers: [...payer_pool.keys()],
      payer,
      source,
      fingerprint: this.fingerprint.slice(0, n),
      payees: this.#payees.strings,
      payee: this.payee.subarray(0, n),
      currency: this.currency.subarray(0, n),
      amounts: this.#amountColumns().map((column) => column.subarray(0, n)),
      codes: this.#codeColumns().map((column) => column.subarray(0, n)),
      description: [...this.description],
      metadata: [...this.metadata],
      refunds: [...this.refunds],
    };
  }

  static fromColumns(columns: PaymentColumns, row_capacity_min: number): PaymentTable {
    const n = columns.keys.key_length.length;
    const index = StringIndex.fromKeys(columns.keys, row_capacity_min);
    const table = new PaymentTable(index.row_capacity, index);
    for (const payee of columns.payees) table.#payees.intern(payee);
    for (let row = 0; row < n; row++) {
      const payer = columns.payers[columns.payer[row]!];
      assert(payer !== undefined, 'payment snapshot: row %s has no payer', row);
      table.payer[row] = payer as AccountId;
      table.source[row] = columns.source[row] ?? payer;
      table.fingerprint[row] = columns.fingerprint[row] ?? null;
    }
    table.payee.set(columns.payee);
    table.currency.set(columns.currency);
    const amounts = table.#amountColumns();
    for (let i = 0; i < amounts.length; i++) amounts[i]!.set(columns.amounts[i]!);
    const codes = table.#codeColumns();
    for (let i = 0; i < codes.length; i++) codes[i]!.set(columns.codes[i]!);
    for (const [row, text] of columns.description) table.description.set(row, text);
    for (const [row, value] of columns.metadata) table.metadata.set(row, value);
    for (const [row, refunds] of columns.refunds) table.refunds.set(row, refunds);
    for (let row = 0; row < n; row++) {
      if (table.capture_method[row] === METHOD_MANUAL && table.status[row] === STATUS_REQUIRES_CAPTURE)
        table.enqueueAuthorization(row);
    }
    return table;
  }

  // ---- growth ----------------------------------------------------------------------------------------

  #grow(): void {
    const n = this.row_capacity * 2;
    this.row_capacity = n;
    this.payee = grown(this.payee, n);
    this.currency = grown(this.currency, n);
    this.amount = grown(this.amount, n);
    this.amount_capturable = grown(this.amount_capturable, n);
    this.amount_received = grown(this.amount_received, n);
    this.amount_refunded = grown(this.amount_refunded, n);
    this.amount_refund_pending = grown(this.amount_refund_pending, n);
    this.created_ms = grown(this.created_ms, n);
    this.expires_ms = grown(this.expires_ms, n);
    this.status = grown(this.status, n);
    this.capture_method = grown(this.capture_method, n);
    this.decline_code = grown(this.decline_code, n);
    this.failure_code = grown(this.failure_code, n);
    this.cancellation_reason = grown(this.cancellation_reason, n);
  }

  #growQueue(): void {
    const next = new Int32Array(this.queue.length * 2);
    for (let i = 0; i < this.queue_length; i++) next[i] = this.queuedRow(i);
    this.queue_tail = this.queue_length;
    this.queue_head = 0;
    this.queue = next;
  }
}

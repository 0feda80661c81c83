import { invariantFailed } from './assert.js';
import { type PaymentTable, statusCode } from './payment-table.js';
import type { PaymentStatus } from './types.js';

/**
 * Payment status machine (Stripe PaymentIntent vocabulary). Creation picks the first status; every later
 * change goes through `transition`, which asserts the edge is in this table:
 *
 *   (create) ──▶ succeeded ──(credit refused by payee)──▶ failed
 *       │             ▲
 *       ├──▶ requires_capture ──(capture)──┘
 *       │             └──(cancel | expiry)──▶ canceled
 *       └──▶ declined
 *
 * declined, canceled and failed are terminal. Refunds do not change the status (amount_refunded grows).
 */
export const PAYMENT_TRANSITIONS: { readonly [S in PaymentStatus]: readonly PaymentStatus[] } = {
  requires_capture: ['succeeded', 'canceled'],
  succeeded: ['failed'],
  canceled: [],
  declined: [],
  failed: [],
};

export const INITIAL_PAYMENT_STATUSES: readonly PaymentStatus[] = [
  'succeeded',
  'requires_capture',
  'declined',
];

export function canTransition(from: PaymentStatus, to: PaymentStatus): boolean {
  return PAYMENT_TRANSITIONS[from].includes(to);
}

export function transition(table: PaymentTable, row: number, to: PaymentStatus): void {
  const from = table.statusOf(row);
  if (!canTransition(from, to)) {
    invariantFailed('payment %s: illegal transition %s -> %s', table.idOf(row), from, to);
  }
  table.status[row] = statusCode(to);
}

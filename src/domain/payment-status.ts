import { assert } from './assert.js';
import type { PaymentState, PaymentStatus } from './types.js';

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

export function transition(payment: PaymentState, to: PaymentStatus): void {
  assert(
    canTransition(payment.status, to),
    `payment ${payment.id}: illegal transition ${payment.status} -> ${to}`,
  );
  payment.status = to;
}

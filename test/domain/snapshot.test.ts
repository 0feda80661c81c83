import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import {
  canonicalState,
  decodeActor,
  decodePayment,
  decodeSnapshot,
  decodeToken,
  encodeActor,
  encodePayment,
  encodeSnapshot,
  encodeToken,
  InvariantError,
  shard,
  tokenIdFor,
} from '../../src/domain/index.js';
import { body, freshState, open, payId, run } from './helpers.js';

function busyState() {
  const state = freshState({ authorization_expiry_ms: 60_000 });
  open(state, 'payer', { deposit: 10_000, overdraft_limit: 5 });
  open(state, 'shop', { kind: 'merchant' });
  const token_id = tokenIdFor(shard('payer'), 'c1');
  body(
    run(state, {
      type: 'create_token',
      account_id: 'payer',
      token_id,
      last4: '1111',
      brand: 'visa',
      card_fingerprint: 'fp',
      exp_month: 1,
      exp_year: 2030,
    }),
  );
  const paid = run(state, {
    type: 'create_payment',
    payment_id: payId('payer'),
    source: token_id,
    destination: 'shop',
    amount: 300,
    currency: 'usd',
    metadata: { order: '42' },
    description: 'book',
  });
  for (const leg of paid.follow_ups) run(state, leg as never);
  run(state, { type: 'create_refund', payment_id: body(paid).id as string, amount: 10 });
  run(state, {
    type: 'create_payment',
    payment_id: payId('payer'),
    source: 'payer',
    destination: 'shop',
    amount: 5,
    currency: 'usd',
    capture: false,
  });
  return state;
}

test('snapshot round-trip equals the state (Maps, order, nested records, nulls)', () => {
  const state = busyState();
  const decoded = decodeSnapshot(encodeSnapshot(state));
  assert.deepStrictEqual(canonicalState(decoded), canonicalState(state));
  assert.deepEqual([...decoded.idempotency.keys()], [...state.idempotency.keys()], 'record order kept');
  assert.deepEqual([...decoded.payments.keys()], [...state.payments.keys()], 'payment order kept');
  assert.ok(decoded.payments.openAuthorizations().length > 0, 'the state holds an open authorization');
});

test('snapshot refuses an unknown version instead of guessing', () => {
  const packr = new Packr({ useRecords: true });
  assert.throws(() => decodeSnapshot(packr.pack({ v: 99 })), InvariantError);
});

test('single actors, payments and tokens encode and decode alone', () => {
  const state = busyState();
  for (const account of state.accounts.values())
    assert.deepStrictEqual(decodeActor(encodeActor(account)), account);
  for (const payment of state.payments.values())
    assert.deepStrictEqual(decodePayment(encodePayment(payment)), payment);
  for (const token of state.tokens.values()) assert.deepStrictEqual(decodeToken(encodeToken(token)), token);
});

test('an earlier encoded snapshot is not overwritten by the next one', () => {
  const state = busyState();
  const first = encodeSnapshot(state);
  const copy = Uint8Array.from(first);
  open(state, 'late');
  encodeSnapshot(state);
  assert.deepEqual(first, copy);
});

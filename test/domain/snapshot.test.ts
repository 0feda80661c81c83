import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import {
  apply,
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
  isLegRecord,
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

test('snapshots of earlier versions still decode: v2 (objects) and v1 (expiry queue, command ids)', () => {
  const state = busyState();
  // Deliver a credit leg here (the payee is on this partition), so a leg's record is in the snapshot too.
  const paid = run(state, {
    type: 'create_payment',
    payment_id: payId('payer', 'legged'),
    source: 'payer',
    destination: 'shop',
    amount: 7,
    currency: 'usd',
  });
  for (const leg of paid.follow_ups) apply(state, leg);
  assert.ok([...state.idempotency.values()].some(isLegRecord), 'a leg record is kept');
  const packr = new Packr({ useRecords: true, moreTypes: false, mapsAsObjects: true });
  const payments = [...state.payments.values()];
  const v2 = {
    v: 2,
    partition: state.partition,
    config: state.config,
    accounts: [...state.accounts.values()],
    payments,
    tokens: [...state.tokens.values()],
    idempotency: [...state.idempotency.values()],
    idempotency_previous: [...state.idempotency_previous.values()],
    idempotency_generation_started_ms: state.idempotency_generation_started_ms,
    idempotency_evicted_early_count: state.idempotency_evicted_early_count,
  };
  assert.deepStrictEqual(canonicalState(decodeSnapshot(packr.pack(v2))), canonicalState(state));
  const v1 = {
    ...v2,
    v: 1,
    payments: payments.map((p) => ({ ...p, command_id: `cmd_of_${p.id}` })),
    authorizations: state.payments.openAuthorizations().flat(),
  };
  assert.deepStrictEqual(canonicalState(decodeSnapshot(packr.pack(v1))), canonicalState(state));
});

test('a snapshot is columns: its size grows by bytes per payment, not by an object each', () => {
  const state = busyState();
  const before = encodeSnapshot(state).byteLength;
  for (let i = 0; i < 200; i++) {
    body(
      run(state, {
        type: 'create_payment',
        payment_id: payId('payer', `bulk${i}`),
        source: 'payer',
        destination: 'shop',
        amount: 1,
        currency: 'usd',
        time_ms: 1_800_000_000_000 + i * 10_000,
      }),
    );
  }
  const per_payment_b = (encodeSnapshot(state).byteLength - before) / 200;
  // id (~20 UTF-16 units = 40 B) + 7 amounts (56 B) + codes, indexes and nulls (~25 B)
  assert.ok(per_payment_b < 140, `${per_payment_b.toFixed(0)} B per payment`);
  assert.deepStrictEqual(canonicalState(decodeSnapshot(encodeSnapshot(state))), canonicalState(state));
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

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  apply,
  type Command,
  type CreditLeg,
  canTransition,
  type Decision,
  decide,
  evolve,
  type FollowUpCommand,
  PAYMENT_TRANSITIONS,
  type PartitionState,
  shard,
  tokenIdFor,
} from '../../src/domain/index.js';
import { balances, body, errorOf, freshState, open, payId, run, T0_MS } from './helpers.js';

const DAY_MS = 86_400_000;

/** One partition holds payer and payee here; legs are applied right away (the router test mixes them). */
function settle(state: PartitionState, follow_ups: FollowUpCommand[]): void {
  const queue = [...follow_ups];
  for (let guard = 0; queue.length > 0 && guard < 100; guard++)
    queue.push(...apply(state, queue.shift()!).follow_ups);
  assert.equal(queue.length, 0);
}

function pay(state: PartitionState, extra: Partial<Extract<Command, { type: 'create_payment' }>> = {}) {
  const source = extra.source ?? 'payer';
  return run(state, {
    type: 'create_payment',
    payment_id: payId(source.startsWith('tok_') ? 'payer' : source),
    source,
    destination: 'shop',
    amount: 100,
    currency: 'usd',
    ...extra,
  });
}

function setup(config = {}): PartitionState {
  const state = freshState(config);
  open(state, 'payer', { deposit: 1000 });
  open(state, 'shop', { kind: 'merchant' });
  return state;
}

test('capture:true debits the payer, credits the payee through a credit leg', () => {
  const state = setup();
  const decision = pay(state);
  const reply = body(decision);
  assert.equal(decision.reply?.status, 201);
  assert.equal(reply.status, 'succeeded');
  assert.deepEqual([reply.amount, reply.amount_capturable, reply.amount_received], [100, 0, 100]);
  assert.equal(decision.events[0]?.type, 'payment_created');
  assert.equal(decision.follow_ups.length, 1);
  const leg = decision.follow_ups[0] as CreditLeg;
  assert.deepEqual(
    [leg.type, leg.account_id, leg.amount, leg.command_id],
    ['credit', 'shop', 100, `${reply.id}:credit`],
  );
  assert.deepEqual(balances(state, 'payer'), { posted: 900, pending: 0 });
  settle(state, decision.follow_ups);
  assert.deepEqual(balances(state, 'shop'), { posted: 100, pending: 0 });
  // A redelivered credit leg changes nothing.
  assert.deepEqual(apply(state, leg).events, []);
  assert.deepEqual(balances(state, 'shop'), { posted: 100, pending: 0 });
});

test('capture:false holds funds; partial capture releases the rest; capture only once', () => {
  const state = setup();
  const created = pay(state, { capture: false });
  const id = body(created).id as string;
  assert.equal(body(created).status, 'requires_capture');
  assert.equal(body(created).amount_capturable, 100);
  assert.deepEqual(balances(state, 'payer'), { posted: 1000, pending: 100 });
  assert.deepEqual(created.follow_ups, []);
  const over = errorOf(run(state, { type: 'capture_payment', payment_id: id, amount: 101 }));
  assert.deepEqual([over.code, over.status, over.param], ['amount_exceeds_capturable', 400, 'amount']);
  const captured = run(state, { type: 'capture_payment', payment_id: id, amount: 60 });
  assert.deepEqual(
    [body(captured).status, body(captured).amount_received, body(captured).amount_capturable],
    ['succeeded', 60, 0],
  );
  assert.deepEqual(balances(state, 'payer'), { posted: 940, pending: 0 });
  settle(state, captured.follow_ups);
  assert.deepEqual(balances(state, 'shop'), { posted: 60, pending: 0 });
  const again = errorOf(run(state, { type: 'capture_payment', payment_id: id }));
  assert.deepEqual([again.code, again.status], ['payment_invalid_state', 409]);
  const missing = errorOf(run(state, { type: 'capture_payment', payment_id: payId('payer') }));
  assert.deepEqual([missing.code, missing.status, missing.param], ['not_found', 404, 'payment']);
});

test('cancel releases the hold; a canceled payment cannot be captured or canceled again', () => {
  const state = setup();
  const id = body(pay(state, { capture: false })).id as string;
  const canceled = body(run(state, { type: 'cancel_payment', payment_id: id }));
  assert.deepEqual(
    [canceled.status, canceled.cancellation_reason, canceled.amount_capturable],
    ['canceled', 'requested_by_customer', 0],
  );
  assert.deepEqual(balances(state, 'payer'), { posted: 1000, pending: 0 });
  assert.equal(errorOf(run(state, { type: 'cancel_payment', payment_id: id })).code, 'payment_invalid_state');
  assert.equal(
    errorOf(run(state, { type: 'capture_payment', payment_id: id })).code,
    'payment_invalid_state',
  );
  assert.equal(errorOf(run(state, { type: 'cancel_payment', payment_id: payId('payer') })).code, 'not_found');
});

test('authorization expiry by record time: lazily on capture, and by the timer command', () => {
  const state = setup({ authorization_expiry_ms: 1000 });
  const a = body(pay(state, { capture: false, amount: 10 })).id as string;
  const b = body(pay(state, { capture: false, amount: 20 })).id as string;
  const late = errorOf(run(state, { type: 'capture_payment', payment_id: a, time_ms: T0_MS + 1000 }));
  assert.deepEqual([late.code, late.status], ['authorization_expired', 409]);
  assert.equal(body(run(state, { type: 'get_payment', payment_id: a })).cancellation_reason, 'expired');
  assert.deepEqual(balances(state, 'payer'), { posted: 1000, pending: 20 });
  const early = run(state, { type: 'expire_authorizations', time_ms: T0_MS + 999 });
  assert.deepEqual(early.events, []);
  const tick = run(state, { type: 'expire_authorizations', time_ms: T0_MS + 5000 });
  assert.equal(tick.reply, null);
  assert.deepEqual(
    tick.events.map((e) => [e.type, 'payment_id' in e ? e.payment_id : null]),
    [['payment_expired', b]],
  );
  assert.deepEqual(balances(state, 'payer'), { posted: 1000, pending: 0 });
  assert.deepEqual(state.payments.openAuthorizations(), []);
});

test('expiry tick: steps over authorizations closed behind the head, at most the per-tick bound', () => {
  const state = setup({ authorization_expiry_ms: 1000, expirations_per_tick_max: 2 });
  const ids = [1, 2, 3, 4, 5].map((amount) => body(pay(state, { capture: false, amount })).id as string);
  body(run(state, { type: 'capture_payment', payment_id: ids[1]! }));
  body(run(state, { type: 'cancel_payment', payment_id: ids[2]! }));
  assert.equal(state.payments.queue_length, 5, 'closed entries behind an open head stay queued');
  const first = run(state, { type: 'expire_authorizations', time_ms: T0_MS + 5000 });
  const expired = (d: Decision) => d.events.map((e) => ('payment_id' in e ? e.payment_id : null));
  assert.deepEqual(expired(first), [ids[0], ids[3]], 'the closed two are stepped over, the bound is 2');
  assert.deepEqual(state.payments.openAuthorizations(), [[ids[4], T0_MS + 1000]]);
  assert.equal(state.payments.queue_length, 1, 'closed entries leave once they reach the head');
  assert.deepEqual(expired(run(state, { type: 'expire_authorizations', time_ms: T0_MS + 5000 })), [ids[4]]);
  assert.equal(state.payments.queue_length, 0);
  assert.deepEqual(balances(state, 'payer'), { posted: 998, pending: 0 });
});

test('refunds: partial and several, never above captured, through debit legs', () => {
  const state = setup();
  const created = pay(state, { amount: 300 });
  settle(state, created.follow_ups);
  const id = body(created).id as string;
  const first = run(state, { type: 'create_refund', payment_id: id, amount: 100 });
  assert.equal(first.reply?.status, 201);
  assert.deepEqual([body(first).object, body(first).status, body(first).amount], ['refund', 'pending', 100]);
  assert.equal(first.follow_ups[0]?.type, 'debit');
  const over = errorOf(run(state, { type: 'create_refund', payment_id: id, amount: 201 }));
  assert.deepEqual([over.code, over.status], ['amount_exceeds_refundable', 400]);
  settle(state, first.follow_ups);
  const rest = run(state, { type: 'create_refund', payment_id: id });
  assert.equal(body(rest).amount, 200);
  settle(state, rest.follow_ups);
  const view = body(run(state, { type: 'get_payment', payment_id: id }));
  assert.deepEqual([view.status, view.amount_received, view.amount_refunded], ['succeeded', 300, 300]);
  assert.deepEqual(balances(state, 'payer'), { posted: 1000, pending: 0 });
  assert.deepEqual(balances(state, 'shop'), { posted: 0, pending: 0 });
  assert.equal(
    errorOf(run(state, { type: 'create_refund', payment_id: id })).code,
    'amount_exceeds_refundable',
  );
  const uncaptured = body(pay(state, { capture: false })).id as string;
  assert.equal(
    errorOf(run(state, { type: 'create_refund', payment_id: uncaptured })).code,
    'payment_invalid_state',
  );
});

test('a refund fails when the payee cannot pay it back; nothing moves', () => {
  const state = setup();
  const created = pay(state, { amount: 300 });
  settle(state, created.follow_ups);
  // The payee spends its money first.
  open(state, 'other', { kind: 'merchant' });
  settle(
    state,
    run(state, {
      type: 'create_payment',
      payment_id: payId('shop'),
      source: 'shop',
      destination: 'other',
      amount: 300,
      currency: 'usd',
    }).follow_ups,
  );
  const refund = run(state, { type: 'create_refund', payment_id: body(created).id as string, amount: 50 });
  settle(state, refund.follow_ups);
  const payment = state.payments.get(body(created).id as never)!;
  assert.deepEqual(
    payment.refunds?.map((r) => [r.status, r.failure_code]),
    [['failed', 'insufficient_funds']],
  );
  assert.equal(payment.amount_refunded, 0);
  assert.deepEqual(balances(state, 'payer'), { posted: 700, pending: 0 });
});

test('invalid payee: the credit comes back, the payment ends failed with destination_invalid', () => {
  for (const destination of ['ghost', 'frozen_shop', 'eur_shop']) {
    const state = setup();
    open(state, 'frozen_shop', { kind: 'merchant' });
    body(run(state, { type: 'freeze_account', account_id: 'frozen_shop' }));
    open(state, 'eur_shop', { kind: 'merchant', currency: 'eur' });
    const created = pay(state, { destination });
    assert.equal(body(created).status, 'succeeded');
    const credit = created.follow_ups[0]!;
    const refused = apply(state, credit);
    assert.equal(refused.events[0]?.type, 'transfer_rejected');
    assert.equal(refused.follow_ups[0]?.type, 'credit_rejected');
    assert.deepEqual(balances(state, 'payer'), { posted: 900, pending: 0 }, 'money in flight');
    settle(state, refused.follow_ups);
    settle(state, refused.follow_ups); // twice: nothing more
    const view = body(run(state, { type: 'get_payment', payment_id: body(created).id as string }));
    assert.deepEqual([view.status, view.failure_code], ['failed', 'destination_invalid'], destination);
    assert.deepEqual(balances(state, 'payer'), { posted: 1000, pending: 0 });
    assert.equal(
      errorOf(run(state, { type: 'create_refund', payment_id: view.id as string })).code,
      'payment_invalid_state',
    );
  }
});

test('declines are recorded outcomes with a decline code and the payment id', () => {
  const cases: [string, (s: PartitionState) => Record<string, unknown>][] = [
    ['insufficient_funds', () => ({ amount: 1001 })],
    ['currency_mismatch', () => ({ currency: 'eur' })],
    ['amount_too_large', () => ({ amount: 1501 })],
    [
      'account_frozen',
      (s) => {
        body(run(s, { type: 'freeze_account', account_id: 'payer' }));
        return {};
      },
    ],
  ];
  for (const [code, prepare] of cases) {
    const state = setup({ risk_rules: { single_payment_max: 1500 } });
    const decision = pay(state, prepare(state) as never);
    const error = errorOf(decision);
    assert.deepEqual(
      [error.status, error.type, error.code, error.decline_code],
      [402, 'payment_declined', 'payment_declined', code],
    );
    assert.equal(decision.events[0]?.type, 'payment_declined');
    assert.equal(error.payment_id, (decision.events[0] as { payment_id: string }).payment_id);
    assert.deepEqual(decision.follow_ups, []);
    assert.equal(body(run(state, { type: 'get_payment', payment_id: error.payment_id! })).status, 'declined');
    assert.deepEqual(balances(state, 'payer'), { posted: 1000, pending: 0 });
  }
});

test('overdraft limit: a payment may take available down to -overdraft_limit, not below', () => {
  const state = freshState();
  open(state, 'payer', { overdraft_limit: 50, deposit: 100 });
  open(state, 'shop', { kind: 'merchant' });
  assert.equal(errorOf(pay(state, { amount: 151 })).decline_code, 'insufficient_funds');
  assert.equal(body(pay(state, { amount: 150 })).status, 'succeeded');
  assert.deepEqual(balances(state, 'payer'), { posted: -50, pending: 0 });
});

test('velocity: at most N accepted payments per rolling window; amount per UTC day', () => {
  const state = setup({
    risk_rules: { velocity_count_max: 2, velocity_window_ms: 60_000, amount_per_day_max: 250 },
  });
  body(pay(state, { amount: 10 }));
  body(pay(state, { amount: 10, time_ms: T0_MS + 30_000 }));
  assert.equal(
    errorOf(pay(state, { amount: 10, time_ms: T0_MS + 59_999 })).decline_code,
    'velocity_exceeded',
  );
  body(pay(state, { amount: 10, time_ms: T0_MS + 60_000 })); // the first left the window
  assert.equal(state.accounts.get('payer' as never)?.velocity_times_ms?.length, 2);
  body(pay(state, { amount: 200, time_ms: T0_MS + 200_000 }));
  assert.equal(
    errorOf(pay(state, { amount: 21, time_ms: T0_MS + 400_000 })).decline_code,
    'velocity_exceeded',
  );
  const midnight = Math.ceil((T0_MS + 1) / DAY_MS) * DAY_MS;
  body(pay(state, { amount: 21, time_ms: midnight }));
});

test('per-account risk rules override the partition defaults', () => {
  const state = freshState();
  body(
    run(state, {
      type: 'open_account',
      account_id: 'payer',
      currency: 'usd',
      kind: 'customer',
      risk_rules: { single_payment_max: 5 },
    }),
  );
  open(state, 'shop', { kind: 'merchant' });
  body(run(state, { type: 'deposit', account_id: 'payer', amount: 100, currency: 'usd' }));
  assert.equal(errorOf(pay(state, { amount: 6 })).decline_code, 'amount_too_large');
  body(pay(state, { amount: 5 }));
});

test('card tokens: metadata only, pay with a token, decline card_expired after the expiry month', () => {
  const state = setup();
  const token_id = tokenIdFor(shard('payer'), 'card1');
  const token = body(
    run(state, {
      type: 'create_token',
      account_id: 'payer',
      token_id,
      last4: '4242',
      brand: 'visa',
      card_fingerprint: 'fp_abc',
      exp_month: 11,
      exp_year: 2026,
    }),
  );
  assert.deepEqual(token, {
    id: token_id,
    object: 'token',
    account: 'payer',
    last4: '4242',
    brand: 'visa',
    fingerprint: 'fp_abc',
    exp_month: 11,
    exp_year: 2026,
    created_ms: T0_MS,
  });
  assert.equal(body(pay(state, { source: token_id })).status, 'succeeded');
  assert.deepEqual(balances(state, 'payer'), { posted: 900, pending: 0 });
  const december = Date.UTC(2026, 11, 1);
  assert.equal(body(pay(state, { source: token_id, time_ms: december - 1 })).status, 'succeeded');
  assert.equal(errorOf(pay(state, { source: token_id, time_ms: december })).decline_code, 'card_expired');
  const wrong_shard = errorOf(
    run(state, {
      type: 'create_token',
      account_id: 'payer',
      token_id: tokenIdFor(shard('payer') ^ 1, 'x'),
      last4: '4242',
      brand: 'visa',
      card_fingerprint: 'f',
      exp_month: 1,
      exp_year: 2030,
    }),
  );
  assert.deepEqual([wrong_shard.code, wrong_shard.param], ['invalid_request', 'token_id']);
  assert.equal(errorOf(pay(state, { source: tokenIdFor(shard('payer'), 'nope') })).code, 'not_found');
});

test('create_payment validation errors carry their param', () => {
  const state = setup();
  const cases: [Record<string, unknown>, string, string][] = [
    [{ payment_id: 'pay_bad' }, 'invalid_request', 'id'],
    [{ payment_id: payId('someone_else') }, 'invalid_request', 'id'],
    [{ source: 'ghost', payment_id: payId('ghost') }, 'not_found', 'source'],
    [{ destination: 'payer' }, 'invalid_request', 'destination'],
    [{ destination: 'bad id' }, 'invalid_request', 'destination'],
    [{ amount: 0 }, 'invalid_request', 'amount'],
    [{ amount: 2.5 }, 'invalid_request', 'amount'],
    [{ currency: 'usdx' }, 'invalid_request', 'currency'],
    [{ capture: 'yes' }, 'invalid_request', 'capture'],
    [{ metadata: { k: 1 } }, 'invalid_request', 'metadata'],
    [{ description: 'x'.repeat(1001) }, 'invalid_request', 'description'],
  ];
  for (const [patch, code, param] of cases) {
    const decision = pay(state, patch as never);
    const error = errorOf(decision);
    assert.deepEqual([error.code, error.param], [code, param], JSON.stringify(patch));
    assert.deepEqual(decision.events, []);
  }
});

test('payment idempotency is durable by payment id: same body replays, other body is 409', () => {
  const state = setup({ idempotency_records_max: 1 });
  const payment_id = payId('payer');
  const command = {
    type: 'create_payment' as const,
    command_id: 'idem_1',
    time_ms: T0_MS,
    fingerprint: 'fp1',
    payment_id,
    source: 'payer',
    destination: 'shop',
    amount: 100,
    currency: 'usd',
    capture: false,
  };
  const first = apply(state, command);
  run(state, { type: 'deposit', account_id: 'payer', amount: 1, currency: 'usd' });
  run(state, { type: 'deposit', account_id: 'payer', amount: 1, currency: 'usd' }); // records rotate out
  assert.equal(state.idempotency.has('idem_1') || state.idempotency_previous.has('idem_1'), false);
  const retry = decide(state, { ...command, command_id: 'idem_2' });
  assert.deepEqual(retry.events, []);
  assert.deepEqual(retry.reply, first.reply);
  const reused = errorOf(decide(state, { ...command, command_id: 'idem_3', fingerprint: 'fp2', amount: 5 }));
  assert.deepEqual([reused.code, reused.status], ['idempotency_key_reused', 409]);
  assert.equal(state.idempotency_evicted_early_count > 0, true);
});

test('idempotency records are kept >= 24 h by record time, dropped by 48 h, within their bound', () => {
  const state = setup();
  const deposit = (command_id: string, time_ms: number) =>
    apply(state, { type: 'deposit', command_id, time_ms, account_id: 'payer', amount: 1, currency: 'usd' });
  const first = deposit('dep_1', T0_MS);
  deposit('dep_2', T0_MS + DAY_MS - 1);
  const retry = decide(state, {
    type: 'deposit',
    command_id: 'dep_1',
    time_ms: T0_MS + DAY_MS - 1,
    account_id: 'payer',
    amount: 1,
    currency: 'usd',
  });
  assert.deepEqual([retry.events, retry.reply], [[], first.reply], 'a retry just before 24 h: stored reply');
  deposit('dep_3', T0_MS + DAY_MS + 1); // rotation: dep_1 moves to the previous generation
  assert.equal(state.idempotency_previous.has('dep_1'), true, 'kept beyond 24 h');
  deposit('dep_4', T0_MS + 2 * DAY_MS + 2); // next rotation drops it
  assert.equal(
    state.idempotency.has('dep_1') || state.idempotency_previous.has('dep_1'),
    false,
    'dropped by 48 h',
  );
  assert.equal(state.idempotency_evicted_early_count, 0);
  const capped = setup({ idempotency_records_max: 100 });
  for (let i = 0; i < 500; i++)
    run(capped, { type: 'deposit', account_id: 'payer', amount: 1, currency: 'usd' });
  assert.ok(capped.idempotency.size + capped.idempotency_previous.size <= 100);
  assert.ok(capped.idempotency_evicted_early_count > 0);
});

test('the payment status transition table is closed and asserted', () => {
  assert.deepEqual(PAYMENT_TRANSITIONS, {
    requires_capture: ['succeeded', 'canceled'],
    succeeded: ['failed'],
    canceled: [],
    declined: [],
    failed: [],
  });
  assert.equal(canTransition('canceled', 'succeeded'), false);
  const state = setup();
  const id = body(pay(state, { capture: false })).id as string;
  body(run(state, { type: 'cancel_payment', payment_id: id }));
  // A forged event that would move a canceled payment must crash evolve, not be absorbed.
  const forged = {
    type: 'payment_failed' as const,
    event_id: 'x:0',
    account_id: 'payer' as never,
    time_ms: T0_MS,
    command_id: 'x',
    fingerprint: null,
    payment_id: id as never,
    amount: 100,
    failure_code: 'destination_invalid' as const,
  };
  assert.throws(() => evolve(state, forged), /illegal transition canceled -> failed/);
});

test('a payment creation reply is the payment view GET gives right after, field for field', () => {
  const state = setup();
  for (const capture of [true, false]) {
    const created = body(pay(state, { capture, amount: 40, description: 'boots', metadata: { order: '9' } }));
    const got = body(run(state, { type: 'get_payment', payment_id: created.id as string }));
    assert.deepStrictEqual(created, got);
    assert.deepEqual(Object.keys(created), Object.keys(got), 'same fields in the same order');
  }
});

test('velocity (property): declines exactly when N accepted payments lie inside the window before it', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 40 }),
      (count_max, gaps_ms) => {
        const window_ms = 60_000;
        const state = setup({
          risk_rules: { velocity_count_max: count_max, velocity_window_ms: window_ms },
        });
        const accepted_ms: number[] = []; // the model keeps every accepted time
        let time_ms = T0_MS;
        for (const gap_ms of gaps_ms) {
          time_ms += gap_ms;
          const inside = accepted_ms.filter((t) => t > time_ms - window_ms).length;
          const decision = pay(state, { amount: 1, time_ms });
          const declined = decision.reply?.ok === false;
          assert.equal(declined, inside >= count_max, `at +${time_ms - T0_MS} ms, ${inside} inside`);
          if (!declined) accepted_ms.push(time_ms);
        }
        const times = state.accounts.get('payer' as never)?.velocity_times_ms ?? [];
        assert.ok(times.length <= count_max, 'the list holds at most N times');
      },
    ),
    { numRuns: 200 },
  );
});

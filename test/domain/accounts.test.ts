import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decide, worldAccountId } from '../../src/domain/index.js';
import { balances, body, errorOf, freshState, open, run, T0_MS } from './helpers.js';

test('open_account answers 201 with the account view', () => {
  const state = freshState();
  const decision = run(state, {
    type: 'open_account',
    account_id: 'acct_a',
    currency: 'USD',
    kind: 'merchant',
    overdraft_limit: 500,
  });
  assert.equal(decision.reply?.status, 201);
  assert.deepEqual(body(decision), {
    id: 'acct_a',
    object: 'account',
    currency: 'usd',
    kind: 'merchant',
    status: 'active',
    overdraft_limit: 500,
    available: 0,
    pending: 0,
    posted: 0,
    created_ms: T0_MS,
  });
  assert.equal(decision.events.length, 1);
  assert.equal(decision.events[0]?.type, 'account_opened');
  assert.equal(decision.events[0]?.account_id, 'acct_a');
  assert.deepEqual(decision.follow_ups, []);
});

test('open_account rejects an existing id, bad ids, currencies, kinds and overdrafts', () => {
  const state = freshState();
  open(state, 'acct_a');
  const dup = errorOf(
    run(state, { type: 'open_account', account_id: 'acct_a', currency: 'usd', kind: 'customer' }),
  );
  assert.equal(dup.code, 'resource_already_exists');
  assert.equal(dup.status, 409);
  const cases: [Record<string, unknown>, string][] = [
    [{ account_id: 'bad id' }, 'id'],
    [{ account_id: 'world:0' }, 'id'],
    [{ currency: 'zzz' }, 'currency'],
    [{ kind: 'world' }, 'kind'],
    [{ overdraft_limit: -1 }, 'overdraft_limit'],
    [{ overdraft_limit: 1.5 }, 'overdraft_limit'],
    [{ risk_rules: { velocity_count_max: 0 } }, 'risk_rules'],
  ];
  for (const [patch, param] of cases) {
    const error = errorOf(
      run(state, {
        type: 'open_account',
        account_id: 'acct_new',
        currency: 'usd',
        kind: 'customer',
        ...patch,
      } as never),
    );
    assert.equal(error.code, 'invalid_request', JSON.stringify(patch));
    assert.equal(error.status, 400);
    assert.equal(error.param, param);
  }
  assert.equal(state.accounts.has('acct_new' as never), false);
});

test('deposit credits the account, debits the world account, answers the deposit with the balance', () => {
  const state = freshState();
  open(state, 'acct_a');
  const decision = run(state, {
    type: 'deposit',
    command_id: 'dep_1',
    account_id: 'acct_a',
    amount: 1000,
    currency: 'usd',
  });
  assert.equal(decision.reply?.status, 201);
  const reply = body(decision);
  assert.equal(reply.id, 'dep_1');
  assert.equal(reply.object, 'deposit');
  assert.equal(reply.account, 'acct_a');
  assert.equal(reply.amount, 1000);
  assert.deepEqual(reply.balance, {
    id: 'acct_a',
    object: 'account',
    currency: 'usd',
    kind: 'customer',
    status: 'active',
    overdraft_limit: 0,
    available: 1000,
    pending: 0,
    posted: 1000,
    created_ms: T0_MS,
  });
  assert.deepEqual(balances(state, 'acct_a'), { posted: 1000, pending: 0 });
  assert.deepEqual(balances(state, worldAccountId(0)), { posted: -1000, pending: 0 });
});

test('deposit errors: unknown account, bad amounts, currency mismatch, frozen, overflow', () => {
  const state = freshState();
  open(state, 'acct_a');
  const missing = errorOf(run(state, { type: 'deposit', account_id: 'nope', amount: 1, currency: 'usd' }));
  assert.deepEqual([missing.code, missing.status, missing.param], ['not_found', 404, 'account']);
  for (const amount of [0, -5, 1.5, Number.MAX_SAFE_INTEGER + 2, Number.NaN]) {
    const error = errorOf(run(state, { type: 'deposit', account_id: 'acct_a', amount, currency: 'usd' }));
    assert.deepEqual([error.code, error.param], ['invalid_request', 'amount']);
  }
  const mismatch = errorOf(run(state, { type: 'deposit', account_id: 'acct_a', amount: 1, currency: 'eur' }));
  assert.deepEqual([mismatch.code, mismatch.status], ['currency_mismatch', 400]);
  body(
    run(state, { type: 'deposit', account_id: 'acct_a', amount: Number.MAX_SAFE_INTEGER, currency: 'usd' }),
  );
  const overflow = errorOf(run(state, { type: 'deposit', account_id: 'acct_a', amount: 1, currency: 'usd' }));
  assert.deepEqual([overflow.code, overflow.param], ['invalid_request', 'amount']);
  body(run(state, { type: 'freeze_account', account_id: 'acct_a' }));
  const frozen = errorOf(run(state, { type: 'deposit', account_id: 'acct_a', amount: 1, currency: 'usd' }));
  assert.deepEqual([frozen.code, frozen.status], ['account_frozen', 409]);
});

test('get_account answers the view and emits nothing; unknown is 404 with param', () => {
  const state = freshState();
  open(state, 'acct_a', { deposit: 70 });
  const decision = run(state, { type: 'get_account', account_id: 'acct_a' });
  assert.equal(decision.reply?.status, 200);
  assert.equal(body(decision).available, 70);
  assert.deepEqual(decision.events, []);
  const missing = errorOf(run(state, { type: 'get_account', account_id: 'acct_zz' }));
  assert.deepEqual([missing.code, missing.status, missing.param], ['not_found', 404, 'id']);
});

test('freeze and unfreeze change the status; repeating is a no-op answered 200', () => {
  const state = freshState();
  open(state, 'acct_a');
  assert.equal(body(run(state, { type: 'freeze_account', account_id: 'acct_a' })).status, 'frozen');
  const again = run(state, { type: 'freeze_account', account_id: 'acct_a' });
  assert.deepEqual([again.events.length, body(again).status], [0, 'frozen']);
  assert.equal(body(run(state, { type: 'unfreeze_account', account_id: 'acct_a' })).status, 'active');
});

test('a retried command returns the stored reply and emits nothing; another body is idempotency_key_reused', () => {
  const state = freshState();
  open(state, 'acct_a');
  const command = {
    type: 'deposit' as const,
    command_id: 'dep_x',
    time_ms: T0_MS,
    fingerprint: 'f1',
    account_id: 'acct_a',
    amount: 5,
    currency: 'usd',
  };
  const first = run(state, command);
  body(run(state, { type: 'deposit', account_id: 'acct_a', amount: 7, currency: 'usd' }));
  const retry = decide(state, command);
  assert.deepEqual(retry.events, []);
  assert.deepEqual(retry.reply, first.reply, 'the stored reply, balances as of the first time');
  const reused = errorOf(decide(state, { ...command, fingerprint: 'f2', amount: 6 }));
  assert.deepEqual([reused.code, reused.status], ['idempotency_key_reused', 409]);
  assert.deepEqual(balances(state, 'acct_a'), { posted: 12, pending: 0 });
});

test('malformed commands get an invalid_request reply, never a throw', () => {
  const state = freshState();
  for (const bad of [
    { type: 'deposit', command_id: '', time_ms: T0_MS },
    { type: 'deposit', command_id: 'x', time_ms: 1.5 },
    { type: 'deposit', command_id: 'x', time_ms: T0_MS, fingerprint: 7 },
    { type: 'teleport', command_id: 'x', time_ms: T0_MS },
  ]) {
    assert.equal(errorOf(decide(state, bad as never)).code, 'invalid_request');
  }
});

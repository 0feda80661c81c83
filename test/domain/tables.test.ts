import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  createPartitionState,
  decodeSnapshot,
  encodeSnapshot,
  PaymentTable,
  RecordTable,
} from '../../src/domain/index.js';
import { hashKey, StringIndex } from '../../src/domain/string-index.js';
import type { DomainEvent, PaymentState } from '../../src/domain/types.js';

test('string index: finds what a Map finds, through growth, for any strings (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.string({ unit: 'binary', maxLength: 40 }), { maxLength: 300 }), (keys) => {
      const index = new StringIndex(1);
      const model = new Map<string, number>();
      for (const key of keys) {
        if (model.has(key)) {
          assert.equal(index.find(key), model.get(key));
          continue;
        }
        assert.equal(index.find(key), -1);
        model.set(key, index.insert(key));
      }
      assert.equal(index.size, model.size);
      for (const [key, row] of model) {
        assert.equal(index.find(key), row);
        assert.equal(index.keyOf(row), key);
      }
      assert.equal(index.find('\u0000absent\uffff'), model.get('\u0000absent\uffff') ?? -1);
    }),
    { numRuns: 300 },
  );
});

test('string index: keys() then fromKeys() rebuilds the same rows, wide keys included (property)', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.string({ unit: 'binary', maxLength: 30 }), { maxLength: 200 }), (keys) => {
      const index = new StringIndex(4);
      for (const key of keys) index.insert(key);
      const back = StringIndex.fromKeys(index.keys(), 4);
      assert.equal(back.size, keys.length);
      for (const [row, key] of keys.entries()) {
        assert.equal(back.find(key), row);
        assert.equal(back.keyOf(row), key);
      }
      assert.equal(back.arena_used, index.arena_used, 'a wide key takes no arena bytes on either side');
    }),
    { numRuns: 200 },
  );
});

test('string index: rows keep insertion order and clear keeps the memory', () => {
  const index = new StringIndex(8);
  const keys = Array.from({ length: 5000 }, (_, i) => `pay_0000abcd${i}`);
  for (const [i, key] of keys.entries()) assert.equal(index.insert(key), i);
  assert.ok(index.row_capacity >= 5000 && index.slots.length === index.row_capacity * 2, 'load <= 1/2');
  const bytes = index.bytes;
  index.clear();
  assert.equal(index.size, 0);
  assert.equal(index.find(keys[10]!), -1);
  assert.equal(index.bytes, bytes, 'a cleared index keeps its arrays');
  assert.equal(index.insert('again'), 0);
  assert.equal(index.find('again'), 0);
});

test('string index: keys that collide on the slot are told apart by their text', () => {
  const index = new StringIndex(8);
  const mask = index.slots.length - 1;
  const target = hashKey('seed') & mask;
  const colliding: string[] = [];
  for (let i = 0; colliding.length < 6; i++)
    if ((hashKey(`k${i}`) & mask) === target) colliding.push(`k${i}`);
  for (const key of colliding) index.insert(key);
  for (const [row, key] of colliding.entries()) assert.equal(index.find(key), row);
  assert.equal(index.find('k-none'), -1);
});

function payment(id: string, overrides: Partial<PaymentState> = {}): PaymentState {
  return {
    id: id as PaymentState['id'],
    payer_account_id: 'payer' as PaymentState['payer_account_id'],
    source: 'payer',
    payee_account_id: 'shop' as PaymentState['payee_account_id'],
    amount: 500,
    currency: 'eur' as PaymentState['currency'],
    capture_method: 'manual',
    status: 'requires_capture',
    amount_capturable: 500,
    amount_received: 0,
    amount_refunded: 0,
    amount_refund_pending: 0,
    decline_code: null,
    failure_code: null,
    cancellation_reason: null,
    created_ms: 1,
    expires_ms: 99,
    fingerprint: 'f1',
    description: 'boots',
    metadata: { order: '7' },
    refunds: null,
    ...overrides,
  };
}

test('payment table: set then get gives the same payment back, every field', () => {
  const table = new PaymentTable(2);
  const samples = [
    payment('pay_a'),
    payment('pay_b', {
      capture_method: 'automatic',
      status: 'failed',
      amount_capturable: 0,
      amount_received: 500,
      amount_refunded: 100,
      amount_refund_pending: 50,
      failure_code: 'destination_invalid',
      source: 'tok_x',
      payee_account_id: 'other' as PaymentState['payee_account_id'],
      fingerprint: null,
      description: null,
      metadata: null,
      refunds: [
        { id: 're_1' as never, amount: 100, status: 'succeeded', failure_code: null, created_ms: 2 },
        { id: 're_2' as never, amount: 50, status: 'pending', failure_code: null, created_ms: 3 },
      ],
    }),
    payment('pay_c', { status: 'declined', decline_code: 'velocity_exceeded', amount_capturable: 0 }),
    payment('pay_d', { status: 'canceled', cancellation_reason: 'expired', amount_capturable: 0 }),
  ];
  for (const p of samples) table.set(p.id, p);
  assert.equal(table.size, 4);
  for (const p of samples) assert.deepStrictEqual(table.get(p.id), p);
  assert.deepEqual([...table.keys()], ['pay_a', 'pay_b', 'pay_c', 'pay_d']);
  assert.equal(table.get('pay_none'), undefined);
  assert.deepEqual(table.openAuthorizations(), [['pay_a', 99]], 'only the open authorization is queued');
  table.set('pay_a', payment('pay_a', { status: 'succeeded', amount_capturable: 0, amount_received: 500 }));
  assert.equal(table.size, 4, 'set over an existing id rewrites its row');
  assert.deepEqual(table.openAuthorizations(), []);
  assert.equal(table.queue_length, 0, 'a closed head leaves the queue');
});

test('payment table: grows past its first capacity without losing rows', () => {
  const table = new PaymentTable(8);
  for (let i = 0; i < 3000; i++) table.set(`pay_${i}`, payment(`pay_${i}`, { amount: i + 1 }));
  assert.equal(table.size, 3000);
  assert.equal(table.get('pay_2999')?.amount, 3000);
  assert.equal(table.get('pay_7')?.description, 'boots');
  assert.equal(table.openAuthorizations().length, 3000);
});

test('record table: client events kept whole, legs by type, clear reuses the table', () => {
  const table = new RecordTable(4);
  const deposit = {
    type: 'deposited',
    event_id: 'c1:0',
    account_id: 'a',
    time_ms: 1,
    command_id: 'c1',
    fingerprint: 'fp',
    amount: 5,
    currency: 'usd',
    posted_after: 5,
    pending_after: 0,
  } as DomainEvent;
  const credit = { ...deposit, type: 'transfer_rejected', command_id: 'pay_1:credit' } as DomainEvent;
  table.set('c1', deposit);
  table.set('pay_1:credit', credit);
  assert.equal(table.get('c1'), deposit, 'a client record is the event itself');
  assert.deepEqual(table.get('pay_1:credit'), { command_id: 'pay_1:credit', type: 'transfer_rejected' });
  assert.equal(table.typeOf(table.find('pay_1:credit')), 'transfer_rejected');
  assert.equal(table.typeOf(table.find('c1')), 'deposited');
  assert.deepEqual([...table.keys()], ['c1', 'pay_1:credit']);
  table.clear();
  assert.equal(table.size, 0);
  assert.equal(table.get('c1'), undefined);
  table.set('pay_1:credit', { command_id: 'pay_1:credit', type: 'transfer_credited' });
  assert.equal(table.typeOf(0), 'transfer_credited');
});

test('a reserved partition starts with its tables at the reserved size, and keeps it through a snapshot', () => {
  const state = createPartitionState(0, { payment_rows_reserved: 20_000, record_rows_reserved: 10_000 });
  assert.ok(state.payments.index.row_capacity >= 20_000);
  assert.ok(state.idempotency.index.row_capacity >= 10_000);
  assert.ok(state.idempotency_previous.index.row_capacity >= 10_000);
  const back = decodeSnapshot(encodeSnapshot(state));
  assert.ok(back.payments.index.row_capacity >= 20_000, 'the reservation travels in the config');
  assert.ok(back.idempotency.index.row_capacity >= 10_000);
  const plain = createPartitionState(0);
  assert.ok(plain.payments.index.row_capacity < 20_000, 'the default is small');
});

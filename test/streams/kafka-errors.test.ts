import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTransient, kafkaErrorType, producerStateLost } from '../../src/streams/kafka-errors.js';
import { RestoreTimeoutError } from '../../src/streams/restore.js';
import { connectionError, protocolError } from '../support/kafka-errors.js';

/** An engine error wrapping a port error (the chain is walked). */
const wrap = (cause: Error) => new Error('step failed', { cause });

describe('kafka error classification', () => {
  const not_leader = protocolError('NOT_LEADER_FOR_PARTITION', 6, true);
  const fenced = protocolError('INVALID_PRODUCER_EPOCH', 47, false);

  it('treats retriable protocol errors, connection errors and restore timeouts as transient', () => {
    assert.equal(isTransient(not_leader), true);
    assert.equal(isTransient(wrap(not_leader)), true);
    assert.equal(isTransient(connectionError('closed')), true);
    assert.equal(isTransient(new RestoreTimeoutError('slow')), true);
  });

  it('tells a lost idempotent producer state (replace the producer) from transient failures', () => {
    const out_of_order = protocolError('OUT_OF_ORDER_SEQUENCE_NUMBER', 45, false);
    assert.equal(producerStateLost(out_of_order), true);
    assert.equal(producerStateLost(wrap(out_of_order)), true);
    assert.equal(producerStateLost(fenced), true);
    assert.equal(producerStateLost(not_leader), false);
    assert.equal(producerStateLost(connectionError('closed')), false);
  });

  it('does not retry bugs or fencing', () => {
    assert.equal(isTransient(new Error('lane invariant: boom')), false);
    assert.equal(isTransient(fenced), false);
    assert.equal(isTransient(undefined), false);
  });

  it('finds the protocol error type through wrappers', () => {
    assert.equal(kafkaErrorType(wrap(fenced)), 'INVALID_PRODUCER_EPOCH');
    assert.equal(kafkaErrorType(new Error('x')), null);
  });
});

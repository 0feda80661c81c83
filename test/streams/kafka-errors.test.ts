import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { isTransient, kafkaErrorType, producerStateLost } from '../../src/streams/kafka-errors.js';
import { RestoreTimeoutError } from '../../src/streams/restore.js';
import { protocolError } from '../support/kafka-errors.js';

const { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded } = kafkajs;
describe('kafka error classification', () => {
  const not_leader = protocolError('NOT_LEADER_FOR_PARTITION', 6, true);
  const fenced = protocolError('INVALID_PRODUCER_EPOCH', 47, false);

  it('treats retriable protocol errors, connection errors and restore timeouts as transient', () => {
    assert.equal(isTransient(not_leader), true);
    assert.equal(
      isTransient(new KafkaJSNumberOfRetriesExceeded(not_leader, { retryCount: 5, retryTime: 1 })),
      true,
    );
    assert.equal(isTransient(new KafkaJSConnectionError('closed')), true);
    assert.equal(isTransient(new RestoreTimeoutError('slow')), true);
  });

  it('tells a lost idempotent producer state (replace the producer) from transient failures', () => {
    const out_of_order = protocolError('OUT_OF_ORDER_SEQUENCE_NUMBER', 45, false);
    assert.equal(producerStateLost(out_of_order), true);
    assert.equal(
      producerStateLost(new KafkaJSNumberOfRetriesExceeded(out_of_order, { retryCount: 1, retryTime: 1 })),
      true,
    );
    assert.equal(producerStateLost(fenced), true);
    assert.equal(producerStateLost(not_leader), false);
    assert.equal(producerStateLost(new KafkaJSConnectionError('closed')), false);
  });

  it('does not retry bugs or fencing', () => {
    assert.equal(isTransient(new Error('lane invariant: boom')), false);
    assert.equal(isTransient(fenced), false);
    assert.equal(isTransient(undefined), false);
  });

  it('finds the protocol error type through wrappers', () => {
    assert.equal(
      kafkaErrorType(new KafkaJSNumberOfRetriesExceeded(fenced, { retryCount: 1, retryTime: 1 })),
      'INVALID_PRODUCER_EPOCH',
    );
    assert.equal(kafkaErrorType(new Error('x')), null);
  });
});

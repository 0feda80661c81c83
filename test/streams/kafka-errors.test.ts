import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { isTransient, kafkaErrorType } from '../../src/streams/kafka-errors.js';
import { RestoreTimeoutError } from '../../src/streams/restore.js';

const { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded } = kafkajs;
// kafkajs' typings declare (Error | string); at run time it takes the protocol error descriptor.
const KafkaJSProtocolError = kafkajs.KafkaJSProtocolError as unknown as new (descriptor: {
  message: string;
  type: string;
  code: number;
  retriable: boolean;
}) => Error;

describe('kafka error classification', () => {
  const not_leader = new KafkaJSProtocolError({
    message: 'not leader',
    type: 'NOT_LEADER_FOR_PARTITION',
    code: 6,
    retriable: true,
  });
  const fenced = new KafkaJSProtocolError({
    message: 'epoch',
    type: 'INVALID_PRODUCER_EPOCH',
    code: 47,
    retriable: false,
  });

  it('treats retriable protocol errors, connection errors and restore timeouts as transient', () => {
    assert.equal(isTransient(not_leader), true);
    assert.equal(
      isTransient(new KafkaJSNumberOfRetriesExceeded(not_leader, { retryCount: 5, retryTime: 1 })),
      true,
    );
    assert.equal(isTransient(new KafkaJSConnectionError('closed')), true);
    assert.equal(isTransient(new RestoreTimeoutError('slow')), true);
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

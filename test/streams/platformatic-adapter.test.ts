import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTransient, kafkaErrorType } from '../../src/streams/kafka-errors.js';
import { toPortError } from '../../src/streams/platformatic/errors.js';
import {
  busy_fetch_wait_ms,
  committedBatches,
  fetchWaitMs,
  membershipContinues,
} from '../../src/streams/platformatic/group-consumer.js';
import { retryDelayMs } from '../../src/streams/platformatic/index.js';

/** A record batch as the client's Fetch parser returns it; control batches carry one marker record. */
function batch(first: number, count: number, producer: number, kind: 'data' | 'txn' | 'commit' | 'abort') {
  const control = kind === 'commit' || kind === 'abort';
  const key = Buffer.alloc(4);
  key.writeInt16BE(kind === 'abort' ? 0 : 1, 2);
  return {
    firstOffset: BigInt(first),
    lastOffsetDelta: count - 1,
    attributes: (kind === 'data' ? 0 : 0x10) | (control ? 0x20 : 0),
    producerId: BigInt(producer),
    records: Array.from({ length: count }, (_, i) => ({
      offsetDelta: i,
      key: control ? key : null,
      value: control ? null : Buffer.from(`${producer}@${first + i}`),
    })),
  };
}
const offsets = (batches: { firstOffset: bigint }[]) => batches.map((b) => Number(b.firstOffset));

describe('read_committed filtering of a fetch (platformatic adapter)', () => {
  it('skips the aborted transaction of one producer, keeps the committed one of another interleaved with it', () => {
    const part = {
      partitionIndex: 0,
      highWatermark: 10n,
      abortedTransactions: [{ producerId: 7n, firstOffset: 0n }],
      records: [
        batch(0, 2, 7, 'txn'), // aborted
        batch(2, 2, 8, 'txn'), // committed later
        batch(4, 1, 7, 'abort'),
        batch(5, 1, 8, 'commit'),
        batch(6, 2, 7, 'txn'), // producer 7's next transaction: not aborted (listed abort ended at 4)
        batch(8, 1, 7, 'commit'),
      ],
    };
    assert.deepEqual(offsets(committedBatches(part)), [2, 4, 5, 6, 8]);
  });

  it('an abort marker of a transaction the response does not list ends nothing and does not throw', () => {
    // The client's own filter threw here (TypeError in its socket handler: the node died).
    const part = {
      partitionIndex: 0,
      highWatermark: 5n,
      abortedTransactions: [{ producerId: 9n, firstOffset: 3n }],
      records: [
        batch(0, 1, 4, 'abort'),
        batch(1, 2, 5, 'txn'),
        batch(3, 1, 9, 'txn'),
        batch(4, 1, 9, 'abort'),
      ],
    };
    assert.deepEqual(offsets(committedBatches(part)), [0, 1, 4]);
  });

  it('an aborted transaction whose marker is past the fetched range stays skipped to the end', () => {
    const part = {
      partitionIndex: 0,
      highWatermark: 4n,
      abortedTransactions: [{ producerId: 3n, firstOffset: 1n }],
      records: [batch(0, 1, 3, 'data'), batch(1, 3, 3, 'txn')],
    };
    // Non-transactional data of the same producer id is never filtered.
    assert.deepEqual(offsets(committedBatches(part)), [0]);
  });

  it('without aborted transactions every batch is kept, control batches included (they move the position)', () => {
    const records = [batch(0, 3, 1, 'txn'), batch(3, 1, 1, 'commit')];
    assert.deepEqual(offsets(committedBatches({ partitionIndex: 0, highWatermark: 4n, records })), [0, 3]);
  });
});

describe('platformatic adapter: retries and error classification', () => {
  const protocol = (apiId: string, canRetry: boolean) => ({
    code: 'PLT_KFK_PROTOCOL',
    apiId,
    canRetry,
    message: apiId,
  });
  const response = (...errors: unknown[]) => ({
    code: 'PLT_KFK_RESPONSE',
    message: 'Received response with error',
    errors,
  });
  const retries = (...errors: unknown[]) => ({
    code: 'PLT_KFK_MULTIPLE',
    message: 'op failed 7 times.',
    errors,
  });

  it('CONCURRENT_TRANSACTIONS waits 2 ms first, doubling to 1 s; other errors 250 ms', () => {
    const busy = response(protocol('CONCURRENT_TRANSACTIONS', true));
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14].map((attempt) => retryDelayMs(attempt, busy)),
      [2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000],
    );
    assert.equal(retryDelayMs(1, response(protocol('NOT_LEADER_OR_FOLLOWER', true))), 250);
  });

  it('names the protocol error of a nested response, fenced or not, and what can be retried', () => {
    const fenced = toPortError(retries(response(protocol('PRODUCER_FENCED', false))), 'commit');
    assert.equal(fenced.type, 'PRODUCER_FENCED');
    assert.equal(fenced.retriable, false);
    assert.equal(kafkaErrorType(fenced), 'PRODUCER_FENCED');
    assert.equal(isTransient(fenced), false);
    const busy = toPortError(response(protocol('COORDINATOR_LOAD_IN_PROGRESS', true)), 'offsets');
    assert.equal(busy.type, 'COORDINATOR_LOAD_IN_PROGRESS');
    assert.equal(isTransient(busy), true);
    const network = toPortError(retries({ code: 'PLT_KFK_NETWORK', message: 'Connection closed' }), 'fetch');
    assert.equal(network.type, null);
    assert.equal(isTransient(network), true);
    assert.match(network.message, /fetch: op failed 7 times\. \(last: Connection closed\)/);
    // A local failure the client retried is not a broker condition: never transient.
    const local = toPortError(retries(new TypeError('bad argument')), 'produce');
    assert.equal(isTransient(local), false);
  });
});

describe('platformatic group consumer: which partitions a rebalance keeps', () => {
  const before = { member_id: 'm1', generation_id: 7 };
  it('keeps them in the same or the next generation of the same member', () => {
    assert.equal(membershipContinues(before, 4, 'm1', 7), true);
    assert.equal(membershipContinues(before, 4, 'm1', 8), true);
  });
  it('revokes every one after a skipped generation or as a new member', () => {
    assert.equal(membershipContinues(before, 4, 'm1', 9), false, 'generation 8 may have given them away');
    assert.equal(membershipContinues(before, 4, 'm2', 8), false, 'm1 expired: others owned them meanwhile');
  });
  it('nothing to keep: a first join, or partitions already given up locally', () => {
    assert.equal(membershipContinues(null, 0, 'm1', 1), true);
    assert.equal(membershipContinues({ member_id: 'm1', generation_id: -1 }, 0, 'm2', 12), true);
  });
});

describe('platformatic group consumer: how long a fetch waits for data', () => {
  it('long-polls the full wait only while no partition is being handled', () => {
    assert.equal(fetchWaitMs(20, 0), 20, 'idle: one long poll, answered as soon as a record arrives');
    // A handled partition is not in the fetch: it rejoins the next round, which must not be 20 ms away.
    assert.equal(fetchWaitMs(20, 1), busy_fetch_wait_ms);
    assert.equal(fetchWaitMs(20, 8), busy_fetch_wait_ms);
    assert.ok(busy_fetch_wait_ms < 20);
    assert.equal(fetchWaitMs(1, 3), 1, 'never longer than the consumer asked for');
  });
});

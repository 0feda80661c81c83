import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import {
  installTransactionalRetries,
  wrapCluster,
  wrapped_marker,
} from '../../src/streams/kafkajs/retries.js';
import { protocolError } from '../support/kafka-errors.js';

/**
 * kafkajs sends AddOffsetsToTxn and EndTxn once and fails the transaction on CONCURRENT_TRANSACTIONS (the
 * coordinator still writing the previous transaction's markers). The wrapper retries coordinator-busy
 * answers of the transaction coordinator's requests. Tested on kafkajs' own transaction manager (its
 * eosManager, loaded from the installed package) over a scripted cluster, and on the real Kafka class.
 */
const require = createRequire(import.meta.url);
const createEosManager = require('kafkajs/src/producer/eosManager') as (o: unknown) => {
  initProducerId(): Promise<void>;
  beginTransaction(): void;
  sendOffsets(o: unknown): Promise<void>;
  commit(): Promise<void>;
};
const policy = { attempts_max: 6, backoff_ms_first: 1, backoff_ms_max: 4 };
const busy = () => protocolError('CONCURRENT_TRANSACTIONS', 51, true);

/** A cluster whose coordinators answer from scripts: an Error is thrown, anything else is the answer. */
function scriptedCluster(script: Record<string, unknown[]>) {
  const calls: string[] = [];
  const finds: number[] = [];
  const broker = (name: string) =>
    new Proxy(
      {},
      {
        // Not a thenable: `await` of a coordinator must not call into the script.
        get: (_t, method: string) =>
          method === 'then'
            ? undefined
            : async () => {
                calls.push(`${name}.${method}`);
                const answer = script[method]?.shift();
                if (answer instanceof Error) throw answer;
                return method === 'initProducerId' ? { producerId: 7, producerEpoch: 0 } : {};
              },
      },
    );
  let coordinator = 0;
  const cluster = {
    retry: { retries: 0 },
    refreshMetadataIfNecessary: async () => {},
    findGroupCoordinator: async (o: { coordinatorType?: number }) => {
      finds.push(o.coordinatorType ?? 0);
      return broker(o.coordinatorType === 1 ? `txn${coordinator++}` : 'group');
    },
  };
  return { cluster, calls, finds };
}

function eosOver(cluster: unknown) {
  return createEosManager({
    logger: {
      debug() {},
      info() {},
      warn() {},
      error() {},
      namespace: () => ({ debug() {}, info() {}, warn() {}, error() {} }),
    },
    cluster,
    transactional: true,
    transactionalId: 't-1',
    transactionTimeout: 30_000,
  });
}

const offsets = {
  consumerGroupId: 'g',
  topics: [{ topic: 'c', partitions: [{ partition: 0, offset: '5' }] }],
};

describe('transactional retries around kafkajs', () => {
  it('without the wrapper, kafkajs fails the transaction on one CONCURRENT_TRANSACTIONS (the bug)', async () => {
    const { cluster } = scriptedCluster({ addOffsetsToTxn: [busy()] });
    const eos = eosOver(cluster);
    await eos.initProducerId();
    eos.beginTransaction();
    await assert.rejects(
      eos.sendOffsets(offsets),
      (err: { type?: string }) => err.type === 'CONCURRENT_TRANSACTIONS',
    );
  });

  it('with it, AddOffsetsToTxn and EndTxn retry coordinator-busy answers and the commit succeeds', async () => {
    const { cluster, calls } = scriptedCluster({
      addOffsetsToTxn: [busy(), protocolError('COORDINATOR_LOAD_IN_PROGRESS', 14, true)],
      endTxn: [busy(), busy()],
    });
    const retried: string[] = [];
    wrapCluster(cluster, policy, (t) => retried.push(t));
    const eos = eosOver(cluster);
    await eos.initProducerId();
    eos.beginTransaction();
    await eos.sendOffsets(offsets);
    await eos.commit();
    assert.deepEqual(retried, [
      'CONCURRENT_TRANSACTIONS',
      'COORDINATOR_LOAD_IN_PROGRESS',
      'CONCURRENT_TRANSACTIONS',
      'CONCURRENT_TRANSACTIONS',
    ]);
    assert.equal(calls.filter((c) => c.endsWith('.endTxn')).length, 3);
  });

  it('re-finds the coordinator after NOT_COORDINATOR; never retries fencing; stops at attempts_max', async () => {
    const moved = scriptedCluster({ endTxn: [protocolError('NOT_COORDINATOR', 16, true)] });
    wrapCluster(moved.cluster, policy, () => {});
    const eos = eosOver(moved.cluster);
    await eos.initProducerId();
    eos.beginTransaction();
    await eos.sendOffsets(offsets);
    await eos.commit();
    const ends = moved.calls.filter((c) => c.endsWith('.endTxn'));
    assert.equal(ends.length, 2);
    assert.notEqual(
      ends[0]!.split('.')[0],
      ends[1]!.split('.')[0],
      'the second EndTxn went to the new coordinator',
    );

    const fenced = scriptedCluster({ endTxn: [protocolError('PRODUCER_FENCED', 90, false)] });
    let retries = 0;
    wrapCluster(fenced.cluster, policy, () => retries++);
    const f = eosOver(fenced.cluster);
    await f.initProducerId();
    f.beginTransaction();
    await f.sendOffsets(offsets);
    await assert.rejects(f.commit(), (err: { type?: string }) => err.type === 'PRODUCER_FENCED');
    assert.equal(retries, 0);

    const stuck = scriptedCluster({ endTxn: Array.from({ length: 20 }, busy) });
    wrapCluster(stuck.cluster, policy, () => {});
    const s = eosOver(stuck.cluster);
    await s.initProducerId();
    s.beginTransaction();
    await s.sendOffsets(offsets);
    await assert.rejects(s.commit());
    assert.equal(stuck.calls.filter((c) => c.endsWith('.endTxn')).length, policy.attempts_max);
  });

  it('leaves group coordinators and other requests alone', async () => {
    const { cluster, calls } = scriptedCluster({
      txnOffsetCommit: [busy()],
      initProducerId: [protocolError('INVALID_PRODUCER_EPOCH', 47, false)],
    });
    let retries = 0;
    wrapCluster(cluster, policy, () => retries++);
    const group = (await cluster.findGroupCoordinator({ coordinatorType: 0 })) as Record<
      string,
      () => Promise<void>
    >;
    await assert.rejects(group.txnOffsetCommit!());
    const txn = (await cluster.findGroupCoordinator({ coordinatorType: 1 })) as Record<
      string,
      () => Promise<void>
    >;
    await assert.rejects(txn.initProducerId!());
    assert.equal(retries, 0);
    assert.deepEqual(calls, ['group.txnOffsetCommit', 'txn0.initProducerId']);
  });

  it('installs on the real Kafka class: every cluster it creates has the wrapped coordinator lookup', () => {
    const kafka = new Kafka({ brokers: ['127.0.0.1:1'], clientId: 't', logLevel: logLevel.NOTHING });
    installTransactionalRetries(kafka, policy, () => {});
    installTransactionalRetries(kafka, policy, () => {}); // idempotent
    const symbol = Object.getOwnPropertySymbols(kafka).find(
      (s) => s.description === 'private:Kafka:createCluster',
    )!;
    const create = (kafka as unknown as Record<symbol, (o: object) => { findGroupCoordinator: object }>)[
      symbol
    ]!;
    assert.equal((create as unknown as Record<symbol, unknown>)[wrapped_marker], true);
    const cluster = create.call(kafka, {});
    assert.equal((cluster.findGroupCoordinator as unknown as Record<symbol, unknown>)[wrapped_marker], true);
    assert.throws(
      () => installTransactionalRetries({} as Kafka, policy, () => {}),
      /kafka invariant: kafkajs has no private:Kafka:createCluster/,
    );
  });
});

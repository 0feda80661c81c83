import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GroupMetadata, OutRecord } from '../../src/streams/kafka-port.js';
import {
  default_retry_policy,
  GenerationMovedError,
  RequestWithdrawnError,
  SharedTransactions,
} from '../../src/streams/transaction.js';
import { ScriptedCluster } from '../support/scripted-kafka.js';

/**
 * One transaction per node commit (SharedTransactions) against the scripted stand-in: requests that arrive
 * while a transaction runs form the next one; a failed one rejects every request in it and the next starts
 * on a newly initialized producer (which aborts what the coordinator still held); requests whose partition
 * left the generation are refused before anything is sent; the records bound splits transactions.
 */
const group = (generation_id: number): GroupMetadata => ({
  group_id: 'g',
  generation_id,
  member_id: 'm',
  coordinator_id: 1,
});

function setup(o: { records_max?: number } = {}) {
  const cluster = new ScriptedCluster();
  cluster.createTopic('commands', 4);
  cluster.createTopic('events', 4);
  const port = cluster.port();
  const transactions: number[] = [];
  const shared = new SharedTransactions({
    producer: () =>
      port.transactionalProducer({ transactional_id: 'node-1', transaction_timeout_ms: 30_000 }),
    group_id: 'g',
    policy: default_retry_policy,
    onRetry: () => {},
    records_max: o.records_max ?? 1000,
    commit_interval_ms: 0,
    requests_max: 4,
    onTransaction: (requests) => transactions.push(requests),
  });
  return { cluster, shared, transactions };
}

function request(partition: number, events: string[], generation = 7) {
  const messages: OutRecord[] = events.map((e) => ({ partition, key: null, value: Buffer.from(e) }));
  return {
    offset: { topic: 'commands', partition, offset: 10n + BigInt(partition) },
    group: () => group(generation),
    records: [{ topic: 'events', messages }],
  };
}

const values = (cluster: ScriptedCluster, partition: number) =>
  cluster.committedValues('events', partition).map(String);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Lets the queued transaction start: what is committed after this waits for the next one. */
const started = () => new Promise((r) => setImmediate(r));

async function settled(cluster: ScriptedCluster) {
  await sleep(cluster.marker_delay_ms + 20); // markers written
}

describe('one transaction per node commit', () => {
  it('merges the requests that arrive while a transaction runs into the next one', async () => {
    const { cluster, shared, transactions } = setup();
    await shared.ready();
    const first = shared.commit(request(0, ['a0']));
    await started();
    const rest = [
      shared.commit(request(1, ['b1'])),
      shared.commit(request(2, ['c2', 'c2+'])),
      shared.commit(request(3, [])),
    ];
    const acks = await Promise.all([first, ...rest]);
    assert.deepEqual(transactions, [1, 3], 'the first goes alone, the three queued behind it in one');
    assert.equal(cluster.step_counts.end_txn, 2);
    // Each partition finds its own events offset among the transaction's acks.
    const p2 = acks[2]!.find((a) => a.topicName === 'events' && a.partition === 2);
    assert.equal(p2?.baseOffset, '0');
    await settled(cluster);
    assert.deepEqual(
      [0, 1, 2, 3].map((p) => values(cluster, p)),
      [['a0'], ['b1'], ['c2', 'c2+'], []],
    );
    const committed = cluster.committed.get('g')?.get('commands');
    assert.deepEqual(
      [0, 1, 2, 3].map((p) => committed?.get(p)),
      ['10', '11', '12', '13'],
    );
    await shared.close();
  });

  it('a failed transaction rejects every request in it; the next starts on a new producer and commits', async () => {
    const { cluster, shared } = setup();
    await shared.ready();
    const epoch_before = cluster.txnState('node-1').epoch;
    cluster.faults.push({ step: 'end_txn', nth: 2, fault: 'timeout' });
    await shared.commit(request(0, ['a0']));
    const failing = [shared.commit(request(1, ['lost1'])), shared.commit(request(2, ['lost2']))];
    const results = await Promise.allSettled(failing);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    await shared.commit(request(1, ['b1']));
    assert.equal(cluster.txnState('node-1').epoch, epoch_before + 1, 'initialized again after the failure');
    await settled(cluster);
    assert.deepEqual(values(cluster, 1), ['b1'], 'the failed transaction left nothing visible');
    assert.deepEqual(values(cluster, 2), []);
    assert.equal(
      cluster.committed.get('g')?.get('commands')?.get(2),
      undefined,
      'no offset of the failed one',
    );
    await shared.close();
  });

  it('refuses a request whose partition left the generation, before anything is sent', async () => {
    const { cluster, shared, transactions } = setup();
    await shared.ready();
    const blocker = shared.commit(request(0, ['a0'], 8));
    await started();
    const stale = shared.commit(request(1, ['zombie'], 7));
    const kept = shared.commit(request(2, ['c2'], 8));
    await blocker;
    await assert.rejects(stale, GenerationMovedError);
    await kept;
    assert.deepEqual(transactions, [1, 1]);
    await settled(cluster);
    assert.deepEqual(values(cluster, 1), [], 'the stale partition wrote nothing');
    assert.deepEqual(values(cluster, 2), ['c2']);
    await shared.close();
  });

  it('a rebalance during the transaction: kept partitions go on in the new generation, revoked ones drop out', async () => {
    const { cluster, shared, transactions } = setup();
    await shared.ready();
    cluster.faults.push({ step: 'offsets', nth: 1, fault: 'illegal_generation' });
    let kept_reads = 0;
    const kept = { ...request(1, ['kept']), group: () => group(++kept_reads <= 2 ? 7 : 8) };
    const revoked = shared.commit(request(0, ['revoked'], 7)); // its consumer still says generation 7
    const committed = shared.commit(kept);
    await assert.rejects(revoked, GenerationMovedError);
    await committed;
    assert.deepEqual(transactions, [1], 'one transaction, with the kept partition only');
    await settled(cluster);
    assert.deepEqual(values(cluster, 0), [], 'the revoked partition wrote nothing');
    assert.deepEqual(values(cluster, 1), ['kept']);
    assert.equal(cluster.committed.get('g')?.get('commands')?.get(0), undefined);
    assert.equal(cluster.committed.get('g')?.get('commands')?.get(1), '11');
    await shared.close();
  });

  it('a request whose task ended is withdrawn before its offsets are sent, queued or between attempts', async () => {
    const { cluster, shared, transactions } = setup();
    await shared.ready();
    // The first transaction's offsets: answered CONCURRENT_TRANSACTIONS after 100 ms, then retried.
    cluster.faults.push({ step: 'offsets', nth: 1, fault: 'busy', delay_ms: 100 });
    let alive_0 = true;
    let alive_1 = true;
    const running = shared.commit({ ...request(0, ['old0']), live: () => alive_0 });
    await started();
    const queued = shared.commit({ ...request(1, ['old1']), live: () => alive_1 });
    const other = shared.commit(request(2, ['c2']));
    alive_0 = false; // both tasks close while the first transaction waits for its coordinator
    alive_1 = false;
    await assert.rejects(running, RequestWithdrawnError);
    await assert.rejects(queued, RequestWithdrawnError);
    await other;
    assert.deepEqual(transactions, [1], 'only the live request committed');
    await settled(cluster);
    assert.deepEqual([values(cluster, 0), values(cluster, 1)], [[], []], 'the ended tasks wrote nothing');
    assert.equal(cluster.committed.get('g')?.get('commands')?.get(0), undefined);
    assert.equal(cluster.committed.get('g')?.get('commands')?.get(1), undefined);
    // A new task of partition 1 commits at once: the ended one's request no longer holds its place.
    await shared.commit(request(1, ['new1']));
    await shared.close();
  });

  it("settledFor waits for the running transaction that holds the partition's request, not for others", async () => {
    const { cluster, shared } = setup();
    await shared.ready();
    cluster.faults.push({ step: 'end_txn', nth: 1, fault: 'busy', delay_ms: 150 });
    const running = shared.commit(request(0, ['a0'])).catch((err) => err);
    await started();
    const order: string[] = [];
    const p0 = shared.settledFor(0).then(() => order.push('p0 settled'));
    const p3 = shared.settledFor(3).then(() => order.push('p3 settled'));
    void running.then(() => order.push('transaction ended'));
    await Promise.all([p0, p3, running]);
    assert.deepEqual(order, ['p3 settled', 'transaction ended', 'p0 settled']);
    await shared.close();
  });

  it('keeps each transaction within the records bound (a larger request goes alone)', async () => {
    const { shared, transactions } = setup({ records_max: 3 });
    await shared.ready();
    const first = shared.commit(request(0, ['x']));
    await started();
    const queued = [
      shared.commit(request(1, ['a', 'b'])),
      shared.commit(request(2, ['c'])),
      shared.commit(request(3, ['d', 'e', 'f', 'g'])),
    ];
    await Promise.all([first, ...queued]);
    assert.deepEqual(transactions, [1, 2, 1], '2 + 1 records fit; the 4-record one goes alone');
    await shared.close();
  });

  it('asserts one request per partition at a time, and its queue bound', async () => {
    const { shared } = setup();
    await shared.ready();
    const first = shared.commit(request(0, ['x']));
    const second = shared.commit(request(1, ['y']));
    assert.throws(() => shared.commit(request(1, ['y again'])), /two commits of partition 1/);
    await Promise.all([first, second]);
    await shared.close();
  });
});

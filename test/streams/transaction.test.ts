import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { shard } from '../../src/domain/index.js';
import { type BatchOutput, decode, encode, type ReplyRecord } from '../../src/protocol/wire.js';
import type { ProduceAck, TransactionalProducer, TransactionSteps } from '../../src/streams/kafka-port.js';
import { topicNames } from '../../src/streams/topics.js';
import {
  commitTransaction,
  coordinatorBusyType,
  default_retry_policy,
  eventsEndAfter,
  retryBusy,
  routeRecords,
  StepFailedError,
  type TopicMessages,
} from '../../src/streams/transaction.js';
import { protocolError } from '../support/kafka-errors.js';

/**
 * A scripted transactional producer over a model of one partition's log: records of a transaction become
 * visible only when its EndTxn commits; an abort, or a failure before EndTxn, leaves nothing. Each request
 * (sendOffsets = AddOffsetsToTxn + TxnOffsetCommit, sendBatch = AddPartitionsToTxn + Produce, commit =
 * EndTxn) takes the next answer of its script: undefined is success, an Error is thrown. For EndTxn, an
 * `ambiguous` answer commits on the broker and still fails on the client (a timeout after the write).
 */
type Answer = Error | undefined | 'ambiguous';
class ScriptedBroker implements Pick<TransactionalProducer, 'transaction'> {
  readonly committed: { records: TopicMessages[]; offset: string }[] = [];
  readonly requests: string[] = [];
  aborts = 0;
  constructor(readonly script: Record<'offsets' | 'produce' | 'end_txn', Answer[]>) {}

  async transaction(): Promise<TransactionSteps> {
    let offset: string | null = null;
    let records: TopicMessages[] = [];
    let ended = false;
    const next = (step: 'offsets' | 'produce' | 'end_txn') => {
      if (ended) throw new Error('scripted broker: request after the transaction ended');
      this.requests.push(step);
      return this.script[step].shift();
    };
    return {
      sendOffsets: async (o) => {
        const answer = next('offsets');
        if (answer instanceof Error) throw answer;
        offset = o.topics[0]!.partitions[0]!.offset;
      },
      sendBatch: async ({ topicMessages }) => {
        const answer = next('produce');
        if (answer instanceof Error) throw answer;
        records = topicMessages;
        const base = this.committed.reduce(
          (n, t) => n + t.records.reduce((m, r) => m + r.messages.length, 0),
          0,
        );
        return topicMessages.map(
          (t) => ({ topicName: t.topic, partition: 0, baseOffset: String(base) }) satisfies ProduceAck,
        );
      },
      commit: async () => {
        const answer = next('end_txn');
        ended = true;
        if (answer instanceof Error) throw answer;
        if (offset === null) throw new Error('scripted broker: EndTxn without offsets');
        this.committed.push({ records, offset });
        if (answer === 'ambiguous') throw protocolError('REQUEST_TIMED_OUT', 7, true);
      },
      abort: async () => {
        if (ended) throw new Error('scripted broker: abort after EndTxn (a client may refuse it)');
        ended = true;
        this.aborts++;
      },
    };
  }
}

/** A record as the engine produces it (the partition always explicit). */
const out = (value: string) => ({ partition: 0, key: null, value: Buffer.from(value) });
const busy = () => protocolError('CONCURRENT_TRANSACTIONS', 51, true);
const fenced = () => protocolError('PRODUCER_FENCED', 90, false);
const records: TopicMessages[] = [{ topic: 'events', messages: [out('e1'), out('e2')] }];
const request = (offset: bigint, recs = records) => ({
  group_id: 'g',
  offset: { topic: 'commands', partition: 0, offset },
  records: recs,
});
const no_sleep = async () => {};

describe('transaction: one commit, scripted coordinator answers', () => {
  it('sends the offsets first, then the records, then EndTxn', async () => {
    const broker = new ScriptedBroker({ offsets: [], produce: [], end_txn: [] });
    await commitTransaction(broker, request(5n), default_retry_policy, () => {}, no_sleep);
    assert.deepEqual(broker.requests, ['offsets', 'produce', 'end_txn']);
    assert.deepEqual(broker.committed, [{ records, offset: '5' }]);
  });

  it('retries CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS and NOT_COORDINATOR with a capped backoff', async () => {
    const answers = [
      busy(),
      protocolError('COORDINATOR_LOAD_IN_PROGRESS', 14, true),
      protocolError('NOT_COORDINATOR', 16, true),
      busy(),
      busy(),
      busy(),
      busy(),
    ];
    const broker = new ScriptedBroker({ offsets: answers, produce: [], end_txn: [] });
    const retried: string[] = [];
    const slept: number[] = [];
    await commitTransaction(
      broker,
      request(9n),
      default_retry_policy,
      (t) => retried.push(t),
      async (ms) => {
        slept.push(ms);
      },
    );
    assert.deepEqual(retried, [
      'CONCURRENT_TRANSACTIONS',
      'COORDINATOR_LOAD_IN_PROGRESS',
      'NOT_COORDINATOR',
      'CONCURRENT_TRANSACTIONS',
      'CONCURRENT_TRANSACTIONS',
      'CONCURRENT_TRANSACTIONS',
      'CONCURRENT_TRANSACTIONS',
    ]);
    assert.deepEqual(slept, [20, 40, 80, 160, 320, 320, 320]);
    assert.deepEqual(broker.committed, [{ records, offset: '9' }]);
    assert.equal(broker.aborts, 0);
  });

  it('a generation that moved under a kept partition: the offsets go again in the generation it joined', async () => {
    const sent: (number | undefined)[] = [];
    const broker = new ScriptedBroker({
      offsets: [
        protocolError('REBALANCE_IN_PROGRESS', 27, false),
        protocolError('ILLEGAL_GENERATION', 22, false),
      ],
      produce: [],
      end_txn: [],
    });
    const inner = broker.transaction.bind(broker);
    broker.transaction = async () => {
      const steps = await inner();
      const send = steps.sendOffsets;
      steps.sendOffsets = (o) => {
        sent.push(o.group?.generation_id);
        return send(o);
      };
      return steps;
    };
    // The consumer's view: generation 4 until its rejoin completes (after the second attempt), then 5.
    const group = () => ({
      group_id: 'g',
      generation_id: sent.length >= 2 ? 5 : 4,
      member_id: 'm',
      coordinator_id: 1,
    });
    const retried: string[] = [];
    await commitTransaction(
      broker,
      { ...request(7n), group },
      default_retry_policy,
      (t) => retried.push(t),
      no_sleep,
    );
    assert.deepEqual(sent, [4, 4, 5]);
    assert.deepEqual(retried, ['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION']);
    assert.deepEqual(broker.committed, [{ records, offset: '7' }]);
  });

  it('a fenced producer is never retried, nor a generation refused past attempts_max', async () => {
    const fenced_broker = new ScriptedBroker({ offsets: [fenced()], produce: [], end_txn: [] });
    await assert.rejects(
      commitTransaction(fenced_broker, request(1n), default_retry_policy, () => {}, no_sleep),
      (err: unknown) => err instanceof StepFailedError && err.step === 'offsets',
    );
    assert.equal(fenced_broker.requests.length, 1);
    const lost = new ScriptedBroker({
      offsets: Array.from({ length: 50 }, () => protocolError('ILLEGAL_GENERATION', 22, false)),
      produce: [],
      end_txn: [],
    });
    await assert.rejects(commitTransaction(lost, request(1n), default_retry_policy, () => {}, no_sleep));
    assert.equal(lost.requests.length, default_retry_policy.attempts_max);
    assert.deepEqual(lost.committed, []);
    assert.equal(lost.aborts, 1);
  });

  it('gives up after attempts_max busy answers: aborted, nothing committed', async () => {
    const broker = new ScriptedBroker({
      offsets: Array.from({ length: 50 }, busy),
      produce: [],
      end_txn: [],
    });
    let retries = 0;
    const policy = { attempts_max: 4, backoff_ms_first: 20, backoff_ms_max: 320 };
    const err = await commitTransaction(broker, request(1n), policy, () => retries++, no_sleep).catch(
      (e) => e,
    );
    assert.ok(err instanceof StepFailedError);
    assert.equal(err.step, 'offsets');
    assert.equal(retries, 3);
    assert.equal(broker.requests.length, 4);
    assert.equal(broker.aborts, 1);
    assert.deepEqual(broker.committed, []);
  });

  it('does not retry a fenced producer or any other error', async () => {
    for (const [step, script] of [
      ['offsets', { offsets: [fenced()], produce: [], end_txn: [] }],
      ['produce', { offsets: [], produce: [fenced()], end_txn: [] }],
      [
        'produce',
        { offsets: [], produce: [protocolError('INVALID_PRODUCER_EPOCH', 47, false)], end_txn: [] },
      ],
    ] as const) {
      const broker = new ScriptedBroker({
        offsets: [...script.offsets],
        produce: [...script.produce],
        end_txn: [],
      });
      let retries = 0;
      const err = await commitTransaction(
        broker,
        request(1n),
        default_retry_policy,
        () => retries++,
        no_sleep,
      ).catch((e) => e);
      assert.ok(err instanceof StepFailedError);
      assert.equal(err.step, step);
      assert.equal(retries, 0);
      assert.equal(broker.aborts, 1);
      assert.deepEqual(broker.committed, []);
    }
  });

  it('a failed EndTxn is not aborted (its outcome is unknown) and is reported as the end_txn step', async () => {
    const broker = new ScriptedBroker({
      offsets: [],
      produce: [],
      end_txn: [protocolError('REQUEST_TIMED_OUT', 7, true)],
    });
    const err = await commitTransaction(broker, request(3n), default_retry_policy, () => {}, no_sleep).catch(
      (e) => e,
    );
    assert.ok(err instanceof StepFailedError);
    assert.equal(err.step, 'end_txn');
    assert.equal(broker.aborts, 0);
  });

  it('an offsets-only transaction (deferred read offsets) sends no produce request', async () => {
    const broker = new ScriptedBroker({ offsets: [busy()], produce: [], end_txn: [] });
    const metadata = await commitTransaction(
      broker,
      request(12n, []),
      default_retry_policy,
      () => {},
      no_sleep,
    );
    assert.deepEqual(metadata, []);
    assert.deepEqual(broker.requests, ['offsets', 'offsets', 'end_txn']);
    assert.deepEqual(broker.committed, [{ records: [], offset: '12' }]);
  });

  /**
   * Over any script of answers, the engine's contract: a commit that resolved is in the log exactly once; a
   * commit that failed before EndTxn left nothing; an ambiguous EndTxn may have committed, and only then is
   * it in the log. So a rebuild from the log (what the processor does after every failure) holds every
   * commit the engine acknowledged and nothing it did not send to EndTxn. Records are never sent twice.
   */
  it('property: the log holds exactly the acknowledged commits (plus ambiguous ones the broker took)', async () => {
    const answer = fc.oneof(
      { weight: 6, arbitrary: fc.constant(undefined) },
      { weight: 3, arbitrary: fc.constant('busy' as const) },
      { weight: 1, arbitrary: fc.constantFrom('fenced' as const, 'timeout' as const, 'ambiguous' as const) },
    );
    const make = (a: 'busy' | 'fenced' | 'timeout' | 'ambiguous' | undefined): Answer =>
      a === 'busy'
        ? busy()
        : a === 'fenced'
          ? fenced()
          : a === 'timeout'
            ? protocolError('REQUEST_TIMED_OUT', 7, true)
            : a;
    await fc.assert(
      fc.asyncProperty(
        fc.array(answer, { maxLength: 40 }),
        fc.array(answer, { maxLength: 20 }),
        fc.array(
          answer.filter((a) => a !== 'busy'),
          { maxLength: 20 },
        ),
        async (offsets, produce, end_txn) => {
          const broker = new ScriptedBroker({
            offsets: offsets.filter((a) => a !== 'ambiguous').map(make),
            produce: produce.filter((a) => a !== 'ambiguous').map(make),
            end_txn: end_txn.map(make),
          });
          const acknowledged: string[] = [];
          const ambiguous: string[] = [];
          for (let n = 1n; n <= 8n; n++) {
            const recs = [{ topic: 'events', messages: [out(`cmd-${n}`)] }];
            try {
              await commitTransaction(broker, request(n, recs), default_retry_policy, () => {}, no_sleep);
              acknowledged.push(`cmd-${n}`);
            } catch (err) {
              assert.ok(err instanceof StepFailedError);
              if (err.step === 'end_txn') ambiguous.push(`cmd-${n}`);
            }
          }
          const logged = broker.committed.flatMap((t) =>
            t.records.flatMap((r) => r.messages.map((m) => String(m.value))),
          );
          assert.equal(new Set(logged).size, logged.length, 'no record twice');
          for (const cmd of acknowledged)
            assert.ok(logged.includes(cmd), `${cmd} acknowledged but not in the log`);
          for (const cmd of logged)
            assert.ok(
              acknowledged.includes(cmd) || ambiguous.includes(cmd),
              `${cmd} in the log, never sent to EndTxn`,
            );
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('transaction: error classes and the events end', () => {
  it('classifies coordinator-busy answers by protocol type, through cause chains', () => {
    assert.equal(coordinatorBusyType(busy()), 'CONCURRENT_TRANSACTIONS');
    const wrapped = new Error('retries exceeded', { cause: busy() });
    assert.equal(coordinatorBusyType(wrapped), 'CONCURRENT_TRANSACTIONS');
    assert.equal(coordinatorBusyType(fenced()), null);
    assert.equal(coordinatorBusyType(new Error('CONCURRENT_TRANSACTIONS')), null, 'never by message text');
  });

  it('retryBusy returns the first success and rethrows other errors at once', async () => {
    let calls = 0;
    assert.equal(
      await retryBusy(
        async () => (++calls < 3 ? Promise.reject(busy()) : 'ok'),
        default_retry_policy,
        () => {},
        no_sleep,
      ),
      'ok',
    );
    assert.equal(calls, 3);
    await assert.rejects(
      retryBusy(
        async () => Promise.reject(fenced()),
        default_retry_policy,
        () => assert.fail('retried'),
        no_sleep,
      ),
    );
  });

  it('the events end is the offset after the last event (the commit marker), and events need an offset', () => {
    // A node transaction spans several events partitions: each task reads its own partition's offset.
    const meta: ProduceAck[] = [
      { topicName: 'events', partition: 1, baseOffset: '7' },
      { topicName: 'events', partition: 0, baseOffset: '40' },
    ];
    const p0 = { topic: 'events', partition: 0 };
    assert.equal(eventsEndAfter(meta, p0, 3), 43n);
    assert.equal(eventsEndAfter(meta, { topic: 'events', partition: 1 }, 2), 9n);
    assert.equal(eventsEndAfter([], p0, 0), null);
    assert.throws(() => eventsEndAfter([], p0, 2), /transaction invariant/);
    assert.throws(() => eventsEndAfter(meta, { topic: 'events', partition: 2 }, 1), /transaction invariant/);
  });
});

describe('transaction: routing a lane batch into its records', () => {
  const names = topicNames('rt');
  const route = { names, partitions_total: 8, local_topic: 'rt.replies.me' };
  const reply = { ok: true, status: 200, body: {} } as const;
  const event = { type: 'deposited', event_id: 'e1', account_id: 'a', amount: 1, time_ms: 0 };
  const replyRecord = (request_id: string) => ({ key: request_id, value: encode({ request_id, reply }) });
  const output = (extra: Partial<BatchOutput>): BatchOutput =>
    ({ events: [], replies: [], follow_ups: [], rejected: [], dirty_total: 0, ...extra }) as BatchOutput;

  it('events to the partition, own replies kept local, others grouped by reply topic, legs to their owner', () => {
    const local: ReplyRecord[] = [];
    const payee = 'acct_payee';
    const records = routeRecords(
      3,
      output({
        events: [{ key: 'a', value: encode(event) }],
        replies: [
          { reply_to: 'rt.replies.me', ...replyRecord('r1') },
          { reply_to: 'rt.replies.other', ...replyRecord('r2') },
          { reply_to: 'rt.replies.other', ...replyRecord('r3') },
        ],
        follow_ups: [{ partition: shard(payee) % 8, key: 'leg1', value: encode({ command: 'leg' }) }],
      }),
      route,
      local,
    );
    assert.deepEqual(local, [{ request_id: 'r1', reply }]);
    assert.deepEqual(
      records.map((r) => [r.topic, r.messages.map((m) => m.partition)]),
      [
        [names.events, [3]],
        ['rt.replies.other', [0, 0]],
        [names.commands, [shard(payee) % 8]],
      ],
    );
    assert.deepEqual(
      records[1]!.messages.map((m) => [m.key, decode<ReplyRecord>(m.value).request_id]),
      [
        ['r2', 'r2'],
        ['r3', 'r3'],
      ],
    );
    // The lane's bytes go on the wire as they are: nothing is serialized again here.
    assert.deepEqual(decode(records[0]!.messages[0]!.value), event);
    assert.equal(records[0]!.messages[0]!.key, 'a');
    assert.deepEqual(records[2]!.messages[0]!.key, 'leg1');
  });

  it('a read-only batch has no records at all (it takes no transaction)', () => {
    const local: ReplyRecord[] = [];
    const only_local = output({ replies: [{ reply_to: 'rt.replies.me', ...replyRecord('r') }] });
    assert.deepEqual(routeRecords(0, only_local, route, local), []);
    assert.equal(local.length, 1);
  });

  it('a follow-up leg without an owner is a routing invariant', () => {
    const orphan = output({ follow_ups: [{ partition: null, key: 'x', value: encode({}) }] });
    assert.throws(() => routeRecords(0, orphan, route, []), /routing invariant: follow-up x has no owner/);
    const outside = output({ follow_ups: [{ partition: 8, key: 'y', value: encode({}) }] });
    assert.throws(() => routeRecords(0, outside, route, []), /routing invariant: follow-up y has no owner/);
  });
});

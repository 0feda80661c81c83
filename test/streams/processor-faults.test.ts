import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Lanes } from '../../src/actors/lanes.js';
import {
  type Command,
  canonicalState,
  createPartitionState,
  type DomainEvent,
  evolve,
  paymentIdFor,
  type Reply,
  shard,
} from '../../src/domain/index.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { stateFromParts } from '../../src/protocol/checkpoint-delta.js';
import { partitionOf } from '../../src/protocol/route.js';
import { decode, encode } from '../../src/protocol/wire.js';
import { Checkpoints } from '../../src/streams/checkpoints.js';
import { StreamProcessor } from '../../src/streams/processor.js';
import { topicNames } from '../../src/streams/topics.js';
import { redis_url } from '../integration/helpers.js';
import { metricValue } from '../support/metrics.js';
import { type Fault, ScriptedCluster, type Step } from '../support/scripted-kafka.js';

/**
 * The stream processor against a scripted Kafka (test/support/scripted-kafka.ts), one partition, with the
 * walker workload of issue 12 sent one command at a time: every reply is checked against a model, and after
 * every injected failure (CONCURRENT_TRANSACTIONS, a loading or moved coordinator, fencing, timeouts, an
 * EndTxn that fails before or after committing) the final state must be exactly the fold of the committed
 * changelog, every command applied once. The stand-in answers EndTxn before writing its markers (30 ms
 * later), the window in which the old rebuild replayed short of the partition's last commit.
 */
const names = topicNames('sk');
const local_topic = 'sk.replies.scripted';
const T0_MS = Date.UTC(2026, 11, 2, 12, 0, 0);

/** A lane that reports itself saturated for the first `checks` queue-depth reads, then tells the truth. */
class SaturatedLanes extends Lanes {
  #checks: number;
  constructor(options: ConstructorParameters<typeof Lanes>[0], checks: number) {
    super(options);
    this.#checks = checks;
  }
  override queueDepth(lane: number): number {
    if (this.#checks > 0) {
      this.#checks--;
      return Number.MAX_SAFE_INTEGER;
    }
    return super.queueDepth(lane);
  }
}

class Harness {
  readonly cluster = new ScriptedCluster();
  readonly metrics = createMetrics();
  readonly redis = new Redis(redis_url);
  readonly key_prefix = `test:scripted:${randomUUID()}:`;
  readonly lanes: Lanes;
  readonly waiting = new Map<string, (reply: Reply) => void>();
  processor: StreamProcessor;
  /** Sends that got no reply and were repeated (ambiguous commits). */
  unanswered = 0;
  #sequence = 0;

  constructor(
    readonly partitions_total = 1,
    readonly lane_batches_in_flight_max = 64,
    readonly batch_size_max = 100,
    /** Reports the lane saturated for this many of the processor's checks (then the real queue depth). */
    saturated_checks = 0,
    /** One producer and transaction per partition, or one node transaction (pipelined) for all. */
    readonly scope: 'partition' | 'node' = 'partition',
  ) {
    this.cluster.createTopic(names.commands, partitions_total);
    this.cluster.createTopic(names.events, partitions_total);
    const options = { lanes: 1, partitions_total, lane_queue_max: 64 };
    this.lanes = saturated_checks > 0 ? new SaturatedLanes(options, saturated_checks) : new Lanes(options);
    this.processor = this.#newProcessor();
  }

  #newProcessor(): StreamProcessor {
    // SCRIPTED_LOG=debug prints what the processor did, to find the step a failing scenario stopped at.
    const log = createLogger(process.env.SCRIPTED_LOG ?? 'silent', 'scripted');
    return new StreamProcessor({
      kafka: this.cluster.port(),
      lanes: this.lanes,
      checkpoints: new Checkpoints({
        redis: this.redis,
        log,
        metrics: this.metrics,
        key_prefix: this.key_prefix,
        log_interval_ms: 60_000,
      }),
      names,
      app_id: 'sk',
      partitions_total: this.partitions_total,
      lane_batches_in_flight_max: this.lane_batches_in_flight_max,
      batch_size_max: this.batch_size_max,
      checkpoint_interval_ms: 10,
      checkpoint_dirty_max: 1_000,
      session_timeout_ms: 10_000,
      restore_timeout_ms: 5_000,
      transactions:
        this.scope === 'node'
          ? { per: 'node', node_id: 'scripted', commit_interval_ms: 0, records_max: 1_000 }
          : { per: 'partition' },
      log,
      metrics: this.metrics,
      retry_policy: { attempts_max: 8, backoff_ms_first: 5, backoff_ms_max: 40 },
      local_replies: {
        topic: local_topic,
        deliver: (replies) => {
          for (const r of replies) this.waiting.get(r.request_id)?.(r.reply);
        },
      },
    });
  }

  async start(): Promise<void> {
    await this.processor.start();
    await until(() => this.processor.ready, 10_000, 'processor ready');
  }

  /**
   * Sends one command as the gateway would (a plain record with reply_to) and waits for its reply. Without
   * one within a second (an EndTxn that committed but failed on the client: the processor cannot know, so
   * it answers nothing; the gateway would answer 202), it is sent again with the same command id, as a
   * client retries with its Idempotency-Key: the domain answers a repeat with the stored reply.
   */
  async send(body: Record<string, unknown>): Promise<Reply> {
    const command = {
      command_id: `c${++this.#sequence}`,
      time_ms: T0_MS + this.#sequence,
      ...body,
    } as Command;
    for (let attempt = 1; attempt <= 5; attempt++) {
      const request_id = `${command.command_id}-${attempt}`;
      const reply = new Promise<Reply | null>((resolve) => {
        const timer = setTimeout(() => resolve(null), 1_000);
        this.waiting.set(request_id, (r) => {
          clearTimeout(timer);
          resolve(r);
        });
      });
      const envelope = { command, reply_to: local_topic, request_id, traceparent: null };
      const partition = partitionOf(command, this.partitions_total);
      assert.ok(partition !== null);
      this.cluster.append(names.commands, partition, encode(envelope));
      const answered = await reply;
      this.waiting.delete(request_id);
      if (answered) return answered;
      this.unanswered++;
    }
    throw new Error(`no reply to ${command.type} ${command.command_id} after 5 attempts`);
  }

  /** The committed changelog folded by the domain on a fresh state: what any rebuild must arrive at. */
  foldOfLog(): ReturnType<typeof canonicalState> {
    const state = createPartitionState(0);
    for (const value of this.cluster.committedValues(names.events, 0))
      evolve(state, decode<DomainEvent>(value));
    return canonicalState(state);
  }

  /**
   * The lane's state as its checkpoint stored it in Redis, once that checkpoint covers the whole changelog:
   * what the processor holds and what a restore would load.
   */
  async checkpointedState(): Promise<ReturnType<typeof canonicalState>> {
    const checkpoints = new Checkpoints({
      redis: this.redis,
      log: createLogger('silent', 'scripted'),
      metrics: createMetrics(),
      key_prefix: this.key_prefix,
      log_interval_ms: 60_000,
    });
    // One more committed change makes the next checkpoint due; the marker closes the log.
    assert.ok(
      (await this.send({ type: 'open_account', account_id: 'acct_last', currency: 'usd', kind: 'customer' }))
        .ok,
    );
    const end = () => BigInt(this.cluster.log(names.events, 0).length - 1);
    const deadline_ms = Date.now() + 10_000;
    for (;;) {
      const stored = await checkpoints.load(0);
      if (stored && stored.offset === end()) return canonicalState(stateFromParts(stored.parts));
      if (Date.now() > deadline_ms) throw new Error(`checkpoint at ${stored?.offset}, log end ${end()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    await this.processor.stop();
    await this.lanes.close();
    const keys = await this.redis.keys(`${this.key_prefix}*`);
    if (keys.length > 0) await this.redis.del(...keys);
    await this.redis.quit();
  }
}

async function until(check: () => boolean, timeout_ms: number, what: string): Promise<void> {
  const deadline_ms = Date.now() + timeout_ms;
  while (!check()) {
    if (Date.now() > deadline_ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Accounts whose shard lands on partition 0 of 1: every id does. */
const customer = 'acct_c';
const merchant = 'acct_m';

/**
 * One round of the walker workload through the processor: authorize → read → capture → read → refund 1000
 * → read → refund 2500 (refused) → read → refund 2000 → read → refund 1 (refused) → read. Returns the
 * divergences from the model.
 */
async function walk(h: Harness, rounds: number): Promise<string[]> {
  const divergences: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const id = paymentIdFor(shard(customer), `round${round}`);
    const model = { received: 0, capturable: 5000, refunded_or_pending: 0 };
    const read = async (after: string) => {
      const r = await h.send({ type: 'get_payment', payment_id: id });
      const b = r.ok ? r.body : {};
      const seen = Number(b.amount_refunded) + Number(b.amount_refund_pending);
      if (
        !r.ok ||
        b.amount_received !== model.received ||
        b.amount_capturable !== model.capturable ||
        seen !== model.refunded_or_pending
      ) {
        divergences.push(
          `round ${round} read after ${after}: ${JSON.stringify(r)} model ${JSON.stringify(model)}`,
        );
      }
    };
    const created = await h.send({
      type: 'create_payment',
      payment_id: id,
      source: customer,
      destination: merchant,
      amount: 5000,
      currency: 'usd',
      capture: false,
    });
    if (!created.ok || created.status !== 201)
      divergences.push(`round ${round} authorize: ${JSON.stringify(created)}`);
    await read('authorize');
    const captured = await h.send({ type: 'capture_payment', payment_id: id, amount: 3000 });
    if (!captured.ok) divergences.push(`round ${round} capture: ${JSON.stringify(captured)}`);
    model.received = 3000;
    model.capturable = 0;
    await read('capture');
    for (const [amount, accept] of [
      [1000, true],
      [2500, false],
      [2000, true],
      [1, false],
    ] as const) {
      const refund = await h.send({ type: 'create_refund', payment_id: id, amount });
      if (refund.ok !== accept)
        divergences.push(`round ${round} refund ${amount}: ${JSON.stringify(refund)}`);
      if (accept) model.refunded_or_pending += amount;
      await read(`refund ${amount}`);
    }
  }
  return divergences;
}

async function scenario(
  faults: { step: Step; nth: number; fault: Fault }[],
  scope: 'partition' | 'node',
  rounds = 3,
) {
  const h = new Harness(1, 64, 100, 0, scope);
  h.cluster.faults.push(...faults);
  try {
    await h.start();
    for (const [id, kind] of [
      [customer, 'customer'],
      [merchant, 'merchant'],
    ] as const) {
      const opened = await h.send({ type: 'open_account', account_id: id, currency: 'usd', kind });
      assert.ok(opened.ok, JSON.stringify(opened));
    }
    assert.ok(
      (await h.send({ type: 'deposit', account_id: customer, amount: 1_000_000, currency: 'usd' })).ok,
    );
    const divergences = await walk(h, rounds);
    // Let the refund legs settle (they are follow-ups on the same partition), then compare.
    await until(
      () => h.cluster.lso(names.commands, 0) === h.cluster.log(names.commands, 0).length,
      10_000,
      'legs',
    );
    await new Promise((r) => setTimeout(r, 300));
    const account = await h.send({ type: 'get_account', account_id: customer });
    const metrics = await h.metrics.registry.metrics();
    return { h, divergences, account, metrics, fired: [...h.cluster.fired], unfired: [...h.cluster.faults] };
  } catch (err) {
    await h.close().catch(() => {});
    throw err;
  }
}

for (const scope of ['partition', 'node'] as const)
  describe(`stream processor against a scripted Kafka that injects every error class (transactions per ${scope})`, {
    timeout: 180_000,
  }, () => {
    const harnesses: Harness[] = [];
    // Bounded: a harness whose processor cannot stop fails the hook by name instead of holding the run.
    after(
      async () => {
        for (const h of harnesses) await h.close().catch(() => {});
      },
      { timeout: 30_000 },
    );

    it('retries coordinator-busy answers without failing a transaction; reads take none', async () => {
      const faults = [3, 4, 9, 15, 16, 17, 22].map((nth, i) => ({
        step: 'offsets' as const,
        nth,
        fault: (['busy', 'coordinator_loading', 'not_coordinator'] as const)[i % 3]!,
      }));
      const r = await scenario(faults, scope);
      harnesses.push(r.h);
      assert.deepEqual(r.divergences, []);
      assert.deepEqual(r.unfired, [], 'every scripted fault was met');
      assert.equal(metricValue(r.metrics, 'transactions_aborted_total'), 0);
      assert.ok(metricValue(r.metrics, 'transaction_retries_total') >= faults.length);
      assert.ok(metricValue(r.metrics, 'offsets_deferred_total') > 0, 'reads deferred their offsets');
      assert.deepEqual(await r.h.checkpointedState(), r.h.foldOfLog());
    });

    it('pauses partitions whose lane is saturated and resumes them: every command applied once', async () => {
      // Chunks of 5, and the lane reported saturated for the first 40 checks: whether real batches queue up on
      // the lane at the moment a chunk starts depends on timing, the reaction to it must not.
      const h = new Harness(4, 1, 5, 40, scope);
      harnesses.push(h);
      await h.start();
      // One account on each partition.
      const accounts: string[] = [];
      for (let i = 0; accounts.length < 4; i++) {
        const id = `acct_p${i}`;
        if (!accounts.some((a) => shard(a) % 4 === shard(id) % 4)) accounts.push(id);
      }
      for (const id of accounts) {
        assert.ok(
          (await h.send({ type: 'open_account', account_id: id, currency: 'usd', kind: 'customer' })).ok,
        );
      }
      // Four partitions' deposits at once on one lane with room for one queued batch: the consumer must
      // pause some partitions and resume them once the lane drains.
      const replies = await Promise.all(
        accounts.flatMap((account_id) =>
          Array.from({ length: 25 }, (_, i) =>
            h.send({ type: 'deposit', account_id, amount: i + 1, currency: 'usd' }),
          ),
        ),
      );
      assert.ok(replies.every((r) => r.ok));
      const metrics = await h.metrics.registry.metrics();
      assert.ok(metricValue(metrics, 'lane_pauses_total') > 0, 'saturated lanes paused their partitions');
      for (const account_id of accounts) {
        const account = await h.send({ type: 'get_account', account_id });
        assert.ok(account.ok);
        assert.equal(account.body.posted, (25 * 26) / 2, account_id);
      }
    });

    it('concurrent chunks (pipelined with node transactions) through failed commits: each deposit applied once', async () => {
      // Chunks of 5 and 60 deposits in flight on 2 partitions: with node transactions a task's next chunk is
      // applied while its previous one commits, so failures land with applied chunks chained behind them.
      const h = new Harness(2, 64, 5, 0, scope);
      harnesses.push(h);
      h.cluster.faults.push(
        { step: 'end_txn', nth: 4, fault: 'timeout' },
        { step: 'produce', nth: 7, fault: 'timeout' },
        { step: 'end_txn', nth: 10, fault: 'end_txn_timeout_after_commit' },
      );
      await h.start();
      const accounts: string[] = [];
      for (let i = 0; accounts.length < 2; i++) {
        const id = `acct_q${i}`;
        if (!accounts.some((a) => shard(a) % 2 === shard(id) % 2)) accounts.push(id);
      }
      for (const id of accounts) {
        assert.ok(
          (await h.send({ type: 'open_account', account_id: id, currency: 'usd', kind: 'customer' })).ok,
        );
      }
      const replies = await Promise.all(
        accounts.flatMap((account_id) =>
          Array.from({ length: 30 }, (_, i) =>
            h.send({ type: 'deposit', account_id, amount: i + 1, currency: 'usd' }),
          ),
        ),
      );
      assert.ok(replies.every((r) => r.ok));
      assert.deepEqual(h.cluster.faults, [], `every scripted fault was met (fired: ${h.cluster.fired})`);
      assert.ok(metricValue(await h.metrics.registry.metrics(), 'transactions_aborted_total') >= 3);
      for (const account_id of accounts) {
        const account = await h.send({ type: 'get_account', account_id });
        assert.ok(account.ok);
        assert.equal(account.body.posted, (30 * 31) / 2, `${account_id}: every deposit once`);
      }
      for (const partition of [0, 1]) {
        const ids = h.cluster
          .committedValues(names.events, partition)
          .map((v) => decode<DomainEvent>(v).event_id);
        assert.equal(new Set(ids).size, ids.length, `partition ${partition}: no event committed twice`);
      }
    });

    it('a batch that waited behind a failing commit is not applied on the rebuilt state (order kept)', async () => {
      // A read-only chunk defers its offset; its flush takes the task's turn and waits for the next chunk's
      // pipelined commit, which is slow and then fails. A later batch queues behind the flush. By the time its
      // turn comes the task was rebuilt and seeked back: applying that stale batch would put its deposit
      // before the failed one in the log (and commit an offset past commands never applied).
      const h = new Harness(1, 64, 100, 0, scope);
      harnesses.push(h);
      await h.start();
      const account_id = 'acct_stale';
      assert.ok((await h.send({ type: 'open_account', account_id, currency: 'usd', kind: 'customer' })).ok);
      assert.ok((await h.send({ type: 'get_account', account_id })).ok); // read-only: offset deferred
      const produced = h.cluster.step_counts.produce;
      h.cluster.faults.push({ step: 'produce', nth: produced + 1, fault: 'timeout', delay_ms: 600 });
      const first = h.send({ type: 'deposit', account_id, amount: 1, currency: 'usd' });
      await new Promise((r) => setTimeout(r, 350)); // the flush (every 100 ms) has taken the turn by now
      const second = h.send({ type: 'deposit', account_id, amount: 2, currency: 'usd' });
      assert.ok((await first).ok && (await second).ok);
      assert.deepEqual(h.cluster.faults, [], `the slow fault was met (fired: ${h.cluster.fired})`);
      const account = await h.send({ type: 'get_account', account_id }); // its turn follows the commits
      const deposits = () =>
        h.cluster
          .committedValues(names.events, 0)
          .map((v) => decode<DomainEvent>(v))
          .flatMap((e) => (e.type === 'deposited' ? [e.amount] : []));
      await until(() => deposits().length >= 2, 2_000, 'the markers of both deposits');
      assert.deepEqual(deposits(), [1, 2], 'each deposit once, in the order of the commands');
      assert.equal(account.ok && account.body.posted, 3);
      assert.deepEqual(await h.checkpointedState(), h.foldOfLog(), 'the lane holds the fold of the log');
    });

    it('a partition revoked and assigned back while its commit waits: that chunk is not committed after the new task restored', async () => {
      // The 2026-12-03 chaos broker-kill violation (node transactions): our consumer gave its partitions up
      // during an outage and joined again as the same member of the same generation. The old task's request
      // still waited in the node's transaction; the new task restored from the committed offset and applied
      // the same commands again, and both commits landed (deposits twice, money created).
      const h = new Harness(1, 64, 100, 0, scope);
      harnesses.push(h);
      await h.start();
      const account_id = 'acct_regained';
      assert.ok((await h.send({ type: 'open_account', account_id, currency: 'usd', kind: 'customer' })).ok);
      // The deposit's offsets step: its first attempt is answered CONCURRENT_TRANSACTIONS after 400 ms.
      const offsets = h.cluster.step_counts.offsets;
      h.cluster.faults.push({ step: 'offsets', nth: offsets + 1, fault: 'busy', delay_ms: 400 });
      const deposit = h.send({ type: 'deposit', account_id, amount: 5, currency: 'usd' });
      await until(() => h.cluster.step_counts.offsets > offsets, 2_000, 'the deposit in its transaction');
      h.cluster.rebalance();
      assert.ok((await deposit).ok);
      assert.deepEqual(h.cluster.faults, [], `the slow fault was met (fired: ${h.cluster.fired})`);
      const deposits = () =>
        h.cluster
          .committedValues(names.events, 0)
          .map((v) => decode<DomainEvent>(v))
          .flatMap((e) => (e.type === 'deposited' ? [e.amount] : []));
      await until(() => deposits().length >= 1, 2_000, 'the deposit committed');
      await new Promise((r) => setTimeout(r, 600)); // the old task's chunk would have committed by now
      assert.deepEqual(deposits(), [5], 'the deposit applied once');
      const account = await h.send({ type: 'get_account', account_id });
      assert.equal(account.ok && account.body.posted, 5);
      assert.deepEqual(await h.checkpointedState(), h.foldOfLog(), 'the lane holds the fold of the log');
    });

    it('a changelog that does not fold even from the start: named on readiness, not retried in a loop', async () => {
      const h = new Harness(1, 64, 100, 0, scope);
      harnesses.push(h);
      // A committed deposit for an account the log never opened.
      const bad = {
        type: 'deposited',
        event_id: 'ev_bad',
        account_id: 'acct_ghost',
        amount: 5,
        time_ms: T0_MS,
      };
      h.cluster.append(names.events, 0, encode(bad));
      await h.processor.start();
      await until(() => h.processor.notReady.some((p) => p.reason !== undefined), 10_000, 'a restore reason');
      const [entry] = h.processor.notReady;
      assert.equal(entry?.partition, 0);
      assert.equal(entry?.state, 'RESTORING');
      assert.match(entry?.reason ?? '', /^ReplayDisagreementError: partition 0: replay does not apply/);
      assert.equal(h.processor.ready, false);
      await new Promise((r) => setTimeout(r, 1_500));
      const metrics = await h.metrics.registry.metrics();
      assert.equal(metricValue(metrics, 'restore_failures_total'), 1, 'reported once, not looped');
      assert.equal(metricValue(metrics, 'checkpoints_dropped_total'), 0, 'there was no checkpoint to blame');
    });

    for (const [name, faults] of [
      ['a fenced AddOffsetsToTxn', [{ step: 'offsets', nth: 6, fault: 'fenced' }]],
      ['a produce that times out', [{ step: 'produce', nth: 5, fault: 'timeout' }]],
      ['a fenced produce', [{ step: 'produce', nth: 8, fault: 'fenced' }]],
      ['an EndTxn that times out before committing', [{ step: 'end_txn', nth: 6, fault: 'timeout' }]],
      [
        'an EndTxn that commits and still fails',
        [{ step: 'end_txn', nth: 7, fault: 'end_txn_timeout_after_commit' }],
      ],
      [
        'failures back to back right after commits',
        [
          { step: 'offsets', nth: 5, fault: 'timeout' },
          { step: 'end_txn', nth: 9, fault: 'end_txn_timeout_after_commit' },
          { step: 'offsets', nth: 12, fault: 'fenced' },
          { step: 'produce', nth: 14, fault: 'timeout' },
        ],
      ],
    ] as [string, { step: Step; nth: number; fault: Fault }[]][]) {
      it(`after ${name}, the rebuilt state holds every committed effect and nothing else`, async () => {
        const r = await scenario(faults, scope);
        harnesses.push(r.h);
        assert.deepEqual(r.unfired, [], `every scripted fault was met (fired: ${r.fired})`);
        assert.deepEqual(r.divergences, []);
        assert.ok(
          metricValue(r.metrics, 'transactions_aborted_total') >= 1,
          'the failure rebuilt the partition',
        );
        // Each command's outcome is in the log once: no event id twice, and the fold equals the lane's state.
        const ids = r.h.cluster.committedValues(names.events, 0).map((v) => decode<DomainEvent>(v).event_id);
        assert.equal(new Set(ids).size, ids.length, 'no event committed twice');
        assert.deepEqual(await r.h.checkpointedState(), r.h.foldOfLog());
        // Money: every round nets to zero once its refunds settle.
        assert.ok(r.account.ok);
        assert.equal(r.account.body.posted, 1_000_000);
        assert.equal(r.account.body.pending, 0);
      });
    }
  });

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import {
  apply,
  type Command,
  canonicalState,
  createPartitionState,
  type PartitionState,
  paymentIdFor,
  shard,
} from '../../src/domain/index.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { DirtyTracker, stateFromParts, takeDelta } from '../../src/protocol/checkpoint-delta.js';
import { Checkpoints } from '../../src/streams/checkpoints.js';

const DAY_MS = 86_400_000;

/** Applies commands as a lane does: decide + evolve, and the tracker sees every event. */
function run(state: PartitionState, dirty: DirtyTracker, commands: Command[]): void {
  for (const command of commands) {
    for (const event of apply(state, command).events) dirty.track(state.partition, event);
  }
}

function accountsOnPartition(partition: number, total: number, count: number): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < count; i++)
    if (shard(`acct_${i}`) % total === partition) ids.push(`acct_${i}`);
  return ids;
}

function workload(ids: string[], from_ms: number, tag: string): Command[] {
  const commands: Command[] = [];
  ids.forEach((account_id, i) => {
    const t = from_ms + i;
    commands.push({
      type: 'open_account',
      command_id: `${tag}o${i}`,
      time_ms: t,
      account_id,
      currency: 'USD',
      kind: 'customer',
    } as Command);
    commands.push({
      type: 'deposit',
      command_id: `${tag}d${i}`,
      time_ms: t,
      account_id,
      amount: 100 + i,
      currency: 'USD',
    } as Command);
  });
  return commands;
}

describe('incremental checkpoints (real Redis)', () => {
  const prefix = `test:ckpt:${randomUUID().slice(0, 8)}:`;
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const metrics = createMetrics();
  const log = createLogger('silent', 't');
  const checkpoints = new Checkpoints({ redis, log, metrics, key_prefix: prefix, log_interval_ms: 1000 });

  after(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  async function restored(partition: number): Promise<{ offset: bigint; state: PartitionState }> {
    const stored = await checkpoints.load(partition);
    assert.ok(stored, 'a checkpoint is stored');
    return { offset: stored.offset, state: stateFromParts(stored.parts) };
  }

  it('stores a full checkpoint, then deltas, and restores the live state exactly', async () => {
    const state = createPartitionState(3);
    const dirty = new DirtyTracker();
    const ids = accountsOnPartition(3, 8, 30);
    run(state, dirty, workload(ids.slice(0, 20), 1_000, 'a'));
    const first = takeDelta(state, dirty);
    assert.equal(first.full, true);
    assert.equal(await checkpoints.write(3, 10n, first, 1), true);
    assert.deepEqual(canonicalState((await restored(3)).state), canonicalState(state));

    run(state, dirty, workload(ids.slice(20), 2_000, 'b'));
    run(state, dirty, [
      {
        type: 'deposit',
        command_id: 'c1',
        time_ms: 3_000,
        account_id: ids[0]!,
        amount: 5,
        currency: 'USD',
      } as Command,
    ]);
    const second = takeDelta(state, dirty);
    assert.equal(second.full, false);
    assert.ok(second.accounts.length <= 12, `only changed accounts travel (${second.accounts.length})`);
    assert.equal(await checkpoints.write(3, 20n, second, 2), true);
    const back = await restored(3);
    assert.equal(back.offset, 20n);
    assert.deepEqual(canonicalState(back.state), canonicalState(state));
  });

  it('carries payments through deltas: refunds, captures, legs, the expiry queue in creation order', async () => {
    const state = createPartitionState(6);
    const dirty = new DirtyTracker();
    const [payer, shop] = accountsOnPartition(6, 8, 2) as [string, string];
    let time_ms = 10_000;
    const step = (command: Record<string, unknown>): Command[] => {
      time_ms += 4_000; // below the default velocity rule (20 a minute)
      return [{ ...command, command_id: `k${time_ms}`, time_ms } as Command];
    };
    const runAll = (commands: Command[]): void => {
      let pending = commands;
      while (pending.length > 0) {
        const next: Command[] = [];
        for (const command of pending) {
          const decision = apply(state, command);
          for (const event of decision.events) dirty.track(state.partition, event);
          next.push(...decision.follow_ups); // the payee is on this partition too: apply its legs here
        }
        pending = next;
      }
    };
    runAll(workload([payer, shop], 1_000, 'p'));
    runAll(step({ type: 'deposit', account_id: payer, amount: 100_000, currency: 'USD' }));
    assert.equal(await checkpoints.write(6, 1n, takeDelta(state, dirty), 1), true);
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) {
      const payment_id = paymentIdFor(shard(payer), `p${i}`);
      ids.push(payment_id);
      const pay = { type: 'create_payment', payment_id, source: payer, destination: shop, currency: 'USD' };
      runAll(step({ ...pay, amount: 10 + i, capture: i % 3 !== 0 }));
      if (i % 5 === 4)
        assert.equal(await checkpoints.write(6, BigInt(i + 2), takeDelta(state, dirty), i), true);
    }
    for (let i = 1; i < 24; i += 3) runAll(step({ type: 'create_refund', payment_id: ids[i], amount: 3 }));
    runAll(step({ type: 'capture_payment', payment_id: ids[3] }));
    runAll(step({ type: 'cancel_payment', payment_id: ids[6] }));
    assert.equal(await checkpoints.write(6, 40n, takeDelta(state, dirty), 40), true);
    const back = (await restored(6)).state;
    assert.deepEqual(canonicalState(back), canonicalState(state));
    assert.equal([...back.payments.values()].filter((p) => p.refunds !== null).length, 8, 'refunds restored');
    assert.deepEqual(
      back.payments.openAuthorizations().map(([id]) => id),
      [ids[0], ids[9], ids[12], ids[15], ids[18], ids[21]],
      'open authorizations in creation order',
    );
  });

  it('follows idempotency generation rotations and drops generations that expired', async () => {
    const state = createPartitionState(5);
    const dirty = new DirtyTracker();
    const ids = accountsOnPartition(5, 8, 6);
    run(state, dirty, workload(ids.slice(0, 2), 1_000, 'g1'));
    assert.equal(await checkpoints.write(5, 1n, takeDelta(state, dirty), 1), true);
    run(state, dirty, workload(ids.slice(2, 4), 1_000 + DAY_MS + 1, 'g2')); // rotation: g1 becomes previous
    assert.equal(await checkpoints.write(5, 2n, takeDelta(state, dirty), 2), true);
    assert.deepEqual(canonicalState((await restored(5)).state), canonicalState(state));
    run(state, dirty, workload(ids.slice(4), 1_000 + 2 * DAY_MS + 2, 'g3')); // g1 dropped whole
    assert.equal(await checkpoints.write(5, 3n, takeDelta(state, dirty), 3), true);
    assert.deepEqual(canonicalState((await restored(5)).state), canonicalState(state));
    const generations = await redis.keys(`${checkpoints.key(5)}:i:*`);
    assert.equal(generations.length, 2, `only current and previous generations remain: ${generations}`);
    dirty.full = true; // as after a failed write: the next checkpoint rewrites everything, both generations
    assert.equal(await checkpoints.write(5, 4n, takeDelta(state, dirty), 4), true);
    assert.ok(state.idempotency_previous.size > 0);
    assert.deepEqual(canonicalState((await restored(5)).state), canonicalState(state));
    assert.equal((await redis.keys(`${checkpoints.key(5)}:i:*`)).length, 2);
  });

  it('writes a full checkpoint of a large partition in one script call', async () => {
    const state = createPartitionState(2);
    const dirty = new DirtyTracker();
    const ids = accountsOnPartition(2, 8, 70_000); // 140k records + 70k accounts: over 400k fields
    run(state, dirty, workload(ids, 1_000, 'big'));
    const delta = takeDelta(state, dirty);
    assert.ok(delta.accounts.length > 70_000 && delta.records_current.length >= 140_000);
    assert.equal(await checkpoints.write(2, 1n, delta, 1), true);
    const back = await restored(2);
    assert.equal(back.state.accounts.size, state.accounts.size);
    assert.deepEqual(
      back.state.accounts.get(ids[69_999]! as never),
      state.accounts.get(ids[69_999]! as never),
    );
  });

  it('ignores a checkpoint whose parts were evicted or deleted', async () => {
    const state = createPartitionState(7);
    const dirty = new DirtyTracker();
    run(state, dirty, workload(accountsOnPartition(7, 8, 3), 1_000, 'e'));
    assert.equal(await checkpoints.write(7, 5n, takeDelta(state, dirty), 1), true);
    assert.ok(await checkpoints.load(7));
    await redis.hdel(`${checkpoints.key(7)}:a`, (await redis.hkeys(`${checkpoints.key(7)}:a`))[0]!);
    assert.equal(await checkpoints.load(7), null, 'restore replays the changelog instead');
  });

  it('never moves the offset backwards', async () => {
    const state = createPartitionState(6);
    const dirty = new DirtyTracker();
    run(state, dirty, workload(accountsOnPartition(6, 8, 2), 1_000, 'x'));
    assert.equal(await checkpoints.write(6, 100n, takeDelta(state, dirty), 1), true);
    dirty.full = true;
    assert.equal(await checkpoints.write(6, 99n, takeDelta(state, dirty), 2), false);
    assert.equal((await restored(6)).offset, 100n);
  });

  it('reports failure instead of throwing when Redis is unreachable', async () => {
    const down = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    down.on('error', () => {});
    const failing = new Checkpoints({ redis: down, log, metrics, key_prefix: prefix, log_interval_ms: 1000 });
    const state = createPartitionState(1);
    assert.equal(await failing.write(1, 1n, takeDelta(state, new DirtyTracker()), 1), false);
    assert.equal(await failing.load(1), null);
    down.disconnect();
  });
});

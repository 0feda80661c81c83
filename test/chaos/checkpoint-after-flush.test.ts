import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import {
  apply,
  type Command,
  canonicalState,
  createPartitionState,
  type PartitionState,
  shard,
} from '../../src/domain/index.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { DirtyTracker, stateFromParts, takeDelta } from '../../src/protocol/checkpoint-delta.js';
import { Checkpoints } from '../../src/streams/checkpoints.js';
import { freePort } from '../integration/helpers.js';

/**
 * Found by the chaos suite (scenario 3, Redis FLUSH mid-load): after Redis lost its data (FLUSHALL, or a
 * restart without persistence between two checkpoint writes), the next incremental checkpoint was written
 * on top of nothing. The stored checkpoint then held only the entities changed since the previous write,
 * with an offset claiming to cover everything before it; the next restore loaded it and replayed only
 * the events after that offset: every other account, payment and idempotency record of the partition
 * vanished (balances gone from the API, retried payments applied twice). A delta must only ever apply to
 * the checkpoint it was taken against; with no stored checkpoint it is refused and the next one is full.
 */
function run(state: PartitionState, dirty: DirtyTracker, commands: Command[]): void {
  for (const command of commands) for (const event of apply(state, command).events) dirty.track(0, event);
}

function opened(ids: string[], t: number): Command[] {
  return ids.flatMap((account_id, i) => [
    {
      type: 'open_account',
      command_id: `o${t}${i}`,
      time_ms: t,
      account_id,
      currency: 'USD',
      kind: 'customer',
    },
    { type: 'deposit', command_id: `d${t}${i}`, time_ms: t, account_id, amount: 100, currency: 'USD' },
  ]) as Command[];
}

describe('checkpoints after Redis lost its data (own Redis)', () => {
  let redis_server: ChildProcess;
  let redis: Redis;
  let checkpoints: Checkpoints;

  before(async () => {
    const port = await freePort();
    redis_server = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    redis = new Redis(`redis://127.0.0.1:${port}`, { retryStrategy: (times) => (times > 50 ? null : 100) });
    await redis.ping();
    checkpoints = new Checkpoints({
      redis,
      log: createLogger('silent', 't'),
      metrics: createMetrics(),
      key_prefix: 'flush:',
      log_interval_ms: 1000,
    });
  });

  after(async () => {
    await redis.quit();
    redis_server.kill('SIGKILL');
  });

  it('refuses a delta when the stored checkpoint is gone; the next full one restores everything', async () => {
    const state = createPartitionState(0);
    const dirty = new DirtyTracker();
    const ids: string[] = [];
    for (let i = 0; ids.length < 10; i++) if (shard(`acct_${i}`) % 1 === 0) ids.push(`acct_${i}`);
    run(state, dirty, opened(ids, 1_000));
    assert.equal(await checkpoints.write(0, 20n, takeDelta(state, dirty), 1), true);

    await redis.flushall(); // Redis lost everything (FLUSHALL, or restarted without persistence)

    run(state, dirty, [
      {
        type: 'deposit',
        command_id: 'late',
        time_ms: 2_000,
        account_id: ids[0]!,
        amount: 5,
        currency: 'USD',
      },
    ] as Command[]);
    const delta = takeDelta(state, dirty);
    assert.equal(delta.full, false);
    assert.equal(await checkpoints.write(0, 21n, delta, 2), false, 'a delta on nothing is refused');
    assert.equal(await checkpoints.load(0), null, 'no partial checkpoint is left behind');

    dirty.full = true; // what the processor does after a refused write (lanes.checkpointFailed)
    assert.equal(await checkpoints.write(0, 21n, takeDelta(state, dirty), 3), true);
    const stored = await checkpoints.load(0);
    assert.ok(stored);
    assert.equal(stored.offset, 21n);
    assert.deepEqual(canonicalState(stateFromParts(stored.parts)), canonicalState(state));
  });
});

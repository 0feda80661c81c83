/**
 * A large checkpoint for the restart measurement, written without a million commands through Kafka: each
 * partition's state is built in this process with the real domain (`apply` of open_account + one deposit
 * per account), its idempotency records dropped (accounts opened more than 24 h ago have none), and stored
 * with the processor's own code path (`DirtyTracker` + `takeDelta` + `Checkpoints.write`, i.e. checkpoint.lua,
 * in deltas of at most `chunk` accounts like the processor's checkpoint_dirty_max) at events offset 0 of an
 * empty events topic. A restart then loads it exactly as after a real run, with no tail replay.
 */
import { performance } from 'node:perf_hooks';
import { apply, createPartitionState, type PartitionState, shard } from '../src/domain/index.js';
import { DirtyTracker, takeDelta } from '../src/protocol/checkpoint-delta.js';
import type { Checkpoints } from '../src/streams/checkpoints.js';
import { accountIds } from './stream-workload.js';

export interface SyntheticCheckpoint {
  accounts: number;
  build_ms: number;
  write_ms: number;
  bytes: number;
}

const TIME_MS = Date.UTC(2026, 10, 24);

function openFunded(state: PartitionState, dirty: DirtyTracker, account_id: string, merchant: boolean): void {
  const kind = merchant ? 'merchant' : 'customer';
  const time_ms = TIME_MS;
  const opened = apply(state, {
    type: 'open_account',
    command_id: `o_${account_id}`,
    time_ms,
    account_id,
    currency: 'usd',
    kind,
  });
  const funded = apply(state, {
    type: 'deposit',
    command_id: `d_${account_id}`,
    time_ms,
    account_id,
    amount: 100_000_000,
    currency: 'usd',
  });
  for (const event of [...opened.events, ...funded.events]) dirty.track(state.partition, event);
}

export async function writeSyntheticCheckpoints(
  checkpoints: Checkpoints,
  accounts_total: number,
  partitions_total: number,
  chunk: number,
): Promise<SyntheticCheckpoint> {
  const { ids, merchants_total } = accountIds(accounts_total);
  const by_partition: number[][] = Array.from({ length: partitions_total }, () => []);
  for (let i = 0; i < ids.length; i++) by_partition[shard(ids[i]!) % partitions_total]!.push(i);
  const result: SyntheticCheckpoint = { accounts: 0, build_ms: 0, write_ms: 0, bytes: 0 };
  for (let p = 0; p < partitions_total; p++) {
    const state = createPartitionState(p);
    const dirty = new DirtyTracker();
    const members = by_partition[p]!;
    // Deltas of at most `chunk` accounts, as the processor writes them (checkpoint_dirty_max): one
    // checkpoint.lua call with ~2 x 125,000 arguments overflows the call stack (Function#apply).
    for (let start = 0; start < members.length; start += chunk) {
      const t0 = performance.now();
      for (const i of members.slice(start, start + chunk))
        openFunded(state, dirty, ids[i]!, i < merchants_total);
      state.idempotency.clear();
      state.idempotency_previous.clear();
      const delta = takeDelta(state, dirty);
      const t1 = performance.now();
      for (const [, bytes] of delta.accounts) result.bytes += bytes.byteLength;
      if (!(await checkpoints.write(p, 0n, delta, TIME_MS)))
        throw new Error(`checkpoint of partition ${p} not written`);
      result.write_ms += performance.now() - t1;
      result.build_ms += t1 - t0;
    }
    result.accounts += state.accounts.size;
  }
  return result;
}

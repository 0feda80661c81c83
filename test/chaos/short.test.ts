import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ScriptBroker, sleep } from './env.js';
import { ChaosRun } from './run-context.js';
import { formatVerdict } from './verify.js';

/**
 * The short chaos run inside `npm test` (the full suite is `npm run chaos`, see test/chaos/run.ts and
 * RELIABILITY.md). One cluster of 2 nodes on a throwaway broker of its own (tools/kafka/kafka.sh on free
 * ports, jars from .cache/kafka-chaos/libs, so concurrent `npm test` runs never collide) and its own Redis,
 * under load from the load driver the whole time; in sequence: 2 node SIGKILLs, Redis SIGKILL + restart
 * empty + FLUSHALL then a node SIGKILL (restore from what was checkpointed after the flush), a broker
 * SIGKILL with 15 s down and a restart (the nodes must resume by themselves), and a graceful drain
 * (SIGTERM: every in-flight request answered, exit 0). Then the verifier: every acknowledged payment
 * exactly once, balances = fold = API, sum 0, no command applied twice.
 *
 * Regression cover for bugs the chaos suite found: partial checkpoint after FLUSHALL (bb83b90), partitions
 * stuck FAILED after a broker outage (20438d9).
 */
describe('chaos (short): node kills, Redis loss, broker restart, drain — nothing lost or doubled', {
  timeout: 420_000,
}, () => {
  let broker: ScriptBroker;

  before(async () => {
    broker = await ScriptBroker.ephemeral('short');
    await broker.start();
  });

  after(async () => {
    await broker?.dispose(); // throwaway: SIGKILL and delete its data
  });

  it('keeps every acknowledged payment exactly once and recovers after each fault', async () => {
    const run = new ChaosRun({
      name: 'short',
      faults_overlap: true, // kills 2 s apart, then Redis and the broker: only the last must recover
      title: 'short chaos: 2 node kills, Redis restart + flush + kill, broker kill, drain',
      broker,
      nodes: 2,
      concurrency: 16,
      customers: 60,
      merchants: 20,
      seed: 42,
    });
    const restart = (i: number) =>
      run.slots[i]!.start().catch((err) => run.failures.push(`restart: ${(err as Error).message}`));
    let drain_exit: number | null = null;
    let in_flight = 0;
    let unanswered = 0;
    const report = await run.execute(async () => {
      for (const i of [0, 1]) {
        await run.fault(`kill ${run.slots[i]!.node_id}`, () => run.slots[i]!.kill('SIGKILL'));
        await restart(i);
        await sleep(2_000);
      }
      await run.fault('Redis SIGKILL + restart empty + FLUSHALL', async () => {
        await run.redis!.kill();
        await sleep(1_000);
        await run.redis!.start();
        await sleep(1_500);
        await run.redis!.flushAll();
      });
      await sleep(2_000); // checkpoints written into the emptied Redis
      await run.fault('kill chaos-0 (restore from post-flush checkpoints)', () =>
        run.slots[0]!.kill('SIGKILL'),
      );
      await restart(0);
      await run.fault('broker SIGKILL, 15 s down, restart', async () => {
        await broker.kill();
        await sleep(15_000);
        await broker.start();
      });
      await run.awaitRecovery(90_000);
      const dead = run.slots.filter((s) => !s.alive);
      assert.deepEqual(
        dead.map((s) => `${s.node_id}: ${s.errorTail()}`),
        [],
        'the nodes survived the broker outage by themselves',
      );
      const victim = run.slots[1]!;
      const origin = new URL(victim.base).origin;
      let signal_ms = Number.POSITIVE_INFINITY;
      run.monitor.onAttempt = (a) => {
        if (a.origin !== origin || a.started_ms >= signal_ms || a.ended_ms < signal_ms) return;
        in_flight++;
        if (a.status === 0) unanswered++;
      };
      await run.fault('SIGTERM chaos-1 (drain)', async () => {
        signal_ms = Date.now();
        drain_exit = await victim.kill('SIGTERM');
      });
      run.monitor.onAttempt = null;
      await restart(1);
    }, 5_000);
    console.log(
      JSON.stringify({
        duration_s: report.duration_s,
        load: report.load,
        recovery: report.recovery,
        driver: report.driver,
        drain: { exit: drain_exit, in_flight, unanswered },
        verdict: report.verdict ? formatVerdict(report.verdict) : null,
      }),
    );
    assert.deepEqual(report.failures, []);
    assert.ok(report.verdict, 'the verifier ran');
    assert.deepEqual(report.verdict.violations, []);
    assert.equal(report.verdict.missing, 0);
    assert.equal(report.verdict.duplicates + report.verdict.duplicate_commands, 0);
    assert.ok(report.verdict.acknowledged > 200, `acknowledged ${report.verdict.acknowledged}`);
    assert.equal(drain_exit, 0, 'the drained node exits 0');
    assert.equal(unanswered, 0, `${unanswered} of ${in_flight} in-flight requests were not answered`);
  });
});

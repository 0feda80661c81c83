import { post, rng } from '../support/load-driver.js';
import { type Broker, type NodeSlot, ProxiedBroker, sleep } from './env.js';
import { fuzzGateway } from './fuzz.js';
import { untracked } from './monitor.js';
import { ChaosRun, type ScenarioReport } from './run-context.js';

/**
 * The chaos scenarios. Each runs real processes under sustained load from the load driver, injects its
 * fault(s), waits for recovery and runs the verifier (run-context.ts). Every loop is bounded in count and
 * time. `size` scales them: 'full' for `npm run chaos`, 'short' for the version inside `npm test`.
 */
export type Size = 'full' | 'short';

export interface ScenarioContext {
  /** The broker scenarios may use (never killed unless the scenario owns it). */
  broker: Broker;
  /** True when `broker` is the chaos suite's own (scenario 2 may kill it). */
  broker_owned: boolean;
  size: Size;
  /** Shared Redis for scenarios that never touch Redis (node kills); default: each run spawns its own. */
  redis_url?: string;
}

async function waitForReady(slots: NodeSlot[], timeout_ms: number): Promise<NodeSlot[]> {
  const deadline_ms = Date.now() + timeout_ms;
  while (Date.now() < deadline_ms) {
    const ready = slots.filter((s) => s.ready);
    if (ready.length > 0) return ready;
    await sleep(200);
  }
  return [];
}

/** Restarts a slot in the background; a failed start is a run failure (recorded, never thrown here). */
function restart(run: ChaosRun, slot: NodeSlot): void {
  slot.start().catch((err) => run.failures.push(`restart of ${slot.node_id}: ${(err as Error).message}`));
}

/** (1) SIGKILL at random moments, across 2 nodes, each killed node restarted at once. */
export async function killLoop(ctx: ScenarioContext): Promise<ScenarioReport> {
  const kills_total = ctx.size === 'full' ? 20 : 3;
  const run = new ChaosRun({
    name: 'node-kill-loop',
    faults_overlap: true, // a kill or a membership change every few seconds, on purpose
    title: `(1) node SIGKILL loop: ${kills_total} kills at random moments across 2 nodes, restarts`,
    broker: ctx.broker,
    nodes: 2,
    ...(ctx.redis_url ? { redis_url: ctx.redis_url } : {}),
    seed: 101,
  });
  const random = rng(7);
  return run.execute(async () => {
    let kills = 0;
    for (let k = 0; k < kills_total; k++) {
      await sleep(2_000 + random() * 4_000);
      const ready = await waitForReady(run.slots, 120_000);
      if (ready.length === 0) throw new Error('no node came back within 120 s');
      const victim = ready[Math.floor(random() * ready.length)]!;
      await run.fault(`kill ${victim.node_id}`, () => victim.kill('SIGKILL'));
      kills++;
      restart(run, victim);
    }
    run.checks.kills = kills;
    await Promise.allSettled(run.slots.map((s) => s.starting));
  });
}

/** Nodes that exited by themselves (not killed by the scenario): they did not survive the fault. */
function deadNodes(run: ChaosRun): string[] {
  return run.slots.filter((s) => s.node !== null && !s.alive).map((s) => s.node_id);
}

/** (2) The broker is SIGKILLed mid-load and restarted; the nodes must reconnect and resume by themselves. */
export async function brokerKill(ctx: ScenarioContext): Promise<ScenarioReport> {
  if (!ctx.broker_owned) throw new Error("broker-kill needs the chaos suite's own broker");
  // Full: 10 s down, then 25 s (past the producers' and admin's retries: transactions fail, rebuilds too).
  const downs_ms = ctx.size === 'full' ? [10_000, 25_000] : [15_000];
  const run = new ChaosRun({
    name: 'broker-kill',
    title: `(2) broker SIGKILL mid-load, down ${downs_ms.map((ms) => ms / 1000).join(' s / ')} s, restart; nodes not restarted`,
    broker: ctx.broker,
    nodes: 2,
    seed: 202,
  });
  return run.execute(async () => {
    for (const [c, down_ms] of downs_ms.entries()) {
      await run.fault(`broker SIGKILL, ${down_ms / 1000} s down, restart`, async () => {
        await ctx.broker.kill();
        await sleep(down_ms);
        await ctx.broker.start();
      });
      await run.awaitRecovery(120_000);
      const dead = deadNodes(run);
      if (dead.length > 0) {
        run.failures.push(
          `nodes ${dead} exited after the broker outage (cycle ${c + 1}) instead of resuming`,
        );
        for (const slot of run.slots) if (!slot.alive) restart(run, slot);
        await Promise.allSettled(run.slots.map((s) => s.starting));
      }
    }
    run.checks.node_processes_restarted = run.slots.reduce((n, s) => n + s.outputs.length - 1, 0);
  });
}

/** (3) Redis SIGKILL + restart (empty), FLUSHALL, a quick restart, each followed by a node kill (restore). */
export async function redisLoss(ctx: ScenarioContext): Promise<ScenarioReport> {
  const run = new ChaosRun({
    name: 'redis-restart-flush',
    // Each Redis fault is followed 3 s later by a node kill that restores from the checkpoints written since:
    // a pair, and the run awaits recovery (strictly) between pairs, not inside one.
    faults_overlap: true,
    title: '(3) Redis SIGKILL + restart empty, FLUSHALL, quick restart; a node SIGKILL after each (restore)',
    broker: ctx.broker,
    nodes: 2,
    seed: 303,
  });
  const killNode = async (i: number) => {
    const ready = await waitForReady(run.slots, 120_000);
    const victim = ready[i % ready.length]!;
    await run.fault(`kill ${victim.node_id} (restores from checkpoints written since)`, () => victim.kill());
    restart(run, victim);
    await Promise.allSettled(run.slots.map((s) => s.starting));
  };
  const redis = () => run.redis!;
  return run.execute(async () => {
    await run.fault('Redis SIGKILL, 5 s down, restart empty', async () => {
      await redis().kill();
      await sleep(ctx.size === 'full' ? 5_000 : 3_000);
      await redis().start();
    });
    await sleep(3_000); // checkpoints written again (full ones: writes failed meanwhile)
    await killNode(0);
    await run.awaitRecovery(60_000);
    await run.fault('FLUSHALL', () => redis().flushAll());
    await sleep(3_000); // several checkpoint intervals: deltas meet an empty Redis
    await killNode(1);
    if (ctx.size === 'short') return;
    await run.awaitRecovery(60_000);
    await run.fault('Redis SIGKILL + immediate restart (between two checkpoints)', async () => {
      await redis().kill();
      await redis().start();
    });
    await sleep(3_000);
    await killNode(0);
  });
}

async function duplicateRound(run: ChaosRun, round: number, copies: number, deposit: boolean) {
  const customer = run.accounts.customers[round % run.accounts.customers.length]!;
  const merchant = run.accounts.merchants[round % run.accounts.merchants.length]!;
  const key = `dup-${run.topic_prefix}-${round}`;
  const [path, body] = deposit
    ? ['/v1/deposits', { account: customer, amount: 777, currency: 'USD' }]
    : [
        '/v1/payments',
        { amount: 123, currency: 'USD', source: customer, destination: merchant, capture: true },
      ];
  // Each copy goes to node i mod N; a copy whose node died is retried (same key) on a live one, bounded.
  const answers = await Promise.all(
    Array.from({ length: copies }, async (_, i) => {
      let base = run.slots[i % run.slots.length]!.base;
      for (let attempt = 0; attempt < 30; attempt++) {
        const res = await post(base, path, body, key).catch(() => null);
        if (res && res.status < 500) return { res, retried: attempt > 0 };
        await sleep(200);
        base = run.base();
      }
      return null;
    }),
  );
  const statuses: Record<string, number> = {};
  const ids = new Set<string>();
  for (const answer of answers) {
    const a = answer?.res;
    const status = a ? `${a.status}${answer.retried ? ' after retry' : ''}` : 'no answer';
    statuses[status] = (statuses[status] ?? 0) + 1;
    const id = (a?.body.id as string | undefined) ?? (a?.body.error as { payment_id?: string })?.payment_id;
    if (a && [201, 202, 402].includes(a.status) && id) ids.add(id);
  }
  return { key, statuses, ids };
}

/**
 * A client that gives up on each attempt after a random 5–150 ms and retries with the same key (bounded):
 * attempts pile up in the node while the client has moved on.
 */
async function impatientClient(run: ChaosRun, n: number, acknowledged: Set<string>): Promise<number> {
  const customer = run.accounts.customers[n % run.accounts.customers.length]!;
  const merchant = run.accounts.merchants[(n * 7) % run.accounts.merchants.length]!;
  const body = { amount: 50 + (n % 100), currency: 'USD', source: customer, destination: merchant };
  const key = `impatient-${run.topic_prefix}-${n}`;
  for (let attempt = 0; attempt < 60; attempt++) {
    try {
      const res = await fetch(`${run.base()}/v1/payments`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer sk_test_local',
          'content-type': 'application/json',
          'idempotency-key': key,
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(attempt < 10 ? 5 + ((n * 31 + attempt * 17) % 145) : 10_000),
      });
      const json = (await res.json()) as { id?: string; error?: { payment_id?: string } };
      const id = json.id ?? json.error?.payment_id;
      if ([201, 202, 402].includes(res.status) && id) {
        acknowledged.add(id);
        return attempt + 1;
      }
      if (res.status < 500) return attempt + 1;
    } catch {
      // aborted by our own impatience, or the node is down: retry with the same key
    }
    await sleep(20);
  }
  throw new Error(`impatient client ${n}: no answer after 60 attempts`);
}

/** (5) Client retries: 100 concurrent duplicates of one key (× rounds), impatient retries, one node kill. */
export async function clientRetries(ctx: ScenarioContext): Promise<ScenarioReport> {
  const rounds = ctx.size === 'full' ? 20 : 4;
  const run = new ChaosRun({
    name: 'client-retries',
    title: `(5) client retries: ${rounds} rounds of 100 concurrent duplicates of one Idempotency-Key, impatient clients, a node SIGKILL`,
    broker: ctx.broker,
    nodes: 2,
    ...(ctx.redis_url ? { redis_url: ctx.redis_url } : {}),
    seed: 505,
  });
  const mixed: string[] = [];
  let attempts_total = 0;
  let impatient_total = 0;
  return run.execute(async () => {
    for (let r = 0; r < rounds; r++) {
      const kill = r === Math.floor(rounds / 2);
      // Measured separately: the monitor's req/s and p99 are the load driver's traffic.
      const round = untracked(() => duplicateRound(run, r, 100, r % 4 === 3));
      const impatient = Array.from({ length: 20 }, (_, i) =>
        untracked(() => impatientClient(run, r * 20 + i, run.extra_acknowledged)),
      );
      if (kill) {
        const victim = run.slots[1]!;
        await run.fault(`kill ${victim.node_id} during round ${r}`, () => victim.kill());
        restart(run, victim);
      }
      const { key, statuses, ids } = await round;
      for (const id of ids) (r % 4 === 3 ? run.acknowledged_deposits : run.extra_acknowledged).add(id);
      if (ids.size > 1) mixed.push(`${key}: ${ids.size} different ids`);
      const odd = Object.keys(statuses).filter((st) => !/^(201|202|402)( after retry)?$/.test(st));
      if (odd.length > 0) mixed.push(`${key}: ${JSON.stringify(statuses)}`);
      for (const n of await Promise.all(impatient)) attempts_total += n;
      impatient_total += impatient.length;
      if (r === 0 || kill) run.checks[`round_${r}_statuses`] = statuses;
      await sleep(500);
    }
    await Promise.allSettled(run.slots.map((s) => s.starting));
    run.checks.duplicate_requests = rounds * 100;
    run.checks.impatient_clients = impatient_total;
    run.checks.impatient_attempts = attempts_total;
    if (mixed.length > 0) run.failures.push(`duplicates answered inconsistently: ${mixed.slice(0, 5)}`);
  });
}

/** (6) Rebalance storm: 3 node slots; every 3–5 s one joins or leaves (SIGTERM), never fewer than 1. */
export async function rebalanceStorm(ctx: ScenarioContext): Promise<ScenarioReport> {
  const changes_total = ctx.size === 'full' ? 16 : 4;
  const run = new ChaosRun({
    name: 'rebalance-storm',
    faults_overlap: true, // a kill or a membership change every few seconds, on purpose
    title: `(6) rebalance storm: ${changes_total} joins/leaves (SIGTERM) every 3–5 s over 3 node slots`,
    broker: ctx.broker,
    nodes: 3,
    ...(ctx.redis_url ? { redis_url: ctx.redis_url } : {}),
    seed: 606,
  });
  const random = rng(66);
  const exits: (number | null)[] = [];
  return run.execute(async () => {
    for (let c = 0; c < changes_total; c++) {
      await sleep(3_000 + random() * 2_000);
      const up = run.slots.filter((s) => s.alive || s.starting);
      const down = run.slots.filter((s) => !s.alive && !s.starting);
      const join = up.length <= 1 || (down.length > 0 && random() < 0.5);
      if (join) {
        const slot = down[Math.floor(random() * down.length)]!;
        await run.fault(`join ${slot.node_id}`, async () => restart(run, slot));
      } else {
        const ready = up.filter((s) => s.ready);
        const pool = ready.length > 0 ? ready : up;
        const slot = pool[Math.floor(random() * pool.length)]!;
        await run.fault(`leave ${slot.node_id} (SIGTERM)`, async () => {
          await slot.starting?.catch(() => {});
          exits.push(await slot.kill('SIGTERM'));
        });
      }
    }
    for (const slot of run.slots) if (!slot.alive && !slot.starting) restart(run, slot);
    await Promise.allSettled(run.slots.map((s) => s.starting));
    run.checks.leaves = exits.length;
    run.checks.joins = changes_total - exits.length;
    const unclean = exits.filter((code) => code !== 0);
    if (unclean.length > 0) run.failures.push(`SIGTERM exit codes not 0: ${unclean}`);
  });
}

/**
 * (7) Graceful drain: SIGTERM a node under load. Every request that was in flight on it at the signal
 * must be answered (any HTTP status; a transport error is a request the node dropped), the node exits 0.
 */
export async function gracefulDrain(ctx: ScenarioContext): Promise<ScenarioReport> {
  const cycles = ctx.size === 'full' ? 3 : 1;
  const run = new ChaosRun({
    name: 'graceful-drain',
    title: `(7) graceful drain: SIGTERM under load (${cycles}×), in-flight requests answered, exit 0`,
    broker: ctx.broker,
    nodes: 2,
    ...(ctx.redis_url ? { redis_url: ctx.redis_url } : {}),
    concurrency: 64,
    seed: 707,
  });
  const drained = {
    in_flight: 0,
    answered: 0,
    unanswered: 0,
    after_signal_refused: 0,
    exit_codes: [] as (number | null)[],
  };
  const unanswered: string[] = [];
  return run.execute(async () => {
    for (let c = 0; c < cycles; c++) {
      const victim = run.slots[1]!;
      const origin = new URL(victim.base).origin;
      let signal_ms = Number.POSITIVE_INFINITY;
      run.monitor.onAttempt = (a) => {
        if (a.origin !== origin) return;
        if (a.started_ms < signal_ms && a.ended_ms >= signal_ms) {
          drained.in_flight++;
          if (a.status > 0) drained.answered++;
          else {
            drained.unanswered++;
            unanswered.push(`${a.error} after ${a.ended_ms - a.started_ms} ms`);
          }
        } else if (a.started_ms >= signal_ms && a.status === 0) drained.after_signal_refused++;
      };
      await run.fault(`SIGTERM ${victim.node_id} (drain)`, async () => {
        signal_ms = Date.now();
        drained.exit_codes.push(await victim.kill('SIGTERM'));
      });
      run.checks[`drain_${c}_s`] =
        run.marks[run.marks.length - 1]!.end_s - run.marks[run.marks.length - 1]!.start_s;
      await sleep(1_000);
      run.monitor.onAttempt = null;
      await victim.start();
      // As the other scenarios do between faults: the next drain once this one is recovered from (bounded;
      // not recovered in time fails the run). A fixed 4 s measured the victim's start-up on a loaded machine.
      await run.awaitRecovery(60_000);
    }
    Object.assign(run.checks, drained);
    if (drained.unanswered > 0)
      run.failures.push(`in-flight requests not answered: ${unanswered.slice(0, 5)}`);
    if (drained.exit_codes.some((code) => code !== 0)) run.failures.push(`exit codes ${drained.exit_codes}`);
  });
}

/**
 * (4) Network faults between the nodes and the broker, through the fault proxy (fault-proxy.ts): the
 * scenario's own broker advertises the proxy's port, so every client connection crosses it.
 */
export async function networkFaults(ctx: ScenarioContext): Promise<ScenarioReport> {
  const full = ctx.size === 'full';
  const broker = new ProxiedBroker();
  const proxy = broker.proxy;
  const run = new ChaosRun({
    name: 'network-faults',
    title:
      '(4) node↔broker network faults through a TCP fault proxy: latency 50/250 ms, stalls 4 s and 12 s, ' +
      'dropped connections, a 10 s partition; nodes not restarted',
    broker,
    nodes: 2,
    seed: 404,
  });
  const hold = async (label: string, ms: number, on: () => void, off: () => void) => {
    await run.fault(label, async () => {
      on();
      await sleep(ms);
      off();
    });
    await run.awaitRecovery(60_000);
  };
  const faults = async () => {
    await hold(
      'latency 50 ms',
      full ? 15_000 : 5_000,
      () => (proxy.latency_ms = 50),
      () => (proxy.latency_ms = 0),
    );
    if (full)
      await hold(
        'latency 250 ms',
        10_000,
        () => (proxy.latency_ms = 250),
        () => (proxy.latency_ms = 0),
      );
    await hold(
      'stall 4 s',
      4_000,
      () => proxy.stall(),
      () => proxy.unstall(),
    );
    if (full)
      await hold(
        'stall 12 s (past the session timeout)',
        12_000,
        () => proxy.stall(),
        () => proxy.unstall(),
      );
    await run.fault('drop every connection ×3, 2 s apart', async () => {
      for (let i = 0; i < 3; i++) {
        proxy.drop();
        await sleep(2_000);
      }
    });
    await run.awaitRecovery(60_000);
    if (full) {
      const partition = () => {
        proxy.refuse = true;
        proxy.drop();
      };
      await hold('partition 10 s (refused + dropped)', 10_000, partition, () => (proxy.refuse = false));
    }
    const dead = deadNodes(run);
    if (dead.length > 0) run.failures.push(`nodes ${dead} exited during network faults instead of resuming`);
    for (const slot of run.slots) if (!slot.alive) restart(run, slot);
    await Promise.allSettled(run.slots.map((s) => s.starting));
    run.checks.proxy = { ...proxy.stats };
  };
  try {
    await broker.start();
    return await run.execute(faults);
  } finally {
    await broker.stop();
  }
}

/**
 * (8) Gateway fuzzing for 60 s (fuzz.ts) on one node, with the load driver running beside it (the ledger
 * is verified after): no 5xx, no crash, RSS bounded.
 */
export async function gatewayFuzz(ctx: ScenarioContext): Promise<ScenarioReport> {
  const duration_ms = ctx.size === 'full' ? 60_000 : 15_000;
  const run = new ChaosRun({
    name: 'gateway-fuzz',
    title: `(8) gateway fuzzing ${duration_ms / 1000} s: fast-check HTTP (fetch + raw socket) and WebSocket input`,
    broker: ctx.broker,
    nodes: 1,
    concurrency: 8,
    customers: 50,
    merchants: 20,
    seed: 808,
  });
  return run.execute(async () => {
    const slot = run.slots[0]!;
    const result = await run.fault('fuzzing', () => untracked(() => fuzzGateway(slot, duration_ms)));
    run.checks.fuzz = result;
    if (result.errors_5xx.length > 0) run.failures.push(`5xx answers: ${result.errors_5xx.slice(0, 3)}`);
    // Raw-socket garbage may be closed without an answer (not HTTP); a request fetch could send may not.
    if (result.transport_errors.length > 0)
      run.failures.push(`requests reset or unanswered: ${result.transport_errors.slice(0, 3)}`);
    if (!result.node_alive) run.failures.push('the node died or stopped answering /healthz');
    if (result.rss_mb.max - result.rss_mb.start > 300)
      run.failures.push(`RSS grew ${result.rss_mb.start} → ${result.rss_mb.max} MB`);
  });
}

export const scenarios: Record<string, (ctx: ScenarioContext) => Promise<ScenarioReport>> = {
  'node-kill-loop': killLoop,
  'broker-kill': brokerKill,
  'redis-restart-flush': redisLoss,
  'client-retries': clientRetries,
  'rebalance-storm': rebalanceStorm,
  'graceful-drain': gracefulDrain,
  'network-faults': networkFaults,
  'gateway-fuzz': gatewayFuzz,
};

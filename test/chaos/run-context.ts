import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type DriverOptions, type DriverResult, drive } from '../support/load-driver.js';
import {
  checkWalkerSettlement,
  runWalkers,
  setupWalkers,
  type WalkerOptions,
  type WalkerResult,
} from '../support/walkers.js';
import {
  type Broker,
  ChaosRedis,
  chaos_dir,
  deleteRedisKeys,
  deleteTopics,
  makeSlots,
  type NodeSlot,
  nodeEnv,
  openAccounts,
  sleep,
  uniquePrefix,
} from './env.js';
import { Monitor, percentile } from './monitor.js';
import { type ChaosVerdict, verifyLedger, violated, writeRunLog } from './verify.js';

/**
 * One chaos scenario run: its topics (unique prefix), its Redis, its node slots, the load driver and the
 * monitor, fault marks, and the report. Scenarios (scenarios.ts) only say what fault to inject when.
 *
 *   setup ─▶ load ─▶ baseline ─▶ fault(s) (marked) ─▶ wait recovered ─▶ stop load ─▶ verify ─▶ teardown
 */
export interface FaultMark {
  label: string;
  start_s: number;
  end_s: number;
}

export interface ScenarioReport {
  name: string;
  title: string;
  started_at: string;
  duration_s: number;
  nodes: number;
  concurrency: number;
  faults: number;
  load: {
    baseline_rps: number;
    fault_rps: number;
    baseline_p99_ms: number | null;
    fault_p99_ms: number | null;
    /** From the first fault's start to recovery after the last one (or its end + 10 s if none). */
    fault_window_s: number;
    lag_max_during_faults: number | null;
    /** Driver answers by status over the whole load (5xx and transport failures are retried). */
    statuses: Record<string, number>;
  };
  /**
   * Per fault, seconds from its end until: `serving` requests succeed again (2 s in a row without error);
   * `recovered` also lag < 1000 per partition and p99 < p99_limit_ms (3 s in a row). null: not before the
   * next fault (or the end). p99_limit_ms = max(200, 1.5 × the baseline p99 of this run on this machine).
   */
  recovery: {
    p99_limit_ms: number;
    serving_s: (number | null)[];
    recovered_s: (number | null)[];
    serving_max_s: number | null;
    recovered_median_s: number | null;
    recovered_max_s: number | null;
  };
  errors: { errors_5xx: number; transport_errors: number };
  driver: { sent: number; acknowledged: number; retries: number; gave_up: number; by_status: object };
  verdict: ChaosVerdict | null;
  checks: Record<string, unknown>;
  failures: string[];
  passed: boolean;
}

export interface RunOptions {
  name: string;
  title: string;
  broker: Broker;
  nodes: number;
  concurrency?: number;
  customers?: number;
  merchants?: number;
  /** Shared Redis URL; default: a Redis of the run's own (needed when the scenario kills it). */
  redis_url?: string;
  node_env?: Record<string, string>;
  /**
   * The scenario's faults follow each other faster than the cluster can recover, on purpose (a kill loop):
   * only the last one must be recovered from. Otherwise a fault not recovered before the next fails the run.
   */
  faults_overlap?: boolean;
  /** Walkers of the dependent workload (test/support/walkers.ts) beside the random mix; default 6. */
  walkers?: number;
  /** Upper bound on the whole run's load phase. */
  load_max_ms?: number;
  seed?: number;
}

export class ChaosRun {
  readonly o: RunOptions;
  readonly topic_prefix: string;
  readonly monitor = new Monitor();
  readonly marks: FaultMark[] = [];
  readonly checks: Record<string, unknown> = {};
  readonly failures: string[] = [];
  /** Payment ids acknowledged outside the driver (duplicate storms). */
  readonly extra_acknowledged = new Set<string>();
  /** Deposit ids acknowledged outside the driver. */
  readonly acknowledged_deposits = new Set<string>();
  redis: ChaosRedis | null = null;
  /** The dependent workload's outcome, once the load stopped. */
  walker_result: WalkerResult | null = null;
  slots: NodeSlot[] = [];
  accounts: { customers: string[]; merchants: string[] } = { customers: [], merchants: [] };
  #turn = 0;
  #driver: Promise<DriverResult> | null = null;
  #driver_opts: DriverOptions | null = null;
  #walkers: Promise<WalkerResult> | null = null;
  #walkers_stop = false;
  #walker_opts: WalkerOptions | null = null;
  #load_started_s = 0;
  #started_ms = Date.now();

  constructor(opts: RunOptions) {
    this.o = opts;
    this.topic_prefix = uniquePrefix(opts.name);
  }

  get redis_url(): string {
    return this.o.redis_url ?? this.redis!.url;
  }

  get env(): Record<string, string> {
    return nodeEnv({
      brokers: this.o.broker.brokers,
      redis_url: this.redis_url,
      topic_prefix: this.topic_prefix,
      ...(this.o.node_env ? { extra: this.o.node_env } : {}),
    });
  }

  /** Round-robin over ready nodes, as a load balancer with health checks would; any node if none is. */
  base = (): string => {
    const ready = this.slots.filter((s) => s.ready);
    const pool = ready.length > 0 ? ready : this.slots;
    return pool[this.#turn++ % pool.length]!.base;
  };

  async setup(): Promise<void> {
    this.#started_ms = Date.now();
    if (!this.o.redis_url) {
      this.redis = new ChaosRedis();
      await this.redis.start();
    }
    this.slots = await makeSlots(this.o.nodes, this.env);
    // The first node creates the topics; the others join the group after it.
    await this.slots[0]!.start();
    await Promise.all(this.slots.slice(1).map((s) => s.start()));
    this.accounts = await openAccounts(this.base, 'x', this.o.customers ?? 300, this.o.merchants ?? 100);
    this.#walker_opts = {
      base: this.base,
      walkers_total: this.o.walkers ?? 6,
      rounds_total: 10_000,
      done: () => this.#walkers_stop,
      prefix: 'w',
      currency: 'USD',
      deposit_amount: 1_000_000_000,
      // A broker outage or a restore lasts longer than a client's usual patience; the walker keeps asking.
      retry_window_ms: 150_000,
    };
    await setupWalkers(this.#walker_opts);
  }

  now(): number {
    return this.monitor.second();
  }

  startLoad(): void {
    this.monitor.install();
    this.monitor.sampleLag(this.o.broker.brokers, this.topic_prefix);
    this.#load_started_s = this.now();
    this.#driver_opts = {
      base: this.base,
      accounts: this.accounts,
      commands_total: 10_000_000,
      concurrency: this.o.concurrency ?? 32,
      deadline_ms: Date.now() + (this.o.load_max_ms ?? 600_000),
      currency: 'USD',
      seed: this.o.seed ?? 1,
      progress: { sent: 0 },
    };
    this.#driver = drive(this.#driver_opts);
    if (this.#walker_opts) this.#walkers = runWalkers(this.#walker_opts);
  }

  /** Runs a fault from now until `fn` resolves, and marks it. */
  async fault<T>(label: string, fn: () => Promise<T>): Promise<T> {
    const mark: FaultMark = { label, start_s: this.now(), end_s: 0 };
    try {
      return await fn();
    } finally {
      mark.end_s = this.now();
      this.marks.push(mark);
    }
  }

  /** max(200 ms, 1.5 × the p99 before the first fault): "back to normal" on a machine slower than 200 ms. */
  p99LimitMs(): number {
    const first = this.marks[0];
    const baseline = this.monitor.p99(this.#load_started_s + 2, first ? first.start_s : this.now());
    return Math.max(200, Math.round(1.5 * (baseline ?? 0)));
  }

  /**
   * Waits (bounded) for the cluster to be healthy again after the last fault; not recovered within the
   * bound fails the run (a scenario that awaits recovery between faults means the cluster must get there).
   */
  async awaitRecovery(timeout_ms = 90_000): Promise<void> {
    const last = this.marks[this.marks.length - 1];
    if (!last) return;
    const at = await this.monitor.waitRecovered(last.end_s, timeout_ms, this.p99LimitMs());
    if (at === null) this.failures.push(`not recovered within ${timeout_ms / 1000} s after "${last.label}"`);
  }

  /** Stops issuing new commands; the ones in flight finish (bounded). */
  async stopLoad(timeout_ms = 120_000): Promise<DriverResult | null> {
    if (!this.#driver || !this.#driver_opts) return null;
    this.#driver_opts.commands_total = 0; // the driver re-reads it before each new command
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((r) => {
      timer = setTimeout(() => r(null), timeout_ms);
    });
    this.#walkers_stop = true; // each walker ends the round it is in
    const result = await Promise.race([this.#driver, timeout]);
    const walkers = await Promise.race([this.#walkers ?? Promise.resolve(null), timeout]);
    clearTimeout(timer); // a pending timer would hold the process (and node:test) open
    if (this.#walkers && !walkers)
      this.failures.push(`walkers did not finish within ${timeout_ms} ms of stop`);
    this.walker_result = walkers;
    this.monitor.uninstall();
    if (!result) this.failures.push(`load driver did not finish within ${timeout_ms} ms of stop`);
    return result;
  }

  async verify(driver: DriverResult | null): Promise<ChaosVerdict | null> {
    const acknowledged = [...(driver?.acknowledged_payments ?? []), ...this.extra_acknowledged];
    const accounts = [...this.accounts.customers, ...this.accounts.merchants];
    const walkers = this.walker_result;
    acknowledged.push(...(walkers?.payments ?? []));
    const acknowledged_refunds = (walkers?.acknowledged_writes ?? [])
      .filter((w) => w.op === 'refund')
      .map((w) => w.id);
    const run = {
      acknowledged,
      accounts,
      acknowledged_deposits: [...this.acknowledged_deposits, ...(driver?.acknowledged_deposits ?? [])],
      acknowledged_refunds: [...acknowledged_refunds, ...(driver?.acknowledged_refunds ?? [])],
      acknowledged_captures: driver?.acknowledged_captures ?? [],
    };
    writeRunLog(join(chaos_dir, this.o.name, 'run.json'), run);
    const ready = this.slots.find((s) => s.ready);
    if (!ready) {
      this.failures.push('no node ready for the verifier');
      return null;
    }
    const verdict = await verifyLedger({
      brokers: this.o.broker.brokers,
      topic_prefix: this.topic_prefix,
      run,
      base: ready.base,
    });
    if (violated(verdict)) this.failures.push(`verifier: ${verdict.violations.slice(0, 5).join('; ')}`);
    if (walkers && this.#walker_opts) {
      // Every answer matched the model; every refund settles and every balance is the model's, read back.
      const settle = await checkWalkerSettlement(
        { ...this.#walker_opts, base: () => ready.base },
        walkers.payments,
        Date.now() + 60_000,
      );
      const divergences = [...walkers.divergences, ...settle];
      this.checks.walkers = {
        rounds: walkers.payments.length,
        requests: walkers.requests_total,
        retries: walkers.retries,
        divergences: divergences.length,
      };
      if (divergences.length > 0) this.failures.push(`walkers: ${divergences.slice(0, 3).join('; ')}`);
      if (walkers.payments.length < (this.#walker_opts.walkers_total ?? 0))
        this.failures.push(`walkers walked only ${walkers.payments.length} rounds`);
    }
    return verdict;
  }

  report(driver: DriverResult | null, verdict: ChaosVerdict | null): ScenarioReport {
    const m = this.monitor;
    const first = this.marks[0];
    const last = this.marks[this.marks.length - 1];
    const baseline_from = this.#load_started_s + 2;
    const baseline_to = first ? first.start_s : m.second();
    const fault_from = first?.start_s ?? 0;
    const p99_limit_ms = this.p99LimitMs();
    const until = (i: number) => this.marks[i + 1]?.start_s ?? m.second();
    const since = (at: number | null, from: number) => (at === null ? null : at - from);
    const inf = Number.POSITIVE_INFINITY;
    const serving_s = this.marks.map((mark, i) =>
      since(m.recoveredAt(mark.end_s, until(i), inf, inf, 2), mark.end_s),
    );
    const recovered_s = this.marks.map((mark, i) =>
      since(m.recoveredAt(mark.end_s, until(i), p99_limit_ms, 1000, 3), mark.end_s),
    );
    const known = recovered_s.filter((s): s is number => s !== null);
    const serving_known = serving_s.filter((s): s is number => s !== null);
    const last_recovered = recovered_s[recovered_s.length - 1];
    const fault_to = last
      ? last.end_s +
        (last_recovered === null || last_recovered === undefined ? 10 : Math.max(1, last_recovered))
      : 0;
    const end = this.marks.length > 0 ? fault_to : m.second();
    const report: ScenarioReport = {
      name: this.o.name,
      title: this.o.title,
      started_at: new Date(this.#started_ms).toISOString(),
      duration_s: Math.round((Date.now() - this.#started_ms) / 1000),
      nodes: this.o.nodes,
      concurrency: this.o.concurrency ?? 32,
      faults: this.marks.length,
      load: {
        baseline_rps: round(m.okPerSecond(baseline_from, baseline_to)),
        fault_rps: round(m.okPerSecond(fault_from, fault_to)),
        baseline_p99_ms: m.p99(baseline_from, baseline_to),
        fault_p99_ms: m.p99(fault_from, fault_to),
        fault_window_s: fault_to - fault_from,
        lag_max_during_faults: m.lagMax(fault_from, fault_to),
        statuses: { ...m.statuses },
      },
      recovery: {
        p99_limit_ms,
        serving_s,
        recovered_s,
        serving_max_s: serving_known.length > 0 ? Math.max(...serving_known) : null,
        recovered_median_s: percentile(known, 0.5),
        recovered_max_s: known.length > 0 ? Math.max(...known) : null,
      },
      errors: m.errors(this.#load_started_s, Math.max(end, m.second()) + 120),
      driver: {
        sent: driver?.sent ?? 0,
        acknowledged: driver?.acknowledged ?? 0,
        retries: driver?.retries ?? 0,
        gave_up: driver?.gave_up ?? 0,
        by_status: driver?.by_status ?? {},
      },
      verdict,
      checks: this.checks,
      failures: [...this.failures],
      passed: false,
    };
    const unrecovered = recovered_s.filter((s) => s === null).length;
    if (recovered_s.length > 0 && recovered_s[recovered_s.length - 1] === null)
      report.failures.push(`not recovered (lag < 1000, p99 < ${p99_limit_ms} ms) after the last fault`);
    if (unrecovered > 0) report.checks.faults_not_recovered_before_next = unrecovered;
    // Each fault but the last must be recovered from before the next one, unless the scenario chains them
    // on purpose: a fault the cluster never got over would otherwise pass unnoticed behind a later one.
    const unrecovered_before_next = this.marks
      .slice(0, -1)
      .map((mark, i) => (recovered_s[i] === null ? mark.label : null))
      .filter((label) => label !== null);
    if (!this.o.faults_overlap && unrecovered_before_next.length > 0)
      report.failures.push(`not recovered before the next fault: ${unrecovered_before_next.join(', ')}`);
    if ((driver?.gave_up ?? 0) > 0) report.failures.push(`driver gave up on ${driver?.gave_up} requests`);
    report.passed = report.failures.length === 0 && verdict !== null;
    return report;
  }

  async teardown(): Promise<void> {
    this.monitor.uninstall();
    await Promise.allSettled(this.slots.map((s) => s.starting));
    await Promise.all(this.slots.map((s) => s.kill('SIGKILL')));
    const dir = join(chaos_dir, this.o.name);
    mkdirSync(dir, { recursive: true });
    for (const slot of this.slots) writeFileSync(join(dir, `${slot.node_id}.log`), slot.log());
    writeFileSync(join(dir, 'timeline.csv'), this.monitor.timeline());
    writeFileSync(join(dir, 'marks.json'), JSON.stringify(this.marks));
    await deleteTopics(this.o.broker.brokers, this.topic_prefix).catch(() => {});
    if (this.redis) await this.redis.kill();
    else if (this.o.redis_url) await deleteRedisKeys(this.o.redis_url, `chaos:${this.topic_prefix}:`);
  }

  /** setup → load → baseline → `faults` → recovery → verify → teardown, always tearing down. */
  async execute(faults: (run: ChaosRun) => Promise<void>, baseline_ms = 8_000): Promise<ScenarioReport> {
    let driver: DriverResult | null = null;
    let verdict: ChaosVerdict | null = null;
    try {
      await this.setup();
      this.startLoad();
      await sleep(baseline_ms);
      await faults(this);
      await this.awaitRecovery();
      await sleep(2_000);
      driver = await this.stopLoad();
      verdict = await this.verify(driver);
    } catch (err) {
      this.failures.push(`run failed: ${(err as Error).stack ?? err}`);
      if (!driver) driver = await this.stopLoad(5_000).catch(() => null);
    } finally {
      await this.teardown().catch((err) => this.failures.push(`teardown: ${(err as Error).message}`));
    }
    const report = this.report(driver, verdict);
    writeFileSync(join(chaos_dir, this.o.name, 'report.json'), JSON.stringify(report, null, 2));
    return report;
  }
}

function round(x: number): number {
  return Math.round(x);
}

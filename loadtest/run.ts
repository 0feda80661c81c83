import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { HttpPool, parseTarget } from './http-client.js';
import type { LoadtestOptions } from './options.js';
import { progressLine, type Report, renderHtml, summaryText } from './report.js';
import { split } from './schedule.js';
import { accountIds, type SeedResult, seed } from './seed.js';
import {
  addCounts,
  type Counts,
  distribution,
  newHistogram,
  outcomeClass,
  sumCounts,
  summarize,
  type TimelinePoint,
} from './stats.js';
import { verify } from './verify.js';
import type { DoneMessage, FromWorker, TickMessage, ToWorker, WorkerConfig } from './worker.js';

/**
 * Runs one load test: seed → workers → aggregate → report → (verify). Used by the CLI and by the
 * end-to-end bench. Everything is bounded: seeding by a deadline, the run by duration + timeout, verify
 * by its own deadline; SIGINT asks the workers to stop early and still produces a (partial) report.
 */
export interface RunHooks {
  log?: (line: string) => void;
  /** Where progress lines go (default stderr). */
  progress?: NodeJS.WriteStream;
  /** Accounts seeded earlier (`seedAccounts`): several runs on one seeding (benches). */
  accounts?: SeededAccounts;
}

export interface SeededAccounts {
  run_id: string;
  customers: string[];
  merchants: string[];
  seeded: SeedResult | null;
}

const SEED_TIMEOUT_MS = 300_000;
const VERIFY_TIMEOUT_MS = 180_000;
const START_DELAY_MS = 200;
const POOL_SIZE = 64;

/** Opens and funds the run's accounts (or only names them with `--no-seed`). */
export async function seedAccounts(o: LoadtestOptions, log: (line: string) => void): Promise<SeededAccounts> {
  const run_id = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const ids = accountIds(run_id, o.seed ? o.accounts : Math.min(o.accounts, 1000), o.seed ? o.merchants : 10);
  if (!o.seed) return { run_id, ...ids, seeded: null };
  const pool = new HttpPool(parseTarget(o.url, o.api_key), POOL_SIZE, o.timeout_ms);
  try {
    const plan = { ...ids, currency: o.currency, balance: o.seed_balance, run_id };
    const seeded = await seed(pool, plan, POOL_SIZE, Date.now() + SEED_TIMEOUT_MS, log);
    return { run_id, ...ids, seeded };
  } finally {
    pool.close();
  }
}

export async function runLoadtest(o: LoadtestOptions, hooks: RunHooks = {}): Promise<Report> {
  const log = hooks.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const accounts = hooks.accounts ?? (await seedAccounts(o, log));
  const agg = await drive(o, accounts, accounts.run_id, hooks, log);
  const report = buildReport(o, agg, accounts.seeded);
  if (o.verify && accounts.seeded !== null) {
    log('verify: reading balances and payments back through the API …');
    const pool = new HttpPool(parseTarget(o.url, o.api_key), POOL_SIZE, o.timeout_ms);
    try {
      report.verify = await verify({
        pool,
        customers: accounts.customers,
        merchants: accounts.merchants,
        tracked: agg.done.map((d) => d.tracked),
        seed_deposited: accounts.seeded.deposited,
        sample_max: o.verify_sample,
        timeout_ms: VERIFY_TIMEOUT_MS,
        concurrency: POOL_SIZE,
        events:
          o.kafka_brokers.length > 0 && o.topic_prefix
            ? { brokers: o.kafka_brokers, topic_prefix: o.topic_prefix }
            : null,
        log,
      });
    } finally {
      pool.close();
    }
  }
  if (o.out_dir !== null) writeReports(o.out_dir, report, log);
  return report;
}

interface Aggregate {
  done: DoneMessage[];
  timeline: Map<number, TimelinePoint & { h: ReturnType<typeof newHistogram> }>;
  start_ms: number;
  elapsed_s: number;
}

async function drive(
  o: LoadtestOptions,
  ids: { customers: string[]; merchants: string[] },
  run_id: string,
  hooks: RunHooks,
  log: (line: string) => void,
): Promise<Aggregate> {
  const workers: Worker[] = [];
  // Idempotency-Keys must be unique per run even when several runs share one seeding (a reused key with
  // another body is a 409 by design).
  const phase_id = randomBytes(3).toString('hex');
  const threads = o.mode === 'closed' ? Math.min(o.threads, o.connections) : o.threads;
  for (let index = 0; index < threads; index++) {
    const cfg: WorkerConfig = {
      index,
      workers: threads,
      mode: o.mode,
      transport: o.transport,
      url: o.url,
      api_key: o.api_key,
      rate_per_s: o.rate_per_s,
      connections: Math.max(1, split(o.connections, threads, index)),
      connections_max: Math.max(1, split(o.connections_max, threads, index)),
      pipeline: o.pipeline,
      warmup_ms: o.warmup_s * 1000,
      duration_ms: o.duration_s * 1000,
      timeout_ms: o.timeout_ms,
      workload: {
        customers: ids.customers,
        merchants: ids.merchants,
        currency: o.currency,
        mix: o.mix,
        capture_ratio: o.capture_ratio,
        amount: o.amount,
        idempotency_ratio: o.idempotency_ratio,
        retry_ratio: o.retry_ratio,
        key_prefix: `lt-${run_id}-${phase_id}-${index}`,
        seed: o.random_seed * 1000 + index,
        track: o.verify,
      },
    };
    workers.push(new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: cfg }));
  }
  const agg: Aggregate = { done: [], timeline: new Map(), start_ms: 0, elapsed_s: 0 };
  const so_far = newHistogram();
  let in_flight = 0;
  let errors = 0;
  let last_rate = 0;
  let ready = 0;
  let resolve_ready: () => void = () => {};
  let resolve_done: () => void = () => {};
  let fail: (e: Error) => void = () => {};
  const all_ready = new Promise<void>((r) => {
    resolve_ready = r;
  });
  const all_done = new Promise<void>((r) => {
    resolve_done = r;
  });
  const failed = new Promise<never>((_, j) => {
    fail = j;
  });
  failed.catch(() => {});
  const onTick = (m: TickMessage) => {
    const t_s = Math.max(0, Math.round((m.t_ms - agg.start_ms) / 1000) - 1);
    let point = agg.timeline.get(t_s);
    if (!point) {
      point = {
        t_s,
        sent: 0,
        completed: 0,
        errors: 0,
        p50_ms: 0,
        p99_ms: 0,
        max_ms: 0,
        warmup: t_s < o.warmup_s,
        h: newHistogram(),
      };
      agg.timeline.set(t_s, point);
    }
    point.sent += m.sent;
    point.completed += m.completed;
    point.errors += m.errors;
    point.h.add(m.interval);
    so_far.add(m.interval);
    in_flight += m.sent - m.completed;
    errors += m.measured_errors;
  };
  workers.forEach((w) => {
    w.on('message', (m: FromWorker) => {
      if (m.type === 'ready' && ++ready === workers.length) resolve_ready();
      else if (m.type === 'tick') onTick(m);
      else if (m.type === 'done') {
        agg.done.push(m);
        if (agg.done.length === workers.length) resolve_done();
      }
    });
    w.on('error', (e) => fail(e));
    w.on('exit', (code) => {
      if (code !== 0) fail(new Error(`generator thread exited with ${code}`));
    });
  });
  const stop = () => {
    log('stopping early (signal): finishing in-flight requests …');
    for (const w of workers) w.postMessage({ type: 'stop' } satisfies ToWorker);
  };
  process.once('SIGINT', stop);
  try {
    await Promise.race([all_ready, failed]);
    agg.start_ms = performance.timeOrigin + performance.now() + START_DELAY_MS;
    for (const w of workers) w.postMessage({ type: 'start', start_ms: agg.start_ms } satisfies ToWorker);
    const total_s = o.warmup_s + o.duration_s;
    const tty =
      o.progress === 'tty' || (o.progress === 'auto' && Boolean((hooks.progress ?? process.stderr).isTTY));
    const out = hooks.progress ?? process.stderr;
    let ticks = 0;
    const progress = setInterval(() => {
      const elapsed_s = (performance.timeOrigin + performance.now() - agg.start_ms) / 1000;
      const latest = agg.timeline.get(Math.floor(elapsed_s) - 1);
      last_rate = latest?.completed ?? last_rate;
      const line = progressLine(
        {
          elapsed_s: Math.min(elapsed_s, total_s),
          total_s,
          warmup_s: o.warmup_s,
          rate_per_s: last_rate,
          p99_ms: so_far.count ? so_far.percentile(99) / 1000 : 0,
          errors,
          in_flight,
        },
        tty,
      );
      ticks++;
      if (o.progress === 'none') return;
      if (tty) out.write(`\r${line}\u001b[K`);
      else if (ticks % 5 === 0) out.write(`${line}\n`);
    }, 1000);
    await Promise.race([all_done, failed]).finally(() => clearInterval(progress));
    if (tty && o.progress !== 'none') out.write('\n');
    agg.elapsed_s = (performance.timeOrigin + performance.now() - agg.start_ms) / 1000;
    return agg;
  } finally {
    process.removeListener('SIGINT', stop);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

function buildReport(o: LoadtestOptions, agg: Aggregate, seeded: SeedResult | null): Report {
  const latency = newHistogram();
  const lag = newHistogram();
  const counts: Counts = {};
  const by_op: Record<string, number> = {};
  let sent = 0;
  let waited = 0;
  let unsent = 0;
  let opened = 0;
  let mismatches = 0;
  let loop_p99 = 0;
  let loop_max = 0;
  for (const d of agg.done) {
    latency.add(d.latency);
    lag.add(d.send_lag);
    addCounts(counts, d.counts);
    addCounts(by_op, d.counts_by_op);
    sent += d.measured_sent;
    waited += d.waited_for_connection;
    unsent += d.unsent_timeouts;
    opened += d.connections_opened;
    mismatches += d.idempotency_mismatches;
    loop_p99 = Math.max(loop_p99, d.event_loop_delay_p99_ms);
    loop_max = Math.max(loop_max, d.event_loop_delay_max_ms);
  }
  const completed = sumCounts(counts);
  const ok = sumCounts(counts, (k) => outcomeClass(k) === 'ok');
  const declined = sumCounts(counts, (k) => outcomeClass(k) === 'declined');
  const processing = sumCounts(counts, (k) => outcomeClass(k) === 'processing');
  const errors = sumCounts(counts, (k) => outcomeClass(k) === 'error');
  const timeouts = sumCounts(counts, (k) => k.startsWith('timeout'));
  const send_lag = o.mode === 'open' ? summarize(lag) : null;
  const notes = generatorNotes(o, send_lag, waited, unsent, loop_p99);
  if (mismatches > 0) notes.push(`${mismatches} Idempotency-Key retries got another payment id`);
  const timeline = [...agg.timeline.values()]
    .sort((a, b) => a.t_s - b.t_s)
    .map(({ h, ...p }) => {
      const s = summarize(h);
      return { ...p, p50_ms: s.p50_ms, p99_ms: s.p99_ms, max_ms: s.max_ms };
    });
  return {
    tool: 'payment-node loadtest',
    version: 1,
    label: o.label,
    date: new Date().toISOString(),
    machine: {
      cpus: availableParallelism(),
      node: process.versions.node,
      platform: `${process.platform} ${process.arch}`,
      load_average: loadavg(),
    },
    target: { url: o.url, transport: o.transport },
    run: {
      mode: o.mode,
      rate_per_s: o.mode === 'open' ? o.rate_per_s : null,
      duration_s: o.duration_s,
      warmup_s: o.warmup_s,
      threads: agg.done.length,
      connections: o.connections,
      pipeline: o.transport === 'ws' && o.mode === 'closed' ? o.pipeline : null,
      timeout_ms: o.timeout_ms,
      workload: {
        accounts: o.accounts,
        merchants: o.merchants,
        mix: o.mix,
        capture_ratio: o.capture_ratio,
        amount: o.amount,
        idempotency_ratio: o.idempotency_ratio,
        retry_ratio: o.retry_ratio,
        seeded: o.seed,
      },
    },
    seeding: seeded
      ? { accounts: seeded.accounts, deposits: seeded.deposits, elapsed_ms: seeded.elapsed_ms }
      : null,
    results: {
      sent,
      completed,
      ok,
      declined,
      processing,
      errors,
      timeouts,
      achieved_per_s: completed / o.duration_s,
      ok_per_s: (ok + declined) / o.duration_s,
      latency: summarize(latency),
      distribution: distribution(latency),
      counts,
      counts_by_op: by_op,
      idempotency_mismatches: mismatches,
    },
    generator: {
      behind_schedule: notes.some((n) => n.startsWith('BEHIND')),
      send_lag,
      waited_for_connection: waited,
      unsent_timeouts: unsent,
      connections_opened: opened,
      event_loop_delay_p99_ms: loop_p99,
      event_loop_delay_max_ms: loop_max,
      notes,
    },
    timeline,
    verify: null,
  };
}

/** Why the generator itself may have distorted the figures; an empty list means it kept up. */
export function generatorNotes(
  o: Pick<LoadtestOptions, 'mode'>,
  send_lag: { p99_ms: number; max_ms: number } | null,
  waited_for_connection: number,
  unsent_timeouts: number,
  event_loop_delay_p99_ms: number,
): string[] {
  const notes: string[] = [];
  if (o.mode === 'open' && send_lag && send_lag.p99_ms > 10)
    notes.push(
      `BEHIND SCHEDULE: p99 send lag ${send_lag.p99_ms} ms (max ${send_lag.max_ms} ms); the latency figures ` +
        'still count from the scheduled time, so they include this delay',
    );
  if (waited_for_connection > 0)
    notes.push(
      `${waited_for_connection} times a due request found no free connection (--connections-max reached): ` +
        'the target answers slower than the arrival rate; the wait is counted as latency',
    );
  if (unsent_timeouts > 0)
    notes.push(
      `BEHIND SCHEDULE: ${unsent_timeouts} requests were still unsent after the timeout (counted as errors)`,
    );
  if (event_loop_delay_p99_ms > 20)
    notes.push(
      `generator event loop delay p99 ${event_loop_delay_p99_ms.toFixed(1)} ms: the generator is short of CPU ` +
        '(on a shared machine it competes with the target); more --threads or another machine',
    );
  return notes;
}

function writeReports(dir: string, report: Report, log: (line: string) => void): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(dir, 'report.html'), renderHtml(report));
  log(`reports: ${join(dir, 'report.json')}, ${join(dir, 'report.html')}`);
}

export { summaryText };

import type { HttpPool } from './http-client.js';
import { inParallel } from './seed.js';
import type { DepositRecord, Tracked } from './workload.js';

/**
 * `--verify`: invariants checked through the public API after a run.
 *
 *  1. Money is conserved: the run's accounts are only touched by this run, so at quiescence the sum of
 *     their posted balances equals the deposits that were applied (the world account holds the opposite,
 *     not visible through the API). Deposits without a definite answer are resent with the same
 *     Idempotency-Key first, which either returns the stored answer or applies them now: both make the
 *     expected sum exact. Cross-partition legs (credits) may still be in flight, so the check repeats,
 *     bounded in passes and time.
 *  2. No available balance is negative (the run's accounts have no overdraft).
 *  3. Every payment an answer gave a status to (2xx, or 402 declined) is readable with that status
 *     (its last given one; a 202 only has to be readable); a sample of up to `sample_max` ids.
 *  4. Optionally (`--kafka-brokers` + `--topic-prefix`, a node whose topics hold only this run): the
 *     independent ledger verifier folds the events topic and compares it with the API's balances.
 */
export interface VerifyInput {
  pool: HttpPool;
  customers: string[];
  merchants: string[];
  tracked: Tracked[];
  seed_deposited: Map<string, number>;
  sample_max: number;
  timeout_ms: number;
  concurrency: number;
  events: { brokers: string[]; topic_prefix: string } | null;
  log: (line: string) => void;
}

export interface VerifyResult {
  ok: boolean;
  deposits_applied_total: number;
  deposits_resent: number;
  deposits_unresolved: number;
  accounts_checked: number;
  sum_posted: number;
  sum_expected: number;
  sum_ok: boolean;
  sum_passes: number;
  negative_available: number;
  payments_tracked: number;
  payments_untracked: number;
  payments_checked: number;
  status_mismatches: number;
  payments_not_found: number;
  events: Record<string, unknown> | null;
  problems: string[];
  elapsed_ms: number;
}

const PROBLEMS_MAX = 20;
const SUM_PASSES_MAX = 20;

export async function verify(input: VerifyInput): Promise<VerifyResult> {
  const t0 = Date.now();
  const deadline_ms = t0 + input.timeout_ms;
  const problems: string[] = [];
  const problem = (text: string) => {
    if (problems.length < PROBLEMS_MAX) problems.push(text);
  };
  const deposits = await resolveDeposits(input, deadline_ms);
  if (deposits.unresolved > 0)
    problem(`${deposits.unresolved} deposits without a definite answer: the sum check is inconclusive`);
  const sum = await checkSum(input, deposits.total, deadline_ms, problem);
  const payments = await checkPayments(input, problem);
  let events: Record<string, unknown> | null = null;
  if (input.events !== null) events = await checkEvents(input, sum.balances, payments.acknowledged, problem);
  const untracked = input.tracked.reduce((n, t) => n + t.untracked, 0);
  const ok =
    deposits.unresolved === 0 &&
    sum.ok &&
    sum.negative === 0 &&
    payments.mismatches === 0 &&
    payments.not_found === 0 &&
    (events === null || events.violations_total === 0);
  return {
    ok,
    deposits_applied_total: deposits.total,
    deposits_resent: deposits.resent,
    deposits_unresolved: deposits.unresolved,
    accounts_checked: sum.balances.size,
    sum_posted: sum.posted,
    sum_expected: deposits.total,
    sum_ok: sum.ok,
    sum_passes: sum.passes,
    negative_available: sum.negative,
    payments_tracked: payments.tracked,
    payments_untracked: untracked,
    payments_checked: payments.checked,
    status_mismatches: payments.mismatches,
    payments_not_found: payments.not_found,
    events,
    problems,
    elapsed_ms: Date.now() - t0,
  };
}

async function resolveDeposits(input: VerifyInput, deadline_ms: number) {
  let total = 0;
  for (const amount of input.seed_deposited.values()) total += amount;
  for (const t of input.tracked) for (const amount of t.deposited.values()) total += amount;
  const pending: DepositRecord[] = input.tracked.flatMap((t) => t.unresolved_deposits);
  let unresolved = 0;
  await inParallel(pending, input.concurrency, async (d) => {
    for (let attempt = 0; attempt < 5 && Date.now() < deadline_ms; attempt++) {
      const res = await input.pool.call('POST', '/v1/deposits', d.body, d.key);
      if (res.status === 201) {
        total += d.body.amount;
        return;
      }
      if (res.status >= 400 && res.status < 500 && res.status !== 429) return; // refused: never applied
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
    unresolved++;
  });
  if (pending.length > 0) input.log(`verify: resent ${pending.length} deposits without a definite answer`);
  return { total, resent: pending.length, unresolved };
}

async function readBalances(input: VerifyInput, problem: (text: string) => void) {
  const balances = new Map<string, { posted: number; pending: number; available: number }>();
  const ids = [...input.customers, ...input.merchants];
  await inParallel(ids, input.concurrency, async (id) => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const res = await input.pool.call('GET', `/v1/accounts/${encodeURIComponent(id)}`);
      if (res.status === 200 && res.body) {
        const b = res.body as { posted: number; pending: number; available: number };
        balances.set(id, { posted: b.posted, pending: b.pending, available: b.available });
        return;
      }
      if (res.status > 0 && res.status < 500 && res.status !== 429) break;
      await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
    }
    problem(`account ${id} not readable`);
  });
  return balances;
}

async function checkSum(
  input: VerifyInput,
  expected: number,
  deadline_ms: number,
  problem: (text: string) => void,
) {
  let posted = 0;
  let passes = 0;
  let balances = new Map<string, { posted: number; pending: number; available: number }>();
  let last_posted = Number.NaN;
  let stable = 0;
  while (passes < SUM_PASSES_MAX) {
    passes++;
    balances = await readBalances(input, passes === 1 ? problem : () => {});
    posted = 0;
    for (const b of balances.values()) posted += b.posted;
    if (posted === expected) break;
    // Legs in flight move money between partitions: wait while the sum still moves, give up when it
    // has stopped moving for 3 passes or the deadline is near.
    stable = posted === last_posted ? stable + 1 : 0;
    last_posted = posted;
    if (stable >= 3 || Date.now() > deadline_ms) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const ok = posted === expected && balances.size === input.customers.length + input.merchants.length;
  if (posted !== expected)
    problem(`sum of posted balances ${posted} ≠ deposits applied ${expected} (after ${passes} passes)`);
  let negative = 0;
  for (const [id, b] of balances)
    if (b.available < 0) {
      negative++;
      problem(`${id}: available ${b.available} < 0`);
    }
  return { ok, posted, passes, negative, balances };
}

async function checkPayments(input: VerifyInput, problem: (text: string) => void) {
  const all = new Map<string, string>();
  for (const t of input.tracked) for (const [id, status] of t.payments) all.set(id, status);
  const acknowledged = [...all.keys()];
  const step = Math.max(1, Math.floor(all.size / Math.max(1, input.sample_max)));
  const sample = [...all].filter((_, i) => i % step === 0).slice(0, input.sample_max);
  let mismatches = 0;
  let not_found = 0;
  await inParallel(sample, input.concurrency, async ([id, given]) => {
    let res = await input.pool.call('GET', `/v1/payments/${encodeURIComponent(id)}`);
    for (
      let attempt = 0;
      attempt < 3 && (res.status === 0 || res.status >= 500 || res.status === 429);
      attempt++
    ) {
      await new Promise((r) => setTimeout(r, 200));
      res = await input.pool.call('GET', `/v1/payments/${encodeURIComponent(id)}`);
    }
    if (res.status === 404) {
      not_found++;
      problem(`${id}: answered ${given}, GET 404`);
      return;
    }
    const status = String(res.body?.status ?? `HTTP ${res.status}`);
    if (given === 'processing' && res.status === 200) return;
    if (!given.split('|').includes(status)) {
      mismatches++;
      problem(`${id}: answered ${given}, GET says ${status}`);
    }
  });
  return { tracked: all.size, checked: sample.length, mismatches, not_found, acknowledged };
}

async function checkEvents(
  input: VerifyInput,
  balances: Map<string, { posted: number; pending: number }>,
  acknowledged: string[],
  problem: (text: string) => void,
): Promise<Record<string, unknown>> {
  const { readEvents, foldEvents, judge, waitQuiescent } = await import('../test/support/ledger-verifier.js');
  const { brokers, topic_prefix } = input.events!;
  await waitQuiescent(brokers, topic_prefix, 60_000);
  const events = await readEvents(brokers, `${topic_prefix}.events`, 120_000);
  const api = new Map([...balances].map(([id, b]) => [id, { posted: b.posted, pending: b.pending }]));
  const verdict = judge(foldEvents(events), acknowledged, api);
  for (const v of verdict.violations.slice(0, 5)) problem(`events: ${v}`);
  return {
    events: events.length,
    ...verdict,
    violations: verdict.violations.slice(0, 5),
    violations_total: verdict.violations.length,
  };
}

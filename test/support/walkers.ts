import { getJson as getOnce, post as postOnce } from './load-driver.js';

/**
 * The dependent workload of issue 12: each walker owns one customer, one merchant and one payment a round,
 * and runs authorize → GET → capture → GET → refund → GET → over-refund (refused) → GET → refund → GET →
 * refund 1 (refused) → GET, in sequence. Every answer is checked against a model of the walker's own
 * acknowledged answers, so a read that misses a preceding acknowledged write, or a refund accepted beyond what
 * the model allows, is a divergence. A 202, a 5xx or a transport error is sent again with the same
 * Idempotency-Key (what a client does), within `retry_window_ms`. Bounded: walkers × rounds × 12 requests,
 * each attempt with a 10 s timeout, each request within its retry window.
 */
export interface WalkerOptions {
  base: () => string;
  walkers_total: number;
  /** Rounds per walker; with `done`, the most a walker runs. */
  rounds_total: number;
  /** Checked after each round: true stops the walker early (a test that walks while faults happen). */
  done?: () => boolean;
  /** Account ids are `<prefix>_c<i>` and `<prefix>_m<i>`: one pair per walker, unique per run. */
  prefix: string;
  currency: string;
  deposit_amount: number;
  /** How long one request is sent again after a 202, a 5xx or a transport error. Default 30 s. */
  retry_window_ms?: number;
}

export interface WalkerResult {
  divergences: string[];
  /** Requests sent again (same Idempotency-Key) after a 202, a 5xx or a transport error. */
  retries: number;
  /** Every acknowledged write (payment, capture, refund) with the id it was answered with. */
  acknowledged_writes: { op: 'payment' | 'capture' | 'refund'; id: string; payment: string }[];
  payments: string[];
  requests_total: number;
}

const round_plan = [
  { op: 'refund', amount: 1000, accept: true },
  { op: 'refund', amount: 2500, accept: false },
  { op: 'refund', amount: 2000, accept: true },
  { op: 'refund', amount: 1, accept: false },
] as const;
const authorize_amount = 5000;
const capture_amount = 3000;

export function walkerAccounts(opts: Pick<WalkerOptions, 'prefix' | 'walkers_total'>) {
  return Array.from({ length: opts.walkers_total }, (_, i) => ({
    customer: `${opts.prefix}_c${i}`,
    merchant: `${opts.prefix}_m${i}`,
  }));
}

/** Creates each walker's customer (with the deposit) and merchant. Throws on any unexpected answer. */
export async function setupWalkers(opts: WalkerOptions): Promise<void> {
  for (const [i, pair] of walkerAccounts(opts).entries()) {
    const base = opts.base();
    for (const [id, kind] of [
      [pair.customer, 'customer'],
      [pair.merchant, 'merchant'],
    ] as const) {
      const res = await postOnce(base, '/v1/accounts', { id, currency: opts.currency, kind }, `${id}-create`);
      if (res.status !== 201) throw new Error(`account ${id}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    const body = { account: pair.customer, amount: opts.deposit_amount, currency: opts.currency };
    const res = await postOnce(base, '/v1/deposits', body, `${opts.prefix}-dep-${i}`);
    if (res.status !== 201) throw new Error(`deposit ${pair.customer}: ${res.status}`);
  }
}

export async function runWalkers(opts: WalkerOptions): Promise<WalkerResult> {
  const result: WalkerResult = {
    divergences: [],
    retries: 0,
    acknowledged_writes: [],
    payments: [],
    requests_total: 0,
  };
  const pairs = walkerAccounts(opts);
  await Promise.all(pairs.map((pair, i) => walk(opts, pair, i, result)));
  return result;
}

async function walk(
  opts: WalkerOptions,
  pair: { customer: string; merchant: string },
  walker: number,
  result: WalkerResult,
): Promise<void> {
  const diverge = (what: string) => result.divergences.push(`walker ${walker}: ${what}`);
  const post = (path: string, body: unknown, key: string) =>
    settled(result, opts.retry_window_ms ?? 30_000, () => postOnce(opts.base(), path, body, key));
  const getJson = (path: string) =>
    settled(result, opts.retry_window_ms ?? 30_000, () => getOnce(opts.base(), path));
  for (let round = 0; round < opts.rounds_total && !opts.done?.(); round++) {
    const key = `${opts.prefix}-w${walker}-r${round}`;
    const created = await post(
      '/v1/payments',
      {
        amount: authorize_amount,
        currency: opts.currency,
        source: pair.customer,
        destination: pair.merchant,
        capture: false,
      },
      `${key}-pay`,
    );
    result.requests_total++;
    const id = created.body.id as string | undefined;
    if (created.status !== 201 || !id || created.body.status !== 'requires_capture') {
      diverge(`round ${round} authorize: ${created.status} ${JSON.stringify(created.body)}`);
      return;
    }
    result.payments.push(id);
    result.acknowledged_writes.push({ op: 'payment', id, payment: id });
    const model = { received: 0, refunded_or_pending: 0, capturable: authorize_amount };
    const check = async (after: string) => {
      const got = await getJson(`/v1/payments/${id}`);
      result.requests_total++;
      const b = got.body;
      const refunded = Number(b.amount_refunded) + Number(b.amount_refund_pending);
      if (
        got.status !== 200 ||
        b.amount_received !== model.received ||
        b.amount_capturable !== model.capturable ||
        refunded !== model.refunded_or_pending
      ) {
        diverge(
          `round ${round} GET after ${after}: ${got.status} received ${b.amount_received} capturable ` +
            `${b.amount_capturable} refunded+pending ${refunded}; model ${JSON.stringify(model)}`,
        );
        return false;
      }
      return true;
    };
    if (!(await check('authorize'))) return;
    const capture = await post(`/v1/payments/${id}/capture`, { amount: capture_amount }, `${key}-cap`);
    result.requests_total++;
    if (capture.status !== 200 || capture.body.amount_received !== capture_amount) {
      diverge(`round ${round} capture: ${capture.status} ${JSON.stringify(capture.body)}`);
      return;
    }
    result.acknowledged_writes.push({ op: 'capture', id, payment: id });
    model.received = capture_amount;
    model.capturable = 0;
    if (!(await check('capture'))) return;
    for (const [step, plan] of round_plan.entries()) {
      const refund = await post('/v1/refunds', { payment: id, amount: plan.amount }, `${key}-ref${step}`);
      result.requests_total++;
      const refused = refund.status === 400 && errorCode(refund.body) === 'amount_exceeds_refundable';
      if (plan.accept && refund.status === 201 && typeof refund.body.id === 'string') {
        result.acknowledged_writes.push({ op: 'refund', id: refund.body.id, payment: id });
        model.refunded_or_pending += plan.amount;
      } else if (plan.accept || !refused) {
        diverge(
          `round ${round} refund ${plan.amount} (model refunded ${model.refunded_or_pending}): ` +
            `${refund.status} ${JSON.stringify(refund.body)}`,
        );
        return;
      }
      if (!(await check(`refund ${plan.amount}`))) return;
    }
  }
}

/**
 * The answer a client ends up with: a 202 (processing: the reply timed out, the command may still commit),
 * a 5xx or a transport error is sent again with the same Idempotency-Key, which answers the stored outcome
 * once there is one. Bounded by `window_ms` (and 1,000 attempts). Gives a 599 when it never settles.
 */
async function settled(
  result: WalkerResult,
  window_ms: number,
  send: () => Promise<{ status: number; body: Record<string, unknown> }>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  let last = { status: 599, body: {} as Record<string, unknown> };
  const deadline_ms = Date.now() + window_ms;
  for (let attempt = 0; attempt < 1_000 && Date.now() < deadline_ms; attempt++) {
    try {
      last = await send();
      if (last.status !== 202 && last.status < 500) return last;
    } catch {
      // node restarting or partition moving: send again
    }
    result.retries++;
    await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 500)));
  }
  return { status: 599, body: { last } };
}

function errorCode(body: Record<string, unknown>): string | undefined {
  return (body.error as { code?: string } | undefined)?.code;
}

/**
 * Waits (bounded) until every walker payment has its refunds settled, then checks each customer's and
 * merchant's balance against the model: every round nets to zero once its refunds settle, so a customer
 * ends with its deposit and a merchant with nothing. Returns the divergences.
 */
export async function checkWalkerSettlement(
  opts: WalkerOptions,
  payments: string[],
  deadline_ms: number,
): Promise<string[]> {
  const divergences: string[] = [];
  const refunded_total = round_plan.reduce((sum, p) => sum + (p.accept ? p.amount : 0), 0);
  for (const id of payments) {
    let last: Record<string, unknown> = {};
    while (Date.now() < deadline_ms) {
      last = (await getOnce(opts.base(), `/v1/payments/${id}`).catch(() => ({ body: {} }))).body;
      if (last.amount_refunded === refunded_total && last.amount_refund_pending === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (last.amount_refunded !== refunded_total || last.amount_refund_pending !== 0) {
      divergences.push(`payment ${id}: refunds never settled: ${JSON.stringify(last)}`);
    }
  }
  for (const pair of walkerAccounts(opts)) {
    for (const [id, expected] of [
      [pair.customer, opts.deposit_amount],
      [pair.merchant, 0],
    ] as const) {
      const account = (await getOnce(opts.base(), `/v1/accounts/${id}`)).body;
      if (account.posted !== expected || account.pending !== 0) {
        divergences.push(
          `account ${id}: posted ${account.posted} pending ${account.pending}, model ${expected}`,
        );
      }
    }
  }
  return divergences;
}

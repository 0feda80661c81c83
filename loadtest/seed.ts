import type { HttpPool } from './http-client.js';

/**
 * Seeding: opens the run's accounts and funds every customer through the public API, each request with an
 * Idempotency-Key so a retry (after a 5xx, 429 or a lost answer) can never double a deposit. Closed loop
 * over a small pool; bounded in attempts per request and in total time.
 */
export interface SeedPlan {
  customers: string[];
  merchants: string[];
  currency: string;
  balance: number;
  run_id: string;
}

export interface SeedResult {
  accounts: number;
  deposits: number;
  /** account → amount deposited by the seeding (answered 201). */
  deposited: Map<string, number>;
  elapsed_ms: number;
  requests: number;
}

const ATTEMPTS_MAX = 8;

export function accountIds(run_id: string, customers: number, merchants: number) {
  return {
    customers: Array.from({ length: customers }, (_, i) => `lt${run_id}c${i}`),
    merchants: Array.from({ length: merchants }, (_, i) => `lt${run_id}m${i}`),
  };
}

export async function seed(
  pool: HttpPool,
  plan: SeedPlan,
  concurrency: number,
  deadline_ms: number,
  log: (line: string) => void,
): Promise<SeedResult> {
  const t0 = Date.now();
  let requests = 0;
  const call = async (path: string, body: Record<string, unknown>, key: string, ok: number[]) => {
    for (let attempt = 0; attempt < ATTEMPTS_MAX && Date.now() < deadline_ms; attempt++) {
      requests++;
      const res = await pool.call('POST', path, body, key);
      if (ok.includes(res.status)) return res;
      const retryable = res.status === 0 || res.status === 202 || res.status === 429 || res.status >= 500;
      if (!retryable)
        throw new Error(`seeding ${path} ${JSON.stringify(body)}: ${res.status} ${JSON.stringify(res.body)}`);
      await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt)));
    }
    throw new Error(`seeding ${path}: no definite answer after ${ATTEMPTS_MAX} attempts or the deadline`);
  };
  const accounts = [
    ...plan.merchants.map((id) => ({ id, kind: 'merchant' })),
    ...plan.customers.map((id) => ({ id, kind: 'customer' })),
  ];
  await inParallel(accounts, concurrency, (a) =>
    call(
      '/v1/accounts',
      { id: a.id, currency: plan.currency, kind: a.kind },
      `seed-${plan.run_id}-a-${a.id}`,
      [201],
    ),
  );
  log(`seeded ${accounts.length} accounts in ${Date.now() - t0} ms`);
  const deposited = new Map<string, number>();
  await inParallel(plan.customers, concurrency, async (id) => {
    const body = { account: id, amount: plan.balance, currency: plan.currency };
    await call('/v1/deposits', body, `seed-${plan.run_id}-d-${id}`, [201]);
    deposited.set(id, plan.balance);
  });
  const elapsed_ms = Date.now() - t0;
  log(`funded ${plan.customers.length} customers with ${plan.balance} each; seeding took ${elapsed_ms} ms`);
  return { accounts: accounts.length, deposits: plan.customers.length, deposited, elapsed_ms, requests };
}

/** Runs `fn` over `items` with at most `concurrency` at once; the first failure rejects. */
export async function inParallel<T>(items: T[], concurrency: number, fn: (item: T) => Promise<unknown>) {
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
}

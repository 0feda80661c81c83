import { rng } from '../../loadtest/workload.js';

/** The loadtest generator's PRNG (mulberry32), so both drive reproducible workloads the same way. */
export { rng };

/**
 * A small closed-loop driver for correctness tests (not a benchmark): it sends a payment workload over the
 * HTTP API with an Idempotency-Key on every request, retries a request with the same key while the node is
 * down, and records what was acknowledged. Bounded in requests and time.
 */
export interface DriverOptions {
  base: () => string;
  accounts: { customers: string[]; merchants: string[] };
  commands_total: number;
  concurrency: number;
  deadline_ms: number;
  currency: string;
  seed: number;
  /** Updated as the run goes, so a fault injector can act at chosen points of the workload. */
  progress?: { sent: number };
}

export interface DriverResult {
  /** Payment ids acknowledged with 201/402 (or 202 processing: durable, must be applied once). */
  acknowledged_payments: Set<string>;
  /** Other acknowledged writes, each of which must be in the log exactly once: captured payment ids (200),
   * refund ids (201), deposit ids (201; the command id). */
  acknowledged_captures: string[];
  acknowledged_refunds: string[];
  acknowledged_deposits: string[];
  sent: number;
  acknowledged: number;
  retries: number;
  gave_up: number;
  by_status: Record<string, number>;
}

const auth = 'Bearer sk_test_local';

export async function post(base: string, path: string, body: unknown, key: string) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export async function getJson(base: string, path: string) {
  const res = await fetch(`${base}${path}`, {
    headers: { authorization: auth },
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Retries the same request (same key) until it gets an answer that is not a transport error or 5xx. */
async function until(
  deadline_ms: number,
  result: DriverResult,
  send: () => Promise<{ status: number; body: Record<string, unknown> }>,
) {
  for (let attempt = 0; Date.now() < deadline_ms; attempt++) {
    try {
      const res = await send();
      if (res.status < 500) return res;
    } catch {
      // node killed or restarting: retry with the same Idempotency-Key
    }
    result.retries++;
    await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 1000)));
  }
  result.gave_up++;
  return null;
}

export async function drive(opts: DriverOptions): Promise<DriverResult> {
  const random = rng(opts.seed);
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]!;
  const result: DriverResult = {
    acknowledged_payments: new Set(),
    acknowledged_captures: [],
    acknowledged_refunds: [],
    acknowledged_deposits: [],
    sent: 0,
    acknowledged: 0,
    retries: 0,
    gave_up: 0,
    by_status: {},
  };
  const authorized: string[] = []; // manual payments that may be captured (bounded by commands_total)
  const captured: string[] = []; // succeeded payments that may be refunded
  let issued = 0;
  const worker = async (lane: number) => {
    while (issued < opts.commands_total && Date.now() < opts.deadline_ms) {
      const n = issued++;
      const key = `k${opts.seed}-${lane}-${n}`;
      const roll = random();
      let path: string;
      let body: unknown;
      if (roll < 0.08) {
        path = '/v1/deposits';
        body = {
          account: pick(opts.accounts.customers),
          amount: 1 + Math.floor(random() * 50_000),
          currency: opts.currency,
        };
      } else if (roll < 0.22 && authorized.length > 0) {
        const id = authorized.splice(Math.floor(random() * authorized.length), 1)[0]!;
        path = `/v1/payments/${id}/capture`;
        body = random() < 0.5 ? {} : { amount: 1 };
      } else if (roll < 0.32 && captured.length > 0) {
        path = '/v1/refunds';
        body = { payment: pick(captured), amount: 1 + Math.floor(random() * 50) };
      } else {
        path = '/v1/payments';
        body = {
          amount: 1 + Math.floor(random() * 5_000),
          currency: opts.currency,
          source: pick(opts.accounts.customers),
          destination: pick(opts.accounts.merchants),
          capture: random() < 0.7,
        };
      }
      result.sent++;
      if (opts.progress) opts.progress.sent = result.sent;
      const res = await until(opts.deadline_ms, result, () => post(opts.base(), path, body, key));
      if (!res) continue;
      result.by_status[res.status] = (result.by_status[res.status] ?? 0) + 1;
      if (res.status >= 200 && res.status < 300) result.acknowledged++;
      if (path === '/v1/payments') record(res, result, authorized, captured);
      else recordWrite(path, res, result);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, (_, lane) => worker(lane)));
  return result;
}

function recordWrite(
  path: string,
  res: { status: number; body: Record<string, unknown> },
  result: DriverResult,
) {
  const id = typeof res.body.id === 'string' ? res.body.id : null;
  if (id === null) return;
  if (path === '/v1/deposits' && res.status === 201) result.acknowledged_deposits.push(id);
  else if (path === '/v1/refunds' && res.status === 201) result.acknowledged_refunds.push(id);
  else if (path.endsWith('/capture') && res.status === 200) result.acknowledged_captures.push(id);
}

function record(
  res: { status: number; body: Record<string, unknown> },
  result: DriverResult,
  authorized: string[],
  captured: string[],
) {
  const error = res.body.error as { payment_id?: string } | undefined;
  const id = (res.body.id as string | undefined) ?? error?.payment_id;
  if (!id || ![201, 202, 402].includes(res.status)) return;
  result.acknowledged_payments.add(id);
  if (res.body.status === 'requires_capture') authorized.push(id);
  if (res.body.status === 'succeeded') captured.push(id);
}

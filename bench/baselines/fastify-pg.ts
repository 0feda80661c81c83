/**
 * Baseline (b): what a team would build instead — a conventional Fastify + PostgreSQL ledger serving the
 * same API subset the load generator uses (accounts, deposits, payments create/capture/get, refunds),
 * with the same JSON shapes, so the same workload and generator run against it unchanged.
 *
 * One database transaction per operation: payer (and payee) rows locked with SELECT … FOR UPDATE (in id
 * order, so payments and refunds cannot deadlock), balances updated, double-entry rows inserted, payment
 * row written, COMMIT. Idempotency-Key: a row inserted in the same transaction (a concurrent retry waits
 * on it, then reads the stored answer). Tuned the way its users tune it: a pg.Pool sized for the machine
 * (PG_POOL, default 16), named prepared statements (parsed once per connection), Fastify JSON schemas
 * for validation (compiled), logger off. Durability as PostgreSQL ships it (synchronous_commit = on,
 * WAL fsync at commit, group commit across connections).
 *
 *   node --import tsx bench/baselines/fastify-pg.ts <port> [schema]
 *   env PG_URL (default postgres://postgres@127.0.0.1:5432/test), PG_POOL, API_KEY (default sk_test_local)
 * Creates its own schema (default bench_fastify_<pid>) and drops it on SIGTERM.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyReply } from 'fastify';
import pg from 'pg';

const port = Number(process.argv[2] ?? 18081);
const schema = process.argv[3] ?? `bench_fastify_${process.pid}`;
const pg_url = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const pool_size = Number(process.env.PG_POOL ?? 16);
const api_key = process.env.API_KEY ?? 'sk_test_local';
if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`bad schema name ${schema}`);

const DDL = `
CREATE SCHEMA ${schema};
SET search_path = ${schema};
CREATE TABLE accounts (
  id text PRIMARY KEY, currency text NOT NULL, kind text NOT NULL,
  posted bigint NOT NULL DEFAULT 0, pending bigint NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (
  id text PRIMARY KEY, source text NOT NULL, destination text NOT NULL, amount bigint NOT NULL,
  currency text NOT NULL, status text NOT NULL, capture_method text NOT NULL,
  amount_received bigint NOT NULL DEFAULT 0, amount_refunded bigint NOT NULL DEFAULT 0,
  decline_code text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE entries (
  id bigserial PRIMARY KEY, account_id text NOT NULL, payment_id text, amount bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX entries_account ON entries (account_id);
CREATE TABLE refunds (id text PRIMARY KEY, payment_id text NOT NULL, amount bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE idempotency (key text PRIMARY KEY, status int, body jsonb, created_at timestamptz NOT NULL DEFAULT now());
`;

const pool = new pg.Pool({
  connectionString: pg_url,
  max: pool_size,
  options: `-c search_path=${schema}`,
});

/** Named prepared statements: parsed and planned once per pooled connection. */
const q = {
  idem_claim: 'INSERT INTO idempotency (key) VALUES ($1) ON CONFLICT DO NOTHING',
  idem_get: 'SELECT status, body FROM idempotency WHERE key = $1',
  idem_put: 'UPDATE idempotency SET status = $2, body = $3 WHERE key = $1',
  lock_accounts:
    'SELECT id, currency, posted, pending FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE',
  account_get: 'SELECT id, currency, kind, posted, pending FROM accounts WHERE id = $1',
  account_insert: 'INSERT INTO accounts (id, currency, kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
  post: 'UPDATE accounts SET posted = posted + $2 WHERE id = $1',
  hold: 'UPDATE accounts SET pending = pending + $2 WHERE id = $1',
  settle: 'UPDATE accounts SET pending = pending - $2, posted = posted - $2 WHERE id = $1',
  entries2: 'INSERT INTO entries (account_id, payment_id, amount) VALUES ($1, $3, -$4::bigint), ($2, $3, $4)',
  entry1: 'INSERT INTO entries (account_id, payment_id, amount) VALUES ($1, $2, $3)',
  payment_insert:
    'INSERT INTO payments (id, source, destination, amount, currency, status, capture_method, amount_received, decline_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
  payment_lock: 'SELECT * FROM payments WHERE id = $1 FOR UPDATE',
  payment_get: 'SELECT * FROM payments WHERE id = $1',
  payment_capture: "UPDATE payments SET status = 'succeeded', amount_received = $2 WHERE id = $1",
  payment_refund: 'UPDATE payments SET amount_refunded = amount_refunded + $2 WHERE id = $1',
  refund_insert: 'INSERT INTO refunds (id, payment_id, amount) VALUES ($1, $2, $3)',
} as const;

type Client = pg.PoolClient;
const run = (c: Client, name: keyof typeof q, values: unknown[]) => c.query({ name, text: q[name], values });

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(status));
  }
}
const err = (status: number, code: string, message: string, extra: Record<string, unknown> = {}) =>
  new ApiError(status, {
    error: { type: status === 402 ? 'payment_declined' : 'invalid_request_error', code, message, ...extra },
  });

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** One transaction with optional idempotency: a replayed key returns the stored answer. */
async function tx(key: string | undefined, work: (c: Client) => Promise<Answer>): Promise<Answer> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    if (key !== undefined) {
      const claimed = await run(c, 'idem_claim', [key]);
      if (claimed.rowCount === 0) {
        await c.query('ROLLBACK');
        const stored = await run(c, 'idem_get', [key]);
        const row = stored.rows[0] as { status: number; body: Record<string, unknown> };
        return { status: row.status, body: row.body };
      }
    }
    let answer: Answer;
    try {
      answer = await work(c);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 402) throw e;
      answer = { status: e.status, body: e.body };
    }
    if (key !== undefined) await run(c, 'idem_put', [key, answer.status, answer.body]);
    await c.query('COMMIT');
    return answer;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}

interface AccountRow {
  id: string;
  currency: string;
  kind?: string;
  posted: string;
  pending: string;
}
interface PaymentRow {
  id: string;
  source: string;
  destination: string;
  amount: string;
  currency: string;
  status: string;
  capture_method: string;
  amount_received: string;
  amount_refunded: string;
  decline_code: string | null;
}

const accountView = (a: AccountRow) => ({
  id: a.id,
  object: 'account',
  currency: a.currency,
  kind: a.kind,
  available: Number(a.posted) - Number(a.pending),
  pending: Number(a.pending),
  posted: Number(a.posted),
});
const paymentView = (p: PaymentRow) => ({
  id: p.id,
  object: 'payment',
  status: p.status,
  amount: Number(p.amount),
  currency: p.currency,
  source: p.source,
  destination: p.destination,
  capture_method: p.capture_method,
  amount_capturable: p.status === 'requires_capture' ? Number(p.amount) : 0,
  amount_received: Number(p.amount_received),
  amount_refunded: Number(p.amount_refunded),
  decline_code: p.decline_code,
});

async function lockPair(c: Client, a: string, b: string, currency: string) {
  const rows = (await run(c, 'lock_accounts', [[a, b]])).rows as AccountRow[];
  const payer = rows.find((r) => r.id === a);
  const payee = rows.find((r) => r.id === b);
  if (!payer) throw err(404, 'not_found', `no account ${a}`);
  if (!payee) throw err(404, 'not_found', `no account ${b}`);
  if (payer.currency !== currency || payee.currency !== currency)
    throw err(400, 'invalid_request', 'currency mismatch');
  return { payer, payee };
}

async function createPayment(
  c: Client,
  b: { amount: number; currency: string; source: string; destination: string; capture?: boolean },
): Promise<Answer> {
  const currency = b.currency.toLowerCase();
  const { payer } = await lockPair(c, b.source, b.destination, currency);
  const id = `pay_${randomUUID().replace(/-/g, '')}`;
  const manual = b.capture === false;
  const method = manual ? 'manual' : 'automatic';
  if (Number(payer.posted) - Number(payer.pending) < b.amount) {
    await run(c, 'payment_insert', [
      id,
      b.source,
      b.destination,
      b.amount,
      currency,
      'declined',
      method,
      0,
      'insufficient_funds',
    ]);
    throw err(402, 'payment_declined', 'The payment was declined: insufficient_funds.', {
      decline_code: 'insufficient_funds',
      payment_id: id,
    });
  }
  if (manual) await run(c, 'hold', [b.source, b.amount]);
  else {
    await run(c, 'post', [b.source, -b.amount]);
    await run(c, 'post', [b.destination, b.amount]);
    await run(c, 'entries2', [b.source, b.destination, id, b.amount]);
  }
  const status = manual ? 'requires_capture' : 'succeeded';
  const received = manual ? 0 : b.amount;
  await run(c, 'payment_insert', [
    id,
    b.source,
    b.destination,
    b.amount,
    currency,
    status,
    method,
    received,
    null,
  ]);
  const row: PaymentRow = {
    id,
    source: b.source,
    destination: b.destination,
    amount: String(b.amount),
    currency,
    status,
    capture_method: method,
    amount_received: String(received),
    amount_refunded: '0',
    decline_code: null,
  };
  return { status: 201, body: paymentView(row) };
}

async function capturePayment(c: Client, id: string): Promise<Answer> {
  const p = (await run(c, 'payment_lock', [id])).rows[0] as PaymentRow | undefined;
  if (!p) throw err(404, 'not_found', `no payment ${id}`);
  if (p.status !== 'requires_capture') throw err(400, 'payment_not_capturable', `payment is ${p.status}`);
  await lockPair(c, p.source, p.destination, p.currency);
  const amount = Number(p.amount);
  await run(c, 'settle', [p.source, amount]);
  await run(c, 'post', [p.destination, amount]);
  await run(c, 'entries2', [p.source, p.destination, id, amount]);
  await run(c, 'payment_capture', [id, amount]);
  return { status: 200, body: paymentView({ ...p, status: 'succeeded', amount_received: String(amount) }) };
}

async function refund(c: Client, b: { payment: string; amount?: number }): Promise<Answer> {
  const p = (await run(c, 'payment_lock', [b.payment])).rows[0] as PaymentRow | undefined;
  if (!p) throw err(404, 'not_found', `no payment ${b.payment}`);
  const left = Number(p.amount_received) - Number(p.amount_refunded);
  const amount = b.amount ?? left;
  if (p.status !== 'succeeded' || amount > left || amount < 1)
    throw err(400, 'refund_exceeds_captured', 'refund above the captured amount');
  await lockPair(c, p.destination, p.source, p.currency);
  await run(c, 'post', [p.destination, -amount]);
  await run(c, 'post', [p.source, amount]);
  await run(c, 'entries2', [p.destination, p.source, p.id, amount]);
  await run(c, 'payment_refund', [p.id, amount]);
  const rid = `re_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
  await run(c, 'refund_insert', [rid, p.id, amount]);
  return {
    status: 201,
    body: { id: rid, object: 'refund', payment: p.id, amount, currency: p.currency, status: 'succeeded' },
  };
}

async function deposit(c: Client, b: { account: string; amount: number; currency: string }): Promise<Answer> {
  const rows = (await run(c, 'lock_accounts', [[b.account]])).rows as AccountRow[];
  if (rows.length === 0) throw err(404, 'not_found', `no account ${b.account}`);
  await run(c, 'post', [b.account, b.amount]);
  await run(c, 'entry1', [b.account, null, b.amount]);
  await run(c, 'entry1', ['world', null, -b.amount]);
  return {
    status: 201,
    body: {
      id: `dep_${randomUUID().replace(/-/g, '')}`,
      object: 'deposit',
      account: b.account,
      amount: b.amount,
    },
  };
}

// ---------------------------------------------------------------- HTTP

const app = Fastify({ logger: false, bodyLimit: 16384 });
const id_schema = { type: 'string', minLength: 1, maxLength: 64 };
const amount_schema = { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER };
const currency_schema = { type: 'string', pattern: '^[A-Za-z]{3}$' };
const body = (properties: Record<string, unknown>, required: string[]) => ({
  schema: { body: { type: 'object', additionalProperties: false, properties, required } },
});

app.addHook('onRequest', async (req, reply) => {
  if (req.headers.authorization !== `Bearer ${api_key}`)
    return reply.code(401).send({ error: { type: 'authentication_error', code: 'authentication_required' } });
});
app.setErrorHandler((e: Error & { statusCode?: number; validation?: unknown }, _req, reply) => {
  if (e instanceof ApiError) return reply.code(e.status).send(e.body);
  if (e.validation)
    return reply
      .code(400)
      .send({ error: { type: 'invalid_request_error', code: 'invalid_request', message: e.message } });
  return reply.code(500).send({ error: { type: 'api_error', code: 'internal', message: e.message } });
});

const send = (reply: FastifyReply, a: Answer) => reply.code(a.status).send(a.body);
const keyOf = (h: unknown) => (typeof h === 'string' && h.length > 0 ? h : undefined);

app.post(
  '/v1/accounts',
  body({ id: id_schema, currency: currency_schema, kind: { enum: ['customer', 'merchant'] } }, [
    'id',
    'currency',
    'kind',
  ]),
  async (req, reply) => {
    const b = req.body as { id: string; currency: string; kind: string };
    const c = await pool.connect();
    try {
      await run(c, 'account_insert', [b.id, b.currency.toLowerCase(), b.kind]);
      const row = (await run(c, 'account_get', [b.id])).rows[0] as AccountRow;
      return send(reply, { status: 201, body: accountView(row) });
    } finally {
      c.release();
    }
  },
);
app.get('/v1/accounts/:id', async (req, reply) => {
  const row = (
    await pool.query({
      name: 'account_get',
      text: q.account_get,
      values: [(req.params as { id: string }).id],
    })
  ).rows[0] as AccountRow | undefined;
  if (!row) throw err(404, 'not_found', 'no such account');
  return send(reply, { status: 200, body: accountView(row) });
});
app.post(
  '/v1/deposits',
  body({ account: id_schema, amount: amount_schema, currency: currency_schema }, [
    'account',
    'amount',
    'currency',
  ]),
  async (req, reply) =>
    send(reply, await tx(keyOf(req.headers['idempotency-key']), (c) => deposit(c, req.body as never))),
);
app.post(
  '/v1/payments',
  body(
    {
      amount: amount_schema,
      currency: currency_schema,
      source: id_schema,
      destination: id_schema,
      capture: { type: 'boolean' },
      description: { type: 'string' },
      metadata: { type: 'object' },
    },
    ['amount', 'currency', 'source', 'destination'],
  ),
  async (req, reply) =>
    send(reply, await tx(keyOf(req.headers['idempotency-key']), (c) => createPayment(c, req.body as never))),
);
app.post('/v1/payments/:id/capture', async (req, reply) =>
  send(
    reply,
    await tx(keyOf(req.headers['idempotency-key']), (c) =>
      capturePayment(c, (req.params as { id: string }).id),
    ),
  ),
);
app.get('/v1/payments/:id', async (req, reply) => {
  const row = (
    await pool.query({
      name: 'payment_get',
      text: q.payment_get,
      values: [(req.params as { id: string }).id],
    })
  ).rows[0] as PaymentRow | undefined;
  if (!row) throw err(404, 'not_found', 'no such payment');
  return send(reply, { status: 200, body: paymentView(row) });
});
app.post(
  '/v1/refunds',
  body({ payment: id_schema, amount: amount_schema }, ['payment']),
  async (req, reply) =>
    send(reply, await tx(keyOf(req.headers['idempotency-key']), (c) => refund(c, req.body as never))),
);

async function main(): Promise<void> {
  const admin = new pg.Client({ connectionString: pg_url });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.query(DDL);
  await admin.end();
  await app.listen({ host: '127.0.0.1', port });
  process.stdout.write(`listening ${port} (schema ${schema}, pool ${pool_size})\n`);
}

async function shutdown(): Promise<void> {
  await app.close().catch(() => {});
  await pool.end().catch(() => {});
  const admin = new pg.Client({ connectionString: pg_url });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.end();
}

process.once('SIGTERM', () => {
  void shutdown().finally(() => process.exit(0));
});
main().catch((e: unknown) => {
  process.stderr.write(`fastify-pg: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

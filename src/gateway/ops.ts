import { hash } from 'node:crypto';
import {
  type ApiError,
  type Command,
  ERROR_CATALOG,
  makeError,
  paymentIdFor,
  type Reply,
  shard,
  shardOfTokenId,
  tokenIdFor,
} from '../domain/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { randomHex } from './entropy.js';
import type { IdempotencyFence } from './fence.js';
import type { Ledger } from './ledger.js';
import type { MerchantScope } from './scope.js';
import type { TraceContext } from './trace.js';
import {
  isAccountId,
  type Parsed,
  parseCancel,
  parseCapture,
  parseDeposit,
  parseOpenAccount,
  parsePayment,
  parsePaymentIdParam,
  parseRefund,
  parseToken,
} from './validate.js';
import type { Vault } from './vault.js';

/**
 * The ONE operation layer under both transports: HTTP routes and WebSocket frames build an `OpRequest` and
 * answer with the `OpResult`, so the two give identical results by construction.
 *
 *   parse body → scope ids → build command (+ fingerprint) → fence (Idempotency-Key) → vault (tokens)
 *     → ledger.call (committed reply | null after the timeout) → external view
 */
export const OP_NAMES = [
  'accounts.create',
  'accounts.get',
  'deposits.create',
  'tokens.create',
  'payments.create',
  'payments.get',
  'payments.capture',
  'payments.cancel',
  'refunds.create',
] as const;
export type OpName = (typeof OP_NAMES)[number];

export function isOpName(value: unknown): value is OpName {
  return typeof value === 'string' && (OP_NAMES as readonly string[]).includes(value);
}

export interface OpRequest {
  op: OpName;
  merchant: MerchantScope;
  /** The id named by the path (`/v1/payments/:id/...`, `/v1/accounts/:id`); null when none. */
  id: string | null;
  /** The parsed JSON body; `{}` for reads. */
  body: Record<string, unknown>;
  /** Validated Idempotency-Key, '' for none. */
  idempotency_key: string;
  trace: TraceContext;
}

export interface OpResult {
  status: number;
  body: Record<string, unknown>;
}

/** What one operation sends and how it answers when no reply comes in time. */
interface Plan {
  command: Command;
  /** 202 body after the reply timeout; null for reads (504 instead). */
  pending: Record<string, unknown> | null;
  /** Runs after the fence and before the command is produced (the vault write of a token). */
  prepare?: () => Promise<ApiError | null>;
  /** Runs when the ledger refused the command with a committed 4xx (the vault record is removed). */
  refused?: () => Promise<void>;
}

const COUNTER_SERIES_MAX = 1024;

type Stamp = { command_id: string; time_ms: number; fingerprint?: string };

export class Operations {
  readonly #ledger: Ledger;
  readonly #fence: IdempotencyFence;
  readonly #vault: Vault;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #now_ms: () => number;
  /** Labelled counter children, cached (op × transport × status is small and fixed). */
  readonly #counters_by_key = new Map<string, { inc(): void }>();

  constructor(opts: {
    ledger: Ledger;
    fence: IdempotencyFence;
    vault: Vault;
    log: Logger;
    metrics: Metrics;
    now_ms?: () => number;
  }) {
    this.#ledger = opts.ledger;
    this.#fence = opts.fence;
    this.#vault = opts.vault;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.#now_ms = opts.now_ms ?? Date.now;
  }

  /** Never throws: an unexpected failure is logged with its trace and answered 500 `internal_error`. */
  async execute(req: OpRequest, transport: 'http' | 'ws'): Promise<OpResult> {
    let result: OpResult;
    try {
      result = await this.#execute(req);
    } catch (err) {
      this.#log.error({ err, op: req.op, trace_id: req.trace.trace_id }, 'internal_error');
      result = errorResult(makeError('internal_error'));
    }
    const key = `${req.op} ${transport} ${result.status}`;
    let counter = this.#counters_by_key.get(key);
    if (counter === undefined) {
      counter = this.#metrics.operations_total.labels({
        op: req.op,
        transport,
        status: String(result.status),
      });
      if (this.#counters_by_key.size < COUNTER_SERIES_MAX) this.#counters_by_key.set(key, counter);
    }
    counter.inc();
    return result;
  }

  async #execute(req: OpRequest): Promise<OpResult> {
    const planned = this.#plan(req);
    if (!planned.ok) return errorResult(planned.error);
    const plan = planned.value;
    const key = plan.pending !== null ? req.idempotency_key : '';
    const fingerprint = plan.command.fingerprint ?? '';
    if (key !== '' && (await this.#fence.check(req.merchant.merchant_id, key, fingerprint)) === 'conflict') {
      return errorResult(makeError('idempotency_key_reused', undefined, 'idempotency_key'));
    }
    const prepared = plan.prepare ? await plan.prepare() : null;
    if (prepared !== null) return errorResult(prepared);
    const reply = await this.#ledger.call(plan.command, req.trace);
    if (reply === null) {
      if (plan.pending !== null) return { status: 202, body: { ...plan.pending, status: 'processing' } };
      return errorResult(makeError('timeout', 'no committed answer in time; retry'));
    }
    if (!reply.ok && refusedWithoutRecord(reply)) {
      if (key !== '') await this.#fence.release(req.merchant.merchant_id, key, fingerprint);
      if (plan.refused) await plan.refused();
    }
    return externalResult(req.merchant, reply);
  }

  #plan(req: OpRequest): Parsed<Plan> {
    switch (req.op) {
      case 'accounts.create':
        return this.#openAccount(req);
      case 'accounts.get':
        return this.#getAccount(req);
      case 'deposits.create':
        return this.#deposit(req);
      case 'tokens.create':
        return this.#token(req);
      case 'payments.create':
        return this.#payment(req);
      case 'payments.get':
      case 'payments.capture':
      case 'payments.cancel':
        return this.#paymentAction(req);
      case 'refunds.create':
        return this.#refund(req);
    }
  }

  #openAccount(req: OpRequest): Parsed<Plan> {
    const parsed = parseOpenAccount(req.body);
    if (!parsed.ok) return parsed;
    const { id, currency, kind, overdraft_limit } = parsed.value;
    const client_id = id ?? `acct_${this.#unique(req, 'acct')}`;
    const stamp = this.#stamp(req, { ...parsed.value, id: client_id });
    const command: Command = {
      type: 'open_account',
      ...stamp,
      account_id: req.merchant.account(client_id),
      currency,
      kind,
      overdraft_limit,
    };
    return planned(command, { id: client_id, object: 'account' });
  }

  #getAccount(req: OpRequest): Parsed<Plan> {
    if (!isAccountId(req.id)) return { ok: false, error: makeError('not_found', 'no such account', 'id') };
    const command: Command = {
      type: 'get_account',
      ...this.#readStamp(),
      account_id: req.merchant.account(req.id),
    };
    return planned(command, null);
  }

  #deposit(req: OpRequest): Parsed<Plan> {
    const parsed = parseDeposit(req.body);
    if (!parsed.ok) return parsed;
    const { account, amount, currency } = parsed.value;
    const stamp = this.#stamp(req, parsed.value);
    const account_id = req.merchant.account(account);
    const command: Command = { type: 'deposit', ...stamp, account_id, amount, currency };
    return planned(command, { id: stamp.command_id, object: 'deposit' });
  }

  #token(req: OpRequest): Parsed<Plan> {
    const parsed = parseToken(req.body, this.#now_ms());
    if (!parsed.ok) return parsed;
    const { account, pan, exp_month, exp_year } = parsed.value;
    const account_id = req.merchant.account(account);
    const token_id = tokenIdFor(shard(account_id), req.merchant.tag + this.#unique(req, 'tok'));
    const card = this.#vault.metadata(pan);
    // The fingerprint input holds the keyed card fingerprint, never the PAN (an unkeyed hash of a PAN is
    // reversible by enumeration).
    const stamp = this.#stamp(req, { account, card: card.fingerprint, exp_month, exp_year });
    const command: Command = {
      type: 'create_token',
      ...stamp,
      account_id,
      token_id,
      last4: card.last4,
      brand: card.brand,
      card_fingerprint: card.fingerprint,
      exp_month,
      exp_year,
    };
    return {
      ok: true,
      value: {
        command,
        pending: { id: token_id, object: 'token' },
        prepare: () => this.#vaultStore(token_id, pan),
        refused: () => this.#vault.remove(token_id).catch(() => {}),
      },
    };
  }

  async #vaultStore(token_id: string, pan: string): Promise<ApiError | null> {
    try {
      await this.#vault.store(token_id, pan);
      return null;
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'vault write failed');
      return makeError('unavailable', 'the card vault is unavailable; retry');
    }
  }

  #payment(req: OpRequest): Parsed<Plan> {
    const parsed = parsePayment(req.body);
    if (!parsed.ok) return parsed;
    const p = parsed.value;
    const by_token = p.source.startsWith('tok_');
    if (by_token && !this.#vault.mayUse(req.merchant, p.source, req.trace.trace_id))
      return { ok: false, error: makeError('not_found', `No such source: ${p.source}`, 'source') };
    const source = by_token ? p.source : req.merchant.account(p.source);
    const payer_shard = by_token ? shardOfTokenId(p.source)! : shard(source);
    const payment_id = paymentIdFor(payer_shard, req.merchant.tag + this.#unique(req, 'pay'));
    const command: Command = {
      type: 'create_payment',
      ...this.#stamp(req, p),
      payment_id,
      source,
      destination: req.merchant.account(p.destination),
      amount: p.amount,
      currency: p.currency,
      capture: p.capture,
      description: p.description,
      metadata: p.metadata,
    };
    return planned(command, { id: payment_id, object: 'payment' });
  }

  /** GET, capture and cancel of `/v1/payments/:id`: another merchant's id is answered 404 at once. */
  #paymentAction(req: OpRequest): Parsed<Plan> {
    const id = parsePaymentIdParam(req.id, 'id');
    if (!id.ok || !req.merchant.ownsPayment(id.value))
      return { ok: false, error: makeError('not_found', 'no such payment', 'id') };
    const payment_id = id.value;
    if (req.op === 'payments.get')
      return planned({ type: 'get_payment', ...this.#readStamp(), payment_id }, null);
    if (req.op === 'payments.cancel') {
      const parsed = parseCancel(req.body);
      if (!parsed.ok) return parsed;
      const command: Command = { type: 'cancel_payment', ...this.#stamp(req, {}), payment_id };
      return planned(command, { id: payment_id, object: 'payment' });
    }
    const parsed = parseCapture(req.body);
    if (!parsed.ok) return parsed;
    const amount = parsed.value.amount;
    const command: Command = {
      type: 'capture_payment',
      ...this.#stamp(req, parsed.value),
      payment_id,
      ...(amount === null ? {} : { amount }),
    };
    return planned(command, { id: payment_id, object: 'payment' });
  }

  #refund(req: OpRequest): Parsed<Plan> {
    const parsed = parseRefund(req.body);
    if (!parsed.ok) return parsed;
    const { payment, amount } = parsed.value;
    if (!req.merchant.ownsPayment(payment))
      return { ok: false, error: makeError('not_found', `No such payment: ${payment}`, 'payment') };
    const refund_id = `re_${this.#unique(req, 're')}`;
    const command: Command = {
      type: 'create_refund',
      ...this.#stamp(req, parsed.value),
      payment_id: payment,
      refund_id,
      ...(amount === null ? {} : { amount }),
    };
    return planned(command, { id: refund_id, object: 'refund', payment });
  }

  /**
   * Identity and time of a write. With an Idempotency-Key the command id is derived from (merchant, key),
   * so a retry is the same command to the actor, which answers it from its record; the fingerprint (op,
   * path id, canonical parsed body) tells a retry from a reuse of the key for another request.
   */
  #stamp(req: OpRequest, parsed: unknown): Stamp {
    // Without a key the command id is random, so no retry can ever be compared: no fingerprint needed.
    if (req.idempotency_key === '') return { command_id: `req_${randomHex(16)}`, time_ms: this.#now_ms() };
    const fingerprint = sha256hex(`${req.op}\u0000${req.id ?? ''}\u0000${canonicalJson(parsed)}`);
    return { command_id: `idem_${keyHash(req).slice(0, 40)}`, time_ms: this.#now_ms(), fingerprint };
  }

  #readStamp(): Stamp {
    return { command_id: `read_${randomHex(16)}`, time_ms: this.#now_ms() };
  }

  /** 24 hex: derived from (merchant, key, kind) when a key is given (retries get the same id), else random. */
  #unique(req: OpRequest, kind: string): string {
    if (req.idempotency_key === '') return randomHex(12);
    return sha256hex(`${kind}\u0000${keyHash(req)}`).slice(0, 24);
  }
}

function planned(command: Command, pending: Record<string, unknown> | null): Parsed<Plan> {
  return { ok: true, value: { command, pending } };
}

/** A committed refusal that recorded nothing (declines are recorded, and so is a detected key reuse). */
function refusedWithoutRecord(reply: Reply & { ok: false }): boolean {
  return (
    reply.status >= 400 &&
    reply.status < 500 &&
    reply.error.code !== 'payment_declined' &&
    reply.error.code !== 'idempotency_key_reused'
  );
}

export function errorResult(error: ApiError): OpResult {
  return { status: ERROR_CATALOG[error.code].http_status, body: { error } };
}

/** The client's view of a reply: this merchant's ledger account ids back to client ids. */
function externalResult(scope: MerchantScope, reply: Reply): OpResult {
  if (!reply.ok) {
    const error = { ...reply.error, message: scope.externalText(reply.error.message) };
    // The domain names its own field (`command_id`) for a reused key; the client sent `Idempotency-Key`.
    if (error.code === 'idempotency_key_reused') error.param = 'idempotency_key';
    return { status: reply.status, body: { error } };
  }
  return { status: reply.status, body: externalBody(scope, reply.body) };
}

function externalBody(scope: MerchantScope, body: Record<string, unknown>): Record<string, unknown> {
  const view = { ...body };
  if (view.object === 'account' && typeof view.id === 'string') view.id = scope.external(view.id);
  for (const field of ['account', 'source', 'destination'] as const) {
    const value = view[field];
    if (typeof value === 'string') view[field] = scope.external(value);
  }
  if (typeof view.balance === 'object' && view.balance !== null)
    view.balance = externalBody(scope, view.balance as Record<string, unknown>);
  return view;
}

function keyHash(req: OpRequest): string {
  return sha256hex(`${req.merchant.merchant_id}\u0000${req.idempotency_key}`);
}

function sha256hex(value: string): string {
  return hash('sha256', value, 'hex');
}

/** JSON with object keys sorted: the same request body gives the same fingerprint whatever its key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

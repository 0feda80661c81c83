/**
 * The workload: a deterministic (seeded) stream of API operations over pre-seeded accounts, and what the
 * generator remembers from the answers (authorized payments to capture, captured ones to refund, Idempotency-
 * Key retries to send, and what `--verify` checks later). Pure: no I/O, no clock; every list is bounded.
 */
export type OpKind = 'create' | 'capture' | 'refund' | 'deposit' | 'retry';

export interface Mix {
  create: number;
  capture: number;
  refund: number;
  deposit: number;
}

export type AmountDist =
  | { kind: 'fixed'; value: number }
  | { kind: 'uniform'; min: number; max: number }
  | { kind: 'lognormal'; median: number; sigma: number; max: number };

export interface WorkloadSpec {
  customers: string[];
  merchants: string[];
  currency: string;
  mix: Mix;
  /** Share of created payments with `capture: true` (the rest are authorized, then maybe captured). */
  capture_ratio: number;
  amount: AmountDist;
  /** Share of operations sent with an Idempotency-Key. Deposits always carry one (`--verify` needs it). */
  idempotency_ratio: number;
  /** Share of keyed payment creations sent a second time with the same key and body (a client retry). */
  retry_ratio: number;
  /** Prefix of Idempotency-Keys: unique per run and worker. */
  key_prefix: string;
  seed: number;
  /** Keep what `--verify` needs (payment id → status given, deposits). */
  track: boolean;
}

export interface Op {
  kind: OpKind;
  method: 'POST';
  path: string;
  ws_op: string;
  /** The HTTP body; the WebSocket body is this plus `id` for operations with an id in the path. */
  body: Record<string, unknown>;
  path_id: string | null;
  idempotency_key: string | null;
  /** For a retry: the payment id the first answer gave. */
  expect_id: string | null;
}

export interface DepositRecord {
  key: string;
  body: { account: string; amount: number; currency: string };
}

/** What a worker hands to `--verify` at the end. */
export interface Tracked {
  /** payment id → last status an answer gave it (`processing` for 202, `declined` for 402). */
  payments: Map<string, string>;
  /** account → sum of deposits answered 201. */
  deposited: Map<string, number>;
  /** Deposits without a definite answer (202, 5xx, timeout): `--verify` resends them with the same key. */
  unresolved_deposits: DepositRecord[];
  untracked: number;
}

export const RING_MAX = 50_000;
/** Tracked status of a payment whose capture got no definite answer: either status is right. */
export const UNKNOWN_CAPTURE = 'requires_capture|succeeded';
export const TRACKED_IDS_MAX = 2_000_000;
export const RETRIES_QUEUED_MAX = 10_000;

/** mulberry32: small, fast, good enough for choosing operations. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function parseMix(text: string): Mix {
  const mix: Mix = { create: 0, capture: 0, refund: 0, deposit: 0 };
  for (const part of text.split(',')) {
    const [name, value] = part.split('=').map((s) => s.trim());
    if (!name || !(name in mix))
      throw new Error(`--mix: unknown operation "${name}" (create|capture|refund|deposit)`);
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--mix: bad weight for ${name}: ${value}`);
    mix[name as keyof Mix] = n;
  }
  if (mix.create + mix.capture + mix.refund + mix.deposit <= 0) throw new Error('--mix: all weights are 0');
  return mix;
}

export function parseAmount(text: string): AmountDist {
  const [kind, a, b] = text.split(':');
  const n = (s: string | undefined) => {
    const v = Number(s);
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--amount: ${s} is not a positive integer`);
    return v;
  };
  if (kind === 'fixed') return { kind, value: n(a) };
  if (kind === 'uniform') {
    const min = n(a);
    const max = n(b);
    if (max < min) throw new Error('--amount: uniform max < min');
    return { kind, min, max };
  }
  if (kind === 'lognormal') {
    const sigma = Number(b ?? '1');
    if (!(sigma > 0 && sigma < 5)) throw new Error('--amount: lognormal sigma must be in (0, 5)');
    return { kind, median: n(a), sigma, max: 1_000_000_000 };
  }
  throw new Error(`--amount: ${text} (fixed:N | uniform:MIN:MAX | lognormal:MEDIAN:SIGMA)`);
}

export function drawAmount(dist: AmountDist, random: () => number): number {
  switch (dist.kind) {
    case 'fixed':
      return dist.value;
    case 'uniform':
      return dist.min + Math.floor(random() * (dist.max - dist.min + 1));
    case 'lognormal': {
      // Box–Muller on two uniforms; clamp into [1, max].
      const u = Math.max(random(), 1e-12);
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
      return Math.min(dist.max, Math.max(1, Math.round(dist.median * Math.exp(dist.sigma * z))));
    }
  }
}

interface Refundable {
  id: string;
  remaining: number;
}

export class Workload {
  readonly #spec: WorkloadSpec;
  readonly #random: () => number;
  readonly #capturable: Array<{ id: string; amount: number }> = [];
  readonly #refundable: Refundable[] = [];
  readonly #retries: Op[] = [];
  readonly #weights: number[];
  #n = 0;
  readonly tracked: Tracked = {
    payments: new Map(),
    deposited: new Map(),
    unresolved_deposits: [],
    untracked: 0,
  };
  idempotency_mismatches = 0;

  constructor(spec: WorkloadSpec) {
    if (spec.customers.length === 0 || spec.merchants.length === 0)
      throw new Error('workload needs accounts');
    this.#spec = spec;
    this.#random = rng(spec.seed);
    const m = spec.mix;
    const total = m.create + m.capture + m.refund + m.deposit;
    this.#weights = [m.create / total, m.capture / total, m.refund / total, m.deposit / total];
  }

  next(): Op {
    const retry = this.#retries.pop();
    if (retry) return retry;
    const roll = this.#random();
    const [w_create, w_capture, w_refund] = this.#weights as [number, number, number, number];
    if (roll < w_create) return this.#create();
    if (roll < w_create + w_capture) return this.#capturable.length > 0 ? this.#capture() : this.#create();
    if (roll < w_create + w_capture + w_refund)
      return this.#refundable.length > 0 ? this.#refund() : this.#create();
    return this.#deposit();
  }

  #key(always: boolean): string | null {
    if (!always && this.#random() >= this.#spec.idempotency_ratio) return null;
    return `${this.#spec.key_prefix}-${this.#n++}`;
  }

  #pick(list: string[]): string {
    return list[Math.floor(this.#random() * list.length)]!;
  }

  #create(): Op {
    const body = {
      amount: drawAmount(this.#spec.amount, this.#random),
      currency: this.#spec.currency,
      source: this.#pick(this.#spec.customers),
      destination: this.#pick(this.#spec.merchants),
      capture: this.#random() < this.#spec.capture_ratio,
    };
    return op('create', '/v1/payments', 'payments.create', body, null, this.#key(false));
  }

  #capture(): Op {
    const { id } = this.#capturable.pop()!;
    return op('capture', `/v1/payments/${id}/capture`, 'payments.capture', {}, id, this.#key(false));
  }

  #refund(): Op {
    const i = Math.floor(this.#random() * this.#refundable.length);
    const entry = this.#refundable[i]!;
    const amount = Math.max(1, Math.floor(entry.remaining * this.#random() * 0.5));
    entry.remaining -= amount;
    if (entry.remaining < 2) {
      this.#refundable[i] = this.#refundable[this.#refundable.length - 1]!;
      this.#refundable.pop();
    }
    return op(
      'refund',
      '/v1/refunds',
      'refunds.create',
      { payment: entry.id, amount },
      null,
      this.#key(false),
    );
  }

  #deposit(): Op {
    const body = {
      account: this.#pick(this.#spec.customers),
      amount: drawAmount(this.#spec.amount, this.#random) * 10,
      currency: this.#spec.currency,
    };
    return op('deposit', '/v1/deposits', 'deposits.create', body, null, this.#key(true));
  }

  /**
   * Learns from one answer. `status` is the HTTP status (0 for a transport error or timeout); `body` is
   * the parsed JSON answer or null.
   */
  onAnswer(o: Op, status: number, body: Record<string, unknown> | null): void {
    if (o.kind === 'deposit') {
      this.#onDeposit(o, status);
      return;
    }
    if (o.kind === 'retry') {
      const id = paymentIdOf(body);
      if (status > 0 && status < 500 && status !== 429 && id !== o.expect_id) this.idempotency_mismatches++;
      return;
    }
    if (o.kind === 'capture' && (status === 0 || status === 202 || status >= 500)) {
      this.#track(o.path_id!, UNKNOWN_CAPTURE); // the capture may or may not have committed
      return;
    }
    if (o.kind === 'refund' || body === null) return;
    const id = paymentIdOf(body);
    if (id === null) return;
    const given = status === 202 ? 'processing' : status === 402 ? 'declined' : (body.status as string);
    if (status >= 300 && status !== 402) return;
    this.#track(id, given);
    if (o.kind === 'create' && o.idempotency_key !== null && status !== 202) this.#maybeRetry(o, id);
    const received = typeof body.amount_received === 'number' ? body.amount_received : 0;
    const amount = received > 0 ? received : typeof body.amount === 'number' ? body.amount : 0;
    if (given === 'requires_capture') pushBounded(this.#capturable, { id, amount });
    else if (given === 'succeeded' && amount > 1) pushBounded(this.#refundable, { id, remaining: amount });
  }

  #maybeRetry(o: Op, id: string): void {
    if (this.#random() >= this.#spec.retry_ratio || this.#retries.length >= RETRIES_QUEUED_MAX) return;
    this.#retries.push({ ...o, kind: 'retry', expect_id: id });
  }

  #track(id: string, status: string): void {
    if (!this.#spec.track) return;
    const t = this.tracked;
    if (t.payments.size >= TRACKED_IDS_MAX && !t.payments.has(id)) {
      t.untracked++;
      return;
    }
    t.payments.set(id, status);
  }

  #onDeposit(o: Op, status: number): void {
    if (!this.#spec.track) return;
    const body = o.body as DepositRecord['body'];
    if (status === 201) {
      const t = this.tracked.deposited;
      t.set(body.account, (t.get(body.account) ?? 0) + body.amount);
    } else if (status === 0 || status === 202 || status >= 500) {
      if (this.tracked.unresolved_deposits.length < TRACKED_IDS_MAX)
        this.tracked.unresolved_deposits.push({ key: o.idempotency_key!, body });
      else this.tracked.untracked++;
    }
  }
}

function op(
  kind: OpKind,
  path: string,
  ws_op: string,
  body: Record<string, unknown>,
  path_id: string | null,
  idempotency_key: string | null,
): Op {
  return { kind, method: 'POST', path, ws_op, body, path_id, idempotency_key, expect_id: null };
}

function pushBounded<T>(list: T[], item: T): void {
  if (list.length >= RING_MAX) list[Math.floor(list.length / 2)] = item;
  else list.push(item);
}

/** The payment id of an answer: `id` of a payment, or `error.payment_id` of a decline. */
export function paymentIdOf(body: Record<string, unknown> | null): string | null {
  if (body === null) return null;
  if (typeof body.id === 'string' && body.object === 'payment') return body.id;
  const error = body.error as { payment_id?: unknown } | undefined;
  return typeof error?.payment_id === 'string' ? error.payment_id : null;
}

/** The key under which an answer is counted: `"201"`, `"402 insufficient_funds"`, `"timeout"`, … */
export function outcomeKey(
  status: number,
  body: Record<string, unknown> | null,
  transport_error?: string,
): string {
  if (status === 0) return transport_error ?? 'transport_error';
  if (status < 300) return String(status);
  const error = body?.error as { code?: unknown; decline_code?: unknown } | undefined;
  const code = typeof error?.decline_code === 'string' ? error.decline_code : error?.code;
  return typeof code === 'string' ? `${status} ${code}` : String(status);
}

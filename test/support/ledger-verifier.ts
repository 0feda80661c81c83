import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { unpack } from 'msgpackr';

/**
 * An independent verifier of the ledger, deliberately NOT using the node's code (no src/ imports): it reads
 * the events topic read_committed from the beginning with its own consumer, decodes records with msgpackr
 * directly, folds balances with its own reading of the event contract (src/domain/types.ts), and checks
 * the invariants of DESIGN.md against what the load generator saw acknowledged.
 */
export interface Balance {
  posted: number;
  pending: number;
}

export interface LedgerFold {
  balances: Map<string, Balance>;
  /** Sum of deposits: the world accounts hold minus this. */
  world_posted: number;
  /** payment id → number of creation-outcome events (payment_created | payment_declined). */
  payment_outcomes: Map<string, number>;
  /** payment id → { authorized, captured, refunded } */
  payments: Map<string, { authorized: number; captured: number; refunded: number; refund_pending: number }>;
  /** refund id → its amount and how many outcomes (refund_succeeded | refund_failed) it has. */
  refunds: Map<string, { payment_id: string; amount: number; outcomes: number }>;
  events_total: number;
  duplicate_event_ids: string[];
}

export interface RawEvent {
  type: string;
  event_id: string;
  account_id: string;
  payment_id?: string;
  refund_id?: string;
  amount?: number;
  amount_captured?: number;
  amount_released?: number;
  capture_method?: 'automatic' | 'manual';
}

export async function readEvents(brokers: string[], topic: string, timeout_ms = 60_000): Promise<RawEvent[]> {
  return (await readPartitionedEvents(brokers, topic, timeout_ms)).map((entry) => entry.event);
}

/** readEvents with each event's partition, in the order they arrived (per partition: offset order). */
export async function readPartitionedEvents(
  brokers: string[],
  topic: string,
  timeout_ms = 60_000,
): Promise<{ partition: number; event: RawEvent }[]> {
  const kafka = new Kafka({ brokers, clientId: 'ledger-verifier', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  await admin.disconnect();
  const pending = new Set([...ends].filter(([, end]) => end > 0n).map(([p]) => p));
  const events: { partition: number; event: RawEvent }[] = [];
  if (pending.size === 0) return events;
  const group_id = `ledger-verifier-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId: group_id, readUncommitted: false, maxWaitTimeInMs: 100 });
  let resolve_done: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolve_done = r;
  });
  const advance = (partition: number, last: string | null) => {
    if (last !== null && BigInt(last) + 1n >= (ends.get(partition) ?? 0n)) pending.delete(partition);
    if (pending.size === 0) resolve_done();
  };
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) =>
    advance(payload.partition, payload.lastOffset),
  );
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      const end = ends.get(batch.partition) ?? 0n;
      for (const m of batch.messages)
        if (m.value && BigInt(m.offset) < end)
          events.push({ partition: batch.partition, event: unpack(m.value) as RawEvent });
    },
  });
  const timer = setTimeout(resolve_done, timeout_ms);
  await done;
  clearTimeout(timer);
  await consumer.disconnect();
  if (pending.size > 0) throw new Error(`verifier: timed out reading partitions ${[...pending]}`);
  return events;
}

export function foldEvents(events: RawEvent[]): LedgerFold {
  const fold: LedgerFold = {
    balances: new Map(),
    world_posted: 0,
    payment_outcomes: new Map(),
    payments: new Map(),
    refunds: new Map(),
    events_total: events.length,
    duplicate_event_ids: [],
  };
  const seen = new Set<string>();
  for (const e of events) {
    if (seen.has(e.event_id)) fold.duplicate_event_ids.push(e.event_id);
    seen.add(e.event_id);
    applyEvent(fold, e);
  }
  return fold;
}

function balanceOf(fold: LedgerFold, account_id: string): Balance {
  let balance = fold.balances.get(account_id);
  if (!balance) {
    balance = { posted: 0, pending: 0 };
    fold.balances.set(account_id, balance);
  }
  return balance;
}

function paymentOf(fold: LedgerFold, id: string) {
  let payment = fold.payments.get(id);
  if (!payment) {
    payment = { authorized: 0, captured: 0, refunded: 0, refund_pending: 0 };
    fold.payments.set(id, payment);
  }
  return payment;
}

function applyEvent(fold: LedgerFold, e: RawEvent): void {
  const amount = e.amount ?? 0;
  switch (e.type) {
    case 'account_opened':
      balanceOf(fold, e.account_id);
      break;
    case 'deposited':
      balanceOf(fold, e.account_id).posted += amount;
      fold.world_posted -= amount;
      break;
    case 'payment_declined':
      fold.payment_outcomes.set(e.payment_id!, (fold.payment_outcomes.get(e.payment_id!) ?? 0) + 1);
      break;
    case 'payment_created': {
      fold.payment_outcomes.set(e.payment_id!, (fold.payment_outcomes.get(e.payment_id!) ?? 0) + 1);
      const payment = paymentOf(fold, e.payment_id!);
      payment.authorized = amount;
      if (e.capture_method === 'manual') balanceOf(fold, e.account_id).pending += amount;
      else {
        balanceOf(fold, e.account_id).posted -= amount;
        payment.captured = amount;
      }
      break;
    }
    case 'payment_captured': {
      const b = balanceOf(fold, e.account_id);
      b.pending -= (e.amount_captured ?? 0) + (e.amount_released ?? 0);
      b.posted -= e.amount_captured ?? 0;
      paymentOf(fold, e.payment_id!).captured = e.amount_captured ?? 0;
      break;
    }
    case 'payment_canceled':
    case 'payment_expired':
      balanceOf(fold, e.account_id).pending -= e.amount_released ?? 0;
      break;
    case 'transfer_credited':
    case 'payment_failed':
      balanceOf(fold, e.account_id).posted += amount;
      break;
    case 'transfer_debited':
      balanceOf(fold, e.account_id).posted -= amount;
      break;
    case 'refund_created':
      // A pending refund counts against what may still be refunded (DESIGN: never above captured minus
      // refunded minus pending refunds), so it is folded too, not only its settlement.
      paymentOf(fold, e.payment_id!).refund_pending += amount;
      fold.refunds.set(e.refund_id!, { payment_id: e.payment_id!, amount, outcomes: 0 });
      break;
    case 'refund_succeeded':
      balanceOf(fold, e.account_id).posted += amount;
      paymentOf(fold, e.payment_id!).refunded += amount;
      settleRefund(fold, e);
      break;
    case 'refund_failed':
      settleRefund(fold, e);
      break;
  }
}

function settleRefund(fold: LedgerFold, e: RawEvent): void {
  paymentOf(fold, e.payment_id!).refund_pending -= e.amount ?? 0;
  const refund = fold.refunds.get(e.refund_id!);
  if (refund) refund.outcomes++;
  else fold.refunds.set(e.refund_id!, { payment_id: e.payment_id!, amount: e.amount ?? 0, outcomes: -1 });
}

export interface Verdict {
  acknowledged: number;
  applied: number;
  duplicates: number;
  missing: number;
  balance_mismatches: number;
  sum_of_balances: number;
  over_captured: number;
  over_refunded: number;
  /** refund_created without exactly one refund_succeeded or refund_failed (at quiescence: none may be). */
  unsettled_refunds: number;
  duplicate_event_ids: number;
  violations: string[];
}

/** Compares the fold with the acknowledged payment ids and with balances read through the API. */
export function judge(
  fold: LedgerFold,
  acknowledged: Iterable<string>,
  api_balances: Map<string, { posted: number; pending: number }>,
): Verdict {
  const violations: string[] = [];
  const acked = new Set(acknowledged);
  const count = (found: string[]) => {
    violations.push(...found);
    return found.length;
  };
  const duplicates = count(
    [...fold.payment_outcomes].filter(([, n]) => n > 1).map(([id, n]) => `${id} applied ${n}×`),
  );
  const missing = count(
    [...acked]
      .filter((id) => !fold.payment_outcomes.has(id))
      .map((id) => `${id} acknowledged, never applied`),
  );
  let balance_mismatches = 0;
  const ledger_ids = ledgerIdsByApiId(fold, api_balances.keys());
  for (const [account, api] of api_balances) {
    const folded = fold.balances.get(ledger_ids.get(account) ?? account) ?? { posted: 0, pending: 0 };
    if (folded.posted !== api.posted || folded.pending !== api.pending) {
      balance_mismatches++;
      violations.push(`${account}: fold ${JSON.stringify(folded)} ≠ API ${JSON.stringify(api)}`);
    }
  }
  let sum = fold.world_posted;
  for (const b of fold.balances.values()) sum += b.posted;
  if (sum !== 0) violations.push(`sum of balances is ${sum}, not 0`);
  const payments = [...fold.payments];
  const over_captured = count(
    payments
      .filter(([, p]) => p.captured > p.authorized)
      .map(([id, p]) => `${id} captured ${p.captured} > ${p.authorized}`),
  );
  const over_refunded = count(
    payments
      .filter(([, p]) => p.refunded + p.refund_pending > p.captured)
      .map(([id, p]) => `${id} refunded ${p.refunded} + pending ${p.refund_pending} > ${p.captured}`),
  );
  const unsettled_refunds = count(
    [...fold.refunds]
      .filter(([, r]) => r.outcomes !== 1)
      .map(([id, r]) =>
        r.outcomes < 0 ? `${id}: settled without refund_created` : `${id}: ${r.outcomes} outcomes, not 1`,
      ),
  );
  if (fold.duplicate_event_ids.length > 0)
    violations.push(`${fold.duplicate_event_ids.length} duplicate event ids`);
  return {
    acknowledged: acked.size,
    applied: fold.payment_outcomes.size,
    duplicates,
    missing,
    balance_mismatches,
    sum_of_balances: sum,
    over_captured,
    over_refunded,
    unsettled_refunds,
    duplicate_event_ids: fold.duplicate_event_ids.length,
    violations: violations.slice(0, 50),
  };
}

/**
 * The gateway may namespace account ids inside the ledger (`<merchant tag>_<api id>`); map each API id to
 * the one ledger id that is it or ends with `_<api id>`.
 */
function ledgerIdsByApiId(fold: LedgerFold, api_ids: Iterable<string>): Map<string, string> {
  const wanted = new Set(api_ids);
  const map = new Map<string, string>();
  for (const ledger_id of fold.balances.keys()) {
    if (wanted.has(ledger_id)) map.set(ledger_id, ledger_id);
    const cut = ledger_id.indexOf('_');
    const api_id = ledger_id.slice(cut + 1);
    if (cut > 0 && wanted.has(api_id) && !map.has(api_id)) map.set(api_id, ledger_id);
  }
  return map;
}

/**
 * Waits until the processor group has committed everything in the commands topic: for every partition, no
 * data record lies at or past its committed offset (read_committed), so only transaction markers may
 * remain. Quiet is not drained: a partition stuck in FAILED keeps its committed offset still, and is
 * reported here as undrained when the bound runs out.
 */
export async function waitQuiescent(
  brokers: string[],
  topic_prefix: string,
  timeout_ms = 120_000,
): Promise<void> {
  const kafka = new Kafka({ brokers, clientId: 'ledger-verifier', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `${topic_prefix}.commands`;
  const deadline_ms = Date.now() + timeout_ms;
  let behind = new Map<number, number>();
  try {
    // Drained twice in a row, 500 ms apart: a transaction's markers land on its partitions one by one, so
    // one look can see a committed offset before the follow-up leg that the same transaction wrote.
    let drained_checks = 0;
    while (Date.now() < deadline_ms) {
      const [committed] = await admin.fetchOffsets({ groupId: `${topic_prefix}.processor`, topics: [topic] });
      const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
      const from = new Map<number, bigint>();
      for (const p of committed?.partitions ?? []) {
        const offset = p.offset === '-1' ? 0n : BigInt(p.offset);
        if (offset < (ends.get(p.partition) ?? 0n)) from.set(p.partition, offset);
      }
      behind = await recordsFrom(kafka, topic, from, ends, Math.max(1_000, deadline_ms - Date.now()));
      drained_checks = behind.size === 0 ? drained_checks + 1 : 0;
      if (drained_checks >= 2) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(
      `verifier: commands never drained: records past the committed offset ${JSON.stringify([...behind])}`,
    );
  } finally {
    await admin.disconnect();
  }
}

/** Data records (read_committed) in [from, end) per partition; partitions with none are left out. */
async function recordsFrom(
  kafka: Kafka,
  topic: string,
  from: Map<number, bigint>,
  ends: Map<number, bigint>,
  timeout_ms: number,
): Promise<Map<number, number>> {
  const found = new Map<number, number>();
  if (from.size === 0) return found;
  const pending = new Set(from.keys());
  const consumer = kafka.consumer({ groupId: `ledger-verifier-${randomUUID()}`, maxWaitTimeInMs: 100 });
  let resolve_done: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolve_done = r;
  });
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const end = ends.get(payload.partition) ?? 0n;
    if (payload.lastOffset !== null && BigInt(payload.lastOffset) + 1n >= end)
      pending.delete(payload.partition);
    if (pending.size === 0) resolve_done();
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      const start = from.get(batch.partition);
      const end = ends.get(batch.partition) ?? 0n;
      if (start === undefined) return;
      for (const m of batch.messages) {
        const offset = BigInt(m.offset);
        if (offset >= start && offset < end)
          found.set(batch.partition, (found.get(batch.partition) ?? 0) + 1);
      }
    },
  });
  for (const [partition, offset] of from) consumer.seek({ topic, partition, offset: offset.toString() });
  const others = [...ends.keys()].filter((p) => !from.has(p));
  if (others.length > 0) consumer.pause([{ topic, partitions: others }]);
  const timer = setTimeout(resolve_done, timeout_ms);
  await done;
  clearTimeout(timer);
  await consumer.disconnect();
  // A partition that could not be read to its end within the bound counts as undrained.
  for (const p of pending) if (!found.has(p)) found.set(p, -1);
  return found;
}

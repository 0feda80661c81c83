import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  apply,
  type Command,
  canonicalState,
  createPartitionState,
  type Decision,
  type DomainConfig,
  type DomainEvent,
  decodeSnapshot,
  encodeSnapshot,
  evolve,
  type FollowUpCommand,
  type PartitionState,
  paymentIdFor,
  shard,
  tokenIdFor,
} from '../../src/domain/index.js';

/**
 * Random command sequences over many accounts on several partitions. A simulated router holds the
 * follow-up legs and delivers them late, out of order and twice. After every step: money is conserved
 * (sum of balances + money in flight = 0), nobody is below -overdraft, captured <= authorized,
 * refunded <= captured. At the end: legs drained -> sum = 0; fold(evolve, events) equals live state;
 * snapshot round-trip equals state. Retried accepted commands change nothing and answer the same.
 */

const T0_MS = Date.UTC(2026, 10, 25);
const RETENTION_MS = 86_400_000;
const ACCOUNTS = ['a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'm0', 'm1', 'm2', 'm3'];
const DESTINATIONS = [...ACCOUNTS, 'ghost'];
const CONFIG: Partial<DomainConfig> = {
  authorization_expiry_ms: 10 * 60_000,
  risk_rules: {
    velocity_count_max: 4,
    velocity_window_ms: 60_000,
    amount_per_day_max: 40_000,
    single_payment_max: 20_000,
  },
};
/** The wire: events travel as msgpack, like the events topic, so the fold sees what a restore sees. */
const wire = new Packr({ useRecords: false, moreTypes: false });

type Action =
  | { kind: 'open'; account: number; eur: boolean; overdraft: number }
  | { kind: 'deposit'; account: number; amount: number }
  | { kind: 'token'; account: number; exp_months: number }
  | { kind: 'pay'; payer: number; payee: number; amount: number; capture: boolean; with_token: boolean }
  | { kind: 'capture'; pick: number; amount: number | null }
  | { kind: 'cancel'; pick: number }
  | { kind: 'refund'; pick: number; amount: number | null }
  | { kind: 'freeze'; account: number; frozen: boolean }
  | { kind: 'tick'; days: number }
  | { kind: 'deliver'; pick: number; twice: boolean }
  | { kind: 'retry'; pick: number };

const account = fc.nat({ max: ACCOUNTS.length - 1 });
const amount = fc.integer({ min: 1, max: 3000 });
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('open' as const),
      account,
      eur: fc.constantFrom(false, false, false, true),
      overdraft: fc.constantFrom(0, 0, 500),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('deposit' as const),
      account,
      amount: fc.integer({ min: 1, max: 20_000 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('token' as const),
      account,
      exp_months: fc.integer({ min: -1, max: 3 }),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('pay' as const),
      payer: account,
      payee: fc.nat({ max: DESTINATIONS.length - 1 }),
      amount,
      capture: fc.boolean(),
      with_token: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('capture' as const),
      pick: fc.nat(),
      amount: fc.option(amount),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('refund' as const), pick: fc.nat(), amount: fc.option(amount) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('freeze' as const), account, frozen: fc.boolean() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('tick' as const), days: fc.constantFrom(0, 0, 1, 8) }),
  },
  {
    weight: 8,
    arbitrary: fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat(), twice: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('retry' as const), pick: fc.nat() }) },
);

/** Legs that carry money: it left one account and has not reached the other yet. */
function moneyInFlight(leg: FollowUpCommand): number {
  return leg.type === 'credit' || leg.type === 'credit_rejected' || leg.type === 'debit_settled'
    ? leg.amount
    : 0;
}

/** Event types seen across all runs: the generator must reach every outcome. */
const coverage = new Map<string, number>();

class World {
  readonly states: PartitionState[];
  readonly wire_events: Uint8Array[][];
  readonly pending: FollowUpCommand[] = [];
  readonly applied_legs = new Set<string>();
  readonly accepted: { command: Command; decision: Decision; partition: number }[] = [];
  readonly payments: string[] = [];
  readonly tokens = new Map<string, string>();
  time_ms = T0_MS;
  private seq = 0;

  constructor(readonly partitions_total: number) {
    this.states = Array.from({ length: partitions_total }, (_, p) => createPartitionState(p, CONFIG));
    this.wire_events = this.states.map(() => []);
  }

  partitionOf(id: string): number {
    return shard(id) % this.partitions_total;
  }

  send(partition: number, command: Command): Decision {
    const decision = apply(this.states[partition]!, command);
    for (const event of decision.events) {
      assert.equal(
        this.partitionOf(event.account_id),
        partition,
        'an event belongs to an account of its partition',
      );
      this.wire_events[partition]!.push(wire.pack(event));
      coverage.set(event.type, (coverage.get(event.type) ?? 0) + 1);
    }
    this.pending.push(...decision.follow_ups);
    return decision;
  }

  client(partition: number, body: Record<string, unknown>): void {
    this.seq++;
    const command = {
      command_id: `c${this.seq}`,
      time_ms: this.time_ms,
      fingerprint: `f${this.seq}`,
      ...body,
    } as Command;
    const decision = this.send(partition, command);
    assert.notEqual(decision.reply, null, 'a client command is answered');
    if (decision.events.length > 0) this.accepted.push({ command, decision, partition });
    if (command.type === 'create_payment') this.payments.push(command.payment_id);
  }

  deliver(pick: number, twice: boolean): void {
    if (this.pending.length === 0) return;
    const [leg] = this.pending.splice(pick % this.pending.length, 1) as [FollowUpCommand];
    // Legs are deduplicated for >= 24 h of record time (Kafka transactions redeliver within seconds); a
    // copy older than that is dropped by this router instead of being delivered again.
    if (this.applied_legs.has(leg.command_id) && leg.time_ms < this.time_ms - RETENTION_MS) return;
    const decision = this.send(this.partitionOf(leg.account_id), leg);
    assert.equal(decision.reply, null, 'legs get no reply');
    const first = !this.applied_legs.has(leg.command_id);
    assert.equal(decision.events.length, first ? 1 : 0, `leg ${leg.command_id} applies exactly once`);
    if (first) this.applied_legs.add(leg.command_id);
    else assert.deepEqual(decision.follow_ups, []);
    if (twice) this.pending.push(leg);
  }

  retry(pick: number): void {
    if (this.accepted.length === 0) return;
    const { command, decision, partition } = this.accepted[pick % this.accepted.length]!;
    // Records are kept >= 24 h; payments are deduplicated for ever by their id.
    if (command.type !== 'create_payment' && command.time_ms < this.time_ms - RETENTION_MS) return;
    const before = canonicalState(this.states[partition]!);
    const again = apply(this.states[partition]!, command);
    assert.deepEqual(again.events, [], 'a retried command emits nothing');
    assert.deepEqual(again.follow_ups, []);
    assert.deepEqual(again.reply, decision.reply, 'a retried command gets the stored reply');
    assert.deepEqual(canonicalState(this.states[partition]!), before, 'a retried command changes no state');
  }

  step(a: Action): void {
    this.time_ms += a.kind === 'tick' ? a.days * 86_400_000 + 1 : 7_000;
    switch (a.kind) {
      case 'open': {
        const id = ACCOUNTS[a.account]!;
        const kind = id.startsWith('m') ? 'merchant' : 'customer';
        this.client(this.partitionOf(id), {
          type: 'open_account',
          account_id: id,
          currency: a.eur ? 'eur' : 'usd',
          kind,
          overdraft_limit: a.overdraft,
        });
        return;
      }
      case 'deposit': {
        const id = ACCOUNTS[a.account]!;
        this.client(this.partitionOf(id), {
          type: 'deposit',
          account_id: id,
          amount: a.amount,
          currency: 'usd',
        });
        return;
      }
      case 'token': {
        const id = ACCOUNTS[a.account]!;
        const token_id = tokenIdFor(shard(id), `t${this.seq}`);
        const month = new Date(this.time_ms).getUTCMonth() + a.exp_months; // 0-based month + offset
        const exp_year = 2026 + Math.floor(month / 12);
        this.client(this.partitionOf(id), {
          type: 'create_token',
          account_id: id,
          token_id,
          last4: '4242',
          brand: 'visa',
          card_fingerprint: 'fp',
          exp_month: (month % 12) + 1,
          exp_year,
        });
        if (this.states[this.partitionOf(id)]!.tokens.has(token_id as never)) this.tokens.set(id, token_id);
        return;
      }
      case 'pay': {
        const payer = ACCOUNTS[a.payer]!;
        const token = a.with_token ? this.tokens.get(payer) : undefined;
        this.client(this.partitionOf(payer), {
          type: 'create_payment',
          payment_id: paymentIdFor(shard(payer), `p${this.seq}`),
          source: token ?? payer,
          destination: DESTINATIONS[a.payee]!,
          amount: a.amount,
          currency: 'usd',
          capture: a.capture,
        });
        return;
      }
      case 'capture':
      case 'cancel':
      case 'refund':
        this.paymentStep(a);
        return;
      case 'freeze': {
        const id = ACCOUNTS[a.account]!;
        this.client(this.partitionOf(id), {
          type: a.frozen ? 'freeze_account' : 'unfreeze_account',
          account_id: id,
        });
        return;
      }
      case 'tick':
        for (let p = 0; p < this.partitions_total; p++) {
          this.seq++;
          const decision = this.send(p, {
            type: 'expire_authorizations',
            command_id: `tick${this.seq}`,
            time_ms: this.time_ms,
          });
          assert.equal(decision.reply, null);
        }
        return;
      case 'deliver':
        this.deliver(a.pick, a.twice);
        return;
      case 'retry':
        this.retry(a.pick);
        return;
    }
  }

  private paymentStep(a: Extract<Action, { kind: 'capture' | 'cancel' | 'refund' }>): void {
    if (this.payments.length === 0) return;
    const payment_id = this.payments[a.pick % this.payments.length]!;
    const payer = ACCOUNTS.find((id) => shard(id) === Number.parseInt(payment_id.slice(4, 12), 16))!;
    const partition = this.partitionOf(payer);
    if (a.kind === 'cancel') {
      this.client(partition, { type: 'cancel_payment', payment_id });
      return;
    }
    const body: Record<string, unknown> = {
      type: a.kind === 'capture' ? 'capture_payment' : 'create_refund',
      payment_id,
    };
    if (a.amount !== null) body.amount = a.amount;
    this.client(partition, body);
  }

  checkInvariants(): void {
    let sum = 0;
    for (const state of this.states) {
      for (const acct of state.accounts.values()) {
        sum += acct.posted;
        if (acct.kind !== 'world')
          assert.ok(acct.posted - acct.pending >= -acct.overdraft_limit, `${acct.id} below overdraft`);
        assert.ok(acct.pending >= 0);
      }
      for (const p of state.payments.values()) {
        assert.ok(p.amount_received <= p.amount, 'captured <= authorized');
        assert.ok(p.amount_refunded + p.amount_refund_pending <= p.amount_received, 'refunded <= captured');
        if (p.status === 'requires_capture') assert.equal(p.amount_capturable, p.amount);
      }
    }
    const seen = new Set<string>();
    let in_flight = 0;
    for (const leg of this.pending) {
      if (seen.has(leg.command_id) || this.applied_legs.has(leg.command_id)) continue;
      seen.add(leg.command_id);
      in_flight += moneyInFlight(leg);
    }
    assert.equal(sum + in_flight, 0, 'money is conserved: balances + in flight = 0');
  }

  drain(): void {
    for (let guard = 0; this.pending.length > 0; guard++) {
      assert.ok(guard < 100_000, 'legs terminate');
      this.deliver(0, false);
    }
    this.checkInvariants();
    let sum = 0;
    for (const state of this.states) for (const acct of state.accounts.values()) sum += acct.posted;
    assert.equal(sum, 0, 'drained: sum of balances = 0');
  }

  checkFoldAndSnapshot(): void {
    for (let p = 0; p < this.partitions_total; p++) {
      const live = this.states[p]!;
      const folded = createPartitionState(p, CONFIG);
      for (const bytes of this.wire_events[p]!) evolve(folded, wire.unpack(bytes) as DomainEvent);
      assert.deepStrictEqual(
        canonicalState(folded),
        canonicalState(live),
        `partition ${p}: fold(evolve, events) = live state`,
      );
      assert.deepStrictEqual(
        canonicalState(decodeSnapshot(encodeSnapshot(live))),
        canonicalState(live),
        `partition ${p}: snapshot round-trip`,
      );
    }
  }
}

test('property: money conserved, limits hold, fold = state, snapshot round-trips, retries are no-ops', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(1, 2, 3, 5),
      fc.array(action, { minLength: 20, maxLength: 150, size: 'max' }),
      (partitions_total, actions) => {
        const world = new World(partitions_total);
        // Open most accounts first so payments have somewhere to go; the random opens then hit 409s.
        for (const [i, id] of ACCOUNTS.entries()) {
          if (i % 4 === 3) continue;
          world.step({ kind: 'open', account: i, eur: id === 'm3', overdraft: i === 0 ? 1000 : 0 });
          world.step({ kind: 'deposit', account: i, amount: 10_000 });
        }
        for (const a of actions) {
          world.step(a);
          world.checkInvariants();
        }
        world.drain();
        world.checkFoldAndSnapshot();
      },
    ),
    { numRuns: 600, includeErrorInReport: true },
  );
  // The generator must reach every outcome, or the properties above prove little.
  for (const type of [
    'payment_created',
    'payment_declined',
    'payment_captured',
    'payment_canceled',
    'payment_expired',
    'refund_succeeded',
    'refund_failed',
    'payment_failed',
    'transfer_rejected',
    'token_created',
    'account_frozen',
  ]) {
    assert.ok((coverage.get(type) ?? 0) > 0, `no ${type} was generated`);
  }
  if (process.env.DOMAIN_COVERAGE) console.log(Object.fromEntries(coverage));
});

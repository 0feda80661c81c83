import assert from 'node:assert/strict';
import {
  type ApiError,
  apply,
  type Command,
  createPartitionState,
  type Decision,
  type DomainConfig,
  type PartitionState,
  paymentIdFor,
  shard,
} from '../../src/domain/index.js';

/** Test clock: a fixed record time; tests pass explicit offsets. */
export const T0_MS = Date.UTC(2026, 10, 25, 12, 0, 0);

let sequence = 0;
export function nextId(prefix = 'cmd'): string {
  sequence += 1;
  return `${prefix}_${sequence}`;
}

export function freshState(config?: Partial<DomainConfig>): PartitionState {
  return createPartitionState(0, config);
}

type Body<C> = C extends Command
  ? Omit<C, 'command_id' | 'time_ms'> & { command_id?: string; time_ms?: number }
  : never;

export function run(state: PartitionState, body: Body<Command>): Decision {
  const command = { command_id: nextId(), time_ms: T0_MS, ...body } as Command;
  return apply(state, command);
}

export function body(decision: Decision): Record<string, unknown> {
  assert.ok(decision.reply?.ok, `expected ok reply, got ${JSON.stringify(decision.reply)}`);
  return decision.reply.body;
}

export function errorOf(decision: Decision): ApiError & { status: number } {
  assert.ok(
    decision.reply && !decision.reply.ok,
    `expected error reply, got ${JSON.stringify(decision.reply)}`,
  );
  return { ...decision.reply.error, status: decision.reply.status };
}

export function open(
  state: PartitionState,
  account_id: string,
  extra: {
    currency?: string;
    kind?: 'customer' | 'merchant';
    overdraft_limit?: number;
    deposit?: number;
  } = {},
): void {
  body(
    run(state, {
      type: 'open_account',
      account_id,
      currency: extra.currency ?? 'usd',
      kind: extra.kind ?? 'customer',
      overdraft_limit: extra.overdraft_limit ?? 0,
    }),
  );
  if (extra.deposit) {
    body(
      run(state, { type: 'deposit', account_id, amount: extra.deposit, currency: extra.currency ?? 'usd' }),
    );
  }
}

export function payId(payer: string, unique = nextId('p')): string {
  return paymentIdFor(shard(payer), unique);
}

export function balances(state: PartitionState, account_id: string): { posted: number; pending: number } {
  const account = state.accounts.get(account_id as never);
  assert.ok(account, `no account ${account_id}`);
  return { posted: account.posted, pending: account.pending };
}

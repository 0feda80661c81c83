import { parseCurrency } from './currency.js';
import { accepted, eventId, fingerprintOf, invalid, rejected } from './decision.js';
import { type AccountId, parseAccountId, parseAmount, parseTokenId, shard, shardOfTokenId } from './ids.js';
import { VELOCITY_COUNT_LIMIT, worldOf } from './state.js';
import type {
  AccountState,
  CreateTokenCommand,
  Decision,
  DepositCommand,
  FreezeAccountCommand,
  GetAccountCommand,
  OpenAccountCommand,
  PartitionState,
  RiskRules,
} from './types.js';
import { accountView, fail, ok } from './views.js';

type Found = { account: AccountState; error: null } | { account: null; error: Decision };

/** Looks up a client-named account; `param` names the request field for the 404. */
export function findAccount(state: PartitionState, id: string, param: string): Found {
  const account_id = parseAccountId(id);
  const account = account_id === null ? undefined : state.accounts.get(account_id);
  if (account === undefined)
    return { account: null, error: rejected(fail('not_found', `No such account: ${id}`, param)) };
  return { account, error: null };
}

function parseRiskRules(
  state: PartitionState,
  rules: OpenAccountCommand['risk_rules'],
): RiskRules | null | undefined {
  if (rules === undefined || rules === null) return null;
  if (typeof rules !== 'object') return undefined;
  const merged: RiskRules = { ...state.config.risk_rules, ...rules };
  const values = [
    merged.velocity_count_max,
    merged.velocity_window_ms,
    merged.amount_per_day_max,
    merged.single_payment_max,
  ];
  if (!values.every((v) => parseAmount(v) !== null) || merged.velocity_count_max > VELOCITY_COUNT_LIMIT)
    return undefined;
  return {
    velocity_count_max: merged.velocity_count_max,
    velocity_window_ms: merged.velocity_window_ms,
    amount_per_day_max: merged.amount_per_day_max,
    single_payment_max: merged.single_payment_max,
  };
}

export function decideOpenAccount(state: PartitionState, command: OpenAccountCommand): Decision {
  const account_id = parseAccountId(command.account_id);
  if (account_id === null) return invalid('account id must be 1..64 chars of [A-Za-z0-9_-]', 'id');
  const currency = parseCurrency(command.currency);
  if (currency === null) return invalid('currency must be an ISO 4217 code', 'currency');
  if (command.kind !== 'customer' && command.kind !== 'merchant') {
    return invalid('kind must be customer or merchant', 'kind');
  }
  const overdraft_limit = command.overdraft_limit ?? 0;
  if (!Number.isSafeInteger(overdraft_limit) || overdraft_limit < 0) {
    return invalid('overdraft_limit must be a non-negative integer', 'overdraft_limit');
  }
  const risk_rules = parseRiskRules(state, command.risk_rules);
  if (risk_rules === undefined) return invalid('risk rules must be positive integers', 'risk_rules');
  if (state.accounts.has(account_id)) {
    return rejected(fail('resource_already_exists', `Account ${account_id} already exists.`, 'id'));
  }
  return accepted(state, command, {
    type: 'account_opened',
    event_id: eventId(command, 0),
    account_id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: fingerprintOf(command),
    currency,
    kind: command.kind,
    overdraft_limit,
    risk_rules,
  });
}

export function decideDeposit(state: PartitionState, command: DepositCommand): Decision {
  const found = findAccount(state, command.account_id, 'account');
  if (found.error) return found.error;
  const account = found.account;
  const amount = parseAmount(command.amount);
  if (amount === null) return invalid('amount must be a positive integer in minor units', 'amount');
  const currency = parseCurrency(command.currency);
  if (currency === null) return invalid('currency must be an ISO 4217 code', 'currency');
  if (currency !== account.currency) return rejected(fail('currency_mismatch', undefined, 'currency'));
  if (account.status === 'frozen') return rejected(fail('account_frozen', undefined, 'account'));
  // Balances stay exact: refuse what would leave the safe-integer range on either side.
  if (
    account.posted + amount > Number.MAX_SAFE_INTEGER ||
    worldOf(state).posted - amount < -Number.MAX_SAFE_INTEGER
  ) {
    return invalid('the balance would exceed the largest representable amount', 'amount');
  }
  return accepted(state, command, {
    type: 'deposited',
    event_id: eventId(command, 0),
    account_id: account.id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: fingerprintOf(command),
    amount,
    currency,
    posted_after: account.posted + amount,
    pending_after: account.pending,
  });
}

export function decideGetAccount(state: PartitionState, command: GetAccountCommand): Decision {
  const found = findAccount(state, command.account_id, 'id');
  if (found.error) return found.error;
  return rejected(ok(200, accountView(found.account)));
}

export function decideFreeze(state: PartitionState, command: FreezeAccountCommand): Decision {
  const found = findAccount(state, command.account_id, 'id');
  if (found.error) return found.error;
  const account = found.account;
  const frozen = command.type === 'freeze_account';
  // Already in the asked status: answer the view, record nothing.
  if ((account.status === 'frozen') === frozen) return rejected(ok(200, accountView(account)));
  return accepted(state, command, {
    type: frozen ? 'account_frozen' : 'account_unfrozen',
    event_id: eventId(command, 0),
    account_id: account.id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: fingerprintOf(command),
    posted_after: account.posted,
    pending_after: account.pending,
  });
}

const LAST4 = /^[0-9]{4}$/;

function isShortText(value: unknown, length_max: number): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= length_max;
}

function isInRange(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

export function decideCreateToken(state: PartitionState, command: CreateTokenCommand): Decision {
  const found = findAccount(state, command.account_id, 'account');
  if (found.error) return found.error;
  const account_id: AccountId = found.account.id;
  const token_id = parseTokenId(command.token_id);
  if (token_id === null || shardOfTokenId(token_id) !== shard(account_id)) {
    return invalid("token id must be tok_<8 hex of the account's shard><unique>", 'token_id');
  }
  if (state.tokens.has(token_id)) return rejected(fail('resource_already_exists', undefined, 'token_id'));
  if (typeof command.last4 !== 'string' || !LAST4.test(command.last4))
    return invalid('last4 must be 4 digits', 'last4');
  if (!isShortText(command.brand, 32)) return invalid('brand must be 1..32 chars', 'brand');
  if (!isShortText(command.card_fingerprint, 128))
    return invalid('card fingerprint must be 1..128 chars', 'fingerprint');
  if (!isInRange(command.exp_month, 1, 12)) return invalid('exp_month must be 1..12', 'exp_month');
  if (!isInRange(command.exp_year, 1970, 9999)) return invalid('exp_year must be a 4-digit year', 'exp_year');
  return accepted(state, command, {
    type: 'token_created',
    event_id: eventId(command, 0),
    account_id,
    time_ms: command.time_ms,
    command_id: command.command_id,
    fingerprint: fingerprintOf(command),
    token_id,
    last4: command.last4,
    brand: command.brand,
    card_fingerprint: command.card_fingerprint,
    exp_month: command.exp_month,
    exp_year: command.exp_year,
  });
}

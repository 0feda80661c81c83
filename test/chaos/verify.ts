import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  foldEvents,
  judge,
  type RawEvent,
  readEvents,
  type Verdict,
  waitQuiescent,
} from '../support/ledger-verifier.js';

/**
 * The chaos suite's verifier: test/support/ledger-verifier.ts (independent of src/: its own consumer,
 * read_committed from the beginning, its own fold) plus one more independent check on the raw events: no
 * command moved money twice (one money event per (type, command id, account)), which catches a deposit,
 * capture, refund or credit leg applied twice even when the fold and the API agree on the wrong balance.
 *
 * CLI: node --import tsx test/chaos/verify.ts --brokers 127.0.0.1:29092 --prefix <topic prefix>
 *        [--run <run.json: {acknowledged: string[], accounts: string[]}>] [--base http://127.0.0.1:<port>]
 * Prints the counts and exits 1 on any violation (2 on bad usage). Without --base the API balances are
 * not compared; without --run nothing counts as acknowledged (duplicates and conservation still checked).
 */
export interface ChaosVerdict extends Verdict {
  events_total: number;
  duplicate_commands: number;
  balances_checked: number;
}

const money_event_types = new Set([
  'deposited',
  'payment_captured',
  'payment_canceled',
  'payment_expired',
  'refund_created',
  'refund_succeeded',
  'refund_failed',
  'transfer_credited',
  'transfer_debited',
  'transfer_rejected',
  'payment_failed',
]);

export interface RunLog {
  /** Payment ids acknowledged (201/402/202): each must have exactly one outcome event. */
  acknowledged: string[];
  accounts: string[];
  /** Ids of acknowledged deposits (the response's id is the command id): each exactly one `deposited`. */
  acknowledged_deposits?: string[];
  /** Ids of acknowledged refunds (201): each exactly one `refund_created` (its outcome: the fold checks). */
  acknowledged_refunds?: string[];
  /** Payment ids whose capture was acknowledged (200): each exactly one `payment_captured`. */
  acknowledged_captures?: string[];
}

export async function verifyLedger(opts: {
  brokers: string[];
  topic_prefix: string;
  run: RunLog;
  base?: string;
  quiescence_timeout_ms?: number;
}): Promise<ChaosVerdict> {
  await waitQuiescent(opts.brokers, opts.topic_prefix, opts.quiescence_timeout_ms ?? 120_000);
  const events = await readEvents(opts.brokers, `${opts.topic_prefix}.events`, 120_000);
  const balances = opts.base ? await apiBalances(opts.base, opts.run.accounts) : new Map();
  return verifyEvents(events, opts.run, balances);
}

/**
 * The checks of verifyLedger on events read by the caller (e.g. from a mirrored copy of the events topic in
 * another cluster, test/region/mirror.test.ts), against balances the caller read through the API.
 */
export function verifyEvents(
  events: RawEvent[],
  run: RunLog,
  balances: Map<string, { posted: number; pending: number }>,
): ChaosVerdict {
  const fold = foldEvents(events);
  const verdict = judge(fold, run.acknowledged, balances);
  const raw = events as unknown as Record<string, unknown>[];
  const duplicates = duplicateCommands(raw);
  const deposits_missing = missingDeposits(raw, run.acknowledged_deposits ?? []);
  const refunds_wrong = [
    ...onceEach(raw, 'refund_created', 'refund_id', run.acknowledged_refunds ?? []),
    ...onceEach(raw, 'payment_captured', 'payment_id', run.acknowledged_captures ?? []),
  ];
  return {
    ...verdict,
    acknowledged:
      verdict.acknowledged +
      (run.acknowledged_deposits?.length ?? 0) +
      (run.acknowledged_refunds?.length ?? 0) +
      (run.acknowledged_captures?.length ?? 0),
    missing: verdict.missing + deposits_missing.length + refunds_wrong.length,
    events_total: events.length,
    duplicate_commands: duplicates.length,
    balances_checked: balances.size,
    violations: [...verdict.violations, ...duplicates, ...deposits_missing, ...refunds_wrong].slice(0, 50),
  };
}

export function duplicateCommands(events: Record<string, unknown>[]): string[] {
  const seen = new Map<string, number>();
  for (const e of events) {
    if (!money_event_types.has(String(e.type))) continue;
    const key = `${e.type} ${e.command_id} ${e.account_id}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return [...seen].filter(([, n]) => n > 1).map(([key, n]) => `${key} applied ${n}×`);
}

export function missingDeposits(events: Record<string, unknown>[], acknowledged: string[]): string[] {
  const applied = new Set(events.filter((e) => e.type === 'deposited').map((e) => String(e.command_id)));
  return acknowledged
    .filter((id) => !applied.has(id))
    .map((id) => `deposit ${id} acknowledged, never applied`);
}

/** Acknowledged ids that do not have exactly one event of `type` (matched on its `field`). */
export function onceEach(
  events: Record<string, unknown>[],
  type: string,
  field: string,
  acknowledged: string[],
): string[] {
  const seen = new Map<string, number>();
  for (const e of events)
    if (e.type === type) seen.set(String(e[field]), (seen.get(String(e[field])) ?? 0) + 1);
  return acknowledged
    .filter((id) => seen.get(id) !== 1)
    .map((id) => `${id} acknowledged, ${type} ${seen.get(id) ?? 0}× (not once)`);
}

export function violated(v: ChaosVerdict): boolean {
  return v.violations.length > 0 || v.sum_of_balances !== 0;
}

export function formatVerdict(v: ChaosVerdict): string {
  return [
    `acknowledged ${v.acknowledged}`,
    `applied ${v.applied}`,
    `duplicates ${v.duplicates + v.duplicate_commands + v.duplicate_event_ids}`,
    `missing ${v.missing}`,
    `mismatches ${v.balance_mismatches}/${v.balances_checked}`,
    `sum ${v.sum_of_balances}`,
    `events ${v.events_total}`,
  ].join(', ');
}

export function writeRunLog(path: string, run: RunLog): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(run));
}

const auth = { authorization: 'Bearer sk_test_local' };

/** Balances through the API (GET travels through the log: linearizable), 25 at a time, bounded retries. */
export async function apiBalances(base: string, accounts: string[]) {
  const balances = new Map<string, { posted: number; pending: number }>();
  for (let i = 0; i < accounts.length; i += 25) {
    await Promise.all(
      accounts.slice(i, i + 25).map(async (id) => {
        for (let attempt = 0; attempt < 20; attempt++) {
          const res = await fetch(`${base}/v1/accounts/${id}`, {
            headers: auth,
            signal: AbortSignal.timeout(10_000),
          }).catch(() => null);
          if (res?.status === 200) {
            const body = (await res.json()) as { posted: number; pending: number };
            balances.set(id, { posted: body.posted, pending: body.pending });
            return;
          }
          await res?.body?.cancel();
          await new Promise((r) => setTimeout(r, 250));
        }
        throw new Error(`verifier: GET /v1/accounts/${id} never answered 200`);
      }),
    );
  }
  return balances;
}

function arg(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

async function main(): Promise<number> {
  const brokers = arg('brokers');
  const topic_prefix = arg('prefix');
  if (!brokers || !topic_prefix) {
    process.stderr.write(
      'usage: verify.ts --brokers host:port[,…] --prefix <topic prefix> [--run run.json] [--base url]\n',
    );
    return 2;
  }
  const run_file = arg('run');
  const run: RunLog = run_file
    ? (JSON.parse(readFileSync(run_file, 'utf8')) as RunLog)
    : { acknowledged: [], accounts: [] };
  const base = arg('base');
  const verdict = await verifyLedger({
    brokers: brokers.split(','),
    topic_prefix,
    run,
    ...(base ? { base } : {}),
  });
  process.stdout.write(`${formatVerdict(verdict)}\n`);
  for (const v of verdict.violations) process.stdout.write(`  violation: ${v}\n`);
  if (!base) process.stdout.write('  (balances not compared with the API: no --base)\n');
  return violated(verdict) ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`verify: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}

/**
 * Ledger domain micro-benchmark: `npm run bench:domain` (re-executes itself with --expose-gc).
 *
 * One partition holds 100,000 accounts (1,000 merchants). Batches of 1,000 client commands
 * (70% payments of which 30% capture:false, 15% captures, 10% refunds, 5% deposits) go through `apply`
 * on one core; the legs they produce (credits, refund debits and settlements) are applied right after
 * their batch, as the payee partitions would, and are timed too. Command objects are built before the
 * clock starts (the gateway builds them, not the lane).
 *
 * Baselines in the same run, for snapshots of the same state: snapshot v2 (msgpackr, an object per account,
 * payment and record: the codec before the tables) and the same objects through JSON (stringify/parse +
 * Map rebuild), against v3 (the tables' columns).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import {
  apply,
  type Command,
  createPartitionState,
  type DomainConfig,
  decodeSnapshot,
  encodeSnapshot,
  type FollowUpCommand,
  type PartitionState,
  paymentIdFor,
  recordTableFor,
  shard,
} from '../src/domain/index.js';

if (typeof globalThis.gc !== 'function') {
  const child = spawnSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url)],
    {
      stdio: 'inherit',
    },
  );
  process.exit(child.status ?? 1);
}
const gc = globalThis.gc as () => void;

const ACCOUNTS = 100_000;
const MERCHANTS = 1_000;
const BATCH = 1_000;
const WARMUP_BATCHES = 100;
const MEASURED_BATCHES = 600;
const T0_MS = Date.UTC(2026, 10, 25);
/** Simulated record time per command: 1 ms, i.e. this partition sees 1,000 commands/s of wall time. */
const STEP_MS = 1;

const ids: string[] = [];
const shards: number[] = [];
for (let i = 0; i < ACCOUNTS; i++) {
  const id = (i < MERCHANTS ? 'merch_' : 'cust_') + i.toString().padStart(6, '0');
  ids.push(id);
  shards.push(shard(id));
}

let seq = 0;
let time_ms = T0_MS;
/** Deterministic PRNG (mulberry32) so every run applies the same commands. */
let rng_state = 42;

/** Both configurations of a run apply the same command sequence from the start. */
function resetGenerator(): void {
  seq = 0;
  time_ms = T0_MS;
  rng_state = 42;
  manual = new Fifo<string>();
  refundable = new Fifo<{ id: string; amount: number }>();
}
function random(): number {
  rng_state = (rng_state + 0x6d2b79f5) | 0;
  let t = rng_state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function pick(n: number): number {
  return Math.floor(random() * n);
}

/** JS heap and ArrayBuffer memory after a full GC: the tables keep their rows in typed arrays. */
function memoryUsed(): { heap_b: number; buffers_b: number; total_b: number } {
  gc();
  gc();
  const usage = process.memoryUsage();
  return {
    heap_b: usage.heapUsed,
    buffers_b: usage.arrayBuffers,
    total_b: usage.heapUsed + usage.arrayBuffers,
  };
}

/**
 * Machine calibration: the first write to a fresh page is a page fault, and on this VM a fault costs
 * microseconds (tables grow into fresh memory: every new row pays a share of one).
 */
function pageFaultCalibrationUs(): { first_touch_us_per_page: number; touched_us_per_page: number } {
  // In a fresh process: here, memory freed by the runs would be handed out again without a fault.
  const code = `
    const pages = 8192, words = 512, array = new Float64Array(pages * words);
    const sweep = () => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < array.length; i += words) array[i] = i;
      return Number(process.hrtime.bigint() - start) / 1000 / pages;
    };
    const first = sweep();
    process.stdout.write(JSON.stringify({ first_touch_us_per_page: first, touched_us_per_page: sweep() }));`;
  const child = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`page-fault calibration failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as { first_touch_us_per_page: number; touched_us_per_page: number };
}

function setup(config: Partial<DomainConfig>): {
  state: PartitionState;
  memory_per_account_b: number;
  memory_per_account_with_records_b: number;
} {
  const before = memoryUsed().total_b;
  const state = createPartitionState(0, config);
  for (let i = 0; i < ACCOUNTS; i++) {
    const kind = i < MERCHANTS ? 'merchant' : 'customer';
    const command_id = `open_${i}`;
    apply(state, {
      type: 'open_account',
      command_id,
      time_ms,
      account_id: ids[i]!,
      currency: 'usd',
      kind,
      overdraft_limit: 0,
    });
    apply(state, {
      type: 'deposit',
      command_id: `dep0_${i}`,
      time_ms,
      account_id: ids[i]!,
      amount: 100_000_000,
      currency: 'usd',
    });
  }
  const with_records = memoryUsed().total_b;
  // Accounts alone: the setup's records would expire in 24 h. Fresh tables, so the memory the old ones
  // keep for reuse is not counted as the accounts'.
  state.idempotency = recordTableFor(state.config, 0);
  state.idempotency_previous = recordTableFor(state.config, 0);
  const accounts_only = memoryUsed().total_b;
  return {
    state,
    memory_per_account_b: (accounts_only - before) / ACCOUNTS,
    memory_per_account_with_records_b: (with_records - before) / ACCOUNTS,
  };
}

/** FIFO with a head index: Array#shift is O(n) on large arrays and would dominate the generator. */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  shift(): T {
    const item = this.#items[this.#head++]!;
    if (this.#head > 65_536 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/** Payments waiting for capture, and captured payments that may be refunded. */
let manual = new Fifo<string>();
let refundable = new Fifo<{ id: string; amount: number }>();

function nextCommand(): Command {
  seq++;
  time_ms += STEP_MS;
  const command_id = `c${seq}`;
  const roll = random();
  if (roll < 0.15 && manual.length > 0) {
    const payment_id = manual.shift();
    return { type: 'capture_payment', command_id, time_ms, payment_id };
  }
  if (roll < 0.25 && refundable.length > 0) {
    const { id, amount } = refundable.shift();
    return { type: 'create_refund', command_id, time_ms, payment_id: id, amount: Math.max(1, amount >> 1) };
  }
  if (roll < 0.3) {
    const i = pick(ACCOUNTS);
    return { type: 'deposit', command_id, time_ms, account_id: ids[i]!, amount: 10_000, currency: 'usd' };
  }
  const payer = MERCHANTS + pick(ACCOUNTS - MERCHANTS);
  const payment_id = paymentIdFor(shards[payer]!, `u${seq}`);
  const capture = random() >= 0.3;
  const amount = 100 + pick(5_000);
  if (capture) refundable.push({ id: payment_id, amount });
  else manual.push(payment_id);
  return {
    type: 'create_payment',
    command_id,
    time_ms,
    payment_id,
    source: ids[payer]!,
    destination: ids[pick(MERCHANTS)]!,
    amount,
    currency: 'usd',
    capture,
  };
}

interface BatchResult {
  elapsed_ns: bigint;
  legs: number;
  declined: number;
  errors: number;
}

function runBatch(state: PartitionState): BatchResult {
  const commands: Command[] = new Array(BATCH);
  for (let i = 0; i < BATCH; i++) commands[i] = nextCommand();
  let legs = 0;
  let declined = 0;
  let errors = 0;
  const start = process.hrtime.bigint();
  let follow_ups: FollowUpCommand[] = [];
  for (let i = 0; i < BATCH; i++) {
    const decision = apply(state, commands[i]!);
    if (decision.reply !== null && !decision.reply.ok) {
      if (decision.reply.status === 402) declined++;
      else errors++;
    }
    for (const leg of decision.follow_ups) follow_ups.push(leg);
  }
  // Legs, as the payee partitions would apply them (here all accounts share one partition).
  for (let round = 0; follow_ups.length > 0 && round < 4; round++) {
    const next: FollowUpCommand[] = [];
    for (const leg of follow_ups) {
      legs++;
      for (const more of apply(state, leg).follow_ups) next.push(more);
    }
    follow_ups = next;
  }
  return { elapsed_ns: process.hrtime.bigint() - start, legs, declined, errors };
}

interface CodecRun {
  encode_ms: number;
  decode_ms: number;
  bytes: number;
}

/** All state as objects: one per account, payment and record (what v2 and the JSON baseline write). */
function stateAsObjects(state: PartitionState) {
  return {
    v: 2,
    partition: state.partition,
    config: state.config,
    accounts: [...state.accounts.values()],
    payments: [...state.payments.values()],
    tokens: [...state.tokens.values()],
    idempotency: [...state.idempotency.values()],
    idempotency_previous: [...state.idempotency_previous.values()],
    idempotency_generation_started_ms: state.idempotency_generation_started_ms,
    idempotency_evicted_early_count: state.idempotency_evicted_early_count,
  };
}

/** Baseline 1: the objects through JSON.stringify/parse and a Map rebuild. */
function snapshotThroughJson(state: PartitionState): CodecRun {
  const t0 = performance.now();
  const text = JSON.stringify(stateAsObjects(state));
  const bytes = Buffer.byteLength(text);
  const t1 = performance.now();
  const parsed = JSON.parse(text) as Record<string, { id?: string; command_id?: string }[]>;
  const rebuilt = {
    accounts: new Map(parsed.accounts!.map((a) => [a.id, a])),
    payments: new Map(parsed.payments!.map((p) => [p.id, p])),
    idempotency: new Map(parsed.idempotency!.map((r) => [r.command_id, r])),
  };
  const t2 = performance.now();
  if (rebuilt.accounts.size !== state.accounts.size) throw new Error('json baseline lost accounts');
  return { encode_ms: t1 - t0, decode_ms: t2 - t1, bytes };
}

/** Baseline 2: snapshot v2, the codec before the tables (msgpackr records, an object per entity). */
const objects_packr = new Packr({ useRecords: true, moreTypes: false, mapsAsObjects: true });
function snapshotV2Objects(state: PartitionState): CodecRun {
  const t0 = performance.now();
  const bytes = new Uint8Array(objects_packr.pack(stateAsObjects(state)));
  const t1 = performance.now();
  const decoded = decodeSnapshot(bytes);
  const t2 = performance.now();
  if (decoded.payments.size !== state.payments.size) throw new Error('v2 snapshot lost payments');
  return { encode_ms: t1 - t0, decode_ms: t2 - t1, bytes: bytes.byteLength };
}

/** The codec: snapshot v3, tables as columns. */
function snapshotV3Columns(state: PartitionState): CodecRun {
  const t0 = performance.now();
  const bytes = encodeSnapshot(state);
  const t1 = performance.now();
  const decoded = decodeSnapshot(bytes);
  const t2 = performance.now();
  if (decoded.accounts.size !== state.accounts.size) throw new Error('snapshot lost accounts');
  if (decoded.payments.size !== state.payments.size) throw new Error('snapshot lost payments');
  return { encode_ms: t1 - t0, decode_ms: t2 - t1, bytes: bytes.byteLength };
}

function snapshotLine(label: string, state: PartitionState): string {
  const v3 = snapshotV3Columns(state);
  const v2 = snapshotV2Objects(state);
  const json = snapshotThroughJson(state);
  const one = (name: string, r: CodecRun): string =>
    `${name} ${(r.bytes / 1e6).toFixed(1)} MB, encode ${r.encode_ms.toFixed(0)} ms (${mbPerS(r.bytes, r.encode_ms)} MB/s), decode ${r.decode_ms.toFixed(0)} ms (${mbPerS(r.bytes, r.decode_ms)} MB/s)`;
  const ratio = (r: CodecRun): string =>
    `${(r.encode_ms / v3.encode_ms).toFixed(1)}x / ${(r.decode_ms / v3.decode_ms).toFixed(1)}x`;
  return (
    `snapshot, ${label}: ${one('v3 columns', v3)}\n` +
    `    baselines: ${one('v2 objects (msgpackr)', v2)}; ${one('JSON objects', json)}\n` +
    `    time ratio encode / decode vs v3: v2 ${ratio(v2)}, JSON ${ratio(json)}`
  );
}

/**
 * Machine calibration in the same run: the ledger's hot path is a few Map lookups/inserts with fresh
 * string keys per command, so this figure bounds what apply can reach on this machine.
 */
function mapCalibrationNs(): number {
  const map = new Map<string, { n: number }>();
  const count = 500_000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) map.set('key_' + i, { n: i });
  let sum = 0;
  for (let i = 0; i < count; i++) sum += map.get('key_' + ((i * 7919) % count))!.n;
  const elapsed = Number(process.hrtime.bigint() - start);
  if (sum < 0) throw new Error('unreachable');
  return elapsed / (2 * count);
}

function mbPerS(bytes: number, ms: number): string {
  return (bytes / 1e6 / (ms / 1000)).toFixed(0);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

interface ApplyRun {
  client_per_s: number;
  all_per_s: number;
  median_batch_per_s: number;
  best_batch_per_s: number;
  legs: number;
  declined: number;
  errors: number;
  heap_per_payment_b: number;
  buffers_per_payment_b: number;
  payments_added: number;
}

/** Warm-up, then the measured batches on `state`; time is apply's only (commands are built before). */
function measureApply(state: PartitionState): ApplyRun {
  for (let i = 0; i < WARMUP_BATCHES; i++) runBatch(state);
  const memory_before = memoryUsed();
  const payments_before = state.payments.size;
  const rates: number[] = [];
  let total_ns = 0n;
  let legs = 0;
  let declined = 0;
  let errors = 0;
  for (let i = 0; i < MEASURED_BATCHES; i++) {
    const r = runBatch(state);
    total_ns += r.elapsed_ns;
    legs += r.legs;
    declined += r.declined;
    errors += r.errors;
    rates.push((BATCH * 1e9) / Number(r.elapsed_ns));
  }
  const memory_after = memoryUsed();
  const payments_added = state.payments.size - payments_before;
  const seconds = Number(total_ns) / 1e9;
  const client = MEASURED_BATCHES * BATCH;
  return {
    client_per_s: client / seconds,
    all_per_s: (client + legs) / seconds,
    median_batch_per_s: median(rates),
    best_batch_per_s: Math.max(...rates),
    legs,
    declined,
    errors,
    heap_per_payment_b: (memory_after.heap_b - memory_before.heap_b) / payments_added,
    buffers_per_payment_b: (memory_after.buffers_b - memory_before.buffers_b) / payments_added,
    payments_added,
  };
}

/**
 * The second configuration: tables reserved for the whole run (payments, and each idempotency generation
 * up to its bound of 500,000), so their memory is mapped before the first batch (payment_rows_reserved).
 */
const RESERVED: Partial<DomainConfig> = { payment_rows_reserved: 1 << 19, record_rows_reserved: 1 << 19 };

function applyLines(label: string, r: ApplyRun): string[] {
  return [
    `apply (${label}), client commands (legs' time included): ${r.client_per_s.toFixed(0)} commands/s; median batch ${r.median_batch_per_s.toFixed(0)}/s, best batch ${r.best_batch_per_s.toFixed(0)}/s`,
    `    client commands + legs counted: ${r.all_per_s.toFixed(0)} commands/s (${r.legs} legs); declined ${r.declined}, other errors ${r.errors} (of ${MEASURED_BATCHES * BATCH})`,
    `    memory growth per payment (payment + records of its commands and legs): heap ${r.heap_per_payment_b.toFixed(0)} B + typed arrays ${r.buffers_per_payment_b.toFixed(0)} B over ${r.payments_added} payments`,
  ];
}

/** The default configuration, with the memory and snapshot figures; its state is dropped on return. */
function runDefault() {
  resetGenerator();
  const { state, memory_per_account_b, memory_per_account_with_records_b } = setup({});
  const snapshot_accounts = snapshotLine(`${ACCOUNTS.toLocaleString('en')} accounts`, state);
  const run = measureApply(state);
  const records = state.idempotency.size + state.idempotency_previous.size;
  const snapshot_full = snapshotLine(
    `after the run (${state.payments.size} payments, ${records} records)`,
    state,
  );
  const tables = `tables after the run: payments ${state.payments.size} rows in ${state.payments.index.row_capacity} | records ${state.idempotency.size} + ${state.idempotency_previous.size} rows (evicted early by the bound: ${state.idempotency_evicted_early_count})`;
  return {
    run,
    memory_per_account_b,
    memory_per_account_with_records_b,
    snapshot_accounts,
    snapshot_full,
    tables,
  };
}

function main(): void {
  const map_op_ns = mapCalibrationNs();
  const grown = runDefault();
  const { run: run_default, snapshot_accounts, snapshot_full, tables } = grown;
  resetGenerator();
  const reserved_setup_ms = performance.now();
  const reserved = setup(RESERVED);
  const reserved_setup_s = (performance.now() - reserved_setup_ms) / 1000;
  const run_reserved = measureApply(reserved.state);
  const faults = pageFaultCalibrationUs();

  const lines = [
    `node ${process.version}, ${process.arch}, one core (single thread), ${ACCOUNTS.toLocaleString('en')} accounts`,
    `batches: ${MEASURED_BATCHES} x ${BATCH} client commands after ${WARMUP_BATCHES} warm-up batches, twice: default config, then tables reserved`,
    ...applyLines('default config: tables grow', run_default),
    ...applyLines(
      `tables reserved: ${RESERVED.payment_rows_reserved} payment rows, ${RESERVED.record_rows_reserved} per record generation; setup ${reserved_setup_s.toFixed(1)} s`,
      run_reserved,
    ),
    `    reserved / default, client commands/s: ${(run_reserved.client_per_s / run_default.client_per_s).toFixed(2)}x`,
    `memory per account (actor state, JS heap + typed arrays):   ${grown.memory_per_account_b.toFixed(0)} B`,
    `memory per account + its 2 idempotency records (open, deposit): ${grown.memory_per_account_with_records_b.toFixed(0)} B`,
    tables,
    `calibration: one Map.set/get with a fresh string key = ${map_op_ns.toFixed(0)} ns on this machine now`,
    `calibration: first write to a fresh 4 KiB page ${faults.first_touch_us_per_page.toFixed(2)} us, to a touched page ${faults.touched_us_per_page.toFixed(3)} us`,
    snapshot_accounts,
    snapshot_full,
  ];
  for (const line of lines) process.stdout.write(`${line}\n`);
}

main();

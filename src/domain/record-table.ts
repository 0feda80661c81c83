import { assert } from './assert.js';
import { hashKey, type IndexKeys, StringIndex, touchPages } from './string-index.js';
import type { DomainEvent, EventType } from './types.js';

/**
 * One generation of idempotency records (see idempotency.ts): key (command id or a leg's transfer id) ->
 * the outcome that answers a retry.
 *
 * A client command's record is its outcome event, kept whole because the retry's reply is rebuilt from it.
 * A leg's record needs only its outcome type: a leg has no fingerprint and gets no reply, so a redelivery
 * is recognised by the key alone, and decideDebit asks only whether a credit was rejected. Legs are most
 * records (0.84 a client command in the domain bench), so a leg's record is a byte in a column, not an
 * object: it costs no allocation and no GC copy. Outside the domain a leg record shows as a `LegRecord`.
 */

/** The outcome events of legs (follow-up commands), recorded by type only. */
export const LEG_OUTCOME_TYPES = [
  'transfer_credited',
  'transfer_debited',
  'transfer_rejected',
  'payment_failed',
  'refund_succeeded',
  'refund_failed',
] as const satisfies readonly EventType[];
export type LegOutcomeType = (typeof LEG_OUTCOME_TYPES)[number];

/** How a leg's record looks outside the table (checkpoints, snapshots, tests). */
export interface LegRecord {
  command_id: string;
  type: LegOutcomeType;
}

export type StoredRecord = DomainEvent | LegRecord;

/** Type code 0: the row holds a client command's event in `events`. */
const CLIENT_EVENT = 0;

export function legOutcomeCode(type: string): number {
  const code = (LEG_OUTCOME_TYPES as readonly string[]).indexOf(type);
  return code < 0 ? CLIENT_EVENT : code + 1;
}

export function isLegRecord(record: StoredRecord): record is LegRecord {
  return legOutcomeCode(record.type) !== CLIENT_EVENT;
}

/** A generation as arrays, for snapshots (views into the table: encode before it changes). */
export interface RecordColumns {
  keys: IndexKeys;
  type_code: Uint8Array;
  /** The event of each client command's row; null for legs. */
  events: (DomainEvent | null)[];
}

export class RecordTable {
  readonly index: StringIndex;
  /** Per row: CLIENT_EVENT, or 1 + the index of a leg outcome type in LEG_OUTCOME_TYPES. */
  type_code: Uint8Array;
  /** Per row: the client command's event; null for legs. */
  events: (DomainEvent | null)[] = [];

  /** `index`: rows already indexed (a snapshot's), whose columns the caller fills. */
  constructor(row_capacity_initial: number, index?: StringIndex) {
    this.index = index ?? new StringIndex(row_capacity_initial);
    this.type_code = new Uint8Array(this.index.row_capacity);
  }

  /** Maps every page of the table's arrays now, so that rows up to its capacity never fault. */
  touchPages(): void {
    this.index.touchPages();
    touchPages(this.type_code);
  }

  toColumns(): RecordColumns {
    return {
      keys: this.index.keys(),
      type_code: this.type_code.subarray(0, this.size),
      events: this.events.slice(0, this.size),
    };
  }

  static fromColumns(columns: RecordColumns, row_capacity_min: number): RecordTable {
    const table = new RecordTable(0, StringIndex.fromKeys(columns.keys, row_capacity_min));
    const rows = table.size;
    assert(columns.type_code.length === rows && columns.events.length === rows, 'record snapshot: ragged');
    table.type_code.set(columns.type_code);
    for (let row = 0; row < rows; row++) {
      const event = columns.events[row] ?? null;
      assert((event === null) === (table.type_code[row] !== CLIENT_EVENT), 'record snapshot: row %s', row);
      table.events[row] = event;
    }
    return table;
  }

  get size(): number {
    return this.index.size;
  }

  find(key: string): number {
    return this.index.find(key);
  }

  /** `find` with the key's hashKey already computed (one hash for both generations). */
  findHashed(key: string, hash: number): number {
    return this.index.findHashed(key, hash);
  }

  has(key: string): boolean {
    return this.index.find(key) >= 0;
  }

  /** The outcome type of a row, whichever way it is stored. */
  typeOf(row: number): EventType {
    const code = this.type_code[row]!;
    if (code !== CLIENT_EVENT) return LEG_OUTCOME_TYPES[code - 1]!;
    const event = this.events[row];
    assert(event != null, 'record row %s lost its event', row);
    return event.type;
  }

  /** Records an outcome under `key`; a later outcome of the same key replaces the earlier one. */
  set(key: string, record: StoredRecord): this {
    let row = this.index.findOrInsertHashed(key, hashKey(key));
    if (row < 0) row = ~row;
    else if (this.index.row_capacity > this.type_code.length) this.#grow();
    const code = legOutcomeCode(record.type);
    this.type_code[row] = code;
    this.events[row] = code === CLIENT_EVENT ? (record as DomainEvent) : null;
    return this;
  }

  /** The record as stored: the event of a client command, a LegRecord (a new object) for a leg. */
  recordOf(row: number, key: string = this.index.keyOf(row)): StoredRecord {
    const code = this.type_code[row]!;
    if (code === CLIENT_EVENT) return this.events[row]!;
    return { command_id: key, type: LEG_OUTCOME_TYPES[code - 1]! };
  }

  get(key: string): StoredRecord | undefined {
    const row = this.index.find(key);
    return row < 0 ? undefined : this.recordOf(row, key);
  }

  /** Forgets every record and keeps the memory for the next generation. */
  clear(): void {
    this.events.fill(null, 0, this.index.size);
    this.index.clear();
  }

  *keys(): IterableIterator<string> {
    for (let row = 0; row < this.size; row++) yield this.index.keyOf(row);
  }

  *values(): IterableIterator<StoredRecord> {
    for (let row = 0; row < this.size; row++) yield this.recordOf(row);
  }

  *entries(): IterableIterator<[string, StoredRecord]> {
    for (let row = 0; row < this.size; row++) {
      const key = this.index.keyOf(row);
      yield [key, this.recordOf(row, key)];
    }
  }

  [Symbol.iterator](): IterableIterator<[string, StoredRecord]> {
    return this.entries();
  }

  #grow(): void {
    const next = new Uint8Array(this.index.row_capacity);
    next.set(this.type_code);
    this.type_code = next;
  }
}

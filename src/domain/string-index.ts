import { assert } from './assert.js';

/**
 * A string -> row index in typed arrays: rows are numbered 0, 1, 2... in insertion order, and each row's
 * key is kept in one arena. Why not a Map<string, T>: a Map keeps heap objects per key (the key string, the
 * entry, often a value object), which the young-generation GC copies once and the old generation traces
 * for ever. Here an insert writes a few numbers into arrays that already exist, and nothing is allocated
 * until the table doubles. Moving payments and idempotency records from Maps to these tables took the
 * domain bench from ~76k to ~127k client commands/s (BENCHMARKS.md, ledger domain).
 *
 *   slots (open addressing, linear probing, load <= 1/2)      rows (insertion order)
 *   ┌───┬───┬───┬───┬───┬───┬───┬───┐                          row: hash  key_offset key_length
 *   │ 0 │r+1│ 0 │r+1│r+1│ 0 │ 0 │r+1│ ──────────────────────▶  0    ...   0          21
 *   └───┴───┴───┴───┴───┴───┴───┴───┘                          1    ...   21         19
 *   slot = (hash + i) & mask; 0 = empty                      arena: every key, one byte a code unit
 *
 * Keys are ids and request ids, Latin-1 in practice, so the arena holds a byte per UTF-16 code unit; a key
 * with a unit above 0xFF (allowed, rare) is kept whole in `wide` instead and takes no arena bytes.
 * Rows are never deleted one by one: tables that forget (idempotency generations) are cleared whole.
 * Cost: lookup = hash (~1 ns a char) + ~1 probe + one key compare; insert = the same plus a key copy.
 */

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
export const KEY_LENGTH_MAX = 0xffff;
/** Rows per table, so offsets and slot numbers stay in 32 bits. */
export const ROWS_MAX = 1 << 30;
const ARENA_UNITS_MAX = 2 ** 32 - 1;

/** FNV-1a over UTF-16 code units, then a murmur3 finalizer so that the low bits (the slot) mix well. */
export function hashKey(key: string): number {
  let hash = FNV_OFFSET_BASIS;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), FNV_PRIME);
  return finalize(hash);
}

/** murmur3's fmix32: spreads every input bit over the low bits that pick the slot. */
function finalize(fnv: number): number {
  let hash = fnv ^ (fnv >>> 16);
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

/** hashKey of the key held in `units[offset, offset + length)`; equal to hashKey of that string. */
export function hashUnits(units: Uint8Array, offset: number, length: number): number {
  let hash = FNV_OFFSET_BASIS;
  for (let i = offset; i < offset + length; i++) hash = Math.imul(hash ^ units[i]!, FNV_PRIME);
  return finalize(hash);
}

/**
 * The keys of an index, row by row, as arrays (snapshots): key i is the next key_length[i] bytes of
 * `units`, or for a row listed in `wide` that string (and no bytes).
 */
export interface IndexKeys {
  key_length: Uint16Array;
  units: Uint8Array;
  wide: [row: number, key: string][];
}

const PAGE_BYTES = 4096;

/**
 * Writes one element of every memory page of `array` (its own value back), so that the OS maps the pages
 * now: the first write to a fresh page is a page fault, which costs ~20 us on the VM measured here
 * (BENCHMARKS.md), and a table that faults its pages in during a batch stalls that batch.
 */
export function touchPages(array: Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array): void {
  const step = Math.max(1, PAGE_BYTES / array.BYTES_PER_ELEMENT);
  for (let i = 0; i < array.length; i += step) array[i] = array[i]!;
}

export function grown<T extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array>(
  old: T,
  length: number,
): T {
  const next = new (old.constructor as new (n: number) => T)(length);
  next.set(old);
  return next;
}

export class StringIndex {
  /** Rows in use. */
  size = 0;
  /** Rows the arrays hold before they double. */
  row_capacity: number;
  slots: Int32Array;
  row_hash: Uint32Array;
  key_offset: Uint32Array;
  key_length: Uint16Array;
  arena: Uint8Array;
  arena_used = 0;
  /** Rows whose key has a code unit above 0xFF: the key itself (no arena bytes). */
  readonly wide = new Map<number, string>();

  constructor(row_capacity_initial: number) {
    assert(
      Number.isSafeInteger(row_capacity_initial) && row_capacity_initial >= 1,
      'row capacity must be >= 1',
    );
    this.row_capacity = 1 << Math.ceil(Math.log2(Math.max(8, row_capacity_initial)));
    this.slots = new Int32Array(this.row_capacity * 2);
    this.row_hash = new Uint32Array(this.row_capacity);
    this.key_offset = new Uint32Array(this.row_capacity);
    this.key_length = new Uint16Array(this.row_capacity);
    this.arena = new Uint8Array(this.row_capacity * 24);
  }

  /** The row of `key`, or -1. */
  find(key: string): number {
    return this.findHashed(key, hashKey(key));
  }

  findHashed(key: string, hash: number): number {
    const mask = this.slots.length - 1;
    // Bounded: the load is at most 1/2, so an empty slot is always reached within slots.length probes.
    for (let slot = hash & mask, probes = 0; probes <= mask; slot = (slot + 1) & mask, probes++) {
      const entry = this.slots[slot]!;
      if (entry === 0) return -1;
      const row = entry - 1;
      if (this.row_hash[row] === hash && this.keyEquals(row, key)) return row;
    }
    assert(false, 'string index: no empty slot (load factor broken)');
  }

  keyEquals(row: number, key: string): boolean {
    const length = this.key_length[row]!;
    if (length !== key.length) return false;
    if (this.wide.size > 0) {
      const wide = this.wide.get(row);
      if (wide !== undefined) return wide === key;
    }
    const offset = this.key_offset[row]!;
    const arena = this.arena;
    for (let i = 0; i < length; i++) if (arena[offset + i] !== key.charCodeAt(i)) return false;
    return true;
  }

  /** Adds `key` (which must be absent: callers look first) and returns its row. */
  insert(key: string): number {
    return this.insertHashed(key, hashKey(key));
  }

  insertHashed(key: string, hash: number): number {
    if (this.size === this.row_capacity) this.#growRows();
    const row = this.#append(key, hash);
    this.#place(row, hash);
    return row;
  }

  /**
   * The row of `key` as `~row` (negative) when it is there; else adds it and returns its row. One walk
   * over the slots for both, where findHashed then insertHashed would walk them twice.
   */
  findOrInsertHashed(key: string, hash: number): number {
    if (this.size === this.row_capacity) this.#growRows(); // first, so the empty slot found stays valid
    const mask = this.slots.length - 1;
    for (let slot = hash & mask, probes = 0; probes <= mask; slot = (slot + 1) & mask, probes++) {
      const entry = this.slots[slot]!;
      if (entry === 0) {
        const row = this.#append(key, hash);
        this.slots[slot] = row + 1;
        return row;
      }
      if (this.row_hash[entry - 1] === hash && this.keyEquals(entry - 1, key)) return ~(entry - 1);
    }
    assert(false, 'string index: no empty slot (load factor broken)');
  }

  /** Writes a new row's key and hash (not its slot); the row arrays have room. */
  #append(key: string, hash: number): number {
    assert(key.length <= KEY_LENGTH_MAX, 'string index: key of %s units is too long', key.length);
    if (this.arena_used + key.length > this.arena.length) this.#growArena(key.length);
    const row = this.size++;
    this.row_hash[row] = hash;
    this.key_offset[row] = this.arena_used;
    this.key_length[row] = key.length;
    const arena = this.arena;
    const offset = this.arena_used;
    let units_or = 0;
    for (let i = 0; i < key.length; i++) {
      const unit = key.charCodeAt(i);
      arena[offset + i] = unit;
      units_or |= unit;
    }
    if (units_or > 0xff)
      this.wide.set(row, key); // the bytes written are left as free space
    else this.arena_used += key.length;
    return row;
  }

  keyOf(row: number): string {
    assert(row >= 0 && row < this.size, 'string index: no row %s', row);
    const wide = this.wide.size > 0 ? this.wide.get(row) : undefined;
    if (wide !== undefined) return wide;
    const offset = this.key_offset[row]!;
    return String.fromCharCode.apply(
      null,
      this.arena.subarray(offset, offset + this.key_length[row]!) as unknown as number[],
    );
  }

  /** Views of the keys in row order (no copy: encode them before the index changes). */
  keys(): IndexKeys {
    return {
      key_length: this.key_length.subarray(0, this.size),
      units: this.arena.subarray(0, this.arena_used),
      wide: [...this.wide],
    };
  }

  /** An index holding `keys` as rows 0.. in order, with room for at least `row_capacity_min` rows. */
  static fromKeys(keys: IndexKeys, row_capacity_min: number): StringIndex {
    const rows = keys.key_length.length;
    const index = new StringIndex(Math.max(rows, row_capacity_min));
    if (keys.units.length > index.arena.length) index.arena = new Uint8Array(keys.units.length);
    index.arena.set(keys.units);
    index.key_length.set(keys.key_length);
    for (const [row, key] of keys.wide) index.wide.set(row, key);
    let offset = 0;
    for (let row = 0; row < rows; row++) {
      const length = keys.key_length[row]!;
      const wide = index.wide.get(row);
      index.key_offset[row] = offset;
      index.row_hash[row] = wide === undefined ? hashUnits(index.arena, offset, length) : hashKey(wide);
      index.#place(row, index.row_hash[row]!);
      if (wide === undefined) offset += length;
    }
    assert(offset === keys.units.length, 'string index: key lengths do not add up to the key units');
    index.size = rows;
    index.arena_used = offset;
    return index;
  }

  /** Forgets every row and keeps the memory (it is already paged in, which is the point). */
  clear(): void {
    this.slots.fill(0);
    this.wide.clear();
    this.size = 0;
    this.arena_used = 0;
  }

  /** Maps every page of the index's arrays now (see touchPages). */
  touchPages(): void {
    touchPages(this.slots);
    touchPages(this.row_hash);
    touchPages(this.key_offset);
    touchPages(this.key_length);
    touchPages(this.arena);
  }

  /** Bytes held by the typed arrays (what the table costs, used or not). */
  get bytes(): number {
    return (
      this.slots.byteLength +
      this.row_hash.byteLength +
      this.key_offset.byteLength +
      this.key_length.byteLength +
      this.arena.byteLength
    );
  }

  #place(row: number, hash: number): void {
    const mask = this.slots.length - 1;
    let slot = hash & mask;
    while (this.slots[slot] !== 0) slot = (slot + 1) & mask;
    this.slots[slot] = row + 1;
  }

  #growRows(): void {
    const capacity = this.row_capacity * 2;
    assert(capacity <= ROWS_MAX, 'string index: more than %s rows', ROWS_MAX);
    this.row_capacity = capacity;
    this.row_hash = grown(this.row_hash, capacity);
    this.key_offset = grown(this.key_offset, capacity);
    this.key_length = grown(this.key_length, capacity);
    this.slots = new Int32Array(capacity * 2);
    for (let row = 0; row < this.size; row++) this.#place(row, this.row_hash[row]!);
  }

  #growArena(units_needed: number): void {
    const length = Math.max(this.arena.length * 2, this.arena_used + units_needed);
    assert(length <= ARENA_UNITS_MAX, 'string index: key arena over 4 G units');
    this.arena = grown(this.arena, length);
  }
}

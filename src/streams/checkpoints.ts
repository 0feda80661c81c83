import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { CheckpointDelta, CheckpointParts, Entry } from '../protocol/checkpoint-delta.js';

const write_script = readFileSync(new URL('./checkpoint.lua', import.meta.url), 'utf8');
const read_script = readFileSync(new URL('./checkpoint-read.lua', import.meta.url), 'utf8');

export interface StoredCheckpoint {
  /** Next events offset to replay on top of the parts. */
  offset: bigint;
  parts: CheckpointParts;
}

type WriteCommand = (...args: (string | Buffer)[]) => Promise<number>;
type ReadReply = [Buffer, Buffer, Buffer, Buffer, Buffer[], Buffer[], Buffer[], Buffer[], Buffer[]] | null;
type ReadCommand = (...keys: string[]) => Promise<ReadReply>;

/**
 * Partition checkpoints in Redis (layout in checkpoint.lua). Redis is an accelerator, never the truth: a
 * failed write or read costs a longer replay, never money, so failures are counted and logged at most once
 * per interval, not thrown.
 */
export class Checkpoints {
  readonly #redis: Redis;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #key_prefix: string;
  readonly #log_interval_ms: number;
  #last_failure_log_ms = 0;

  constructor(opts: {
    redis: Redis;
    log: Logger;
    metrics: Metrics;
    key_prefix: string;
    log_interval_ms: number;
  }) {
    this.#redis = opts.redis;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.#key_prefix = opts.key_prefix;
    this.#log_interval_ms = opts.log_interval_ms;
    this.#redis.defineCommand('checkpointWrite', { numberOfKeys: 4, lua: write_script });
    // ioredis also defines `checkpointReadBuffer`, which answers Buffers (the parts are msgpack bytes).
    this.#redis.defineCommand('checkpointRead', { numberOfKeys: 4, lua: read_script });
  }

  key(partition: number): string {
    return `${this.#key_prefix}ckpt:${partition}`;
  }

  async load(partition: number): Promise<StoredCheckpoint | null> {
    const k = this.key(partition);
    try {
      const read = (this.#redis as unknown as { checkpointReadBuffer: ReadCommand }).checkpointReadBuffer;
      const reply = await read.call(this.#redis, k, `${k}:a`, `${k}:p`, `${k}:t`);
      if (reply === null) return null;
      const [offset, meta, gens, counts, accounts, payments, tokens, records_current, records_previous] =
        reply;
      const sizes = [accounts, payments, tokens, records_current, records_previous]
        .map((p) => p.length)
        .join(',');
      if (counts.toString() !== sizes) {
        this.#log.warn(
          { partition, expected: counts.toString(), found: sizes },
          'checkpoint incomplete; ignored',
        );
        return null;
      }
      const [cur = '', prev = ''] = gens.toString().split(',');
      return {
        offset: BigInt(offset.toString()),
        parts: {
          meta: new Uint8Array(meta),
          generation_current_id: cur,
          generation_previous_id: prev || null,
          accounts,
          payments,
          tokens,
          records_current,
          records_previous,
        },
      };
    } catch (err) {
      this.#failed(err, 'load', partition);
      return null;
    }
  }

  /**
   * Deletes the partition's checkpoint (every key of it), so that the next write, which must then be full,
   * can store one again: the write script never moves a stored offset backwards. Used when a restore found
   * the checkpoint disagreeing with the log. A Redis failure is counted and logged, not thrown.
   */
  async drop(partition: number): Promise<void> {
    const k = this.key(partition);
    try {
      const gens = (await this.#redis.hget(k, 'gens')) ?? '';
      const generations = gens.split(',').filter((g) => g !== '');
      await this.#redis.del(k, `${k}:a`, `${k}:p`, `${k}:t`, ...generations.map((g) => `${k}:i:${g}`));
    } catch (err) {
      this.#failed(err, 'drop', partition);
    }
  }

  /** Resolves true when written, false when refused (older than stored) or when Redis failed. */
  async write(partition: number, offset: bigint, delta: CheckpointDelta, now_ms: number): Promise<boolean> {
    if (offset < 0n) throw new Error('checkpoint invariant: negative offset');
    const k = this.key(partition);
    const args: (string | Buffer)[] = [k, `${k}:a`, `${k}:p`, `${k}:t`];
    args.push(offset.toString(), String(now_ms), buf(delta.meta), flag(delta.full));
    args.push(delta.generation_current_id, delta.generation_previous_id ?? '');
    args.push(flag(delta.records_current_full), flag(delta.records_previous_full));
    const groups = [
      delta.accounts,
      delta.payments,
      delta.tokens,
      delta.records_current,
      delta.records_previous,
    ];
    for (const group of groups) args.push(frames(group));
    try {
      const write = (this.#redis as unknown as { checkpointWrite: WriteCommand }).checkpointWrite;
      return (await write.apply(this.#redis, args)) === 1;
    } catch (err) {
      this.#failed(err, 'write', partition);
      return false;
    }
  }

  #failed(err: unknown, op: string, partition: number): void {
    this.#metrics.checkpoint_failures_total.inc();
    const now_ms = Date.now();
    if (now_ms - this.#last_failure_log_ms < this.#log_interval_ms) return;
    this.#last_failure_log_ms = now_ms;
    this.#log.warn(
      { err: (err as Error).message, op, partition },
      'checkpoint_unavailable: Redis failed; processing continues',
    );
  }
}

/** [u32 BE id length][id][u32 BE value length][value]… (parsed by checkpoint.lua with struct.unpack). */
function frames(entries: Entry[]): Buffer {
  let size_bytes = 0;
  const ids = entries.map(([id]) => Buffer.from(id, 'utf8'));
  for (let i = 0; i < entries.length; i++) size_bytes += 8 + ids[i]!.length + entries[i]![1].byteLength;
  const out = Buffer.allocUnsafe(size_bytes);
  let at = 0;
  for (let i = 0; i < entries.length; i++) {
    const id = ids[i]!;
    const value = entries[i]![1];
    at = out.writeUInt32BE(id.length, at);
    at += id.copy(out, at);
    at = out.writeUInt32BE(value.byteLength, at);
    out.set(value, at);
    at += value.byteLength;
  }
  return out;
}

function buf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function flag(value: boolean): string {
  return value ? '1' : '0';
}

/**
 * Workload of the stream benchmark: client commands as the gateway would produce them (envelope with a
 * `req_<32 hex>` command id, a 64-hex fingerprint and a traceparent; `reply_to: null`), routed with
 * `partitionOf`, and a fast preload into the commands topic.
 *
 * Order: open_account for every account, one deposit each, then a mix like bench/domain.bench.ts:
 * 15 % captures (of earlier `capture: false` payments), 10 % refunds (half of an earlier captured payment),
 * 5 % deposits, the rest payments (30 % of them `capture: false`) from a customer to a random merchant.
 * Deterministic (seeded PRNG): every run and every topic gets the same records.
 */
import { performance } from 'node:perf_hooks';
import { type Kafka, type Message, Partitioners } from 'kafkajs';
import { type Command, paymentIdFor, shard } from '../src/domain/index.js';
import { partitionOf } from '../src/protocol/route.js';
import { type CommandEnvelope, encode } from '../src/protocol/wire.js';

export interface Workload {
  messages: Message[];
  value_bytes: number;
  key_bytes: number;
  by_type: Record<string, number>;
}

const T0_MS = Date.UTC(2026, 10, 25);

/** mulberry32: a fast deterministic PRNG (the domain forbids Math.random; so does reproducibility). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FIFO with a head index (Array#shift is O(n)). */
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

export function accountIds(accounts_total: number): { ids: string[]; merchants_total: number } {
  const merchants_total = Math.max(1, Math.floor(accounts_total / 100));
  const ids: string[] = [];
  for (let i = 0; i < accounts_total; i++) {
    ids.push((i < merchants_total ? 'merch_' : 'cust_') + i.toString().padStart(7, '0'));
  }
  return { ids, merchants_total };
}

class Generator {
  readonly #random = prng(42);
  readonly #ids: string[];
  readonly #shards: number[];
  readonly #merchants_total: number;
  readonly #manual = new Fifo<string>();
  readonly #refundable = new Fifo<{ id: string; amount: number }>();

  #time_ms = T0_MS;

  constructor(accounts_total: number) {
    const { ids, merchants_total } = accountIds(accounts_total);
    this.#ids = ids;
    this.#shards = ids.map((id) => shard(id));
    this.#merchants_total = merchants_total;
  }

  #hex(chars: number): string {
    let out = '';
    while (out.length < chars) {
      out += Math.floor(this.#random() * 0x100000000)
        .toString(16)
        .padStart(8, '0');
    }
    return out.slice(0, chars);
  }

  #pick(n: number): number {
    return Math.floor(this.#random() * n);
  }

  /** What the gateway's #stamp adds to every write. Time advances 1 ms per command. */
  #stamp(): { command_id: string; time_ms: number; fingerprint: string } {
    this.#time_ms += 1;
    return { command_id: `req_${this.#hex(32)}`, time_ms: this.#time_ms, fingerprint: this.#hex(64) };
  }

  open(i: number): Command {
    const kind = i < this.#merchants_total ? 'merchant' : 'customer';
    const account_id = this.#ids[i]!;
    return { type: 'open_account', ...this.#stamp(), account_id, currency: 'usd', kind, overdraft_limit: 0 };
  }

  deposit(i: number, amount: number): Command {
    return { type: 'deposit', ...this.#stamp(), account_id: this.#ids[i]!, amount, currency: 'usd' };
  }

  mixed(): Command {
    const roll = this.#random();
    if (roll < 0.15 && this.#manual.length > 0) {
      return { type: 'capture_payment', ...this.#stamp(), payment_id: this.#manual.shift() };
    }
    if (roll < 0.25 && this.#refundable.length > 0) {
      const { id, amount } = this.#refundable.shift();
      return { type: 'create_refund', ...this.#stamp(), payment_id: id, amount: Math.max(1, amount >> 1) };
    }
    if (roll < 0.3) return this.deposit(this.#pick(this.#ids.length), 10_000);
    const payer = this.#merchants_total + this.#pick(this.#ids.length - this.#merchants_total);
    const stamp = this.#stamp();
    const payment_id = paymentIdFor(this.#shards[payer]!, this.#hex(24));
    const capture = this.#random() >= 0.3;
    const amount = 100 + this.#pick(5_000);
    if (capture) this.#refundable.push({ id: payment_id, amount });
    else this.#manual.push(payment_id);
    return {
      type: 'create_payment',
      ...stamp,
      payment_id,
      source: this.#ids[payer]!,
      destination: this.#ids[this.#pick(this.#merchants_total)]!,
      amount,
      currency: 'usd',
      capture,
      description: null,
      metadata: null,
    };
  }

  traceparent(): string {
    return `00-${this.#hex(32)}-${this.#hex(16)}-01`;
  }
}

export function generateWorkload(opts: {
  commands_total: number;
  accounts_total: number;
  partitions_total: number;
}): Workload {
  const { commands_total, accounts_total, partitions_total } = opts;
  if (commands_total <= 2 * accounts_total)
    throw new Error(`--commands must exceed 2 x accounts (${2 * accounts_total})`);
  const gen = new Generator(accounts_total);
  const workload: Workload = { messages: [], value_bytes: 0, key_bytes: 0, by_type: {} };
  const add = (command: Command) => {
    const envelope: CommandEnvelope = {
      command,
      reply_to: null,
      request_id: null,
      traceparent: gen.traceparent(),
    };
    const partition = partitionOf(command, partitions_total);
    if (partition === null) throw new Error(`workload invariant: ${command.type} has no owner`);
    const value = encode(envelope);
    workload.messages.push({ partition, key: command.command_id, value });
    workload.value_bytes += value.byteLength;
    workload.key_bytes += command.command_id.length;
    workload.by_type[command.type] = (workload.by_type[command.type] ?? 0) + 1;
  };
  for (let i = 0; i < accounts_total; i++) add(gen.open(i));
  for (let i = 0; i < accounts_total; i++) add(gen.deposit(i, 100_000_000));
  for (let n = 2 * accounts_total; n < commands_total; n++) add(gen.mixed());
  return workload;
}

/**
 * Produces the workload to `topic` with one idempotent producer: sendBatch of `chunk` records (acks=all),
 * several requests in flight. A chunk is split per partition by kafkajs; per partition it stays well under
 * the broker's 1 MB message.max.bytes.
 */
export async function preload(
  kafka: Kafka,
  topic: string,
  messages: Message[],
  partitions_total: number,
): Promise<{ elapsed_ms: number; records_per_s: number }> {
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  const chunk = partitions_total * 1_500;
  const in_flight_max = 4;
  const started = performance.now();
  try {
    const in_flight = new Set<Promise<unknown>>();
    for (let start = 0; start < messages.length; start += chunk) {
      const batch = messages.slice(start, start + chunk);
      const p = producer.sendBatch({ topicMessages: [{ topic, messages: batch }], acks: -1 });
      in_flight.add(p);
      p.finally(() => in_flight.delete(p)).catch(() => {});
      if (in_flight.size >= in_flight_max) await Promise.race(in_flight);
    }
    await Promise.all(in_flight);
  } finally {
    await producer.disconnect();
  }
  const elapsed_ms = performance.now() - started;
  return { elapsed_ms, records_per_s: messages.length / (elapsed_ms / 1000) };
}

import { randomUUID } from 'node:crypto';
import { type Command, makeError, type Reply } from '../domain/index.js';
import type { Logger } from '../log.js';
import { partitionOf } from '../protocol/route.js';
import { type CommandSender, ProduceQueueFull } from './commands.js';
import type { ReplyWaiter } from './replies.js';
import type { TraceContext } from './trace.js';
import { commandTrace } from './tracing.js';

/**
 * What the operation layer needs from the engine: send one command to its owner partition and get its
 * committed reply. `null` means no committed reply within the reply timeout (the command may still commit).
 * Transport failures come back as error replies (503 `overloaded` / `unavailable`), never as throws.
 */
export interface Ledger {
  /** `trace` carries the request's traceparent; the ledger notes where the command landed in it. */
  call(command: Command, trace: TraceContext): Promise<Reply | null>;
}

export function errorReply(code: 'overloaded' | 'unavailable', message: string): Reply {
  const error = makeError(code, message);
  return { ok: false, status: 503, error };
}

/** The ledger over Kafka: produce to the commands topic, wait on the node's reply topic. */
export class KafkaLedger implements Ledger {
  readonly #sender: CommandSender;
  readonly #waiter: ReplyWaiter;
  readonly #reply_topic: string;
  readonly #partitions_total: number;
  readonly #log: Logger;

  constructor(opts: {
    sender: CommandSender;
    waiter: ReplyWaiter;
    reply_topic: string;
    partitions_total: number;
    log: Logger;
  }) {
    this.#sender = opts.sender;
    this.#waiter = opts.waiter;
    this.#reply_topic = opts.reply_topic;
    this.#partitions_total = opts.partitions_total;
    this.#log = opts.log;
  }

  async call(command: Command, trace: TraceContext): Promise<Reply | null> {
    if (this.#waiter.full) return errorReply('overloaded', 'too many requests in flight');
    const partition = partitionOf(command, this.#partitions_total);
    if (partition === null) throw new Error(`routing invariant: ${command.type} names no owner`);
    const request_id = randomUUID();
    // Registered before the produce: a reply can never arrive before its waiter.
    const reply_wait = this.#waiter.wait(request_id);
    const spans = commandTrace(trace, command, this.#sender.topic, partition); // null when tracing is off
    const traceparent = spans?.traceparent ?? trace.traceparent;
    try {
      const offset = await this.#sender.send(
        { command, reply_to: this.#reply_topic, request_id, traceparent },
        partition,
        command.command_id,
      );
      trace.command = { partition, offset };
      spans?.acked(offset);
    } catch (err) {
      spans?.failed(err);
      this.#waiter.cancel(request_id);
      if (err instanceof ProduceQueueFull) return errorReply('overloaded', 'too many commands queued');
      this.#log.warn({ err: (err as Error).message, traceparent }, 'command produce failed');
      return errorReply('unavailable', 'the ledger is unavailable; retry with the same Idempotency-Key');
    }
    if (spans === null) return reply_wait;
    const reply = await reply_wait;
    spans.replied(reply);
    return reply;
  }
}

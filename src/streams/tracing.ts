import { performance } from 'node:perf_hooks';
import { type Attributes, type SpanContext, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import type { Logger } from '../log.js';
import { type BatchOutput, eventStart } from '../protocol/wire.js';
import { activeTracer, contextWithParent, isSampled, parseTraceparent } from '../tracing.js';
import { kafkaErrorType } from './kafka-errors.js';
import { headerValue, type InRecord, type TopicRecords } from './kafka-port.js';
import type { TopicNames } from './topics.js';

/**
 * The stream loop's spans for one chunk of one partition, per command whose Kafka header carries a sampled
 * `traceparent` (the gateway's producer span, src/gateway/tracing.ts), so each payment's trace goes on
 * through the node:
 *
 *   send <commands> (gateway) └─ process <commands> (consumer): partition, offset of the command
 *                                 ├─ lane batch: the main thread's call to the partition's lane
 *                                 ├─ commit: the Kafka transaction; offsets of this command's events
 *                                 └─ deliver replies: committed replies handed to this node's gateway
 *                           └─ process <commands> of each follow-up leg (a payee's credit) on its partition:
 *                              the leg's Kafka header carries its source command's traceparent
 *
 * One chunk serves many traces and a span has one parent, so each traced command gets its own spans, made
 * with the chunk's recorded times when the chunk ends: no span is open across the lane call or the commit,
 * and a chunk that is dropped before it settles (a failed earlier link of a pipelined task: it is applied
 * again after the rebuild) leaves nothing behind. With the debug log on, each command of the chunk is also
 * logged with its partition, offset, trace id and event offsets, tracing on or off (follow-up legs then
 * carry their source's traceparent header too, so a credit is logged with the payment's trace id):
 * the trace id finds the offset in the log, the offset finds the record with
 * `kafka-console-consumer --partition P --offset O`.
 *
 * Off (no tracer, log above debug) `traceChunk` returns a shared no-op at its first checks: no header is read.
 */
export interface ChunkTrace {
  /** The lane returned the chunk's output; `records` are what the transaction will write (legs get headers). */
  applied(output: BatchOutput, records: TopicRecords[]): void;
  /** The chunk's transaction committed; `events_end` is the partition's events offset after it. */
  committed(events_end: bigint): void;
  /** The transaction failed (the partition is rebuilt and the chunk applied again). */
  failed(err: unknown): void;
  /** The chunk is done: its committed replies (`local_total` of them for this node) were handed over. */
  delivered(local_total: number): void;
}

const noop: ChunkTrace = {
  applied: () => {},
  committed: () => {},
  failed: () => {},
  delivered: () => {},
};

export interface ChunkTraceOptions {
  names: TopicNames;
  log: Logger;
}

export function traceChunk(partition: number, chunk: readonly InRecord[], o: ChunkTraceOptions): ChunkTrace {
  const tracer = activeTracer();
  const debug = o.log.isLevelEnabled('debug');
  if (tracer === null && !debug) return noop;
  return new TracedChunk(tracer, debug, partition, chunk, o);
}

class TracedChunk implements ChunkTrace {
  readonly #tracer: Tracer | null;
  readonly #debug: boolean;
  readonly #partition: number;
  readonly #chunk: readonly InRecord[];
  readonly #o: ChunkTraceOptions;
  /** The commands to make spans for: a sampled traceparent in their header. */
  readonly #traced: { index: number; parent: SpanContext }[] = [];
  readonly #started_ms = performance.now();
  #applied_ms = 0;
  #committed_ms = 0;
  #output: BatchOutput | null = null;
  #events_end: bigint | null = null;

  constructor(
    tracer: Tracer | null,
    debug: boolean,
    partition: number,
    chunk: readonly InRecord[],
    o: ChunkTraceOptions,
  ) {
    this.#tracer = tracer;
    this.#debug = debug;
    this.#partition = partition;
    this.#chunk = chunk;
    this.#o = o;
    if (tracer === null) return;
    for (let index = 0; index < chunk.length; index++) {
      const parent = parseTraceparent(headerValue(chunk[index]!, 'traceparent'));
      if (parent !== null && isSampled(parent)) this.#traced.push({ index, parent });
    }
  }

  applied(output: BatchOutput, records: TopicRecords[]): void {
    this.#applied_ms = performance.now();
    this.#output = output;
    this.#propagate(output, records);
  }

  /**
   * Gives each follow-up leg the traceparent header of the command it comes from (the lane already copies it
   * into the leg's envelope). routeRecords writes the legs to the commands topic in the lane's order; any
   * other shape is left alone (tracing never changes what is committed otherwise).
   */
  #propagate(output: BatchOutput, records: TopicRecords[]): void {
    if (output.follow_ups.length === 0) return;
    const legs = records.find((group) => group.topic === this.#o.names.commands)?.messages;
    if (legs === undefined || legs.length !== output.follow_ups.length) return;
    for (let j = 0; j < legs.length; j++) {
      const source = output.follow_ups[j]!.source;
      if (source === undefined) continue;
      const traceparent = headerValue(this.#chunk[source]!, 'traceparent');
      if (traceparent !== null) legs[j]!.headers = { ...legs[j]!.headers, traceparent };
    }
  }

  committed(events_end: bigint): void {
    this.#committed_ms = performance.now();
    this.#events_end = events_end;
  }

  failed(err: unknown): void {
    const type = kafkaErrorType(err) ?? (err as Error)?.name ?? 'error';
    this.#end(performance.now(), 0, { code: SpanStatusCode.ERROR, message: type });
  }

  delivered(local_total: number): void {
    const ended_ms = performance.now();
    if (this.#debug) this.#log();
    this.#end(ended_ms, local_total, null);
  }

  /** Command i's events [first, last] in the events topic, or null when it wrote none (or none committed). */
  #eventOffsets(index: number): [number, number] | null {
    const output = this.#output;
    if (output === null || this.#events_end === null) return null;
    const from = eventStart(output, index);
    const to = eventStart(output, index + 1);
    if (to <= from) return null;
    const base = Number(this.#events_end) - output.events.length;
    return [base + from, base + to - 1];
  }

  #end(ended_ms: number, local_total: number, error: { code: SpanStatusCode; message: string } | null) {
    const tracer = this.#tracer;
    if (tracer === null) return;
    const partition = { 'messaging.destination.partition.id': String(this.#partition) };
    const topic = this.#o.names.commands;
    for (const { index, parent } of this.#traced) {
      const process = tracer.startSpan(
        `process ${topic}`,
        { kind: SpanKind.CONSUMER, startTime: this.#started_ms, attributes: this.#attributes(index) },
        contextWithParent(parent),
      );
      const inside = contextWithParent(process.spanContext());
      if (this.#applied_ms > 0) {
        const size = { ...partition, 'messaging.batch.message_count': this.#chunk.length };
        const lane = tracer.startSpan(
          'lane batch',
          { startTime: this.#started_ms, attributes: size },
          inside,
        );
        lane.end(this.#applied_ms);
      }
      if (this.#committed_ms > 0 || (error !== null && this.#applied_ms > 0)) {
        const attributes = this.#commitAttributes(index);
        const commit = tracer.startSpan('commit', { startTime: this.#applied_ms, attributes }, inside);
        if (error !== null) commit.setStatus(error);
        commit.end(this.#committed_ms > 0 ? this.#committed_ms : ended_ms);
      }
      if (error === null && local_total > 0) {
        const from_ms = this.#committed_ms > 0 ? this.#committed_ms : this.#applied_ms;
        const replies = { ...partition, 'replies.local_total': local_total };
        tracer
          .startSpan('deliver replies', { startTime: from_ms, attributes: replies }, inside)
          .end(ended_ms);
      }
      if (error !== null) process.setStatus(error);
      process.end(ended_ms);
    }
    this.#traced.length = 0; // ended once, whichever of failed/delivered comes
  }

  #attributes(index: number): Attributes {
    const attributes: Attributes = {
      'messaging.system': 'kafka',
      'messaging.operation.type': 'process',
      'messaging.destination.name': this.#o.names.commands,
      'messaging.destination.partition.id': String(this.#partition),
      'messaging.kafka.offset': Number(this.#chunk[index]!.offset),
      'messaging.batch.message_count': this.#chunk.length,
    };
    if (this.#output?.rejected.includes(index)) attributes['command.rejected'] = true;
    return attributes;
  }

  #commitAttributes(index: number): Attributes {
    const attributes: Attributes = {
      'messaging.destination.partition.id': String(this.#partition),
      // The consumed position this transaction commits: the next command offset of the partition.
      'commit.next_offset': Number(this.#chunk[this.#chunk.length - 1]!.offset) + 1,
      'events.topic': this.#o.names.events,
      'events.partition': this.#partition,
    };
    if (this.#events_end !== null) attributes['events.end_offset'] = Number(this.#events_end);
    const events = this.#eventOffsets(index);
    if (events !== null) {
      attributes['events.offset_first'] = events[0];
      attributes['events.offset_last'] = events[1];
    }
    return attributes;
  }

  /** One debug line per command: where it is in Kafka, and which trace it belongs to. */
  #log(): void {
    for (let index = 0; index < this.#chunk.length; index++) {
      const record = this.#chunk[index]!;
      const parent = parseTraceparent(headerValue(record, 'traceparent'));
      const events = this.#eventOffsets(index);
      this.#o.log.debug(
        {
          partition: this.#partition,
          offset: Number(record.offset),
          trace_id: parent?.traceId,
          events_offset_first: events?.[0],
          events_offset_last: events?.[1],
        },
        'command processed',
      );
    }
  }
}

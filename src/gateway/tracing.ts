import { type Attributes, type Span, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { Command, Reply } from '../domain/index.js';
import { activeTracer, contextWithParent, formatTraceparent, parseTraceparent } from '../tracing.js';
import { type TraceContext, traceFrom } from './trace.js';

/**
 * The gateway's spans (src/tracing.ts turns them on). Per request:
 *
 *   POST /v1/payments (server) ─┬─ send <commands topic> (producer): enqueue → broker ack; partition, offset
 *                               │     └─ its traceparent goes into the envelope and the Kafka header, so the
 *                               │        stream loop's spans (src/streams/tracing.ts) are its children
 *                               └─ await reply: ack → the committed reply (or the reply timeout)
 *
 * Off, `requestTrace` is `traceFrom` (the trace context the gateway always propagated) and the other hooks
 * return at their first check.
 */

/** The request's trace context; with tracing on, a server span child of the caller's traceparent. */
export function requestTrace(header: string, name: string, started_ms?: number): TraceContext {
  const tracer = activeTracer();
  if (tracer === null) return traceFrom(header);
  const parent = parseTraceparent(header);
  const span = tracer.startSpan(
    name,
    { kind: SpanKind.SERVER, ...(started_ms !== undefined ? { startTime: started_ms } : {}) },
    contextWithParent(parent),
  );
  const context = span.spanContext();
  return {
    traceparent: formatTraceparent(context),
    trace_id: context.traceId,
    parent_id: parent?.spanId ?? null,
    span,
  };
}

/** Ends the request's server span with its answer's status (0: the client went away first). */
export function endRequest(trace: TraceContext | undefined, status: number): void {
  const span = trace?.span;
  if (span === undefined) return;
  span.setAttribute('http.response.status_code', status);
  if (status >= 500 || status === 0) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/** The spans of one command sent by the ledger: the produce, then the wait for its committed reply. */
export interface CommandTrace {
  /** The producer span's traceparent: what the command envelope and its Kafka header carry. */
  readonly traceparent: string;
  acked(offset: number | null): void;
  failed(err: unknown): void;
  replied(reply: Reply | null): void;
}

/** Null when tracing is off or the request is not sampled (nothing to record). */
export function commandTrace(
  trace: TraceContext,
  command: Command,
  topic: string,
  partition: number,
): CommandTrace | null {
  const tracer = activeTracer();
  const server = trace.span;
  if (tracer === null || server === undefined || !server.isRecording()) return null;
  const attributes: Attributes = {
    'messaging.system': 'kafka',
    'messaging.operation.type': 'send',
    'messaging.destination.name': topic,
    'messaging.destination.partition.id': String(partition),
    'command.type': command.type,
  };
  if ('payment_id' in command) {
    attributes['payment.id'] = command.payment_id;
    server.setAttribute('payment.id', command.payment_id);
  }
  const parent = contextWithParent(server.spanContext());
  const produce = tracer.startSpan(`send ${topic}`, { kind: SpanKind.PRODUCER, attributes }, parent);
  let wait: Span | null = null;
  return {
    traceparent: formatTraceparent(produce.spanContext()),
    acked: (offset) => {
      if (offset !== null) produce.setAttribute('messaging.kafka.offset', offset);
      produce.end();
      wait = tracer.startSpan('await reply', { kind: SpanKind.INTERNAL }, parent);
    },
    failed: (err) => {
      produce.recordException(err instanceof Error ? err : String(err));
      produce.setStatus({ code: SpanStatusCode.ERROR });
      produce.end();
    },
    replied: (reply) => {
      if (wait === null) return;
      wait.setAttribute('reply.received', reply !== null);
      if (reply !== null) wait.setAttribute('reply.status', reply.status);
      wait.end();
    },
  };
}

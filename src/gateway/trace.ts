import type { Span } from '@opentelemetry/api';
import { parseTraceparent } from '../tracing.js';
import { randomHex } from './entropy.js';

/**
 * W3C Trace Context. A valid incoming `traceparent` keeps its trace id and the gateway starts a child span
 * (new parent id) for the command it produces; an absent or malformed one starts a new trace, so every
 * command in Kafka carries a trace from the gateway to the ledger. Malformed headers are ignored, as the
 * specification asks, never refused. With OpenTelemetry on, the child span is a real server span
 * (src/gateway/tracing.ts) and `traceparent` names it.
 */
export interface TraceContext {
  /** What travels in the command envelope and the Kafka record headers. */
  traceparent: string;
  trace_id: string;
  /** The caller's span id, when it sent a valid traceparent. */
  parent_id: string | null;
  /** The request's server span while OpenTelemetry is on. */
  span?: Span;
  /** Where the request's command landed, once the broker acknowledged it (logged with the request). */
  command?: { partition: number; offset: number | null };
}

export function traceFrom(header: string): TraceContext {
  const parent = parseTraceparent(header);
  const trace_id = parent ? parent.traceId : randomHex(16);
  const flags = parent === null || parent.traceFlags === 1 ? '01' : hex2(parent.traceFlags);
  return {
    traceparent: `00-${trace_id}-${randomHex(8)}-${flags}`,
    trace_id,
    parent_id: parent ? parent.spanId : null,
    command: undefined, // set by the ledger; declared here so the object keeps one shape
  };
}

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

import { randomHex } from './entropy.js';

/**
 * W3C Trace Context. A valid incoming `traceparent` keeps its trace id and the gateway starts a child span
 * (new parent id) for the command it produces; an absent or malformed one starts a new trace, so every
 * command in Kafka carries a trace from the gateway to the ledger. Malformed headers are ignored, as the
 * specification asks, never refused.
 */
const traceparent_pattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export interface TraceContext {
  /** What travels in the command envelope and the Kafka record headers. */
  traceparent: string;
  trace_id: string;
  /** The caller's span id, when it sent a valid traceparent. */
  parent_id: string | null;
}

export function traceFrom(header: string): TraceContext {
  const match = traceparent_pattern.exec(header.trim());
  const valid =
    match !== null &&
    match[1] !== 'ff' &&
    !/^0+$/.test(match[2]!) &&
    !/^0+$/.test(match[3]!) &&
    (match[1] !== '00' || header.trim().length === 55);
  const trace_id = valid ? match![2]! : randomHex(16);
  const flags = valid ? match![4]! : '01';
  const span_id = randomHex(8);
  return {
    traceparent: `00-${trace_id}-${span_id}-${flags}`,
    trace_id,
    parent_id: valid ? match![3]! : null,
  };
}

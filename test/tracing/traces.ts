import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { brokers } from '../integration/helpers.js';

/** A span as both the in-memory exporter and an OTLP/JSON body give it (ids in hex). */
export interface SpanView {
  name: string;
  trace_id: string;
  span_id: string;
  /** Null for a root, or when the parent is the (unrecorded) caller's span. */
  parent_id: string | null;
  attributes: Record<string, string | number | boolean>;
}

/** Span names of a payment's trace (src/gateway/tracing.ts, src/streams/tracing.ts). */
export function expectedNames(commands_topic: string): string[] {
  return [
    'POST /v1/payments',
    `send ${commands_topic}`,
    'await reply',
    `process ${commands_topic}`,
    'lane batch',
    'commit',
    'deliver replies',
  ];
}

/**
 * One connected trace: every span shares the trace id, exactly one span (the gateway's server span) has no
 * parent among them, and every other span's parent is one of them. Returns the root.
 */
export function assertOneTree(spans: SpanView[], root_name: string): SpanView {
  assert.ok(spans.length > 0, 'spans were recorded');
  const trace_ids = new Set(spans.map((s) => s.trace_id));
  assert.equal(trace_ids.size, 1, `one trace id, got ${[...trace_ids]}`);
  const ids = new Set(spans.map((s) => s.span_id));
  assert.equal(ids.size, spans.length, 'span ids are unique');
  const roots = spans.filter((s) => s.parent_id === null || !ids.has(s.parent_id));
  assert.deepEqual(
    roots.map((s) => s.name),
    [root_name],
    'the server span is the only root',
  );
  return roots[0]!;
}

/** The one child of `parent` named `name`. */
export function childOf(spans: SpanView[], parent: SpanView, name: string): SpanView {
  const found = spans.filter((s) => s.parent_id === parent.span_id && s.name === name);
  assert.equal(found.length, 1, `one ${name} under ${parent.name}, got ${found.length}`);
  return found[0]!;
}

export interface ReadRecord {
  offset: string;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

/** Records of one partition at `offsets` (read_committed, from the beginning: the test's topics are small). */
export async function readAt(
  topic: string,
  partition: number,
  offsets: number[],
  timeout_ms = 20_000,
): Promise<Map<number, ReadRecord>> {
  const kafka = new Kafka({ brokers, clientId: 'trc-reader', logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `trc-reader-${randomUUID()}`, maxWaitTimeInMs: 100 });
  const wanted = new Set(offsets);
  const found = new Map<number, ReadRecord>();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    if (wanted.size === 0) resolve();
    void consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition: p, message }) => {
        const offset = Number(message.offset);
        if (p !== partition || !wanted.has(offset)) return;
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {}))
          if (v !== undefined) headers[k] = String(v);
        found.set(offset, {
          offset: message.offset,
          key: message.key?.toString() ?? null,
          value: message.value,
          headers,
        });
        if (found.size === wanted.size) resolve();
      },
    });
  });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise((r) => (timer = setTimeout(r, timeout_ms)))]);
  clearTimeout(timer);
  await consumer.disconnect();
  return found;
}

/** Polls `read` until `ok` holds or the deadline passes (spans end just after the response is written). */
export async function eventually<T>(read: () => T, ok: (value: T) => boolean, timeout_ms = 5000): Promise<T> {
  const deadline_ms = Date.now() + timeout_ms;
  let value = read();
  while (!ok(value) && Date.now() < deadline_ms) {
    await new Promise((r) => setTimeout(r, 25));
    value = read();
  }
  return value;
}

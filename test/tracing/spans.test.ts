import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createLogger } from '../../src/log.js';
import { decode } from '../../src/protocol/wire.js';
import { startTracing, type Tracing } from '../../src/tracing.js';
import { WsClient } from '../gateway/harness.js';
import { cleanup, json_auth } from '../integration/helpers.js';
import { type InProcessNode, startInProcessNode } from './in-process-node.js';
import { assertOneTree, childOf, eventually, expectedNames, readAt, type SpanView } from './traces.js';

/**
 * Tracing on, with an in-memory exporter, in a whole node started in this process against the real broker
 * and Redis: one payment must give ONE connected trace from the gateway's server span
 * through the produce, the lane batch, the commit, the reply and the payee's credit leg, whose partitions
 * and offsets are those of the real records in Kafka (read back here) and which the debug log names too.
 */
const exporter = new InMemorySpanExporter();

function view(span: ReadableSpan): SpanView {
  const context = span.spanContext();
  return {
    name: span.name,
    trace_id: context.traceId,
    span_id: context.spanId,
    parent_id: span.parentSpanContext?.spanId ?? null,
    attributes: span.attributes as SpanView['attributes'],
  };
}

function traceOf(trace_id: string): SpanView[] {
  return exporter
    .getFinishedSpans()
    .map(view)
    .filter((s) => s.trace_id === trace_id);
}

async function post(node: InProcessNode, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${node.base}${path}`, {
    method: 'POST',
    headers: { ...json_auth, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The events a commit span names (events.offset_first..last), read back from the events topic. */
async function eventsNamed(node: InProcessNode, commit: SpanView, partition: number) {
  assert.equal(commit.attributes['events.topic'], node.names.events);
  assert.equal(commit.attributes['events.partition'], partition);
  const first = commit.attributes['events.offset_first'] as number;
  const last = commit.attributes['events.offset_last'] as number;
  assert.ok(Number.isInteger(first) && last >= first, `events ${first}..${last}`);
  assert.ok((commit.attributes['events.end_offset'] as number) > last);
  const wanted = Array.from({ length: last - first + 1 }, (_, i) => first + i);
  const events = await readAt(node.names.events, partition, wanted);
  assert.equal(events.size, wanted.length, 'every named event offset holds a record');
  return [...events.values()].map((r) => decode<{ type: string; payment_id?: string }>(r.value!));
}

/** The command record a process span names: its header must carry `traceparent`. */
async function assertRecordOf(node: InProcessNode, span: SpanView, traceparent: string): Promise<void> {
  const partition = Number(span.attributes['messaging.destination.partition.id']);
  const offset = span.attributes['messaging.kafka.offset'] as number;
  assert.ok(Number.isInteger(partition) && partition >= 0 && partition < node.config.partitions);
  const record = (await readAt(node.names.commands, partition, [offset])).get(offset);
  assert.ok(record, `a command record at ${partition}/${offset}`);
  assert.equal(record.headers.traceparent, traceparent);
}

let tracing: Tracing | null = null;
before(async () => {
  tracing = await startTracing({ node_id: 'trc', log: createLogger('silent', 'trc'), exporter });
});
after(() => tracing?.shutdown(1000));

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

describe(`tracing on, in-memory exporter, in-process node`, { timeout: 120_000 }, () => {
  let node: InProcessNode;

  before(async () => {
    node = await startInProcessNode({ LOG_LEVEL: 'debug' });
    for (const [id, kind] of [
      ['alice', 'customer'],
      ['shop', 'merchant'],
    ]) {
      assert.equal((await post(node, '/v1/accounts', { id, currency: 'USD', kind })).status, 201);
    }
    const deposit = await post(node, '/v1/deposits', { account: 'alice', amount: 10_000, currency: 'USD' });
    assert.equal(deposit.status, 201);
  });

  after(async () => {
    await node?.stop();
    if (node) await cleanup(node.config.topic_prefix, node.config.redis_key_prefix);
  });

  it('one payment, one tree: gateway, produce, lane batch, commit, reply and credit leg', async () => {
    const paid = await post(node, '/v1/payments', {
      amount: 1500,
      currency: 'USD',
      source: 'alice',
      destination: 'shop',
    });
    assert.equal(paid.status, 201, JSON.stringify(paid.body));
    const payment_id = paid.body.id as string;
    const server = await eventually(
      () => exporter.getFinishedSpans().find((s) => s.attributes['payment.id'] === payment_id),
      (span) => span !== undefined,
    );
    assert.ok(server, 'a span names the payment');
    const commands = node.names.commands;
    const names = expectedNames(commands);
    // the payer's process, lane batch, commit and deliver replies; the payee's process, lane batch, commit
    const spans = await eventually(
      () => traceOf(server.spanContext().traceId),
      (found) => found.filter((s) => s.name === 'commit').length === 2 && found.length >= 10,
    );
    const root = assertOneTree(spans, 'POST /v1/payments');
    for (const span of spans) assert.ok(names.includes(span.name), `unexpected span ${span.name}`);
    assert.equal(root.parent_id, null, 'no caller traceparent: the server span starts the trace');
    assert.equal(root.attributes['payment.id'], payment_id);
    assert.equal(root.attributes['http.response.status_code'], 201);
    assert.equal(childOf(spans, root, 'await reply').attributes['reply.received'], true);

    const send = childOf(spans, root, `send ${commands}`);
    assert.equal(send.attributes['payment.id'], payment_id);
    const partition = Number(send.attributes['messaging.destination.partition.id']);
    const offset = send.attributes['messaging.kafka.offset'] as number;
    // Under the produce: the command's processing, and its credit leg's (the leg carries the same header).
    const processes = spans.filter((s) => s.parent_id === send.span_id && s.name === `process ${commands}`);
    assert.equal(processes.length, 2, 'the payment and its credit leg');
    const at = (s: SpanView) =>
      `${s.attributes['messaging.destination.partition.id']}/${s.attributes['messaging.kafka.offset']}`;
    const process = processes.find((s) => at(s) === `${partition}/${offset}`);
    assert.ok(process, `the consumer saw the produced offset ${partition}/${offset}: ${processes.map(at)}`);
    // The offset is the command's real record: its header carries the producer span's context.
    await assertRecordOf(node, process, `00-${send.trace_id}-${send.span_id}-01`);
    childOf(spans, process, 'lane batch');
    childOf(spans, process, 'deliver replies');
    // The commit names this command's events: the payment's, at those offsets of the changelog.
    const commit = childOf(spans, process, 'commit');
    const payer_events = await eventsNamed(node, commit, partition);
    assert.ok(payer_events.some((e) => e.type === 'payment_created' && e.payment_id === payment_id));
    for (const e of payer_events) assert.equal(e.payment_id, payment_id, `${e.type} is this payment's`);
    assert.ok((commit.attributes['commit.next_offset'] as number) > offset);

    // The payee's credit leg: its own record, whose Kafka header carries the payment's traceparent.
    const credit = processes.find((s) => s !== process)!;
    await assertRecordOf(node, credit, `00-${send.trace_id}-${send.span_id}-01`);
    childOf(spans, credit, 'lane batch');
    const credit_partition = Number(credit.attributes['messaging.destination.partition.id']);
    const credited = await eventsNamed(node, childOf(spans, credit, 'commit'), credit_partition);
    assert.ok(credited.some((e) => e.type === 'transfer_credited' && e.payment_id === payment_id));

    // The debug log correlates the trace id with the same offsets, in the stream loop and at the gateway.
    const lines = node.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
    const processed = lines.filter((l) => l.msg === 'command processed' && l.trace_id === root.trace_id);
    const credit_offset = String(credit.attributes['messaging.kafka.offset']);
    assert.deepEqual(
      processed.map((l) => `${l.partition}/${l.offset}`).sort(),
      [`${partition}/${offset}`, `${credit_partition}/${credit_offset}`].sort(),
      'the command and its credit leg are logged with the trace id',
    );
    const payer_line = processed.find((l) => l.offset === offset)!;
    assert.deepEqual(
      [payer_line.events_offset_first, payer_line.events_offset_last],
      [commit.attributes['events.offset_first'], commit.attributes['events.offset_last']],
    );
    const request = lines.find((l) => l.msg === 'request' && l.trace_id === root.trace_id);
    assert.ok(request, 'the gateway logs the request with its trace id');
    assert.deepEqual([request.partition, request.offset], [partition, offset]);
  });

  it('traces a WebSocket request the same way, from its frame traceparent', async () => {
    const ws = await WsClient.open(node.base.replace('http', 'ws') + '/v1/ws', json_auth, (data) =>
      JSON.parse(data.toString()),
    );
    try {
      const caller_trace = hex(16);
      const answer = await ws.request({
        op: 'deposits.create',
        traceparent: `00-${caller_trace}-${hex(8)}-01`,
        body: { account: 'alice', amount: 3, currency: 'USD' },
      });
      assert.equal(answer.status, 201, JSON.stringify(answer));
      const spans = await eventually(
        () => traceOf(caller_trace),
        (found) =>
          found.some((s) => s.name === 'commit') && found.some((s) => s.name === 'WS deposits.create'),
      );
      const root = assertOneTree(spans, 'WS deposits.create');
      const send = childOf(spans, root, `send ${node.names.commands}`);
      childOf(spans, childOf(spans, send, `process ${node.names.commands}`), 'commit');
    } finally {
      ws.socket.close();
    }
  });

  it("keeps a caller's sampled trace, and records nothing for an unsampled one", async () => {
    const caller_trace = hex(16);
    const caller_span = hex(8);
    const sampled = await post(
      node,
      '/v1/deposits',
      { account: 'alice', amount: 5, currency: 'USD' },
      { traceparent: `00-${caller_trace}-${caller_span}-01` },
    );
    assert.equal(sampled.status, 201);
    const spans = await eventually(
      () => traceOf(caller_trace),
      (found) => found.some((s) => s.name === 'commit') && found.some((s) => s.name === 'POST /v1/deposits'),
    );
    const root = assertOneTree(spans, 'POST /v1/deposits');
    assert.equal(root.parent_id, caller_span, "child of the caller's span");

    const unsampled_trace = hex(16);
    const unsampled = await post(
      node,
      '/v1/deposits',
      { account: 'alice', amount: 6, currency: 'USD' },
      { traceparent: `00-${unsampled_trace}-${caller_span}-00` },
    );
    assert.equal(unsampled.status, 201);
    // A sampled deposit after it is recorded: by then the unsampled one's spans would have been too.
    const after_trace = hex(16);
    await post(
      node,
      '/v1/deposits',
      { account: 'alice', amount: 7, currency: 'USD' },
      { traceparent: `00-${after_trace}-${caller_span}-01` },
    );
    await eventually(
      () => traceOf(after_trace),
      (found) => found.some((s) => s.name === 'commit'),
    );
    assert.deepEqual(traceOf(unsampled_trace), [], 'an unsampled caller: no span recorded');
  });
});

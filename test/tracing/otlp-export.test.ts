import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { call, cleanup, type NodeProcess, startNode, stopNode, uniqueName } from '../integration/helpers.js';
import { assertOneTree, childOf, eventually, expectedNames, type SpanView } from './traces.js';

/**
 * The env wiring, end to end: the compiled node (dist/node.js, as production runs it) started with only the
 * standard OTEL_* variables posts its spans with the OTLP/HTTP exporter to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
 * here a tiny collector on 127.0.0.1 that keeps what it receives. Build first (`npm run build`).
 */
interface Received {
  method: string;
  path: string;
  content_type: string;
  // biome-ignore lint/suspicious/noExplicitAny: an OTLP/JSON body
  body: any;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}

function attributesOf(list: { key: string; value: OtlpValue }[] = []): SpanView['attributes'] {
  const out: SpanView['attributes'] = {};
  for (const { key, value } of list) {
    const v = value.stringValue ?? value.boolValue ?? value.doubleValue ?? value.intValue;
    if (v !== undefined) out[key] = typeof v === 'string' && value.intValue !== undefined ? Number(v) : v;
  }
  return out;
}

/** The spans of the received export requests, with their resource's service.name. */
function spansOf(received: Received[]): (SpanView & { service: unknown })[] {
  const spans: (SpanView & { service: unknown })[] = [];
  for (const request of received) {
    for (const rs of request.body?.resourceSpans ?? []) {
      const service = attributesOf(rs.resource?.attributes)['service.name'];
      for (const ss of rs.scopeSpans ?? [])
        for (const s of ss.spans ?? [])
          spans.push({
            name: s.name,
            trace_id: s.traceId,
            span_id: s.spanId,
            parent_id: s.parentSpanId ? s.parentSpanId : null,
            attributes: attributesOf(s.attributes),
            service,
          });
    }
  }
  return spans;
}

describe('OTLP/HTTP export from the compiled node, configured by OTEL_* only', { timeout: 180_000 }, () => {
  const topic_prefix = uniqueName('trc_otlp');
  const redis_prefix = `test:${topic_prefix}:`;
  const service = `payment-node-test-${randomUUID().slice(0, 8)}`;
  const received: Received[] = [];
  let collector: Server;
  let node: NodeProcess;

  before(async () => {
    collector = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let body: unknown = null;
        try {
          body = JSON.parse(text);
        } catch {}
        received.push({
          method: req.method ?? '',
          path: req.url ?? '',
          content_type: req.headers['content-type'] ?? '',
          body,
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const address = collector.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    node = await startNode({
      TOPIC_PREFIX: topic_prefix,
      REDIS_KEY_PREFIX: redis_prefix,
      PARTITIONS: '4',
      NODE_ID: 'trc-otlp',
      LANES: '1',
      SESSION_TIMEOUT_MS: '6000',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${port}/v1/traces`,
      OTEL_SERVICE_NAME: service,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
  });

  after(async () => {
    if (node) await stopNode(node, 'SIGKILL');
    collector?.close();
    await cleanup(topic_prefix, redis_prefix);
  });

  it('posts one connected trace per payment, under OTEL_SERVICE_NAME, to the configured endpoint', async () => {
    for (const [id, kind] of [
      ['alice', 'customer'],
      ['shop', 'merchant'],
    ])
      assert.equal((await call(node, 'POST', '/v1/accounts', { id, currency: 'USD', kind })).status, 201);
    assert.equal(
      (await call(node, 'POST', '/v1/deposits', { account: 'alice', amount: 5000, currency: 'USD' })).status,
      201,
    );
    const paid = await call(node, 'POST', '/v1/payments', {
      amount: 1200,
      currency: 'USD',
      source: 'alice',
      destination: 'shop',
    });
    assert.equal(paid.status, 201);
    const commands = `${topic_prefix}.commands`;
    const names = expectedNames(commands);
    const spans = await eventually(
      () => {
        const all = spansOf(received);
        const root = all.find((s) => s.attributes['payment.id'] === paid.body.id && s.name === names[0]);
        return root ? all.filter((s) => s.trace_id === root.trace_id) : [];
      },
      // every span of the payment, and both commits (the payer's and its credit leg's)
      (found) =>
        names.every((name) => found.some((s) => s.name === name)) &&
        found.filter((s) => s.name === 'commit').length === 2,
      15_000,
    );
    assert.ok(received.length > 0, 'the collector received export requests');
    for (const request of received) {
      assert.equal(request.method, 'POST');
      assert.equal(request.path, '/v1/traces');
      assert.match(request.content_type, /^application\/json/);
    }
    assert.deepEqual(new Set(spans.map((s) => s.service)), new Set([service]), 'resource service.name');
    const root = assertOneTree(spans, names[0]!);
    const send = childOf(spans, root, `send ${commands}`);
    // Under the produce: the payment's processing (at the produced offset) and its credit leg's.
    const offset = send.attributes['messaging.kafka.offset'];
    const processes = spans.filter((s) => s.parent_id === send.span_id && s.name === `process ${commands}`);
    assert.equal(processes.length, 2, 'the payment and its credit leg');
    const process = processes.find((s) => s.attributes['messaging.kafka.offset'] === offset);
    assert.ok(process, `a process span at the produced offset ${offset}`);
    assert.equal(typeof childOf(spans, process, 'commit').attributes['events.offset_first'], 'number');
  });
});

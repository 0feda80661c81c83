import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { trace } from '@opentelemetry/api';
import { createLogger } from '../../src/log.js';
import { startTracing, tracingWanted } from '../../src/tracing.js';
import { cleanup, json_auth } from '../integration/helpers.js';
import { type InProcessNode, startInProcessNode } from './in-process-node.js';

/**
 * Tracing off (no OTEL_* variable): the SDK is never loaded, and the node's hooks stay off even when some
 * other code registers a tracer provider with the API (they test the node's own switch, not the global).
 */
const sdk_modules = [
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/exporter-trace-otlp-http',
  '@opentelemetry/resources',
];

function loadedSdkModules(): string[] {
  const cache = createRequire(import.meta.url).cache;
  return Object.keys(cache).filter((path) => sdk_modules.some((name) => path.includes(`/${name}/`)));
}

async function pay(node: InProcessNode, amount: number): Promise<number> {
  const res = await fetch(`${node.base}/v1/payments`, {
    method: 'POST',
    headers: json_auth,
    body: JSON.stringify({ amount, currency: 'USD', source: 'alice', destination: 'shop' }),
  });
  await res.arrayBuffer();
  return res.status;
}

describe('tracing off when OTEL_* is unset', { timeout: 120_000 }, () => {
  let node: InProcessNode;

  before(async () => {
    const otel = Object.keys(process.env).filter((k) => k.startsWith('OTEL_'));
    assert.deepEqual(otel, [], 'this test runs without OTEL_* variables');
    node = await startInProcessNode({ LOG_LEVEL: 'info' });
    for (const [id, kind] of [
      ['alice', 'customer'],
      ['shop', 'merchant'],
    ]) {
      const res = await fetch(`${node.base}/v1/accounts`, {
        method: 'POST',
        headers: json_auth,
        body: JSON.stringify({ id, currency: 'USD', kind }),
      });
      assert.equal(res.status, 201);
    }
    const res = await fetch(`${node.base}/v1/deposits`, {
      method: 'POST',
      headers: json_auth,
      body: JSON.stringify({ account: 'alice', amount: 10_000, currency: 'USD' }),
    });
    assert.equal(res.status, 201);
  });

  after(async () => {
    await node?.stop();
    if (node) await cleanup(node.config.topic_prefix, node.config.redis_key_prefix);
  });

  it('reads the standard variables: endpoints or OTEL_TRACES_EXPORTER=otlp turn it on, none/disabled off', () => {
    assert.equal(tracingWanted({}), false);
    assert.equal(tracingWanted({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }), false);
    assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), true);
    assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }), true);
    assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }), false);
    assert.equal(tracingWanted({ OTEL_TRACES_EXPORTER: 'otlp' }), true);
    assert.equal(
      tracingWanted({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c' }),
      false,
    );
    assert.equal(
      tracingWanted({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c' }),
      false,
    );
  });

  it('loads no SDK: a payment is answered and no SDK module is in the module cache', async () => {
    const tracing = await startTracing({ node_id: 'off', log: createLogger('silent', 'off') });
    assert.equal(tracing, null);
    assert.equal(await pay(node, 100), 201);
    assert.deepEqual(loadedSdkModules(), []);
  });

  it('records no span even when another tracer provider is registered globally', async () => {
    // Loaded only now, after the check above.
    const sdk = await import('@opentelemetry/sdk-trace-base');
    assert.ok(loadedSdkModules().length > 0, 'the module cache check sees the SDK once it is loaded');
    const exporter = new sdk.InMemorySpanExporter();
    const provider = new sdk.BasicTracerProvider({ spanProcessors: [new sdk.SimpleSpanProcessor(exporter)] });
    assert.ok(trace.setGlobalTracerProvider(provider));
    try {
      assert.equal(await pay(node, 200), 201);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(
        exporter.getFinishedSpans().map((s) => s.name),
        [],
      );
      // The provider works: a span made through the API is recorded, so the silence above is the node's.
      trace.getTracer('probe').startSpan('probe').end();
      assert.deepEqual(
        exporter.getFinishedSpans().map((s) => s.name),
        ['probe'],
      );
    } finally {
      await provider.shutdown();
      trace.disable();
    }
  });
});

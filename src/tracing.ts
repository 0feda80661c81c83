import {
  type Context,
  type DiagLogger,
  DiagLogLevel,
  diag,
  ROOT_CONTEXT,
  type SpanContext,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Logger } from './log.js';

/**
 * OpenTelemetry tracing, off unless an OTLP endpoint is configured with the standard variables:
 *
 *   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces) → on;
 *   OTEL_TRACES_EXPORTER=otlp → on (default endpoint http://localhost:4318/v1/traces);
 *   OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true → off, whatever else is set.
 *
 * Off, the SDK and the exporter are never imported: `activeTracer()` is null and every hook in the gateway
 * (src/gateway/tracing.ts) and the stream loop (src/streams/tracing.ts) returns at that check, before it
 * reads a header or allocates (the cost is one call and one comparison per request and per chunk;
 * bench/tracing.bench.ts measures it). On, the SDK reads the rest of the standard variables itself:
 * OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (resource), OTEL_TRACES_SAMPLER(_ARG) (default
 * parentbased_always_on), OTEL_EXPORTER_OTLP_(TRACES_)HEADERS / TIMEOUT, and OTEL_BSP_* for the batch
 * span processor, whose queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE, default 2048 spans: beyond it spans are
 * dropped, never buffered without bound). The exporter speaks OTLP JSON over HTTP (http/json).
 *
 * Context travels explicitly as W3C `traceparent` strings (request → command envelope and Kafka header →
 * stream loop), never through async-local storage: no context manager is installed, so nothing is paid on
 * every await.
 */
let tracer: Tracer | null = null;

/** The tracer while tracing is on; null when off (the hot paths return at this check). */
export function activeTracer(): Tracer | null {
  return tracer;
}

export interface Tracing {
  /**
   * Turns tracing off and flushes the spans still queued, waiting at most `timeout_ms` (an unreachable
   * collector must not hold a shutdown past its deadline; what is not exported by then is lost).
   */
  shutdown(timeout_ms: number): Promise<void>;
}

/** Whether the standard OTEL_* variables ask for traces to be exported. */
export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase();
  if (exporter === 'none') return false;
  if (exporter === 'otlp') return true;
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim());
}

/**
 * Loads the SDK and registers the tracer when the environment asks for it (or a test hands an exporter);
 * returns null, having imported nothing, otherwise. A test's exporter gets a simple span processor (each
 * span exported when it ends); the OTLP exporter gets the batch span processor.
 */
export async function startTracing(opts: {
  node_id: string;
  log: Logger;
  env?: NodeJS.ProcessEnv;
  /** Tests: export here (e.g. InMemorySpanExporter) instead of OTLP, whatever the environment says. */
  exporter?: SpanExporter;
  /** With `exporter`: through the batch span processor, as production does (default: the simple one). */
  batch?: boolean;
}): Promise<Tracing | null> {
  const env = opts.env ?? process.env;
  if (opts.exporter === undefined && !tracingWanted(env)) return null;
  if (tracer !== null) throw new Error('tracing invariant: started twice');
  const [sdk, resources] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
  ]);
  diag.setLogger(diagToPino(opts.log), DiagLogLevel.WARN);
  const exporter =
    opts.exporter ?? new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
  const processor =
    opts.exporter === undefined || opts.batch
      ? new sdk.BatchSpanProcessor(exporter)
      : new sdk.SimpleSpanProcessor(exporter);
  // OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES (the env detector) override these defaults.
  const resource = resources
    .resourceFromAttributes({ 'service.name': 'payment-node', 'service.instance.id': opts.node_id })
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const provider = new sdk.BasicTracerProvider({ resource, spanProcessors: [processor] });
  trace.setGlobalTracerProvider(provider);
  tracer = provider.getTracer('payment-node');
  opts.log.info(
    { service: resource.attributes['service.name'], exporter: opts.exporter ? 'test' : 'otlp-http' },
    'tracing on',
  );
  return {
    shutdown: async (timeout_ms) => {
      tracer = null;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeout_ms);
      });
      await Promise.race([provider.shutdown().catch(() => {}), deadline]);
      clearTimeout(timer);
      trace.disable();
      diag.disable();
    },
  };
}

const traceparent_pattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const all_zeros = /^0+$/;

/**
 * A W3C `traceparent` header as a remote span context, or null when absent or malformed (version ff, an
 * all-zero id, or extra fields after version 00 are invalid: the specification says to ignore them).
 */
export function parseTraceparent(header: string | null | undefined): SpanContext | null {
  if (!header) return null;
  const value = header.trim();
  const match = traceparent_pattern.exec(value);
  if (match === null || match[1] === 'ff') return null;
  if (match[1] === '00' && value.length !== 55) return null;
  const traceId = match[2]!;
  const spanId = match[3]!;
  if (all_zeros.test(traceId) || all_zeros.test(spanId)) return null;
  return { traceId, spanId, traceFlags: Number.parseInt(match[4]!, 16), isRemote: true };
}

export function formatTraceparent(span: SpanContext): string {
  const flags = (span.traceFlags & 0xff).toString(16).padStart(2, '0');
  return `00-${span.traceId}-${span.spanId}-${flags}`;
}

export function isSampled(span: SpanContext): boolean {
  return (span.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
}

/** The context to start a child of `parent` in (a root context when there is none). */
export function contextWithParent(parent: SpanContext | null): Context {
  return parent === null ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
}

/** The SDK's own complaints (an export that failed, a dropped span) go to the node's log as warnings. */
function diagToPino(log: Logger): DiagLogger {
  const warn = (message: string, ...args: unknown[]) =>
    log.warn(
      { otel: args.map((a) => (a instanceof Error ? a.message : String(a))) },
      `opentelemetry: ${message}`,
    );
  const ignore = () => {};
  return { error: warn, warn, info: ignore, debug: ignore, verbose: ignore };
}

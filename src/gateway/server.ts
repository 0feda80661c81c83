import uWS from 'uWebSockets.js';
import { makeError } from '../domain/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { ApiKeys } from './auth.js';
import { captureRequest, type RequestContext, readBody, sendError, sendJson, sendText } from './http.js';
import type { Operations, OpName } from './ops.js';
import type { OutcomeFeed } from './outcomes.js';
import type { RateLimiter } from './rate-limit.js';
import type { MerchantScope, MerchantScopes } from './scope.js';
import { endRequest, requestTrace } from './tracing.js';
import { parseIdempotencyKey, parseJsonObject } from './validate.js';
import { attachWebSocket, type WebSocketOptions } from './ws.js';

export interface GatewayOptions {
  host: string;
  port: number;
  request_body_max_bytes: number;
  /** PEM files: both set → HTTPS/WSS through uWS.SSLApp; null → plain HTTP. */
  tls: { cert_file: string; key_file: string } | null;
  keys: ApiKeys;
  scopes: MerchantScopes;
  ops: Operations;
  limiter: RateLimiter;
  ws: WebSocketOptions;
  /** Committed payment outcomes for WebSocket subscribers; null disables subscriptions. */
  outcomes: OutcomeFeed | null;
  ready: () => boolean;
  /** What holds readiness back (e.g. partitions and why their restore fails): the body of a 503 /readyz. */
  notReady?: () => unknown;
  log: Logger;
  metrics: Metrics;
}

const LATENCY_SERIES_MAX = 1024;

/** The API routes of DESIGN.md; each maps to one operation of the shared operation layer. */
const api_routes: readonly { method: 'get' | 'post'; pattern: string; op: OpName }[] = [
  { method: 'post', pattern: '/v1/accounts', op: 'accounts.create' },
  { method: 'get', pattern: '/v1/accounts/:id', op: 'accounts.get' },
  { method: 'post', pattern: '/v1/deposits', op: 'deposits.create' },
  { method: 'post', pattern: '/v1/tokens', op: 'tokens.create' },
  { method: 'post', pattern: '/v1/payments', op: 'payments.create' },
  { method: 'get', pattern: '/v1/payments/:id', op: 'payments.get' },
  { method: 'post', pattern: '/v1/payments/:id/capture', op: 'payments.capture' },
  { method: 'post', pattern: '/v1/payments/:id/cancel', op: 'payments.cancel' },
  { method: 'post', pattern: '/v1/refunds', op: 'refunds.create' },
];

/** Server span names: the route's method and pattern (`POST /v1/payments`), never the raw URL. */
const span_name_of = new Map<OpName, string>(
  api_routes.map((route) => [route.op, `${route.method.toUpperCase()} ${route.pattern}`]),
);

/**
 * The merchant API on uWebSockets.js (main thread): HTTP routes and the `/v1/ws` WebSocket over one
 * operation layer. Order of checks on every request, cheapest first and before any body byte is buffered:
 * draining (503) → API key (401) → rate limit (429) → content type (415) → Idempotency-Key shape (400)
 * → body (413, 400) → operation.
 */
export class Gateway {
  readonly #o: GatewayOptions;
  readonly #app: uWS.TemplatedApp;
  readonly #ws_close: () => void;
  #socket: uWS.us_listen_socket | null = null;
  #draining = false;
  /** Labelled histogram children, cached: prom-client hashes the label object on every call otherwise. */
  readonly #latency_by_key = new Map<string, { observe(value: number): void }>();

  constructor(opts: GatewayOptions) {
    this.#o = opts;
    this.#app = opts.tls
      ? uWS.SSLApp({ cert_file_name: opts.tls.cert_file, key_file_name: opts.tls.key_file })
      : uWS.App();
    this.#ws_close = attachWebSocket(this.#app, {
      ...opts.ws,
      keys: opts.keys,
      scopes: opts.scopes,
      ops: opts.ops,
      limiter: opts.limiter,
      outcomes: opts.outcomes,
      draining: () => this.#draining,
      log: opts.log,
      metrics: opts.metrics,
    });
    opts.outcomes?.attach((scope, frame) => this.#publish(scope, frame));
    this.#routes();
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#app.listen(this.#o.host, this.#o.port, (socket) => {
        if (!socket)
          return reject(new Error(`cannot listen on ${this.#o.host}:${this.#o.port} (port taken?)`));
        this.#socket = socket;
        resolve(uWS.us_socket_local_port(socket));
      });
    });
  }

  /** From now on /readyz is 503 and new API requests (HTTP and WebSocket) get 503; in-flight ones finish. */
  drain(): void {
    this.#draining = true;
  }

  /** Stops listening and closes the WebSockets (1001 going away). */
  close(): void {
    if (this.#socket) uWS.us_listen_socket_close(this.#socket);
    this.#socket = null;
    this.#ws_close();
  }

  #publish(scope: MerchantScope, frame: { json: () => string; msgpack: () => Uint8Array }): number {
    let sent = 0;
    if (this.#app.numSubscribers(scope.outcome_topics.json) > 0) {
      this.#app.publish(scope.outcome_topics.json, frame.json(), false);
      sent++;
    }
    if (this.#app.numSubscribers(scope.outcome_topics.msgpack) > 0) {
      this.#app.publish(scope.outcome_topics.msgpack, frame.msgpack(), true);
      sent++;
    }
    return sent;
  }

  #routes(): void {
    const app = this.#app;
    app.get('/healthz', (res, req) => sendJson(captureRequest(res, req), 200, { status: 'ok' }));
    app.get('/readyz', (res, req) => {
      const ready = this.#ready();
      const body: Record<string, unknown> = { status: ready ? 'ready' : 'not_ready' };
      if (!ready && this.#draining) body.draining = true;
      if (!ready && this.#o.notReady) body.partitions = this.#o.notReady();
      sendJson(captureRequest(res, req), ready ? 200 : 503, body);
    });
    app.get('/metrics', (res, req) => {
      const ctx = captureRequest(res, req);
      this.#o.metrics.node_ready.set(this.#ready() ? 1 : 0);
      this.#o.metrics.registry.metrics().then(
        (text) => sendText(ctx, 200, text, this.#o.metrics.registry.contentType),
        () => sendError(ctx, makeError('internal_error')),
      );
    });
    for (const route of api_routes) this.#api(route.method, route.pattern, route.op);
    const allowed = new Map<string, string[]>([
      ['/healthz', ['GET']],
      ['/readyz', ['GET']],
      ['/metrics', ['GET']],
    ]);
    for (const route of api_routes)
      allowed.set(route.pattern, [...(allowed.get(route.pattern) ?? []), route.method.toUpperCase()]);
    for (const [path, methods] of allowed) {
      app.any(path, (res, req) =>
        sendError(captureRequest(res, req), makeError('method_not_allowed'), { allow: methods.join(', ') }),
      );
    }
    app.any('/*', (res, req) => sendError(captureRequest(res, req), makeError('not_found', 'unknown route')));
  }

  /** What /readyz answers and `payment_node_ready` shows: restored and not draining. */
  #ready(): boolean {
    return this.#o.ready() && !this.#draining;
  }

  #api(method: 'get' | 'post', pattern: string, op: OpName): void {
    const has_id = pattern.includes(':id');
    this.#app[method](pattern, (res, req) => {
      const ctx = captureRequest(res, req);
      const id = has_id ? decodeParam(req.getParameter(0) ?? '') : null;
      const scope = this.#admit(ctx, method === 'post');
      if (scope === null) return this.#observe(ctx, op, null);
      const key = parseIdempotencyKey(ctx.headers.idempotency_key);
      if (!key.ok) {
        sendError(ctx, key.error);
        return this.#observe(ctx, op, scope);
      }
      this.#run(ctx, op, scope, id, key.value, method === 'post')
        .catch((err) => {
          this.#o.log.error({ err, op }, 'internal_error');
          sendError(ctx, makeError('internal_error'));
        })
        .finally(() => this.#observe(ctx, op, scope));
    });
  }

  /** Runs synchronously up to the body read, so `onData` is attached before the handler returns. */
  async #run(
    ctx: RequestContext,
    op: OpName,
    merchant: MerchantScope,
    id: string | null,
    idempotency_key: string,
    has_body: boolean,
  ): Promise<void> {
    const body = has_body ? await this.#readJson(ctx) : {};
    if (body === null) return;
    const trace = requestTrace(ctx.headers.traceparent, span_name_of.get(op) ?? op, ctx.started_ms);
    ctx.trace = trace;
    const result = await this.#o.ops.execute({ op, merchant, id, body, idempotency_key, trace }, 'http');
    sendJson(ctx, result.status, result.body);
  }

  /** Checks that hold before any body is read; answers and returns null when one fails. */
  #admit(ctx: RequestContext, has_body: boolean): MerchantScope | null {
    if (this.#draining) {
      sendError(ctx, makeError('unavailable', 'node is shutting down'));
      return null;
    }
    const merchant_id = this.#o.keys.authenticate(ctx.headers.authorization);
    if (merchant_id === null) {
      sendError(ctx, makeError('authentication_required', 'send Authorization: Bearer <api key>'), {
        'www-authenticate': 'Bearer',
      });
      return null;
    }
    const retry_after_s = this.#o.limiter.take(merchant_id, Date.now());
    if (retry_after_s > 0) {
      this.#o.metrics.rate_limited_total.inc({ transport: 'http' });
      sendError(ctx, makeError('rate_limited'), { 'retry-after': String(retry_after_s) });
      return null;
    }
    // A declared length over the cap is refused before a byte is read (no wait for a body never sent).
    if (has_body && Number(ctx.headers.content_length) > this.#o.request_body_max_bytes) {
      sendError(
        ctx,
        makeError('payload_too_large', `request body exceeds ${this.#o.request_body_max_bytes} bytes`),
      );
      return null;
    }
    const type = ctx.headers.content_type;
    if (has_body && type !== '' && !/^application\/json\s*(;|$)/i.test(type)) {
      sendError(ctx, makeError('unsupported_media_type', 'content-type must be application/json'));
      return null;
    }
    return this.#o.scopes.of(merchant_id);
  }

  async #readJson(ctx: RequestContext): Promise<Record<string, unknown> | null> {
    const body = await readBody(ctx, this.#o.request_body_max_bytes);
    if (!body.ok) {
      sendError(ctx, body.error);
      return null;
    }
    if (ctx.headers.content_type === '' && body.bytes.length > 0) {
      sendError(ctx, makeError('unsupported_media_type', 'content-type must be application/json'));
      return null;
    }
    const parsed = parseJsonObject(body.bytes);
    if (!parsed.ok) {
      sendError(ctx, parsed.error);
      return null;
    }
    return parsed.value;
  }

  #observe(ctx: RequestContext, op: OpName, merchant: MerchantScope | null): void {
    const ms = performance.now() - ctx.started_ms;
    const status = String(ctx.status);
    const key = `${ctx.method} ${op} ${status}`;
    let latency = this.#latency_by_key.get(key);
    if (latency === undefined) {
      // Few keys (route × method × status from the catalog); the bound only guards against a bug.
      latency = this.#o.metrics.http_request_duration_seconds.labels({
        method: ctx.method,
        route: op,
        status,
      });
      if (this.#latency_by_key.size < LATENCY_SERIES_MAX) this.#latency_by_key.set(key, latency);
    }
    latency.observe(ms / 1000);
    endRequest(ctx.trace, ctx.status);
    const log = this.#o.log;
    if (log.isLevelEnabled('debug')) {
      log.debug(
        {
          op,
          status: ctx.status,
          ms: Math.round(ms * 10) / 10,
          merchant: merchant?.merchant_id,
          trace_id: ctx.trace?.trace_id,
          traceparent: ctx.headers.traceparent || undefined,
          // Where the command landed: with the trace id, this finds the payment in the commands topic.
          partition: ctx.trace?.command?.partition,
          offset: ctx.trace?.command?.offset ?? undefined,
        },
        'request',
      );
    }
  }
}

/** A malformed %-escape is no id: the operation answers 404 for it. */
function decodeParam(raw: string): string | null {
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

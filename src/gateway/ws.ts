import type uWS from 'uWebSockets.js';
import { type ApiError, makeError } from '../domain/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { ApiKeys } from './auth.js';
import { decodeFrame, encodeFrame, type Frame, SUBSCRIBE_OP } from './frames.js';
import { statusLine } from './http.js';
import { OP_NAMES, type Operations, type OpName } from './ops.js';
import type { OutcomeFeed } from './outcomes.js';
import type { RateLimiter } from './rate-limit.js';
import type { MerchantScope, MerchantScopes } from './scope.js';
import { endRequest, requestTrace } from './tracing.js';

export interface WebSocketOptions {
  /** Largest frame accepted; a bigger one closes the connection (uWS `maxPayloadLength`). */
  payload_max_bytes: number;
  in_flight_max: number;
  idle_timeout_s: number;
  /** Buffered outgoing bytes beyond which new requests are refused with `overloaded`. */
  backpressure_max_bytes: number;
}

/** A response frame's usual upper size (a payment view with a little metadata). */
const FRAME_BYTES_TYPICAL_MAX = 4096;

interface Conn {
  scope: MerchantScope;
  in_flight: number;
  closed: boolean;
}

interface Deps extends WebSocketOptions {
  keys: ApiKeys;
  scopes: MerchantScopes;
  ops: Operations;
  limiter: RateLimiter;
  outcomes: OutcomeFeed | null;
  draining: () => boolean;
  log: Logger;
  metrics: Metrics;
}

/**
 * `/v1/ws`: the API operations as frames (see frames.ts), pipelined. Authenticated once at the upgrade
 * (`Authorization: Bearer`). Bounds per connection: `in_flight_max` requests running (beyond: an
 * `overloaded` frame), `backpressure_max_bytes` of unsent output (beyond: new requests refused until the
 * client reads; past room for the in-flight answers uWS closes the socket), `payload_max_bytes` per frame, `idle_timeout_s` with
 * automatic pings. Returns a function that closes every connection (drain).
 */
export function attachWebSocket(app: uWS.TemplatedApp, deps: Deps): () => void {
  const open = new Set<uWS.WebSocket<Conn>>();
  app.ws<Conn>('/v1/ws', {
    maxPayloadLength: deps.payload_max_bytes,
    idleTimeout: deps.idle_timeout_s,
    sendPingsAutomatically: true,
    // Refusals start at backpressure_max_bytes, but answers of requests already in flight still come:
    // room for all of them (a frame is a few KiB at most), then a client that does not read is closed.
    maxBackpressure: deps.backpressure_max_bytes * 2 + deps.in_flight_max * FRAME_BYTES_TYPICAL_MAX,
    closeOnBackpressureLimit: 1,
    upgrade: (res, req, context) => upgrade(deps, res, req, context),
    open: (ws) => {
      open.add(ws);
      deps.metrics.ws_connections.set(open.size);
    },
    message: (ws, message, is_binary) => onMessage(deps, ws, message, is_binary),
    close: (ws) => {
      ws.getUserData().closed = true;
      open.delete(ws);
      deps.metrics.ws_connections.set(open.size);
    },
  });
  return () => {
    for (const ws of [...open]) ws.end(1001, 'server shutting down');
  };
}

function upgrade(
  deps: Deps,
  res: uWS.HttpResponse,
  req: uWS.HttpRequest,
  context: uWS.us_socket_context_t,
): void {
  const key = req.getHeader('sec-websocket-key');
  const protocol = req.getHeader('sec-websocket-protocol');
  const extensions = req.getHeader('sec-websocket-extensions');
  const refuse = (status: number, error: ApiError) =>
    res
      .writeStatus(statusLine(status))
      .writeHeader('content-type', 'application/json')
      .end(JSON.stringify({ error }));
  if (deps.draining()) return void refuse(503, makeError('unavailable', 'node is shutting down'));
  const merchant_id = deps.keys.authenticate(req.getHeader('authorization'));
  if (merchant_id === null)
    return void refuse(401, makeError('authentication_required', 'send Authorization: Bearer <api key>'));
  res.upgrade<Conn>(
    { scope: deps.scopes.of(merchant_id), in_flight: 0, closed: false },
    key,
    protocol,
    extensions,
    context,
  );
}

/** Server span names of WebSocket operations (`WS payments.create`), made once. */
const ws_span_name_of = new Map<OpName, string>(OP_NAMES.map((op) => [op, `WS ${op}`]));

function onMessage(deps: Deps, ws: uWS.WebSocket<Conn>, message: ArrayBuffer, is_binary: boolean): void {
  const conn = ws.getUserData();
  const decoded = decodeFrame(message, is_binary);
  if (!decoded.ok) {
    send(ws, is_binary, { request_id: decoded.request_id, status: 400, error: decoded.error });
    return;
  }
  const frame = decoded.frame;
  const refused = admit(deps, ws, conn);
  if (refused !== null) {
    send(ws, is_binary, { request_id: frame.request_id, ...refused });
    return;
  }
  if (frame.op === SUBSCRIBE_OP) {
    void subscribe(deps, ws, conn, frame, is_binary);
    return;
  }
  conn.in_flight++;
  const trace = requestTrace(frame.traceparent, ws_span_name_of.get(frame.op as OpName) ?? 'WS');
  deps.ops
    .execute(
      {
        op: frame.op as OpName,
        merchant: conn.scope,
        id: frame.id,
        body: frame.body,
        idempotency_key: frame.idempotency_key,
        trace,
      },
      'ws',
    )
    .then((result) => {
      conn.in_flight--;
      const status = result.status;
      endRequest(trace, status);
      const reply =
        status < 400
          ? { request_id: frame.request_id, status, body: result.body }
          : { request_id: frame.request_id, status, error: result.body.error };
      send(ws, is_binary, reply);
    });
}

/** Draining, per-connection bounds, rate limit: a refusal frame's fields, or null to go on. */
function admit(deps: Deps, ws: uWS.WebSocket<Conn>, conn: Conn): Record<string, unknown> | null {
  if (deps.draining()) {
    deps.metrics.ws_refused_total.inc({ reason: 'draining' });
    return { status: 503, error: makeError('unavailable', 'node is shutting down') };
  }
  if (conn.in_flight >= deps.in_flight_max) {
    deps.metrics.ws_refused_total.inc({ reason: 'in_flight' });
    return {
      status: 503,
      error: makeError('overloaded', `more than ${deps.in_flight_max} requests in flight`),
    };
  }
  if (ws.getBufferedAmount() > deps.backpressure_max_bytes) {
    deps.metrics.ws_refused_total.inc({ reason: 'backpressure' });
    return { status: 503, error: makeError('overloaded', 'read your responses first (backpressure)') };
  }
  const retry_after_s = deps.limiter.take(conn.scope.merchant_id, Date.now());
  if (retry_after_s > 0) {
    deps.metrics.rate_limited_total.inc({ transport: 'ws' });
    return { status: 429, error: makeError('rate_limited'), retry_after: retry_after_s };
  }
  return null;
}

/** Subscribes to this merchant's committed payment outcomes; answered once the feed reads the log. */
async function subscribe(deps: Deps, ws: uWS.WebSocket<Conn>, conn: Conn, frame: Frame, is_binary: boolean) {
  if (deps.outcomes === null) {
    const error = makeError('not_found', 'outcome subscriptions are disabled on this node', 'op');
    return send(ws, is_binary, { request_id: frame.request_id, status: 404, error });
  }
  conn.in_flight++;
  try {
    await deps.outcomes.start();
  } catch (err) {
    conn.in_flight--;
    deps.log.warn({ err: (err as Error).message }, 'outcome feed failed to start');
    return send(ws, is_binary, {
      request_id: frame.request_id,
      status: 503,
      error: makeError('unavailable'),
    });
  }
  conn.in_flight--;
  if (conn.closed) return;
  const topics = conn.scope.outcome_topics;
  ws.subscribe(is_binary ? topics.msgpack : topics.json);
  send(ws, is_binary, {
    request_id: frame.request_id,
    status: 200,
    body: { object: 'subscription', channel: 'payments' },
  });
}

function send(ws: uWS.WebSocket<Conn>, binary: boolean, value: unknown): void {
  if (ws.getUserData().closed) return;
  const payload = encodeFrame(value, binary);
  ws.cork(() => {
    ws.send(payload, binary);
  });
}

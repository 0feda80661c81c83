import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { type ApiError, ERROR_CATALOG, type ErrorCode, makeError } from '../domain/index.js';
import type { TraceContext } from './trace.js';

/**
 * uWebSockets.js rules kept here once: `req` is only valid until the handler returns (read headers first),
 * `onAborted` must be registered before any async work, writes after async work are corked, and `onData`
 * chunks are views into uWS memory that must be copied.
 */
export interface RequestContext {
  res: HttpResponse;
  method: string;
  url: string;
  headers: {
    authorization: string;
    content_type: string;
    content_length: string;
    idempotency_key: string;
    traceparent: string;
  };
  aborted: boolean;
  /** Status of the response sent, 0 while none (or the client went away first). */
  status: number;
  started_ms: number;
  /** The request's trace once known (logged with the request; its server span ends with it). */
  trace?: TraceContext;
}

export function captureRequest(res: HttpResponse, req: HttpRequest): RequestContext {
  const ctx: RequestContext = {
    res,
    method: req.getMethod().toUpperCase(),
    url: req.getUrl(),
    headers: {
      authorization: req.getHeader('authorization'),
      content_type: req.getHeader('content-type'),
      content_length: req.getHeader('content-length'),
      idempotency_key: req.getHeader('idempotency-key'),
      traceparent: req.getHeader('traceparent'),
    },
    aborted: false,
    status: 0,
    started_ms: performance.now(),
  };
  res.onAborted(() => {
    ctx.aborted = true;
  });
  return ctx;
}

export type BodyResult = { ok: true; bytes: Buffer } | { ok: false; error: ApiError };

/** Reads the whole body, refusing (and not buffering) anything past max_bytes. */
export function readBody(ctx: RequestContext, max_bytes: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size_bytes = 0;
    let settled = false;
    ctx.res.onData((chunk, is_last) => {
      if (settled) return;
      size_bytes += chunk.byteLength;
      if (size_bytes > max_bytes) {
        settled = true;
        resolve({
          ok: false,
          error: makeError('payload_too_large', `request body exceeds ${max_bytes} bytes`),
        });
        return;
      }
      chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (is_last) {
        settled = true;
        resolve({ ok: true, bytes: Buffer.concat(chunks, size_bytes) });
      }
    });
  });
}

const status_text: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  202: '202 Accepted',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  402: '402 Payment Required',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  411: '411 Length Required',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  426: '426 Upgrade Required',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};

export function statusLine(status: number): string {
  return status_text[status] ?? `${status} Unknown`;
}

/** Writes a JSON response unless the client went away; corked because it usually runs after an await. */
export function sendJson(
  ctx: RequestContext,
  status: number,
  body: unknown,
  extra_headers: Record<string, string> = {},
): void {
  if (ctx.aborted) return;
  const payload = JSON.stringify(body);
  ctx.status = status;
  ctx.res.cork(() => {
    ctx.res.writeStatus(statusLine(status));
    ctx.res.writeHeader('content-type', 'application/json');
    for (const [name, value] of Object.entries(extra_headers)) ctx.res.writeHeader(name, value);
    ctx.res.end(payload);
  });
  ctx.aborted = true; // a response is final: nothing may write twice
}

export function sendError(
  ctx: RequestContext,
  error: ApiError,
  extra_headers: Record<string, string> = {},
): void {
  sendJson(ctx, errorStatus(error.code), { error }, extra_headers);
}

export function sendText(ctx: RequestContext, status: number, body: string, content_type: string): void {
  if (ctx.aborted) return;
  ctx.status = status;
  ctx.res.cork(() => {
    ctx.res.writeStatus(statusLine(status)).writeHeader('content-type', content_type).end(body);
  });
  ctx.aborted = true;
}

export function errorStatus(code: ErrorCode): number {
  return ERROR_CATALOG[code].http_status;
}

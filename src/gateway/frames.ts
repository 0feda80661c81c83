import { Packr } from 'msgpackr';
import { type ApiError, makeError } from '../domain/index.js';
import { isOpName, type OpName } from './ops.js';
import { parseIdempotencyKey, utf8 } from './validate.js';

/**
 * WebSocket frames: JSON text or msgpack binary, the same shape either way, answered in the encoding of
 * the request.
 *
 *   request  {op, request_id, idempotency_key?, traceparent?, body?}
 *   response {request_id, status, body}  |  {request_id, status, error, retry_after?}
 *   outcome  {channel: "payments", event, data}        (after a `payments.subscribe` request)
 *
 * Operations that name an id in the HTTP path (`/v1/payments/:id/capture`) take it as `body.id`.
 */
export const SUBSCRIBE_OP = 'payments.subscribe';
export type FrameOp = OpName | typeof SUBSCRIBE_OP;

export interface Frame {
  request_id: string | number;
  op: FrameOp;
  idempotency_key: string;
  traceparent: string;
  id: string | null;
  body: Record<string, unknown>;
}

export type Decoded =
  | { ok: true; frame: Frame }
  | { ok: false; request_id: string | number | null; error: ApiError };

const ops_with_id: ReadonlySet<string> = new Set([
  'accounts.get',
  'payments.get',
  'payments.capture',
  'payments.cancel',
]);
const frame_fields: ReadonlySet<string> = new Set([
  'op',
  'request_id',
  'idempotency_key',
  'traceparent',
  'body',
]);
const REQUEST_ID_LENGTH_MAX = 128;
// Plain objects only: no records, no extension types, 64-bit integers as numbers (then refused if unsafe).
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' });

export function encodeFrame(value: unknown, binary: boolean): string | Uint8Array {
  return binary ? packr.pack(value) : JSON.stringify(value);
}

/** Decodes and checks the envelope of one frame; `message` is only valid during the call, so it is copied. */
export function decodeFrame(message: ArrayBuffer, is_binary: boolean): Decoded {
  const raw = readRaw(Buffer.from(new Uint8Array(message)), is_binary);
  if (raw === null)
    return bad(
      null,
      makeError(is_binary ? 'invalid_request' : 'invalid_json', 'frame is not a valid message'),
    );
  const request_id = raw.request_id;
  if (
    !(
      typeof request_id === 'string' &&
      request_id.length > 0 &&
      request_id.length <= REQUEST_ID_LENGTH_MAX
    ) &&
    !Number.isSafeInteger(request_id)
  )
    return bad(
      null,
      makeError('invalid_request', 'request_id must be a string of 1..128 chars or an integer', 'request_id'),
    );
  const id = request_id as string | number;
  for (const field of Object.keys(raw))
    if (!frame_fields.has(field))
      return bad(
        id,
        makeError('invalid_request', `unknown frame field ${field.slice(0, 64)}`, field.slice(0, 64)),
      );
  const op = raw.op;
  if (!isOpName(op) && op !== SUBSCRIBE_OP) return bad(id, makeError('invalid_request', 'unknown op', 'op'));
  const key = parseIdempotencyKey(
    raw.idempotency_key === undefined
      ? ''
      : typeof raw.idempotency_key === 'string'
        ? raw.idempotency_key
        : '\u0000',
  );
  if (!key.ok) return bad(id, key.error);
  const traceparent = typeof raw.traceparent === 'string' ? raw.traceparent : '';
  const body = raw.body ?? {};
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return bad(id, makeError('invalid_request', 'body must be an object', 'body'));
  const { id: path_id, ...rest } = body as Record<string, unknown>;
  if (!ops_with_id.has(op))
    return {
      ok: true,
      frame: {
        request_id: id,
        op,
        idempotency_key: key.value,
        traceparent,
        id: null,
        body: body as Record<string, unknown>,
      },
    };
  const frame_id = typeof path_id === 'string' ? path_id : '';
  return {
    ok: true,
    frame: { request_id: id, op, idempotency_key: key.value, traceparent, id: frame_id, body: rest },
  };
}

function readRaw(bytes: Buffer, is_binary: boolean): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = is_binary ? packr.unpack(bytes) : JSON.parse(utf8.decode(bytes));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array)
    return null;
  return value as Record<string, unknown>;
}

function bad(request_id: string | number | null, error: ApiError): Decoded {
  return { ok: false, request_id, error };
}

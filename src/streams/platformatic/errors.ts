/**
 * @platformatic/kafka errors in the port's terms (kafka-port.ts): the protocol error name as `type`, and
 * `retriable`. The client nests protocol errors in a ResponseError (an AggregateError); it flags only
 * INVALID_PRODUCER_EPOCH as fenced, so PRODUCER_FENCED is recognized here by its protocol name.
 */
export class KafkaPortError extends Error {
  override name = 'KafkaPortError';
  constructor(
    message: string,
    readonly type: string | null,
    readonly retriable: boolean,
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

interface ClientError {
  code?: unknown;
  apiId?: unknown;
  canRetry?: unknown;
  errors?: unknown;
  cause?: unknown;
  message?: unknown;
}

const network_codes = new Set(['PLT_KFK_NETWORK', 'PLT_KFK_TIMEOUT']);
/** Nesting walked at most this deep (errors of errors of causes). */
const depth_max = 6;

/** The first protocol error name in the error tree, or null. */
export function protocolType(err: unknown, depth = 0): string | null {
  const e = err as ClientError | null;
  if (!e || typeof e !== 'object' || depth > depth_max) return null;
  if (typeof e.apiId === 'string') return e.apiId;
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const type = protocolType(inner, depth + 1);
      if (type !== null) return type;
    }
  }
  return protocolType(e.cause, depth + 1);
}

function connectionFailure(err: unknown, depth = 0): boolean {
  const e = err as ClientError | null;
  if (!e || typeof e !== 'object' || depth > depth_max) return false;
  if (typeof e.code === 'string' && network_codes.has(e.code)) return true;
  if (Array.isArray(e.errors) && e.errors.some((inner) => connectionFailure(inner, depth + 1))) return true;
  return connectionFailure(e.cause, depth + 1);
}

/** Retriable unless some error in the tree says it cannot be retried (the client's own rule). */
function canRetry(err: unknown, depth = 0): boolean {
  const e = err as ClientError | null;
  if (!e || typeof e !== 'object' || depth > depth_max) return true;
  if (e.canRetry === false) return false;
  if (Array.isArray(e.errors)) return e.errors.every((inner) => canRetry(inner, depth + 1));
  return e.cause === undefined ? true : canRetry(e.cause, depth + 1);
}

/** The innermost message of the last error in the tree: "failed 7 times" alone says nothing of why. */
function rootMessage(err: unknown, depth = 0): string | null {
  const e = err as ClientError | null;
  if (!e || typeof e !== 'object' || depth > depth_max) return null;
  const inner = Array.isArray(e.errors) && e.errors.length > 0 ? e.errors[e.errors.length - 1] : e.cause;
  return rootMessage(inner, depth + 1) ?? (typeof e.message === 'string' ? e.message : null);
}

export function toPortError(err: unknown, what: string): KafkaPortError {
  if (err instanceof KafkaPortError) return err;
  const type = protocolType(err);
  const retriable = connectionFailure(err) || (type !== null && canRetry(err));
  const message = (err as ClientError)?.message;
  const text = typeof message === 'string' ? message : String(err);
  const root = rootMessage(err);
  const detail = root !== null && root !== text ? `${text} (last: ${root})` : text;
  return new KafkaPortError(`${what}: ${detail}`, type, retriable, { cause: err });
}

/** Runs `fn`, rethrowing what it throws as a KafkaPortError. */
export async function classified<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toPortError(err, what);
  }
}

import { KafkaPortError } from '../../src/streams/platformatic/errors.js';

/**
 * A protocol error in the port's terms (src/streams/kafka-port.ts), as the adapter raises it for a broker
 * error code: `type` and `retriable`. The port carries no numeric code: `_code` only documents the call.
 */
export function protocolError(type: string, _code: number, retriable: boolean, message = type): Error {
  return new KafkaPortError(message, type, retriable, { cause: null });
}

/** A connection or request-timeout failure as the adapter raises it: no protocol type, retriable. */
export function connectionError(message = 'connection closed'): Error {
  return new KafkaPortError(message, null, true, { cause: null });
}

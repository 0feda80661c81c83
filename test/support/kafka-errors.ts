import kafkajs from 'kafkajs';

// kafkajs' typings declare (Error | string); at run time it takes the protocol error descriptor.
const KafkaJSProtocolError = kafkajs.KafkaJSProtocolError as unknown as new (descriptor: {
  message: string;
  type: string;
  code: number;
  retriable: boolean;
}) => Error;

/** A kafkajs protocol error as the client raises it for a broker error code. */
export function protocolError(type: string, code: number, retriable: boolean, message = type): Error {
  return new KafkaJSProtocolError({ message, type, code, retriable });
}

import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/** Paths pino must never print: credentials and card data (DESIGN invariant 4). */
export const redact_paths = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'card.number',
  'card.cvc',
  '*.card.number',
  '*.card.cvc',
  'api_keys',
];

/** `destination` defaults to stdout; tests pass a stream to read what would have been logged. */
export function createLogger(level: string, node_id: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { node_id },
    redact: { paths: redact_paths, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

import { Kafka, type LogEntry, logLevel } from 'kafkajs';
import type { Logger } from '../../log.js';

const pino_level: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

/** kafkajs logs through pino; its INFO chatter (joins, rebalances) is kept at debug. */
export function createKafka(opts: { brokers: string[]; client_id: string; log: Logger }): Kafka {
  const log = opts.log.child({ component: 'kafkajs' });
  return new Kafka({
    clientId: opts.client_id,
    brokers: opts.brokers,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 5000 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        // Our exactly-once does not rest on producer retries (a failed transaction is aborted and the
        // partition rebuilt; a failed command produce is answered 503 and retried by key), so kafkajs'
        // warning about bounded retries on idempotent producers is noise at every producer start.
        const quiet = message.startsWith('Limiting retries for the idempotent producer');
        log[quiet ? 'debug' : (pino_level[level] ?? 'info')](rest, message);
      },
  });
}

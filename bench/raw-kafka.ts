import { Kafka, logLevel } from 'kafkajs';

/**
 * A plain kafkajs client for the benches' own fixtures (topic creation and deletion, end-offset reads, the
 * raw preload): independent of the node's client (@platformatic/kafka, behind the Kafka port), so that a
 * fixture never measures or hides the adapter under test. Its warnings go to stderr, nothing else.
 */
export function rawKafka(brokers: string[], client_id: string): Kafka {
  return new Kafka({
    clientId: client_id,
    brokers,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 5000 },
    logLevel: logLevel.ERROR,
  });
}

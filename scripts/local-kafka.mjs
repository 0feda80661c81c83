// Starts the project's local Kafka broker (tools/kafka/kafka.sh) when KAFKA_BROKERS is unset.
// Returns the bootstrap address and whether this call started the broker (so the caller can stop it).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../tools/kafka/kafka.sh', import.meta.url));

export function kafkaCommand(...args) {
  return spawnSync('bash', [script, ...args], { stdio: ['ignore', 'inherit', 'inherit'] }).status ?? 1;
}

export function ensureLocalKafka() {
  if (process.env.KAFKA_BROKERS) return { brokers: process.env.KAFKA_BROKERS, started: false };
  const port = process.env.KAFKA_PORT ?? '19092';
  const running = spawnSync('bash', [script, 'status'], { stdio: 'ignore' }).status === 0;
  if (!running && kafkaCommand('start') !== 0) {
    process.stderr.write('local Kafka did not start; see the log path printed above\n');
    process.exit(1);
  }
  return { brokers: `127.0.0.1:${port}`, started: !running };
}

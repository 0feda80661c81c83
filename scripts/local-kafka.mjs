// Starts the project's local Kafka broker (tools/kafka/kafka.sh) when KAFKA_BROKERS is unset.
// Returns the bootstrap address and whether this call started the broker (so the caller can stop it).
import { spawnSync } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../tools/kafka/kafka.sh', import.meta.url));

export function kafkaCommand(...args) {
  return spawnSync('bash', [script, ...args], { stdio: ['ignore', 'inherit', 'inherit'] }).status ?? 1;
}

/**
 * `free_ports_if_taken`: when this checkout's broker is not running and its ports are held by something else
 * (another checkout's broker, say), start it on two free ports instead of failing. `npm test` asks for it:
 * its broker is its own and the address is passed on. `npm start` does not: it keeps the documented port.
 */
export async function ensureLocalKafka({ free_ports_if_taken = false } = {}) {
  if (process.env.KAFKA_BROKERS) return { brokers: process.env.KAFKA_BROKERS, started: false };
  const status = spawnSync('bash', [script, 'status'], { encoding: 'utf8' });
  if (status.status === 0) {
    const port = /127\.0\.0\.1:(\d+)/.exec(status.stdout)?.[1] ?? process.env.KAFKA_PORT ?? '19092';
    return { brokers: `127.0.0.1:${port}`, started: false };
  }
  const port = process.env.KAFKA_PORT ?? '19092';
  const controller_port = process.env.KAFKA_CONTROLLER_PORT ?? '19093';
  const taken = (await portOpen(port)) || (await portOpen(controller_port));
  if (taken && free_ports_if_taken) {
    process.env.KAFKA_PORT = String(await freePort());
    process.env.KAFKA_CONTROLLER_PORT = String(await freePort());
    process.stderr.write(
      `ports ${port}/${controller_port} are taken by another process: this checkout's broker starts on ` +
        `${process.env.KAFKA_PORT}/${process.env.KAFKA_CONTROLLER_PORT}\n`,
    );
  }
  if (kafkaCommand('start') !== 0) {
    process.stderr.write('local Kafka did not start; see the log path printed above\n');
    process.exit(1);
  }
  return { brokers: `127.0.0.1:${process.env.KAFKA_PORT ?? port}`, started: true };
}

function portOpen(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port) });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { httpsRequest } from '../support/tls.js';

export const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:19092').split(',');
export const redis_url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const auth = { authorization: 'Bearer sk_test_local' };
export const json_auth = { ...auth, 'content-type': 'application/json' };

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomUUID().slice(0, 8)}`;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface NodeProcess {
  child: ChildProcess;
  base: string;
  output: string[];
  exited: Promise<number | null>;
}

/**
 * Starts the compiled node (dist/node.js, as production runs it) and waits for /readyz. With TLS_CERT_FILE in
 * `env` the node serves HTTPS only: pass the certificate's `ca` to poll it.
 */
export async function startNode(
  env: Record<string, string>,
  ready_timeout_ms = 90_000,
  ca?: Buffer,
): Promise<NodeProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const child = spawn(process.execPath, ['dist/node.js'], {
    env: {
      ...process.env,
      KAFKA_BROKERS: brokers.join(','),
      REDIS_URL: redis_url,
      PORT: String(port),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 2000) output.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const base = `${env.TLS_CERT_FILE ? 'https' : 'http'}://127.0.0.1:${port}`;
  const status = (url: string) =>
    env.TLS_CERT_FILE ? httpsRequest(url, { ca }).then((r) => r.status) : fetch(url).then((r) => r.status);
  const node = { child, base, output, exited };
  const deadline_ms = Date.now() + ready_timeout_ms;
  while (Date.now() < deadline_ms) {
    if (child.exitCode !== null) throw new Error(`node exited ${child.exitCode}:\n${output.join('')}`);
    const ready = await status(`${base}/readyz`).then(
      (code) => code === 200,
      () => false,
    );
    if (ready) return node;
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  throw new Error(`node not ready after ${ready_timeout_ms} ms:\n${output.join('')}`);
}

export async function stopNode(
  node: NodeProcess,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<number | null> {
  if (node.child.exitCode !== null) return node.child.exitCode;
  node.child.kill(signal);
  return node.exited;
}

export async function call(
  node: NodeProcess,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = json_auth,
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON bodies
): Promise<{ status: number; body: any; headers: Headers }> {
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(`${node.base}${path}`, init);
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Deletes the topics of a test prefix and its Redis keys. */
export async function cleanup(topic_prefix: string, redis_prefix: string): Promise<void> {
  const kafka = new Kafka({ brokers, clientId: 'test-cleanup', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${topic_prefix}.`));
  if (topics.length > 0) await admin.deleteTopics({ topics });
  await admin.disconnect();
  const redis = new Redis(redis_url);
  const keys = await redis.keys(`${redis_prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
}

import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { type Config, loadConfig } from '../../src/config.js';
import {
  apply,
  type Command,
  createPartitionState,
  type PartitionState,
  type Reply,
} from '../../src/domain/index.js';
import { ApiKeys } from '../../src/gateway/auth.js';
import { createGateway, type GatewayStack } from '../../src/gateway/index.js';
import { errorReply, type Ledger } from '../../src/gateway/ledger.js';
import type { TraceContext } from '../../src/gateway/trace.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { partitionOf } from '../../src/protocol/route.js';

export const redis_url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const key_a = 'sk_test_merchant_a_0123456789';
export const key_b = 'sk_test_merchant_b_0123456789';
export const auth_a = { authorization: `Bearer ${key_a}` };
export const auth_b = { authorization: `Bearer ${key_b}` };
export const json_a = { ...auth_a, 'content-type': 'application/json' };
export const json_b = { ...auth_b, 'content-type': 'application/json' };
const PARTITIONS = 8;

/**
 * The engine's stand-in for gateway tests: the real domain (decide + evolve) on in-memory partitions, with
 * follow-up legs delivered at once. Each call is answered after a macrotask, like a committed reply.
 * `mode` injects the transport outcomes the Kafka ledger can give (timeout, unavailable).
 */
export class MemoryLedger implements Ledger {
  readonly states: PartitionState[] = Array.from({ length: PARTITIONS }, (_, p) => createPartitionState(p));
  readonly calls: { command: Command; traceparent: string }[] = [];
  mode: 'normal' | 'timeout' | 'unavailable' = 'normal';
  delay_ms = 0;

  async call(command: Command, trace: TraceContext): Promise<Reply | null> {
    this.calls.push({ command, traceparent: trace.traceparent });
    await new Promise((r) => setTimeout(r, this.delay_ms));
    if (this.mode === 'unavailable') return errorReply('unavailable', 'the ledger is unavailable');
    const decision = apply(this.#state(command), command);
    const legs = [...decision.follow_ups];
    for (let i = 0; i < 1000 && legs.length > 0; i++)
      legs.push(...apply(this.#state(legs[0]!), legs.shift()!).follow_ups);
    return this.mode === 'timeout' ? null : decision.reply;
  }

  #state(command: Command): PartitionState {
    return this.states[partitionOf(command, PARTITIONS)!]!;
  }
}

export interface TestGateway {
  base: string;
  ws_url: string;
  config: Config;
  ledger: MemoryLedger;
  stack: GatewayStack;
  logs: string[];
  redis_prefix: string;
  close(): Promise<void>;
}

/** One in-process gateway (real uWS, real Redis, in-memory ledger) on a free port. */
export async function startGateway(env: Record<string, string> = {}): Promise<TestGateway> {
  const topic_prefix = `gw_${randomUUID().slice(0, 8)}`;
  const config = loadConfig({
    PORT: '0',
    TOPIC_PREFIX: topic_prefix,
    REDIS_KEY_PREFIX: 'test:',
    REDIS_URL: redis_url,
    API_KEYS: `merchant_a:${key_a},merchant_b:${key_b}`,
    LOG_LEVEL: 'debug',
    ...env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(chunk.toString());
      if (logs.length > 20_000) logs.shift();
      done();
    },
  });
  const log = createLogger(config.log_level, 'test', sink);
  const ledger = new MemoryLedger();
  const stack = createGateway({
    config,
    keys: ApiKeys.parse(config.api_keys),
    ledger,
    feed: null,
    ready: () => true,
    log,
    metrics: createMetrics(),
  });
  const port = await stack.gateway.listen();
  const scheme = config.tls_cert_file ? 'https' : 'http';
  const redis_prefix = `test:${topic_prefix}:`;
  return {
    base: `${scheme}://127.0.0.1:${port}`,
    ws_url: `${scheme === 'https' ? 'wss' : 'ws'}://127.0.0.1:${port}/v1/ws`,
    config,
    ledger,
    stack,
    logs,
    redis_prefix,
    close: async () => {
      stack.gateway.close();
      await stack.dispose();
      await deleteKeys(redis_prefix);
    },
  };
}

export async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(redis_url);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
}

// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON bodies
export type Res = { status: number; body: any; headers: Headers; text: string };

export async function http(
  gw: { base: string },
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = json_a,
): Promise<Res> {
  const init: RequestInit = { method, headers };
  if (body !== undefined)
    init.body =
      typeof body === 'string' || body instanceof Uint8Array ? (body as string) : JSON.stringify(body);
  const res = await fetch(`${gw.base}${path}`, init);
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed, headers: res.headers, text };
}

/** A WebSocket client that correlates responses by request_id and collects unsolicited frames. */
export class WsClient {
  readonly socket: WebSocket;
  // biome-ignore lint/suspicious/noExplicitAny: frames are arbitrary JSON
  readonly unsolicited: any[] = [];
  // biome-ignore lint/suspicious/noExplicitAny: frames are arbitrary JSON
  readonly #waiting = new Map<string, (frame: any) => void>();
  #next = 0;

  private constructor(socket: WebSocket, decode: (data: Buffer, binary: boolean) => unknown) {
    this.socket = socket;
    socket.on('message', (data: Buffer, binary: boolean) => {
      // biome-ignore lint/suspicious/noExplicitAny: frames are arbitrary JSON
      const frame = decode(data, binary) as any;
      const waiter = this.#waiting.get(String(frame?.request_id));
      if (waiter) {
        this.#waiting.delete(String(frame.request_id));
        waiter(frame);
      } else this.unsolicited.push(frame);
    });
  }

  static open(
    url: string,
    headers: Record<string, string>,
    decode: (data: Buffer, binary: boolean) => unknown,
    options: WebSocket.ClientOptions = {},
  ): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { headers, ...options });
      socket.once('open', () => resolve(new WsClient(socket, decode)));
      socket.once('error', reject);
      socket.once('unexpected-response', (req, res) => {
        req.destroy(); // ws leaves the refused upgrade's socket open when this event is handled
        reject(new Error(`upgrade refused: ${res.statusCode}`));
      });
    });
  }

  /** Sends a request frame (JSON text, or `encode`d binary) and resolves with its response frame. */
  // biome-ignore lint/suspicious/noExplicitAny: frames are arbitrary JSON
  request(frame: Record<string, unknown>, encode?: (value: unknown) => Uint8Array): Promise<any> {
    const request_id = frame.request_id ?? `r${this.#next++}`;
    const full = { ...frame, request_id };
    return new Promise((resolve) => {
      this.#waiting.set(String(request_id), resolve);
      if (encode) this.socket.send(encode(full), { binary: true });
      else this.socket.send(JSON.stringify(full));
    });
  }

  /** Sends raw bytes and resolves with the next unsolicited-or-null-id frame. */
  // biome-ignore lint/suspicious/noExplicitAny: frames are arbitrary JSON
  raw(data: string | Uint8Array, binary: boolean): Promise<any> {
    return new Promise((resolve) => {
      this.#waiting.set('null', resolve);
      this.socket.send(data, { binary });
    });
  }

  close(): void {
    this.socket.close();
  }
}

export function jsonFrames(data: Buffer, binary: boolean): unknown {
  if (binary) throw new Error('unexpected binary frame');
  return JSON.parse(data.toString('utf8'));
}

import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A small TCP fault proxy for chaos tests (in the spirit of Toxiproxy): listens on 127.0.0.1:<port> and
 * forwards every connection to `upstream`, with faults switched on and off while it runs:
 *
 *   client ──▶ [proxy: latency | stall | drop | refuse] ──▶ upstream
 *
 * - latency_ms: each chunk is forwarded latency_ms later, in both directions (order kept: a chunk's due
 *   time is never before the previous chunk's).
 * - stall(): bytes are held (nothing forwarded, connections stay open) until unstall(); past
 *   `stall_buffer_max_bytes` held on one connection it is dropped, so memory stays bounded.
 * - hold_responses = true: only the broker's answers are held (requests still reach it), until it is
 *   switched off or the connection dropped: a request that lands while its answer is lost.
 * - drop(): every open connection is destroyed (both sides see a reset/close).
 * - refuse = true: new connections are closed at once (an unreachable peer, as far as a client can tell).
 *
 * Kafka note: a broker tells clients where to connect in its metadata (advertised listeners). For the
 * proxy to stay in the path, the broker behind it must advertise the proxy's address (see
 * ProxiedBroker in env.ts: its client listener is advertised as the proxy port).
 */
export interface ProxyStats {
  connections_total: number;
  connections_open: number;
  dropped_total: number;
  refused_total: number;
  bytes_up: number;
  bytes_down: number;
}

interface Pipe {
  client: Socket;
  server: Socket;
  held: { to: Socket; chunk: Buffer }[];
  held_bytes: number;
  /** Due time of the last delayed chunk per direction, so later chunks never overtake it. */
  due_up_ms: number;
  due_down_ms: number;
}

export class FaultProxy {
  latency_ms = 0;
  refuse = false;
  hold_responses = false;
  readonly stats: ProxyStats = {
    connections_total: 0,
    connections_open: 0,
    dropped_total: 0,
    refused_total: 0,
    bytes_up: 0,
    bytes_down: 0,
  };
  readonly #pipes = new Set<Pipe>();
  readonly #server: Server;
  readonly #upstream: { host: string; port: number };
  readonly #stall_buffer_max_bytes: number;
  #stalled = false;

  constructor(opts: { upstream: { host: string; port: number }; stall_buffer_max_bytes?: number }) {
    this.#upstream = opts.upstream;
    this.#stall_buffer_max_bytes = opts.stall_buffer_max_bytes ?? 64 * 1024 * 1024;
    this.#server = createServer((client) => this.#accept(client));
  }

  listen(port: number, host = '127.0.0.1'): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        const address = this.#server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  stall(): void {
    this.#stalled = true;
  }

  unstall(): void {
    this.#stalled = false;
    this.hold_responses = false;
    for (const pipe of this.#pipes) {
      const held = pipe.held;
      pipe.held = [];
      pipe.held_bytes = 0;
      for (const { to, chunk } of held) this.#forward(pipe, to, chunk);
    }
  }

  drop(): void {
    for (const pipe of [...this.#pipes]) this.#destroy(pipe);
  }

  #accept(client: Socket): void {
    if (this.refuse) {
      this.stats.refused_total++;
      client.destroy();
      return;
    }
    const server = tcpConnect(this.#upstream.port, this.#upstream.host);
    const pipe: Pipe = { client, server, held: [], held_bytes: 0, due_up_ms: 0, due_down_ms: 0 };
    this.#pipes.add(pipe);
    this.stats.connections_total++;
    this.stats.connections_open++;
    client.setNoDelay(true);
    server.setNoDelay(true);
    client.on('data', (chunk) => {
      this.stats.bytes_up += chunk.length;
      this.#route(pipe, server, chunk);
    });
    server.on('data', (chunk) => {
      this.stats.bytes_down += chunk.length;
      this.#route(pipe, client, chunk);
    });
    const end = () => this.#destroy(pipe, false);
    for (const socket of [client, server]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  }

  #route(pipe: Pipe, to: Socket, chunk: Buffer): void {
    if (this.#stalled || (this.hold_responses && to === pipe.client)) {
      pipe.held.push({ to, chunk });
      pipe.held_bytes += chunk.length;
      if (pipe.held_bytes > this.#stall_buffer_max_bytes) this.#destroy(pipe);
      return;
    }
    this.#forward(pipe, to, chunk);
  }

  #forward(pipe: Pipe, to: Socket, chunk: Buffer): void {
    if (this.latency_ms <= 0) {
      if (!to.destroyed) to.write(chunk);
      return;
    }
    const up = to === pipe.server;
    const now_ms = Date.now();
    const due_ms = Math.max(now_ms + this.latency_ms, up ? pipe.due_up_ms : pipe.due_down_ms);
    if (up) pipe.due_up_ms = due_ms;
    else pipe.due_down_ms = due_ms;
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, due_ms - now_ms);
  }

  #destroy(pipe: Pipe, counted = true): void {
    if (!this.#pipes.delete(pipe)) return;
    this.stats.connections_open--;
    if (counted) this.stats.dropped_total++;
    pipe.held = [];
    pipe.client.destroy();
    pipe.server.destroy();
  }
}

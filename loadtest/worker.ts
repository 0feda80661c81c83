import { monitorEventLoopDelay, performance, type RecordableHistogram } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { buildRequest, HttpConnection, parseJson, parseTarget, type Target } from './http-client.js';
import { dueCount, intendedMs, makeSchedule, type Schedule } from './schedule.js';
import { type Counts, newHistogram, recordUs } from './stats.js';
import { type Op, outcomeKey, type Tracked, Workload, type WorkloadSpec } from './workload.js';

/**
 * One generator thread. Open loop: sends on the schedule (schedule.ts) and measures from the intended
 * time; closed loop: each connection (HTTP) or each pipeline slot (WebSocket) sends its next request as
 * soon as the previous one is answered. Every second it posts the interval's histogram and counters;
 * at the end its totals. Bounded: the schedule has a fixed count, the run a fixed end, the drain a fixed
 * timeout, connections a fixed cap.
 */
export interface WorkerConfig {
  index: number;
  workers: number;
  mode: 'open' | 'closed';
  transport: 'http' | 'ws';
  url: string;
  api_key: string;
  rate_per_s: number;
  /** Closed loop: connections of this worker; open loop WS: sockets; open loop HTTP: initial pool. */
  connections: number;
  /** Open-loop HTTP: cap on connections of this worker (a request waits for one beyond it). */
  connections_max: number;
  /** WebSocket closed loop: requests in flight per socket. */
  pipeline: number;
  warmup_ms: number;
  duration_ms: number;
  timeout_ms: number;
  workload: WorkloadSpec;
}

export interface TickMessage {
  type: 'tick';
  index: number;
  t_ms: number;
  interval: RecordableHistogram;
  sent: number;
  completed: number;
  errors: number;
  measured_completed: number;
  measured_errors: number;
}

export interface DoneMessage {
  type: 'done';
  index: number;
  latency: RecordableHistogram;
  /** Open loop: actual send time − intended time, µs (how far behind its schedule the generator was). */
  send_lag: RecordableHistogram;
  event_loop_delay_p99_ms: number;
  event_loop_delay_max_ms: number;
  counts: Counts;
  counts_by_op: Record<string, number>;
  sent: number;
  measured_sent: number;
  waited_for_connection: number;
  unsent_timeouts: number;
  connections_opened: number;
  idempotency_mismatches: number;
  tracked: Tracked;
}

export type FromWorker = { type: 'ready'; index: number } | TickMessage | DoneMessage;
export type ToWorker = { type: 'start'; start_ms: number } | { type: 'stop' };

const now_ms = () => performance.timeOrigin + performance.now();

interface InFlight {
  op: Op;
  /** Latency origin: intended time (open loop) or send time (closed loop). */
  origin_ms: number;
  sent_ms: number;
  measured: boolean;
}

class Generator {
  readonly cfg: WorkerConfig;
  readonly target: Target;
  readonly workload: Workload;
  readonly latency = newHistogram();
  readonly send_lag = newHistogram();
  interval = newHistogram();
  readonly loop_delay = monitorEventLoopDelay({ resolution: 10 });
  readonly counts: Counts = {};
  readonly counts_by_op: Record<string, number> = {};
  start_ms = 0;
  measure_from_ms = 0;
  end_ms = 0;
  stopping = false;
  sent = 0;
  measured_sent = 0;
  waited_for_connection = 0;
  unsent_timeouts = 0;
  connections_opened = 0;
  in_flight = 0;
  tick = { sent: 0, completed: 0, errors: 0, measured_completed: 0, measured_errors: 0 };

  constructor(cfg: WorkerConfig) {
    this.cfg = cfg;
    this.target = parseTarget(cfg.url, cfg.api_key);
    this.workload = new Workload(cfg.workload);
  }

  /** Records one answer; `status` 0 = no answer (`error` says why). */
  complete(f: InFlight, status: number, body: Record<string, unknown> | null, error: string | null): void {
    const t = now_ms();
    this.in_flight--;
    this.workload.onAnswer(f.op, status, body);
    const key = outcomeKey(status, body, error ?? undefined);
    const is_error = status === 0 || (status >= 400 && status !== 402);
    this.tick.completed++;
    if (is_error) this.tick.errors++;
    if (status !== 0) recordUs(this.interval, (t - f.origin_ms) * 1000);
    if (!f.measured) return;
    this.tick.measured_completed++;
    if (is_error) this.tick.measured_errors++;
    this.counts[key] = (this.counts[key] ?? 0) + 1;
    if (status !== 0) recordUs(this.latency, (t - f.origin_ms) * 1000);
  }

  begin(op: Op, origin_ms: number, sent_ms: number): InFlight {
    this.sent++;
    this.tick.sent++;
    this.in_flight++;
    const measured = origin_ms >= this.measure_from_ms;
    if (measured) {
      this.measured_sent++;
      this.counts_by_op[op.kind] = (this.counts_by_op[op.kind] ?? 0) + 1;
    }
    return { op, origin_ms, sent_ms, measured };
  }

  httpBytes(op: Op): Buffer {
    return buildRequest(this.target, op.method, op.path, JSON.stringify(op.body), op.idempotency_key);
  }

  done(): DoneMessage {
    return {
      type: 'done',
      index: this.cfg.index,
      latency: this.latency,
      send_lag: this.send_lag,
      event_loop_delay_p99_ms: this.loop_delay.count > 0 ? this.loop_delay.percentile(99) / 1e6 : 0,
      event_loop_delay_max_ms: this.loop_delay.count > 0 ? this.loop_delay.max / 1e6 : 0,
      counts: this.counts,
      counts_by_op: this.counts_by_op,
      sent: this.sent,
      measured_sent: this.measured_sent,
      waited_for_connection: this.waited_for_connection,
      unsent_timeouts: this.unsent_timeouts,
      connections_opened: this.connections_opened,
      idempotency_mismatches: this.workload.idempotency_mismatches,
      tracked: this.workload.tracked,
    };
  }
}

// ---------------------------------------------------------------- HTTP

class HttpDriver {
  readonly g: Generator;
  readonly idle: HttpConnection[] = [];
  readonly all = new Set<HttpConnection>();
  schedule: Schedule | null = null;
  next_i = 0;
  timer: NodeJS.Timeout | null = null;

  constructor(g: Generator) {
    this.g = g;
  }

  async prepare(): Promise<void> {
    for (let i = 0; i < this.g.cfg.connections; i++) this.idle.push(this.open());
  }

  open(): HttpConnection {
    const c = new HttpConnection(this.g.target);
    this.g.connections_opened++;
    this.all.add(c);
    return c;
  }

  /** An idle live connection, a new one if under the cap, or null. */
  take(): HttpConnection | null {
    for (let i = 0; i < 100_000; i++) {
      const c = this.idle.pop();
      if (c === undefined) break;
      if (!c.dead) return c;
      this.all.delete(c);
    }
    const cap = this.g.cfg.mode === 'open' ? this.g.cfg.connections_max : this.g.cfg.connections;
    return this.all.size < cap ? this.open() : null;
  }

  send(c: HttpConnection, f: InFlight): void {
    c.request(
      this.g.httpBytes(f.op),
      (status, text, error) => {
        this.g.complete(f, status, status === 0 ? null : parseJson(text), error);
        if (c.dead) this.all.delete(c);
        else this.idle.push(c);
        this.after();
      },
      f.sent_ms + this.g.cfg.timeout_ms,
    );
  }

  after(): void {
    if (this.g.cfg.mode === 'open') this.pump();
    else this.closedNext();
  }

  start(): void {
    const g = this.g;
    if (g.cfg.mode === 'closed') {
      const n = this.idle.length;
      for (let i = 0; i < n; i++) this.closedNext();
      return;
    }
    this.schedule = makeSchedule(g.cfg.rate_per_s, g.cfg.workers, g.cfg.index, g.start_ms, g.end_ms);
    this.pump();
  }

  closedNext(): void {
    const g = this.g;
    const t = now_ms();
    if (g.stopping || t >= g.end_ms) return;
    const c = this.take();
    if (c === null) return;
    this.send(c, g.begin(g.workload.next(), t, t));
  }

  /** Sends every due request that has a connection; re-arms a timer for the next intended time. */
  pump(): void {
    const g = this.g;
    const s = this.schedule!;
    if (g.stopping) return;
    const t = now_ms();
    const due = dueCount(s, t);
    for (; this.next_i < due; this.next_i++) {
      const intended = intendedMs(s, this.next_i);
      if (t - intended >= g.cfg.timeout_ms) {
        g.unsent_timeouts++;
        g.complete(g.begin(g.workload.next(), intended, t), 0, null, 'timeout_unsent');
        continue;
      }
      const c = this.take();
      if (c === null) {
        g.waited_for_connection++;
        break;
      }
      recordUs(g.send_lag, (t - intended) * 1000);
      this.send(c, g.begin(g.workload.next(), intended, t));
    }
    if (this.timer === null && this.next_i < s.total) {
      const wait = Math.max(0, intendedMs(s, this.next_i) - now_ms());
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, wait);
    }
  }

  checkTimeouts(t: number): void {
    for (const c of this.all) c.checkTimeout(t);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const c of this.all) c.close();
  }
}

// ---------------------------------------------------------------- WebSocket

class WsDriver {
  readonly g: Generator;
  readonly sockets: WebSocket[] = [];
  readonly in_flight = new Map<number, InFlight & { socket: number }>();
  schedule: Schedule | null = null;
  next_i = 0;
  next_id = 1;
  rr = 0;
  timer: NodeJS.Timeout | null = null;

  constructor(g: Generator) {
    this.g = g;
  }

  async prepare(): Promise<void> {
    const t = this.g.target;
    const url = `${t.tls ? 'wss' : 'ws'}://${t.url.host}${t.base_path}/v1/ws`;
    const opened = [];
    for (let i = 0; i < this.g.cfg.connections; i++) {
      const ws = new WebSocket(url, {
        headers: { authorization: `Bearer ${t.api_key}` },
        perMessageDeflate: false,
      });
      this.g.connections_opened++;
      const index = i;
      ws.on('message', (data: Buffer) => this.onMessage(data));
      ws.on('close', () => this.failSocket(index, 'connection_closed'));
      ws.on('error', () => {});
      this.sockets.push(ws);
      opened.push(
        new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', (e) => reject(new Error(`WebSocket ${url}: ${e.message}`)));
          ws.once('unexpected-response', (_req, res) =>
            reject(new Error(`WebSocket ${url}: HTTP ${res.statusCode}`)),
          );
        }),
      );
    }
    await Promise.all(opened);
  }

  send(socket: number, f: InFlight): void {
    const op = f.op;
    const id = this.next_id++;
    const frame: Record<string, unknown> = {
      op: op.ws_op,
      request_id: id,
      body: op.path_id === null ? op.body : { ...op.body, id: op.path_id },
    };
    if (op.idempotency_key !== null) frame.idempotency_key = op.idempotency_key;
    this.in_flight.set(id, { ...f, socket });
    const ws = this.sockets[socket]!;
    if (ws.readyState !== WebSocket.OPEN) {
      this.in_flight.delete(id);
      this.g.complete(f, 0, null, 'connection_closed');
      return;
    }
    ws.send(JSON.stringify(frame));
  }

  onMessage(data: Buffer): void {
    const msg = parseJson(data.toString());
    if (msg === null || msg.request_id === undefined) return; // outcome pushes: not subscribed, ignore
    const f = this.in_flight.get(msg.request_id as number);
    if (f === undefined) return; // answered after its timeout
    this.in_flight.delete(msg.request_id as number);
    const status = typeof msg.status === 'number' ? msg.status : 0;
    const body =
      msg.error !== undefined ? { error: msg.error } : (msg.body as Record<string, unknown> | undefined);
    this.g.complete(f, status, body ?? null, status === 0 ? 'bad_frame' : null);
    if (this.g.cfg.mode === 'closed') this.closedNext(f.socket);
  }

  failSocket(socket: number, reason: string): void {
    for (const [id, f] of this.in_flight) {
      if (f.socket !== socket) continue;
      this.in_flight.delete(id);
      this.g.complete(f, 0, null, reason);
    }
  }

  start(): void {
    const g = this.g;
    if (g.cfg.mode === 'closed') {
      for (let s = 0; s < this.sockets.length; s++)
        for (let p = 0; p < g.cfg.pipeline; p++) this.closedNext(s);
      return;
    }
    this.schedule = makeSchedule(g.cfg.rate_per_s, g.cfg.workers, g.cfg.index, g.start_ms, g.end_ms);
    this.pump();
  }

  closedNext(socket: number): void {
    const g = this.g;
    const t = now_ms();
    if (g.stopping || t >= g.end_ms) return;
    this.send(socket, g.begin(g.workload.next(), t, t));
  }

  pump(): void {
    const g = this.g;
    const s = this.schedule!;
    if (g.stopping) return;
    const t = now_ms();
    const due = dueCount(s, t);
    for (; this.next_i < due; this.next_i++) {
      const intended = intendedMs(s, this.next_i);
      recordUs(g.send_lag, (t - intended) * 1000);
      this.rr = (this.rr + 1) % this.sockets.length;
      this.send(this.rr, g.begin(g.workload.next(), intended, t));
    }
    if (this.timer === null && this.next_i < s.total) {
      const wait = Math.max(0, intendedMs(s, this.next_i) - now_ms());
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, wait);
    }
  }

  /** Deadlines grow with insertion order, so the scan stops at the first request still in time. */
  checkTimeouts(t: number): void {
    for (const [id, f] of this.in_flight) {
      if (t < f.sent_ms + this.g.cfg.timeout_ms) break;
      this.in_flight.delete(id);
      this.g.complete(f, 0, null, 'timeout');
      if (this.g.cfg.mode === 'closed') this.closedNext(f.socket);
    }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const ws of this.sockets) ws.terminate();
  }
}

// ---------------------------------------------------------------- lifecycle

async function main(): Promise<void> {
  const cfg = workerData as WorkerConfig;
  const port = parentPort!;
  const g = new Generator(cfg);
  const driver = cfg.transport === 'ws' ? new WsDriver(g) : new HttpDriver(g);
  await driver.prepare();
  port.postMessage({ type: 'ready', index: cfg.index } satisfies FromWorker);
  const start = await new Promise<number>((resolve) =>
    port.on('message', (m: ToWorker) => {
      if (m.type === 'start') resolve(m.start_ms);
      else g.stopping = true;
    }),
  );
  g.start_ms = start;
  g.measure_from_ms = start + cfg.warmup_ms;
  g.end_ms = start + cfg.warmup_ms + cfg.duration_ms;
  g.loop_delay.enable();
  await new Promise((r) => setTimeout(r, Math.max(0, start - now_ms())));
  driver.start();
  let tick_s = Math.floor(now_ms() / 1000);
  const ticker = setInterval(() => {
    const t = now_ms();
    driver.checkTimeouts(t);
    if (Math.floor(t / 1000) <= tick_s) return;
    tick_s = Math.floor(t / 1000);
    port.postMessage({
      type: 'tick',
      index: cfg.index,
      t_ms: t,
      interval: g.interval,
      ...g.tick,
    } satisfies FromWorker);
    g.interval = newHistogram();
    g.tick = { sent: 0, completed: 0, errors: 0, measured_completed: 0, measured_errors: 0 };
  }, 100);
  // Run, then drain: wait for answers up to the request timeout (bounded), then count the rest as timeouts.
  const drain_end = g.end_ms + cfg.timeout_ms + 200;
  while (now_ms() < drain_end && !(now_ms() >= g.end_ms && g.in_flight === 0) && !g.stopping)
    await new Promise((r) => setTimeout(r, 50));
  g.stopping = true;
  clearInterval(ticker);
  driver.checkTimeouts(Number.POSITIVE_INFINITY);
  g.loop_delay.disable();
  driver.close();
  port.postMessage(g.done() satisfies FromWorker);
  port.close();
}

void main().catch((error: unknown) => {
  // A worker that cannot run is a setup failure (bad URL, refused connection): report it and exit non-zero.
  console.error(`loadtest worker: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});

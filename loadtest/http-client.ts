import net from 'node:net';
import tls from 'node:tls';

/**
 * A minimal HTTP/1.1 keep-alive client on raw sockets, one request in flight per connection. Why not
 * `fetch`/`http.Agent`: on this 2-core machine the generator shares the CPU with the system under test,
 * and undici's per-request cost (streams, header objects, promises) is several times that of writing one
 * pre-built buffer and scanning the answer for Content-Length. Supports Content-Length and chunked
 * answers, `Connection: close`, HTTP and HTTPS.
 */
export interface Target {
  url: URL;
  host: string;
  port: number;
  tls: boolean;
  /** Path prefix of the base URL without the trailing slash (usually empty). */
  base_path: string;
  api_key: string;
}

export function parseTarget(base_url: string, api_key: string): Target {
  const url = new URL(base_url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`--url must be http(s): ${base_url}`);
  const secure = url.protocol === 'https:';
  return {
    url,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : secure ? 443 : 80,
    tls: secure,
    base_path: url.pathname.replace(/\/+$/, ''),
    api_key,
  };
}

/** Loopback hosts, the only ones allowed without `--allow-remote`. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function buildRequest(
  t: Target,
  method: string,
  path: string,
  body: string | null,
  idempotency_key: string | null,
): Buffer {
  let head = `${method} ${t.base_path}${path} HTTP/1.1\r\nHost: ${t.url.host}\r\nAuthorization: Bearer ${t.api_key}\r\n`;
  if (idempotency_key !== null) head += `Idempotency-Key: ${idempotency_key}\r\n`;
  if (body === null) return Buffer.from(`${head}\r\n`);
  const payload = Buffer.from(body);
  head += `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), payload]);
}

/** status 0 = no HTTP answer; `error` then says why (`timeout`, `connect_error`, `socket_error`, …). */
export type Answer = (status: number, body: string, error: string | null) => void;

interface Parsed {
  status: number;
  body: string;
  consumed: number;
  close: boolean;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const HEAD_BYTES_MAX = 64 * 1024;
const BODY_BYTES_MAX = 16 * 1024 * 1024;

/** Parses one response at the start of `buf`; null = need more bytes. Throws on a malformed response. */
export function parseResponse(buf: Buffer): Parsed | null {
  const head_end = buf.indexOf(HEAD_END);
  if (head_end < 0) {
    if (buf.length > HEAD_BYTES_MAX) throw new Error('response head too large');
    return null;
  }
  const head = buf.toString('latin1', 0, head_end);
  const status = Number(head.slice(9, 12));
  if (!head.startsWith('HTTP/1.') || !Number.isInteger(status) || status < 100)
    throw new Error(`bad status line: ${head.slice(0, 40)}`);
  const lower = head.toLowerCase();
  const close = /\r\nconnection:\s*close/.test(lower);
  const body_start = head_end + 4;
  const length_match = /\r\ncontent-length:\s*(\d+)/.exec(lower);
  if (length_match) {
    const length = Number(length_match[1]);
    if (length > BODY_BYTES_MAX) throw new Error('response body too large');
    if (buf.length < body_start + length) return null;
    return {
      status,
      body: buf.toString('utf8', body_start, body_start + length),
      consumed: body_start + length,
      close,
    };
  }
  if (/\r\ntransfer-encoding:[^\r]*chunked/.test(lower)) return parseChunked(buf, status, body_start, close);
  if (status === 204 || status === 304 || (status >= 100 && status < 200))
    return { status, body: '', consumed: body_start, close };
  throw new Error('response without length (read-until-close is not supported)');
}

function parseChunked(buf: Buffer, status: number, start: number, close: boolean): Parsed | null {
  const parts: Buffer[] = [];
  let at = start;
  for (let chunks = 0; chunks < 100_000; chunks++) {
    const line_end = buf.indexOf('\r\n', at);
    if (line_end < 0) return null;
    const size = Number.parseInt(buf.toString('latin1', at, line_end), 16);
    if (!Number.isInteger(size) || size < 0) throw new Error('bad chunk size');
    if (size === 0) {
      const end = buf.indexOf(HEAD_END, line_end);
      if (end < 0 && buf.indexOf('\r\n', line_end + 2) !== line_end + 2) return null;
      const consumed = end >= 0 ? end + 4 : line_end + 4;
      return { status, body: Buffer.concat(parts).toString('utf8'), consumed, close };
    }
    if (buf.length < line_end + 2 + size + 2) return null;
    parts.push(buf.subarray(line_end + 2, line_end + 2 + size));
    at = line_end + 2 + size + 2;
  }
  throw new Error('too many chunks');
}

export class HttpConnection {
  readonly #socket: net.Socket;
  #pending: Buffer = Buffer.alloc(0);
  #answer: Answer | null = null;
  #connected = false;
  #queued: Buffer | null = null;
  dead = false;
  deadline_ms = Number.POSITIVE_INFINITY;

  constructor(t: Target) {
    const onConnect = () => {
      this.#connected = true;
      if (this.#queued) this.#socket.write(this.#queued);
      this.#queued = null;
    };
    this.#socket = t.tls
      ? tls.connect(
          { host: t.host, port: t.port, servername: t.host, ALPNProtocols: ['http/1.1'] },
          onConnect,
        )
      : net.connect({ host: t.host, port: t.port }, onConnect);
    this.#socket.setNoDelay(true);
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('error', () => this.#fail(this.#connected ? 'socket_error' : 'connect_error'));
    this.#socket.on('close', () => this.#fail(this.#connected ? 'connection_closed' : 'connect_error'));
  }

  get busy(): boolean {
    return this.#answer !== null;
  }

  request(bytes: Buffer, answer: Answer, deadline_ms: number): void {
    if (this.#answer !== null || this.dead) throw new Error('HttpConnection: request while busy or dead');
    this.#answer = answer;
    this.deadline_ms = deadline_ms;
    if (this.#connected) this.#socket.write(bytes);
    else this.#queued = bytes;
  }

  /** Called by the owner's coarse timer: fails the request in flight if its deadline passed. */
  checkTimeout(now_ms: number): void {
    if (this.#answer !== null && now_ms >= this.deadline_ms) this.#fail('timeout');
  }

  close(): void {
    this.dead = true;
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    let parsed: Parsed | null;
    try {
      parsed = parseResponse(this.#pending);
    } catch {
      this.#fail('bad_response');
      return;
    }
    if (parsed === null) return;
    this.#pending = this.#pending.subarray(parsed.consumed);
    const answer = this.#answer;
    this.#answer = null;
    this.deadline_ms = Number.POSITIVE_INFINITY;
    if (parsed.close) this.close();
    answer?.(parsed.status, parsed.body, null);
  }

  #fail(reason: string): void {
    const first = !this.dead;
    this.close();
    const answer = this.#answer;
    this.#answer = null;
    if (answer && first) answer(0, '', reason);
  }
}

/**
 * A small promise-based pool for seeding and `--verify` (not on the measured path): at most `size`
 * connections, requests queued FIFO, one retry-free attempt each.
 */
export class HttpPool {
  readonly #target: Target;
  readonly #size: number;
  readonly #timeout_ms: number;
  readonly #idle: HttpConnection[] = [];
  #open = 0;
  readonly #waiting: Array<() => void> = [];
  readonly #timer: NodeJS.Timeout;
  readonly #all = new Set<HttpConnection>();

  constructor(target: Target, size: number, timeout_ms: number) {
    this.#target = target;
    this.#size = size;
    this.#timeout_ms = timeout_ms;
    this.#timer = setInterval(() => {
      const now = Date.now();
      for (const c of this.#all) c.checkTimeout(now);
    }, 100);
    this.#timer.unref();
  }

  async call(
    method: string,
    path: string,
    body?: unknown,
    idempotency_key: string | null = null,
  ): Promise<{ status: number; body: Record<string, unknown> | null; error: string | null }> {
    const conn = await this.#acquire();
    const bytes = buildRequest(
      this.#target,
      method,
      path,
      body === undefined ? null : JSON.stringify(body),
      idempotency_key,
    );
    return new Promise((resolve) => {
      conn.request(
        bytes,
        (status, text, error) => {
          this.#release(conn);
          resolve({ status, body: parseJson(text), error });
        },
        Date.now() + this.#timeout_ms,
      );
    });
  }

  close(): void {
    clearInterval(this.#timer);
    for (const c of this.#all) c.close();
    this.#all.clear();
  }

  async #acquire(): Promise<HttpConnection> {
    for (let tries = 0; tries < 1_000_000; tries++) {
      const idle = this.#idle.pop();
      if (idle && !idle.dead) return idle;
      if (idle) {
        this.#open--;
        this.#all.delete(idle);
        continue;
      }
      if (this.#open < this.#size) {
        this.#open++;
        const c = new HttpConnection(this.#target);
        this.#all.add(c);
        return c;
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    throw new Error('HttpPool: no connection');
  }

  #release(c: HttpConnection): void {
    if (c.dead) {
      this.#open--;
      this.#all.delete(c);
    } else this.#idle.push(c);
    this.#waiting.shift()?.();
  }
}

export function parseJson(text: string): Record<string, unknown> | null {
  if (text.length === 0) return null;
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

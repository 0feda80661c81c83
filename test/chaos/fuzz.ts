import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { OP_NAMES } from '../../src/gateway/ops.js';
import type { NodeSlot } from './env.js';
import { sleep } from './env.js';

/**
 * Gateway fuzzing (scenario 8): fast-check generates HTTP requests (through fetch, and as raw bytes on a
 * TCP socket, so malformed request lines and headers reach the parser) and WebSocket frames (JSON text,
 * msgpack, garbage), sent in concurrent batches for `duration_ms`. Every HTTP answer must be < 500, every
 * WebSocket answer frame's status < 500, the node must stay up and its RSS bounded. Each batch is drawn
 * with its own seed (reported with any failure, so a case can be replayed with fc.sample(…, {seed})).
 */
const api_routes: [string, string][] = [
  ['POST', '/v1/accounts'],
  ['POST', '/v1/deposits'],
  ['POST', '/v1/tokens'],
  ['POST', '/v1/payments'],
  ['POST', '/v1/payments'],
  ['POST', '/v1/payments'],
  ['POST', '/v1/refunds'],
  ['GET', '/v1/payments/{id}'],
  ['POST', '/v1/payments/{id}/capture'],
  ['POST', '/v1/payments/{id}/cancel'],
  ['GET', '/v1/accounts/{id}'],
];
const api_paths = [
  '/v1/accounts',
  '/v1/deposits',
  '/v1/tokens',
  '/v1/payments',
  '/v1/refunds',
  '/v1/payments/{id}',
  '/v1/payments/{id}/capture',
  '/v1/payments/{id}/cancel',
  '/v1/accounts/{id}',
  '/healthz',
  '/readyz',
  '/v1/ws',
  '/{id}',
];

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    '',
    ' ',
    '%',
    '%zz',
    '..',
    '../../etc/passwd',
    '\u0000',
    'x'.repeat(5000),
    'tok_',
    'pay_00',
  ),
);
const number = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1e308, -0, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER),
  fc.bigInt().map((b) => b.toString()),
);
const value: fc.Arbitrary<unknown> = fc.oneof(
  text,
  number,
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(text, number), { maxLength: 4 }),
  fc.dictionary(text, fc.oneof(text, number), { maxKeys: 3 }),
);

/** Valid bodies per route (accounts of the run: x_c<n> customers, x_m<n> merchants). */
const customer = fc.integer({ min: 0, max: 49 }).map((n) => `x_c${n}`);
const merchant = fc.integer({ min: 0, max: 19 }).map((n) => `x_m${n}`);
const amount = fc.integer({ min: 1, max: 5_000 });
const valid_bodies: Record<string, fc.Arbitrary<Record<string, unknown>>> = {
  '/v1/accounts': fc.record(
    {
      id: fc.integer({ min: 0, max: 200 }).map((n) => `fz_${n}`),
      currency: fc.constant('USD'),
      kind: fc.constantFrom('customer', 'merchant'),
      overdraft_limit: fc.integer({ min: 0, max: 1000 }),
    },
    { requiredKeys: ['currency', 'kind'] },
  ),
  '/v1/deposits': fc.record({ account: customer, amount, currency: fc.constant('USD') }),
  '/v1/tokens': fc.record({
    account: customer,
    card: fc.record({
      number: fc.constantFrom('4242424242424242', '5555555555554444', '4000000000000002'),
      exp_month: fc.integer({ min: 1, max: 12 }),
      exp_year: fc.integer({ min: 2027, max: 2040 }),
      cvc: fc.constantFrom('123', '9999'),
    }),
  }),
  '/v1/payments': fc.record(
    {
      amount,
      currency: fc.constant('USD'),
      source: customer,
      destination: merchant,
      capture: fc.boolean(),
      description: text,
      metadata: fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 20 }), { maxKeys: 3 }),
    },
    { requiredKeys: ['amount', 'currency', 'source', 'destination'] },
  ),
  '/v1/refunds': fc.record({ payment: fc.constantFrom('pay_0000x', 'pay_ffffffff00'), amount }),
  '/v1/payments/{id}/capture': fc.record({ amount }, { requiredKeys: [] }),
  '/v1/payments/{id}/cancel': fc.constant({}),
};

/** A valid body, or one with a field replaced, dropped or added, or any JSON at all. */
function bodyFor(template: string): fc.Arbitrary<unknown> {
  const valid = valid_bodies[template] ?? fc.constant({});
  return fc.oneof(
    { weight: 4, arbitrary: valid },
    {
      weight: 2,
      arbitrary: fc.tuple(valid, text, value).map(([b, k, v]) => {
        const keys = Object.keys(b);
        const key = keys.length > 0 ? keys[k.length % keys.length]! : k;
        return { ...b, [key]: v };
      }),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(valid, fc.nat()).map(([b, n]) => {
        const rest: Record<string, unknown> = { ...b };
        const keys = Object.keys(rest);
        if (keys.length > 0) delete rest[keys[n % keys.length]!];
        return rest;
      }),
    },
    { weight: 1, arbitrary: fc.tuple(valid, text, value).map(([b, k, v]) => ({ ...b, [k]: v })) },
    { weight: 1, arbitrary: fc.jsonValue() },
  );
}
const body = fc.constantFrom(...Object.keys(valid_bodies)).chain(bodyFor);

const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD');
const id = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('pay_0000x', 'x_c0', 'x_c1', 'x_m0', 'fz_a') },
  { weight: 1, arbitrary: text },
);
const query = fc.option(
  text.map((q) => `?${encodeURIComponent(q)}`),
  { nil: '', freq: 4 },
);
/** Mostly a route with its own method (so input reaches validation and the ledger), sometimes anything. */
const route = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(fc.constantFrom(...api_routes), id, query).map(([[m, p], i, q]) => ({
      method: m,
      template: p,
      path: p.replace('{id}', encodeURIComponent(i)) + q,
    })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(method, fc.constantFrom(...api_paths), id, query).map(([m, p, i, q]) => ({
      method: m,
      template: p,
      path: p.replace('{id}', encodeURIComponent(i)) + q,
    })),
  },
);
const path = route.map((r) => r.path);
/** Header values fetch accepts (printable ASCII) most of the time, anything now and then. */
const header_text = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 60 }) },
  { weight: 1, arbitrary: text },
);
const headers = fc.record(
  {
    authorization: fc.oneof(
      { weight: 6, arbitrary: fc.constant('Bearer sk_test_local') },
      { weight: 1, arbitrary: header_text.map((t) => `Bearer ${t}`) },
      { weight: 1, arbitrary: header_text },
    ),
    'content-type': fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8') },
      { weight: 1, arbitrary: header_text },
    ),
    'idempotency-key': header_text,
    traceparent: fc.oneof(
      header_text,
      fc.constant('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'),
    ),
  },
  { requiredKeys: [] },
);
type HttpCase = { method: string; path: string; headers: Record<string, string>; body: string | Uint8Array };
const http_request: fc.Arbitrary<HttpCase> = fc
  .tuple(route, headers)
  .chain(([r, h]) =>
    fc
      .oneof(
        { weight: 6, arbitrary: bodyFor(r.template).map((b) => JSON.stringify(b)) },
        { weight: 1, arbitrary: text },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) },
      )
      .map((b) => ({ method: r.method, path: r.path, headers: h, body: b })),
  );

/** Raw bytes on a socket: a request line and headers that fetch would refuse to send, or pure garbage. */
const raw_request = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.oneof(
          { weight: 4, arbitrary: fc.constant('POST') },
          { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
        ),
        fc.oneof({ weight: 4, arbitrary: path }, { weight: 1, arbitrary: fc.string({ maxLength: 60 }) }),
        fc.oneof(
          { weight: 6, arbitrary: fc.constant('HTTP/1.1') },
          { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2', 'HTTP/9.9', '') },
        ),
        fc.array(
          fc.tuple(
            fc.oneof(
              fc.constantFrom('Content-Type', 'Idempotency-Key', 'Transfer-Encoding', 'X-F'),
              fc.string({ maxLength: 20 }),
            ),
            fc.oneof(fc.constantFrom('application/json', 'chunked', 'k1'), fc.string({ maxLength: 60 })),
          ),
          { maxLength: 2 },
        ),
        fc.oneof(
          body.map((b) => JSON.stringify(b)),
          fc.string({ maxLength: 200 }),
        ),
        fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      )
      .map(([m, p, v, hs, b, with_length]) => {
        const lines = [`${m} ${p} ${v}`, 'Host: fuzz', 'Authorization: Bearer sk_test_local'];
        for (const [k, val] of hs) lines.push(`${k}: ${val}`);
        if (with_length) lines.push(`Content-Length: ${Buffer.byteLength(b)}`);
        return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${b}`);
      }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 600 }).map((u) => Buffer.from(u)) },
);

const ws_ops = [...OP_NAMES, 'payments.subscribe'];
const packr = new Packr({ useRecords: false });
const ws_frame = fc.oneof(
  fc
    .record(
      {
        op: fc.oneof(fc.constantFrom(...ws_ops), text),
        request_id: fc.oneof(fc.integer(), text, value),
        idempotency_key: fc.oneof(text, value),
        traceparent: text,
        body: fc.oneof(body, value),
      },
      { requiredKeys: [] },
    )
    .chain((frame) => fc.constantFrom<string | Buffer>(JSON.stringify(frame), packr.pack(frame))),
  fc.jsonValue().map((j) => JSON.stringify(j)),
  text,
  fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
);

export interface FuzzResult {
  http_sent: number;
  raw_sent: number;
  ws_sent: number;
  by_status: Record<string, number>;
  ws_frames_received: number;
  ws_closed_by_server: number;
  fetch_refused_locally: number;
  errors_5xx: string[];
  /** Requests fetch sent (valid HTTP) that got no answer: a reset connection or a hang past 10 s. */
  transport_errors: string[];
  rss_mb: { start: number; max: number; end: number };
  node_alive: boolean;
  seeds: number;
}

function rssMb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
  } catch {
    return 0;
  }
}

async function sendHttp(base: string, r: HttpCase, out: FuzzResult) {
  const has_body = r.method !== 'GET' && r.method !== 'HEAD';
  let res: Response;
  try {
    res = await fetch(`${base}${r.path}`, {
      method: r.method,
      headers: r.headers,
      ...(has_body ? { body: r.body } : {}),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    // fetch refuses some generated headers itself (TypeError before sending): not the node's doing.
    if (err instanceof TypeError && !(err as { cause?: unknown }).cause) out.fetch_refused_locally++;
    else {
      out.by_status.transport = (out.by_status.transport ?? 0) + 1;
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      out.transport_errors.push(`${r.method} ${r.path.slice(0, 80)} → ${cause}`);
    }
    return;
  }
  out.http_sent++;
  out.by_status[res.status] = (out.by_status[res.status] ?? 0) + 1;
  const text_body = await res.text().catch(() => '');
  if (res.status >= 500)
    out.errors_5xx.push(`${r.method} ${r.path.slice(0, 80)} → ${res.status} ${text_body.slice(0, 200)}`);
}

function sendRaw(port: number, bytes: Buffer, out: FuzzResult): Promise<void> {
  return new Promise((done) => {
    const socket = tcpConnect(port, '127.0.0.1');
    let reply = '';
    let finished = false;
    const finish = (timed_out = false) => {
      if (finished) return;
      finished = true;
      socket.destroy();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(reply)?.[1];
      out.raw_sent++;
      const key = status
        ? `raw ${status}`
        : timed_out
          ? 'raw no answer yet (incomplete request)'
          : 'raw closed';
      out.by_status[key] = (out.by_status[key] ?? 0) + 1;
      if (status && Number(status) >= 500)
        out.errors_5xx.push(
          `raw ${JSON.stringify(bytes.toString('latin1').slice(0, 120))} → ${reply.slice(0, 160)}`,
        );
      done();
    };
    socket.setTimeout(3_000, () => finish(true));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n\r\n') || reply.length > 4096) finish();
    });
    socket.on('error', () => finish());
    socket.on('close', () => finish());
    socket.on('connect', () => socket.write(bytes));
  });
}

async function openWs(base: string, out: FuzzResult): Promise<WebSocket> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/v1/ws`, {
    headers: { authorization: 'Bearer sk_test_local' },
  });
  ws.on('message', (data) => {
    out.ws_frames_received++;
    let status = 0;
    try {
      const frame = (
        Buffer.isBuffer(data) && data[0] !== 0x7b ? packr.unpack(data) : JSON.parse(data.toString())
      ) as { status?: number };
      status = Number(frame?.status ?? 0);
    } catch {
      return;
    }
    if (status >= 500) out.errors_5xx.push(`ws frame answered ${status}: ${data.toString().slice(0, 200)}`);
  });
  ws.on('close', () => out.ws_closed_by_server++);
  ws.on('error', () => {});
  await new Promise<void>((resolve) => {
    ws.once('open', () => resolve());
    ws.once('error', () => resolve());
  });
  return ws;
}

/** Fuzzes the node behind `slot` for duration_ms; bounded: batches of 24 inputs, one batch at a time. */
export async function fuzzGateway(slot: NodeSlot, duration_ms: number): Promise<FuzzResult> {
  const out: FuzzResult = {
    http_sent: 0,
    raw_sent: 0,
    ws_sent: 0,
    by_status: {},
    ws_frames_received: 0,
    ws_closed_by_server: 0,
    fetch_refused_locally: 0,
    errors_5xx: [],
    transport_errors: [],
    rss_mb: { start: 0, max: 0, end: 0 },
    node_alive: true,
    seeds: 0,
  };
  const pid = slot.node?.child.pid;
  out.rss_mb.start = rssMb(pid);
  out.rss_mb.max = out.rss_mb.start;
  const port = slot.port;
  let ws = await openWs(slot.base, out);
  const deadline_ms = Date.now() + duration_ms;
  const running = () => Date.now() < deadline_ms && slot.alive;
  // Three lanes, each drawing batches with its own seeds: HTTP through fetch, raw sockets (which may wait
  // up to 3 s for an answer that never comes to an incomplete request), WebSocket frames.
  const http_lane = async () => {
    for (let seed = 1; running(); seed++) {
      out.seeds++;
      await Promise.all(
        fc.sample(http_request, { seed, numRuns: 12 }).map((r) => sendHttp(slot.base, r, out)),
      );
      out.rss_mb.max = Math.max(out.rss_mb.max, rssMb(pid));
    }
  };
  const raw_lane = async () => {
    for (let seed = 1_000_000; running(); seed++) {
      out.seeds++;
      await Promise.all(fc.sample(raw_request, { seed, numRuns: 12 }).map((b) => sendRaw(port, b, out)));
    }
  };
  const ws_lane = async () => {
    for (let seed = 2_000_000; running(); seed++) {
      out.seeds++;
      if (ws.readyState !== WebSocket.OPEN) ws = await openWs(slot.base, out);
      for (const f of fc.sample(ws_frame, { seed, numRuns: 8 })) {
        if (ws.readyState !== WebSocket.OPEN) break;
        ws.send(f);
        out.ws_sent++;
      }
      await sleep(100);
    }
  };
  await Promise.all([http_lane(), raw_lane(), ws_lane()]);
  await sleep(2_500); // answers to the last frames (reply timeout 2 s)
  ws.close();
  out.rss_mb.end = rssMb(pid);
  out.node_alive =
    slot.alive &&
    (await fetch(`${slot.base}/healthz`).then(
      (r) => r.status === 200,
      () => false,
    ));
  out.errors_5xx = out.errors_5xx.slice(0, 20);
  out.transport_errors = out.transport_errors.slice(0, 20);
  return out;
}

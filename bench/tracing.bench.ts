/**
 * `npm run bench:tracing`: what the tracing hooks cost on the hot paths, in ONE run, one process, one core.
 *
 * 1. Off (no OTEL_* variable: the SDK is not loaded), each instrumented path against the same path without
 *    the hook calls (the code before tracing), alternated round by round, median of the rounds:
 *    - gateway, per request: requestTrace + commandTrace + the offset noted on the trace + endRequest,
 *      against traceFrom alone (what the gateway called before);
 *    - gateway, per produce batch of 128: resolveOffsets (each command's offset from the ack, always on:
 *      the debug log uses it) against resolving each command without a value;
 *    - stream loop, per chunk of 1,000 records with a traceparent header: traceChunk and its four calls,
 *      against nothing; the reference is the main thread's own per-chunk work in the same run (the values
 *      array, encodeOwned of the lane input, decode of the lane output);
 *    - lane output: what event_starts (always on: 4 bytes per command) adds to a chunk's BatchOutput,
 *      encoded in the lane and decoded on the main thread.
 * 2. On, for sizing the sampling ratio: the same hooks with the SDK loaded, a batch span processor and an
 *    exporter that drops what it is given (the cost of making spans, not of sending them).
 *
 * Each figure is ns per operation; "overhead" is instrumented − baseline, and its share of the reference
 * (≈ 80 µs of gateway CPU per request, BENCHMARKS.md "Gateway"; the measured per-chunk work here).
 *
 *   node --import tsx bench/tracing.bench.ts [--quick]
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Command } from '../src/domain/index.js';
import { type Queued, resolveOffsets } from '../src/gateway/commands.js';
import { randomHex } from '../src/gateway/entropy.js';
import type { TraceContext } from '../src/gateway/trace.js';
import { commandTrace, endRequest, requestTrace } from '../src/gateway/tracing.js';
import { createLogger } from '../src/log.js';
import { type BatchOutput, decode, encodeOwned } from '../src/protocol/wire.js';
import type { InRecord } from '../src/streams/kafka-port.js';
import { topicNames } from '../src/streams/topics.js';
import { traceChunk } from '../src/streams/tracing.js';
import { startTracing } from '../src/tracing.js';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 5 : 21;
const say = (line: string) => process.stdout.write(`${line}\n`);
let sink = 0; // keeps results alive

const log = createLogger('info', 'bench');
const names = topicNames('bench');
const header = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const command = {
  type: 'create_payment',
  command_id: 'cmd_0001',
  payment_id: 'pay_0000000a0001',
} as unknown as Command;

// ------------------------------------------------------------------------------------------ the paths

/** src/gateway/trace.ts's traceFrom as it was before tracing (commit 79e3071), for the baseline. */
const traceparent_pattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
function traceFromBefore(value: string) {
  const match = traceparent_pattern.exec(value.trim());
  const valid =
    match !== null &&
    match[1] !== 'ff' &&
    !/^0+$/.test(match[2]!) &&
    !/^0+$/.test(match[3]!) &&
    (match[1] !== '00' || value.trim().length === 55);
  const trace_id = valid ? match![2]! : randomHex(16);
  const flags = valid ? match![4]! : '01';
  const span_id = randomHex(8);
  return {
    traceparent: `00-${trace_id}-${span_id}-${flags}`,
    trace_id,
    parent_id: valid ? match![3]! : null,
  };
}

const started_ms = performance.now();
const ctx: { trace_id?: string; trace?: TraceContext } = {};

/** Before: the trace context, its id noted on the request, its traceparent into the envelope. */
function requestBaseline(): void {
  const trace = traceFromBefore(header);
  ctx.trace_id = trace.trace_id;
  sink += trace.traceparent.length;
}

/** Now: the same path with every hook the gateway calls per request (server.ts, ledger.ts). */
function requestInstrumented(): void {
  const trace = requestTrace(header, 'POST /v1/payments', started_ms);
  ctx.trace = trace;
  const spans = commandTrace(trace, command, names.commands, 3);
  const traceparent = spans?.traceparent ?? trace.traceparent;
  trace.command = { partition: 3, offset: 1234 };
  spans?.acked(1234);
  spans?.replied(null);
  endRequest(trace, 201);
  sink += traceparent.length;
}

const BATCH_COMMANDS = 128;
const batch: Queued[] = Array.from({ length: BATCH_COMMANDS }, (_, i) => ({
  message: { partition: i % 8, key: `k${i}`, value: Buffer.alloc(0) },
  resolve: (offset: number | null) => {
    sink += offset === null ? 0 : 1;
  },
  reject: () => {},
}));
const acks = Array.from({ length: 8 }, (_, p) => ({ topicName: 't', partition: p, baseOffset: '1000000' }));
const resolveOld = batch.map((q) => ({ ...q, resolve: () => void sink++ }));

function produceBaseline(): void {
  for (const queued of resolveOld) (queued.resolve as () => void)();
}

function produceInstrumented(): void {
  resolveOffsets(batch, acks);
}

const CHUNK = 1000;
const chunk: InRecord[] = Array.from({ length: CHUNK }, (_, i) => ({
  offset: String(1_000_000 + i),
  value: Buffer.alloc(180, i),
  headers: { traceparent: Buffer.from(header) },
}));
const output: BatchOutput = {
  events: Array.from({ length: CHUNK * 3 }, (_, i) => ({ key: `acct_${i}`, value: new Uint8Array(150) })),
  event_starts: new Uint8Array(Uint32Array.from({ length: CHUNK }, (_, i) => i * 3).buffer),
  replies: [],
  follow_ups: [],
  rejected: [],
  dirty_total: CHUNK,
};
const { event_starts: _unused, ...output_before } = output;

function chunkBaseline(): void {
  sink += chunk.length;
}

function chunkInstrumented(): void {
  const trace = traceChunk(7, chunk, { names, log });
  trace.applied(output, []);
  trace.committed(5_000_000n);
  trace.delivered(0);
  sink += chunk.length;
}

/** The main thread's own work per chunk (values, lane input, lane output): what the hooks are compared to. */
const output_bytes = encodeOwned(output);
function chunkReference(): void {
  const values = chunk.map((m) => m.value ?? Buffer.alloc(0));
  sink += encodeOwned(values).byteLength;
  sink += decode<BatchOutput>(output_bytes).events.length;
}

/** The lane output as it was, encoded in the lane and decoded on the main thread: the reference. */
function laneOutput(): void {
  sink += decode<BatchOutput>(encodeOwned(output_before)).events.length;
}

/** What event_starts adds to it, alone: one store per command, then its encode and decode. */
function eventStarts(): void {
  const starts = new Uint32Array(CHUNK);
  for (let i = 0; i < CHUNK; i++) starts[i] = i * 3;
  sink += decode<Uint8Array>(encodeOwned(new Uint8Array(starts.buffer))).length;
}

// ------------------------------------------------------------------------------------------ measuring

/** ns per call of `fn`, over `calls` calls. */
function time(fn: () => void, calls: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) fn();
  return Number(process.hrtime.bigint() - t0) / calls;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Calls of `fn` that take about `target_ms` (at least 3). */
function callsFor(fn: () => void, target_ms: number): number {
  let calls = 1;
  for (;;) {
    const ns = time(fn, calls) * calls;
    if (ns >= 2_000_000 || calls >= 1 << 24) return Math.max(3, Math.round((calls * target_ms * 1e6) / ns));
    calls *= 4;
  }
}

/**
 * Alternates baseline and instrumented each round; the medians of ns per call, and the median of the
 * per-round differences (a shared machine disturbs a round's two runs alike, not two medians alike).
 */
function pair(baseline: () => void, instrumented: () => void): [number, number, number] {
  const target_ms = quick ? 20 : 60;
  const calls_a = callsFor(baseline, target_ms);
  const calls_b = callsFor(instrumented, target_ms);
  const a: number[] = [];
  const b: number[] = [];
  const d: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    a.push(time(baseline, calls_a));
    b.push(time(instrumented, calls_b));
    d.push(b[round]! - a[round]!);
  }
  return [median(a), median(b), median(d)];
}

const f = (ns: number) => (ns >= 10_000 ? `${(ns / 1000).toFixed(1)} µs` : `${ns.toFixed(1)} ns`);
const rows: string[] = [];
function row(
  path: string,
  [baseline, instrumented, overhead]: [number, number, number],
  reference_ns: number,
  reference: string,
) {
  const share = (100 * overhead) / reference_ns;
  rows.push(
    `| ${path} | ${f(baseline)} | ${f(instrumented)} | ${f(overhead)} | ${share.toFixed(3)} % of ${reference} |`,
  );
}

function measure(label: string): void {
  rows.length = 0;
  row('gateway, per request', pair(requestBaseline, requestInstrumented), 80_000, '80 µs/request');
  const produce = pair(produceBaseline, produceInstrumented);
  row(`gateway, per produce batch of ${BATCH_COMMANDS}`, produce, 80_000 * BATCH_COMMANDS, 'its requests');
  const reference_ns = median(Array.from({ length: ROUNDS }, () => time(chunkReference, quick ? 50 : 200)));
  const work = `${f(reference_ns)} main-thread work/chunk`;
  row(`stream loop, per chunk of ${CHUNK}`, pair(chunkBaseline, chunkInstrumented), reference_ns, work);
  const lane_ns = median(Array.from({ length: ROUNDS }, () => time(laneOutput, quick ? 20 : 50)));
  const starts_ns = median(Array.from({ length: ROUNDS }, () => time(eventStarts, quick ? 2000 : 10_000)));
  const lane = `${f(lane_ns)} output encode+decode`;
  row(`lane output of ${CHUNK} commands: + event_starts`, [0, starts_ns, starts_ns], lane_ns, lane);
  say(`\n${label}\n`);
  say('| path | without the calls | with them | overhead (median of rounds) | share |');
  say('|---|---|---|---|---|');
  for (const line of rows) say(line);
}

/** ns per call of `fn` in bursts of `burst` with a turn of the event loop between (the span processor's work). */
async function timeBursts(fn: () => void, calls: number, burst: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < calls; done += burst) {
    for (let i = 0; i < burst; i++) fn();
    await new Promise((r) => setImmediate(r));
  }
  return Number(process.hrtime.bigint() - t0) / calls;
}

async function medianBursts(fn: () => void, calls: number, burst: number): Promise<number> {
  await timeBursts(fn, calls, burst);
  const ns: number[] = [];
  for (let round = 0; round < ROUNDS; round++) ns.push(await timeBursts(fn, calls, burst));
  return median(ns);
}

function chunkAllTraced(): void {
  const trace = traceChunk(7, chunk, { names, log });
  trace.applied(output, []);
  trace.committed(5_000_000n);
  trace.delivered(1); // a local reply: the fourth span
  sink += chunk.length;
}

async function measureOn(): Promise<void> {
  // Production's batch span processor; a queue that holds a whole chunk's spans (default 2048: see docs).
  process.env.OTEL_BSP_MAX_QUEUE_SIZE = '65536';
  const tracing = await startTracing({
    node_id: 'bench',
    log: createLogger('warn', 'bench'),
    exporter: { export: (_spans, done) => done({ code: 0 }), shutdown: async () => {} },
    batch: true,
  });
  const request_ns = await medianBursts(requestInstrumented, quick ? 5_000 : 20_000, 100);
  const chunk_ns = await medianBursts(chunkAllTraced, quick ? 5 : 20, 1);
  await tracing?.shutdown(1000);
  say('\nTracing ON (SDK loaded, batch span processor, every command sampled, exporter drops the spans)\n');
  say('| path | cost with tracing on | spans | per span |');
  say('|---|---|---|---|');
  say(`| gateway, per request | ${f(request_ns)} | 3 | ${f(request_ns / 3)} |`);
  say(
    `| stream loop, per traced command (chunk of ${CHUNK}, all sampled) | ${f(chunk_ns / CHUNK)} | 4 | ${f(chunk_ns / CHUNK / 4)} |`,
  );
}

async function main(): Promise<void> {
  say(
    `bench:tracing ${new Date().toISOString()} node ${process.version}, ${ROUNDS} rounds${quick ? ' (quick)' : ''}, load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  measure('Tracing OFF (no OTEL_* set, SDK not loaded)');
  await measureOn();
  say(`\n(checksum ${sink})`);
}

void main();

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { parseResponse } from '../../loadtest/http-client.js';
import { parseOptions } from '../../loadtest/options.js';
import {
  lineChart,
  ninesX,
  progressLine,
  type Report,
  renderHtml,
  summaryText,
} from '../../loadtest/report.js';
import { generatorNotes, runLoadtest } from '../../loadtest/run.js';
import { dueCount, intendedMs, makeSchedule, split } from '../../loadtest/schedule.js';
import { distribution, newHistogram, outcomeClass, recordUs, summarize } from '../../loadtest/stats.js';
import {
  drawAmount,
  outcomeKey,
  parseAmount,
  parseMix,
  rng,
  UNKNOWN_CAPTURE,
  Workload,
} from '../../loadtest/workload.js';

describe('schedule (open loop)', () => {
  it('interleaves workers so the union is evenly spaced at 1/rate', () => {
    const rate = 1000;
    const workers = 3;
    const times: number[] = [];
    for (let w = 0; w < workers; w++) {
      const s = makeSchedule(rate, workers, w, 0, 1000);
      for (let i = 0; i < s.total; i++) times.push(intendedMs(s, i));
    }
    times.sort((a, b) => a - b);
    assert.equal(times.length, 1000);
    for (let i = 1; i < times.length; i++) assert.ok(Math.abs(times[i]! - times[i - 1]! - 1) < 1e-9);
  });

  it('counts due sends from the intended times, capped at the total', () => {
    const s = makeSchedule(100, 1, 0, 1000, 2000);
    assert.equal(s.total, 100);
    assert.equal(dueCount(s, 999), 0);
    assert.equal(dueCount(s, 1000), 1);
    assert.equal(dueCount(s, 1095), 10);
    assert.equal(dueCount(s, 10_000), 100);
  });

  it('refuses a zero rate and splits integers evenly', () => {
    assert.throws(() => makeSchedule(0, 1, 0, 0, 1));
    assert.deepEqual(
      [0, 1, 2].map((i) => split(10, 3, i)),
      [4, 3, 3],
    );
  });
});

describe('stats', () => {
  it('summarises an HDR histogram in ms with 3 significant digits', () => {
    const h = newHistogram();
    for (let ms = 1; ms <= 1000; ms++) recordUs(h, ms * 1000);
    const s = summarize(h);
    assert.equal(s.count, 1000);
    assert.ok(Math.abs(s.p50_ms - 500) / 500 < 0.01, `p50 ${s.p50_ms}`);
    assert.ok(Math.abs(s.p99_ms - 990) / 990 < 0.01, `p99 ${s.p99_ms}`);
    assert.ok(Math.abs(s.p999_ms - 999) / 999 < 0.01, `p99.9 ${s.p999_ms}`);
    assert.ok(Math.abs(s.max_ms - 1000) / 1000 < 0.01);
    const d = distribution(h);
    assert.equal(d.at(-1)!.percentile, 100);
    for (let i = 1; i < d.length; i++) assert.ok(d[i]!.ms >= d[i - 1]!.ms);
  });

  it('merges worker histograms exactly (no averaging of percentiles)', () => {
    const a = newHistogram();
    const b = newHistogram();
    for (let i = 0; i < 990; i++) recordUs(a, 1000);
    for (let i = 0; i < 10; i++) recordUs(b, 500_000);
    a.add(b);
    const s = summarize(a);
    assert.equal(s.count, 1000);
    assert.ok(s.p99_ms < 2);
    assert.ok(s.p999_ms > 490);
  });

  it('classifies outcomes', () => {
    assert.equal(outcomeClass('201'), 'ok');
    assert.equal(outcomeClass('202'), 'processing');
    assert.equal(outcomeClass('402 insufficient_funds'), 'declined');
    assert.equal(outcomeClass('429 rate_limited'), 'error');
    assert.equal(outcomeClass('timeout'), 'error');
    assert.equal(
      outcomeKey(402, { error: { code: 'payment_declined', decline_code: 'velocity_exceeded' } }),
      '402 velocity_exceeded',
    );
    assert.equal(outcomeKey(0, null, 'timeout'), 'timeout');
  });
});

describe('workload', () => {
  const spec = {
    customers: ['c1', 'c2'],
    merchants: ['m1'],
    currency: 'USD',
    mix: parseMix('create=70,capture=15,refund=10,deposit=5'),
    capture_ratio: 0.5,
    amount: parseAmount('uniform:100:200'),
    idempotency_ratio: 1,
    retry_ratio: 1,
    key_prefix: 'k',
    seed: 7,
    track: true,
  };

  it('parses mixes and amount distributions and refuses nonsense', () => {
    assert.throws(() => parseMix('create=1,teleport=2'));
    assert.throws(() => parseMix('create=0'));
    assert.throws(() => parseAmount('uniform:5:1'));
    const random = rng(1);
    for (let i = 0; i < 1000; i++) {
      const u = drawAmount(parseAmount('uniform:100:200'), random);
      assert.ok(u >= 100 && u <= 200 && Number.isInteger(u));
      const l = drawAmount(parseAmount('lognormal:1000:1'), random);
      assert.ok(l >= 1 && Number.isInteger(l));
    }
  });

  it('captures authorized payments, refunds captured ones, retries with the same key, tracks statuses', () => {
    const w = new Workload(spec);
    const kinds = new Map<string, number>();
    let n = 0;
    for (let i = 0; i < 2000; i++) {
      const op = w.next();
      kinds.set(op.kind, (kinds.get(op.kind) ?? 0) + 1);
      if (op.kind === 'create') {
        const id = `pay_${n++}`;
        const manual = op.body.capture === false;
        w.onAnswer(op, 201, {
          id,
          object: 'payment',
          status: manual ? 'requires_capture' : 'succeeded',
          amount: op.body.amount,
          amount_received: manual ? 0 : op.body.amount,
        });
      } else if (op.kind === 'capture') {
        assert.match(op.path, /^\/v1\/payments\/pay_\d+\/capture$/);
        w.onAnswer(
          op,
          i % 10 === 0 ? 0 : 200,
          i % 10 === 0
            ? null
            : { id: op.path_id, object: 'payment', status: 'succeeded', amount: 150, amount_received: 150 },
        );
      } else if (op.kind === 'retry') {
        assert.ok(op.idempotency_key !== null && op.expect_id !== null);
        w.onAnswer(op, 201, { id: op.expect_id, object: 'payment', status: 'succeeded' });
      } else if (op.kind === 'deposit') {
        assert.ok(op.idempotency_key !== null);
        w.onAnswer(op, i % 2 === 0 ? 201 : 0, null);
      } else w.onAnswer(op, 201, { id: 're_1', object: 'refund' });
    }
    for (const k of ['create', 'capture', 'refund', 'deposit', 'retry'])
      assert.ok((kinds.get(k) ?? 0) > 0, k);
    assert.equal(w.idempotency_mismatches, 0);
    const statuses = new Set(w.tracked.payments.values());
    assert.ok(statuses.has('succeeded') && statuses.has(UNKNOWN_CAPTURE));
    assert.ok(w.tracked.deposited.size > 0 && w.tracked.unresolved_deposits.length > 0);
  });

  it('is deterministic for a seed', () => {
    const a = new Workload(spec);
    const b = new Workload(spec);
    for (let i = 0; i < 50; i++) assert.deepEqual(a.next(), b.next());
  });
});

describe('http parsing and options', () => {
  it('parses Content-Length and chunked answers, waits for more bytes', () => {
    const full = Buffer.from('HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1');
    const p = parseResponse(full)!;
    assert.equal(p.status, 201);
    assert.equal(p.body, '{}');
    assert.equal(full.subarray(p.consumed).toString(), 'HTTP/1.1');
    assert.equal(parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}')), null);
    const chunked = parseResponse(
      Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n'),
    )!;
    assert.equal(chunked.body, '{"a":1}');
    assert.throws(() => parseResponse(Buffer.from('SMTP nonsense\r\n\r\n')));
  });

  it('targets only loopback unless --allow-remote; open loop with --rate', () => {
    assert.throws(() => parseOptions(['--url', 'http://10.0.0.1:8080']), /allow-remote/);
    assert.equal(parseOptions(['--url', 'http://10.0.0.1:8080', '--allow-remote']).allow_remote, true);
    const o = parseOptions(['--rate', '500', '--ws']);
    assert.equal(o.mode, 'open');
    assert.equal(o.transport, 'ws');
    assert.equal(parseOptions([]).mode, 'closed');
    assert.throws(() => parseOptions(['--capture-ratio', '2']));
  });
});

function fakeReport(): Report {
  const h = newHistogram();
  for (let i = 1; i <= 100; i++) recordUs(h, i * 1000);
  return {
    tool: 'payment-node loadtest',
    version: 1,
    label: 'unit <test>',
    date: '2026-11-25T00:00:00.000Z',
    machine: { cpus: 2, node: '20', platform: 'linux x64', load_average: [1, 1, 1] },
    target: { url: 'http://127.0.0.1:1', transport: 'http' },
    run: {
      mode: 'open',
      rate_per_s: 100,
      duration_s: 3,
      warmup_s: 1,
      threads: 1,
      connections: 1,
      pipeline: null,
      timeout_ms: 1000,
      workload: {},
    },
    seeding: null,
    results: {
      sent: 100,
      completed: 100,
      ok: 99,
      declined: 0,
      processing: 0,
      errors: 1,
      timeouts: 1,
      achieved_per_s: 33,
      ok_per_s: 33,
      latency: summarize(h),
      distribution: distribution(h),
      counts: { '201': 99, timeout: 1 },
      counts_by_op: { create: 100 },
      idempotency_mismatches: 0,
    },
    generator: {
      behind_schedule: false,
      send_lag: summarize(h),
      waited_for_connection: 0,
      unsent_timeouts: 0,
      connections_opened: 1,
      event_loop_delay_p99_ms: 1,
      event_loop_delay_max_ms: 2,
      notes: [],
    },
    timeline: [0, 1, 2, 3].map((t_s) => ({
      t_s,
      sent: 33,
      completed: 33,
      errors: 0,
      p50_ms: 5,
      p99_ms: 50,
      max_ms: 90,
      warmup: t_s < 1,
    })),
    verify: null,
  };
}

describe('reports', () => {
  it('renders a self-contained HTML page with three SVG charts, escaped', () => {
    const html = renderHtml(fakeReport());
    assert.equal(html.match(/<svg /g)?.length, 3);
    assert.ok(html.includes('unit &lt;test&gt;'));
    assert.ok(!html.includes('<test>'));
    assert.ok(!/NaN|Infinity/.test(html));
    assert.match(summaryText(fakeReport()), /p99\.9/);
  });

  it('draws an empty chart without failing and places percentiles on a nines axis', () => {
    assert.match(lineChart({ title: 't', x_label: 'x', y_label: 'y', log_y: true, series: [] }), /no data/);
    assert.ok(Math.abs(ninesX(99) - 2) < 1e-9 && Math.abs(ninesX(99.9) - 3) < 1e-9);
  });

  it('says when the generator fell behind its schedule', () => {
    assert.deepEqual(generatorNotes({ mode: 'open' }, { p99_ms: 1, max_ms: 2 }, 0, 0, 1), []);
    const notes = generatorNotes({ mode: 'open' }, { p99_ms: 50, max_ms: 80 }, 3, 1, 40);
    assert.equal(notes.filter((n) => n.startsWith('BEHIND')).length, 2);
    assert.equal(notes.length, 4);
  });

  it('formats progress as a bar on a TTY and as a plain line otherwise', () => {
    const s = {
      elapsed_s: 5,
      total_s: 10,
      warmup_s: 2,
      rate_per_s: 1234,
      p99_ms: 12.3,
      errors: 0,
      in_flight: 4,
    };
    assert.match(
      progressLine(s, true, 10),
      /^\[#####\.\.\.\.\.\] 5\/10 s measure {2}1,234\/s {2}p99 12\.3 ms/,
    );
    assert.ok(!progressLine(s, false).startsWith('['));
  });
});

describe('smoke: a 3-second run against a real uWS server', () => {
  let server: ChildProcess;
  const port = 19_400 + (process.pid % 500);
  before(async () => {
    server = spawn(process.execPath, ['--import', 'tsx', 'bench/baselines/uws-hello.ts', String(port)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      server.stdout?.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`uws-hello exited ${code}`)));
    });
  });
  after(() => {
    server.kill('SIGTERM');
  });

  for (const transport of ['http', 'open'] as const)
    it(`${transport === 'open' ? 'open-loop' : 'closed-loop'} HTTP answers, percentiles and timeline`, async () => {
      const load = transport === 'open' ? ['--rate', '300'] : ['--connections', '4'];
      const o = parseOptions([
        ...['--url', `http://127.0.0.1:${port}`, '--duration', '2', '--warmup', '1', '--threads', '2'],
        ...['--no-seed', '--no-report', '--progress', 'none', '--mix', 'create=1', ...load],
      ]);
      const r = await runLoadtest(o, { log: () => {} });
      assert.equal(r.results.errors, 0, JSON.stringify(r.results.counts));
      assert.ok(r.results.completed > 0);
      assert.equal(r.results.counts['201'], r.results.completed);
      assert.ok(r.results.latency.p99_ms > 0 && r.results.latency.p99_ms >= r.results.latency.p50_ms);
      assert.ok(r.timeline.length >= 2);
      if (transport === 'open') assert.ok(Math.abs(r.results.sent - 600) <= 2, `sent ${r.results.sent}`);
    });
});

import type { Counts, LatencySummary, TimelinePoint } from './stats.js';
import type { VerifyResult } from './verify.js';

/**
 * The run's report: one JSON object (written as `report.json`), a self-contained HTML page with inline SVG
 * charts (`report.html`: latency over time, throughput over time, percentile distribution) and a plain
 * text summary for the terminal. Pure functions of the report object.
 */
export interface Report {
  tool: 'payment-node loadtest';
  version: 1;
  label: string;
  date: string;
  machine: { cpus: number; node: string; platform: string; load_average: number[] };
  target: { url: string; transport: 'http' | 'ws' };
  run: {
    mode: 'open' | 'closed';
    rate_per_s: number | null;
    duration_s: number;
    warmup_s: number;
    threads: number;
    connections: number;
    pipeline: number | null;
    timeout_ms: number;
    workload: Record<string, unknown>;
  };
  seeding: { accounts: number; deposits: number; elapsed_ms: number } | null;
  results: {
    sent: number;
    completed: number;
    ok: number;
    declined: number;
    processing: number;
    errors: number;
    timeouts: number;
    achieved_per_s: number;
    ok_per_s: number;
    latency: LatencySummary;
    distribution: Array<{ percentile: number; ms: number }>;
    counts: Counts;
    counts_by_op: Record<string, number>;
    idempotency_mismatches: number;
  };
  generator: {
    behind_schedule: boolean;
    send_lag: LatencySummary | null;
    waited_for_connection: number;
    unsent_timeouts: number;
    connections_opened: number;
    event_loop_delay_p99_ms: number;
    event_loop_delay_max_ms: number;
    notes: string[];
  };
  timeline: TimelinePoint[];
  verify: VerifyResult | null;
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export function summaryText(r: Report): string {
  const res = r.results;
  const l = res.latency;
  const lines = [
    `${r.label}: ${r.run.mode}-loop ${r.target.transport.toUpperCase()} ${r.target.url}` +
      (r.run.rate_per_s !== null
        ? ` at ${fmt(r.run.rate_per_s)}/s`
        : ` with ${r.run.connections} connections`) +
      (r.run.pipeline !== null ? ` × ${r.run.pipeline} pipelined` : '') +
      `, ${r.run.duration_s} s (+${r.run.warmup_s} s warm-up), ${r.run.threads} generator threads`,
    `  throughput: ${fmt(res.achieved_per_s)} answers/s (${fmt(res.ok_per_s)}/s 2xx or declined); ` +
      `sent ${fmt(res.sent)}, ok ${fmt(res.ok)}, declined ${fmt(res.declined)}, 202 processing ${fmt(res.processing)}, ` +
      `errors ${fmt(res.errors)} (timeouts ${fmt(res.timeouts)})`,
    `  latency ms${r.run.mode === 'open' ? ' (from the scheduled send time)' : ''}: p50 ${fmt(l.p50_ms, 2)}  ` +
      `p90 ${fmt(l.p90_ms, 2)}  p99 ${fmt(l.p99_ms, 2)}  p99.9 ${fmt(l.p999_ms, 2)}  max ${fmt(l.max_ms, 2)}  ` +
      `(mean ${fmt(l.mean_ms, 2)}, n ${fmt(l.count)})`,
    `  outcomes: ${Object.entries(res.counts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k}: ${fmt(n)}`)
      .join(', ')}`,
  ];
  if (res.idempotency_mismatches > 0)
    lines.push(`  IDEMPOTENCY: ${res.idempotency_mismatches} retries answered with another payment id`);
  const g = r.generator;
  if (g.send_lag)
    lines.push(
      `  generator: send lag p99 ${fmt(g.send_lag.p99_ms, 2)} ms, max ${fmt(g.send_lag.max_ms, 2)} ms; ` +
        `event loop delay p99 ${fmt(g.event_loop_delay_p99_ms, 1)} ms; ${g.connections_opened} connections opened`,
    );
  for (const note of g.notes) lines.push(`  NOTE: ${note}`);
  const v = r.verify;
  if (v)
    lines.push(
      `  verify ${v.ok ? 'PASSED' : 'FAILED'}: sum of ${v.accounts_checked} balances ${fmt(v.sum_posted)} vs deposits ` +
        `${fmt(v.sum_expected)} (${v.sum_ok ? 'equal' : 'DIFFERENT'}, ${v.sum_passes} passes); ${v.payments_checked} of ` +
        `${fmt(v.payments_tracked)} payments read back: ${v.status_mismatches} status mismatches, ` +
        `${v.payments_not_found} not found; negative available ${v.negative_available}` +
        (v.events ? `; events topic: ${String(v.events.violations_total)} violations` : ''),
      ...v.problems.map((p) => `    ${p}`),
    );
  return lines.join('\n');
}

// ---------------------------------------------------------------- SVG

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
}

interface ChartSpec {
  title: string;
  x_label: string;
  y_label: string;
  series: Series[];
  log_y: boolean;
  /** Tick labels for x (value → text); default: numbers. */
  x_ticks?: Array<[number, string]>;
  shade_until_x?: number;
}

const W = 760;
const H = 300;
const M = { left: 64, right: 34, top: 28, bottom: 44 };

function niceTicks(min: number, max: number, count: number): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9 && ticks.length < 50; v += step) ticks.push(v);
  return ticks;
}

/** A line chart as an SVG string; log y uses decades. */
export function lineChart(spec: ChartSpec): string {
  const all = spec.series.flatMap((s) => s.points);
  if (all.length === 0)
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="60"><text x="10" y="30">${esc(spec.title)}: no data</text></svg>`;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]).filter((y) => (spec.log_y ? y > 0 : true));
  const x_min = Math.min(...xs);
  const x_max = Math.max(...xs) === x_min ? x_min + 1 : Math.max(...xs);
  let y_min = spec.log_y ? 10 ** Math.floor(Math.log10(Math.max(1e-3, Math.min(...ys)))) : 0;
  let y_max = spec.log_y
    ? 10 ** Math.ceil(Math.log10(Math.max(...ys, y_min * 10)))
    : Math.max(...ys, 1) * 1.05;
  if (y_max <= y_min) y_max = y_min * 10;
  if (!spec.log_y) y_min = 0;
  const fy = (y: number) => (spec.log_y ? Math.log10(Math.max(y, y_min)) : y);
  const px = (x: number) => M.left + ((x - x_min) / (x_max - x_min)) * (W - M.left - M.right);
  const py = (y: number) =>
    H - M.bottom - ((fy(y) - fy(y_min)) / (fy(y_max) - fy(y_min))) * (H - M.top - M.bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${esc(spec.title)}</text>`,
  ];
  if (spec.shade_until_x !== undefined && spec.shade_until_x > x_min)
    parts.push(
      `<rect x="${px(x_min)}" y="${M.top}" width="${px(Math.min(spec.shade_until_x, x_max)) - px(x_min)}" height="${H - M.top - M.bottom}" fill="#eee"/>`,
      `<text x="${px(x_min) + 4}" y="${H - M.bottom - 6}" fill="#888">warm-up</text>`,
    );
  const y_ticks = spec.log_y
    ? Array.from({ length: Math.round(Math.log10(y_max / y_min)) + 1 }, (_, i) => y_min * 10 ** i)
    : niceTicks(0, y_max, 5);
  for (const y of y_ticks)
    parts.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/>`,
      `<text x="${M.left - 6}" y="${py(y) + 4}" text-anchor="end">${fmt(y, y > 0 && y < 1 ? 3 : 0)}</text>`,
    );
  const x_ticks = spec.x_ticks ?? niceTicks(x_min, x_max, 8).map((x) => [x, fmt(x)] as [number, string]);
  for (const [x, label] of x_ticks)
    parts.push(
      `<line x1="${px(x)}" x2="${px(x)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#eee"/>`,
      `<text x="${px(x)}" y="${H - M.bottom + 14}" text-anchor="middle">${esc(label)}</text>`,
    );
  parts.push(
    `<text x="${W / 2}" y="${H - 8}" text-anchor="middle">${esc(spec.x_label)}</text>`,
    `<text transform="translate(14 ${H / 2}) rotate(-90)" text-anchor="middle">${esc(spec.y_label)}</text>`,
    `<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#999"/>`,
  );
  spec.series.forEach((s, i) => {
    const d = s.points
      .filter((p) => !spec.log_y || p[1] > 0)
      .map((p, j) => `${j === 0 ? 'M' : 'L'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`)
      .join('');
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"/>`);
    parts.push(
      `<rect x="${M.left + 8 + i * 110}" y="${M.top + 4}" width="10" height="10" fill="${s.color}"/>`,
      `<text x="${M.left + 22 + i * 110}" y="${M.top + 13}">${esc(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** x position of percentile p on the "nines" axis: log10(1 / (1 − p/100)), max at 6 nines. */
export function ninesX(p: number): number {
  return Math.log10(1 / Math.max(1e-6, 1 - p / 100));
}

export function charts(r: Report): string[] {
  const t = r.timeline;
  const warm = r.run.warmup_s;
  return [
    lineChart({
      title: `Latency over time (ms, per second of completion${r.run.mode === 'open' ? ', from scheduled send' : ''})`,
      x_label: 'seconds since start',
      y_label: 'ms (log)',
      log_y: true,
      shade_until_x: warm,
      series: [
        { name: 'p50', color: '#1f77b4', points: t.map((p) => [p.t_s, p.p50_ms]) },
        { name: 'p99', color: '#ff7f0e', points: t.map((p) => [p.t_s, p.p99_ms]) },
        { name: 'max', color: '#d62728', points: t.map((p) => [p.t_s, p.max_ms]) },
      ],
    }),
    lineChart({
      title: 'Throughput over time (per second)',
      x_label: 'seconds since start',
      y_label: 'requests/s',
      log_y: false,
      shade_until_x: warm,
      series: [
        { name: 'sent', color: '#7f7f7f', points: t.map((p) => [p.t_s, p.sent]) },
        { name: 'answered', color: '#2ca02c', points: t.map((p) => [p.t_s, p.completed]) },
        { name: 'errors', color: '#d62728', points: t.map((p) => [p.t_s, p.errors]) },
      ],
    }),
    lineChart({
      title: 'Latency by percentile (measured period)',
      x_label: 'percentile',
      y_label: 'ms (log)',
      log_y: true,
      x_ticks: [0, 90, 99, 99.9, 99.99, 99.999].map((p) => [ninesX(p), p === 0 ? '0%' : `${p}%`]),
      series: [
        {
          name: 'latency',
          color: '#9467bd',
          points: r.results.distribution
            .filter((d) => d.percentile < 100)
            .map((d) => [ninesX(d.percentile), d.ms]),
        },
      ],
    }),
  ];
}

export function renderHtml(r: Report): string {
  const res = r.results;
  const row = (k: string, v: string) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`;
  const l = res.latency;
  const summary = [
    row('target', `${r.target.transport.toUpperCase()} ${r.target.url}`),
    row(
      'mode',
      r.run.mode === 'open'
        ? `open loop at ${fmt(r.run.rate_per_s ?? 0)}/s`
        : `closed loop, ${r.run.connections} connections`,
    ),
    row(
      'duration',
      `${r.run.duration_s} s + ${r.run.warmup_s} s warm-up, ${r.run.threads} generator threads`,
    ),
    row('answers/s', `${fmt(res.achieved_per_s)} (2xx or declined: ${fmt(res.ok_per_s)})`),
    row(
      'latency ms',
      `p50 ${l.p50_ms} · p90 ${l.p90_ms} · p99 ${l.p99_ms} · p99.9 ${l.p999_ms} · max ${l.max_ms}`,
    ),
    row('errors', `${fmt(res.errors)} (timeouts ${fmt(res.timeouts)})`),
    row(
      'machine',
      `${r.machine.cpus} cpus, Node ${r.machine.node}, load ${r.machine.load_average.map((x) => x.toFixed(2)).join(' ')}`,
    ),
    row('date', r.date),
  ].join('\n');
  const counts = Object.entries(res.counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => row(k, fmt(n)))
    .join('\n');
  const notes = r.generator.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('\n');
  const verify = r.verify
    ? `<h2>Verify: ${r.verify.ok ? 'passed' : 'FAILED'}</h2><pre>${esc(JSON.stringify(r.verify, null, 2))}</pre>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(r.label)} — loadtest report</title>
<style>body{font-family:sans-serif;max-width:800px;margin:24px auto;color:#222}table{border-collapse:collapse}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}th{font-weight:600}
.note{background:#fff4e0;padding:6px 10px;border-left:3px solid #f0a000}pre{background:#f6f6f6;padding:8px;overflow:auto}</style>
</head><body>
<h1>${esc(r.label)}</h1>
<table>${summary}</table>
${notes}
${charts(r).join('\n')}
<h2>Outcomes (measured period)</h2>
<table>${counts}</table>
${verify}
<details><summary>Full report (JSON)</summary><pre>${esc(JSON.stringify({ ...r, timeline: `${r.timeline.length} points` }, null, 2))}</pre></details>
</body></html>
`;
}

// ---------------------------------------------------------------- progress

export interface ProgressState {
  elapsed_s: number;
  total_s: number;
  warmup_s: number;
  rate_per_s: number;
  p99_ms: number;
  errors: number;
  in_flight: number;
}

/** One progress line: a bar on a TTY (rewritten in place), a plain line otherwise. */
export function progressLine(s: ProgressState, tty: boolean, width = 30): string {
  const phase = s.elapsed_s < s.warmup_s ? 'warm-up' : 'measure';
  const text =
    `${fmt(s.elapsed_s)}/${fmt(s.total_s)} s ${phase}  ${fmt(s.rate_per_s)}/s  p99 ${fmt(s.p99_ms, 1)} ms  ` +
    `errors ${fmt(s.errors)}  in flight ${fmt(s.in_flight)}`;
  if (!tty) return text;
  const done = Math.max(0, Math.min(width, Math.round((s.elapsed_s / Math.max(1, s.total_s)) * width)));
  return `[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${text}`;
}

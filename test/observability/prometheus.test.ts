import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  call,
  cleanup,
  freePort,
  type NodeProcess,
  startNode,
  stopNode,
  uniqueName,
} from '../integration/helpers.js';
import { exposedNames, metricNames } from './promql.js';
import { alerts_file, dashboard_file, loadRules, prometheusBinaries, runbooks_dir } from './rules.js';

/**
 * The dashboard and the rules against a REAL Prometheus (Debian's, on a free port, scraping every second)
 * scraping a real node (real Kafka + Redis) under a little load: every panel target, every variable query
 * and every rule expression must parse and evaluate through /api/v1/query, the panels must show data, the
 * rules must evaluate without error, and every metric name they read must exist in the node's /metrics (a
 * renamed metric fails here).
 */
const PAYMENTS = 48;
/** Panels whose series only exist once something rare happened (a 429, a refused WebSocket frame). */
const EVENT_DRIVEN_PANELS = new Set(['Refused before running']);
/** The brief's core panels, named so that a renamed or emptied one fails by name. */
const CORE_PANELS = [
  'Throughput by route',
  'Latency percentiles by route',
  'Consumer lag per partition',
  'Transaction commit duration',
  'Transaction size (commands per batch)',
  'Checkpoint age',
  'Restore progress',
];
/** Grafana's variables, replaced as Grafana would with "All" selected and a 1 s scrape interval. */
const GRAFANA_VALUES: [string, string][] = [
  ['$__rate_interval', '30s'],
  ['$__interval', '5s'],
  ['$__range', '5m'],
  ['$job', 'payment-node'],
  ['$instance', '.+'],
  ['$route', '.+'],
  ['$partition', '.+'],
];
/** Series Prometheus makes itself for every target. */
const SYNTHESIZED = new Set(['up']);

interface Dashboard {
  schemaVersion: number;
  templating: { list: { type: string; name: string; query: unknown }[] };
  panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string }[] }[];
}
type QueryResult = { status: string; error?: string; data?: { result: unknown[] } };

const dashboard = JSON.parse(readFileSync(dashboard_file, 'utf8')) as Dashboard;
const rules = loadRules();
const panels = dashboard.panels.filter((p) => p.type !== 'row');
/** The PromQL the runbooks tell operators to run (`promql '<expr>'`, helper in docs/runbooks/README.md). */
const runbook_queries = readdirSync(runbooks_dir)
  .filter((f) => f.endsWith('.md'))
  .flatMap((page) =>
    [...readFileSync(`${runbooks_dir}${page}`, 'utf8').matchAll(/promql '([^']+)'/g)].map((m) => ({
      page,
      expr: m[1]!,
    })),
  );

describe('dashboard and rules on a real Prometheus scraping a node under load', { timeout: 180_000 }, () => {
  const topic_prefix = uniqueName('it_obs');
  const redis_prefix = `test:${topic_prefix}:`;
  let node: NodeProcess | undefined;
  let prom: PrometheusServer | undefined;

  before(async () => {
    const bin = prometheusBinaries();
    node = await startNode({
      TOPIC_PREFIX: topic_prefix,
      REDIS_KEY_PREFIX: redis_prefix,
      PARTITIONS: '4',
      LANES: '1',
      NODE_ID: 'it-obs',
      CHECKPOINT_INTERVAL_MS: '200',
      RISK_VELOCITY_COUNT_MAX: '10000',
    });
    prom = await startPrometheus(bin.prometheus, new URL(node.base).host);
    await waitFor(
      async () => (await prom!.query('up{job="payment-node"} == 1')).length > 0,
      'a first scrape',
    );
    await driveLoad(node);
    await waitFor(
      async () => (await Promise.all(CORE_PANELS.map((t) => panelSeries(prom!, t)))).every((n) => n > 0),
      'every core panel to show data',
    );
  });

  after(async () => {
    await prom?.stop();
    if (node) await stopNode(node, 'SIGKILL');
    await cleanup(topic_prefix, redis_prefix);
  });

  it('the dashboard is a Grafana dashboard with a Prometheus datasource variable on every panel', () => {
    assert.ok(dashboard.schemaVersion >= 36);
    const ds = dashboard.templating.list.find((v) => v.type === 'datasource');
    assert.deepEqual([ds?.name, ds?.query], ['datasource', 'prometheus']);
    for (const panel of panels) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template
      assert.equal(panel.datasource?.uid, '${datasource}', panel.title);
      assert.ok((panel.targets ?? []).length > 0, `${panel.title}: no target`);
    }
  });

  it('every panel target evaluates, and every panel but event-driven ones shows series', async () => {
    for (const panel of panels) {
      let series = 0;
      for (const target of panel.targets ?? []) {
        const expr = grafanaExpr(target.expr);
        series += (await prom!.query(expr)).length;
      }
      if (!EVENT_DRIVEN_PANELS.has(panel.title))
        assert.ok(series > 0, `panel "${panel.title}" shows nothing`);
    }
    for (const title of CORE_PANELS)
      assert.ok(
        panels.some((p) => p.title === title),
        `no panel ${title}`,
      );
  });

  it("the node's own gauges: ready, its 4 partitions RUNNING, lag and checkpoint age reported", async () => {
    const value = async (expr: string) =>
      ((await prom!.query(expr)) as { value: [number, string] }[]).map((s) => Number(s.value[1]));
    assert.deepEqual(await value('payment_node_ready{job="payment-node"}'), [1]);
    assert.deepEqual(await value('sum(stream_tasks{job="payment-node", state="RUNNING"})'), [4]);
    assert.deepEqual(await value('sum(stream_tasks{job="payment-node", state!="RUNNING"})'), [0]);
    assert.ok((await value('count(consumer_lag_records{job="payment-node"})'))[0]! >= 1);
    assert.ok((await value('checkpoint_age_seconds{job="payment-node"}'))[0]! < 60);
    assert.ok(
      (await value('sum(vault_operations_total{job="payment-node", op="store", result="ok"})'))[0]! >= 1,
    );
  });

  it("the dashboard's variable queries find the node, its routes and its partitions", async () => {
    for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
      const definition = (variable.query as { query: string }).query;
      const selector = /^label_values\((.+), *([a-z_]+)\)$/.exec(definition);
      assert.ok(selector, `${variable.name}: ${definition}`);
      const found = (await prom!.query(grafanaExpr(selector[1]!))) as { metric: Record<string, string> }[];
      assert.ok(
        found.some((s) => s.metric[selector[2]!] !== undefined),
        `${variable.name}: no ${selector[2]} values`,
      );
    }
  });

  it('every alert and recording expression evaluates; recording rules return series', async () => {
    for (const rule of rules) {
      const series = await prom!.query(rule.expr);
      if (rule.record) assert.ok(series.length > 0, `recording rule ${rule.record} returns nothing`);
    }
  });

  it('Prometheus loaded alerts.yml and evaluates every rule without error', async () => {
    const groups = await prom!.ruleGroups();
    assert.equal(groups.flatMap((g) => g.rules).length, rules.length, 'every rule is loaded');
    for (const rule of groups.flatMap((g) => g.rules)) {
      assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError ?? ''}`);
    }
  });

  it("every runbook's PromQL evaluates", async () => {
    assert.ok(runbook_queries.length >= 20, "the runbooks give their PromQL as promql '…'");
    for (const { page, expr } of runbook_queries) {
      await assert.doesNotReject(prom!.query(expr), `docs/runbooks/${page}: ${expr}`);
    }
  });

  it('every metric the rules, the dashboard and the runbooks read is exported by the node', async () => {
    const exposed = exposedNames(await (await fetch(`${node!.base}/metrics`)).text());
    const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
    const read = new Set<string>();
    for (const expr of [
      ...rules.map((r) => r.expr),
      ...panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...runbook_queries.map((q) => q.expr),
    ])
      for (const name of metricNames(expr)) read.add(name);
    for (const must of [
      'consumer_lag_records',
      'http_request_duration_seconds_bucket',
      'vault_operations_total',
    ])
      assert.ok(read.has(must), `the name extractor missed ${must}`);
    const missing = [...read].filter((n) => !recorded.has(n) && !SYNTHESIZED.has(n) && !exposed.has(n));
    assert.deepEqual(
      missing,
      [],
      'names read by alerts.yml, dashboard.json or a runbook that the node does not export',
    );
  });

  it('the metric-name extractor reads names, not functions, labels, keywords or durations', () => {
    const expr =
      'sum by (job) (rate(foo_total{a="b", c=~"x|y"}[5m] offset 1m)) / on (job) group_left bar:baz:rate5m > 1e3 ' +
      'and absent(up{job="x"}) or label_replace(qux, "d", "$1", "e", "(.+)")';
    assert.deepEqual([...metricNames(expr)].sort(), ['bar:baz:rate5m', 'foo_total', 'qux', 'up']);
  });
});

function grafanaExpr(expr: string): string {
  let out = expr;
  for (const [name, value] of GRAFANA_VALUES)
    out = out.replaceAll(`\${${name.slice(1)}}`, value).replaceAll(name, value);
  assert.doesNotMatch(out, /\$[a-z_]/i, `a Grafana variable left in ${out}`);
  return out;
}

async function panelSeries(prom: PrometheusServer, title: string): Promise<number> {
  const panel = panels.find((p) => p.title === title);
  if (!panel) return 0;
  let series = 0;
  for (const target of panel.targets ?? []) series += (await prom.query(grafanaExpr(target.expr))).length;
  return series;
}

/** A few dozen payments over HTTP, a token (vault store), reads and a 404: every route family moves. */
async function driveLoad(node: NodeProcess): Promise<void> {
  for (const [id, kind] of [
    ['alice', 'customer'],
    ['bob', 'customer'],
    ['shop', 'merchant'],
  ]) {
    const res = await call(node, 'POST', '/v1/accounts', { id, currency: 'USD', kind });
    assert.equal(res.status, 201, JSON.stringify(res.body));
  }
  for (const account of ['alice', 'bob'])
    await call(node, 'POST', '/v1/deposits', { account, amount: 1_000_000, currency: 'USD' });
  const card = { number: '4242424242424242', exp_month: 12, exp_year: 2099, cvc: '123' };
  const token = await call(node, 'POST', '/v1/tokens', { account: 'alice', card });
  assert.equal(token.status, 201, JSON.stringify(token.body));
  for (let round = 0; round < PAYMENTS / 8; round++) {
    const paid = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        call(node, 'POST', '/v1/payments', {
          amount: 100 + i,
          currency: 'USD',
          source: i === 0 ? token.body.id : i % 2 ? 'alice' : 'bob',
          destination: 'shop',
        }),
      ),
    );
    for (const res of paid) assert.equal(res.status, 201, JSON.stringify(res.body));
    await call(node, 'GET', `/v1/payments/${paid[0]!.body.id}`);
  }
  assert.equal((await call(node, 'GET', '/v1/accounts/nobody')).status, 404);
}

interface PrometheusServer {
  query(expr: string): Promise<unknown[]>;
  ruleGroups(): Promise<{ rules: { name: string; health: string; lastError?: string }[] }[]>;
  stop(): Promise<void>;
}

/** Prometheus on a free port with a temporary data dir, scraping `target` every second, with alerts.yml. */
async function startPrometheus(binary: string, target: string): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'prometheus-'));
  const port = await freePort();
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [alerts_file],
      scrape_configs: [{ job_name: 'payment-node', static_configs: [{ targets: [target] }] }],
    }),
  );
  const child = spawn(
    binary,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const output: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => output.length < 200 && output.push(chunk.toString()));
  const base = `http://127.0.0.1:${port}`;
  const server = prometheusClient(base, child, dir);
  try {
    await waitFor(
      async () => (await fetch(`${base}/-/ready`).catch(() => null))?.status === 200,
      'Prometheus',
    );
  } catch (err) {
    await server.stop();
    throw new Error(`${(err as Error).message}\n${output.join('')}`);
  }
  return server;
}

function prometheusClient(base: string, child: ChildProcess, dir: string): PrometheusServer {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    async query(expr) {
      const res = await fetch(`${base}/api/v1/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ query: expr }),
      });
      const body = (await res.json()) as QueryResult;
      assert.equal(body.status, 'success', `${expr}\n→ ${body.error}`);
      return body.data?.result ?? [];
    },
    async ruleGroups() {
      const body = (await (await fetch(`${base}/api/v1/rules`)).json()) as {
        data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
      };
      return body.data.groups;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitFor(check: () => Promise<boolean>, what: string, timeout_ms = 30_000): Promise<void> {
  const deadline_ms = Date.now() + timeout_ms;
  while (Date.now() < deadline_ms) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
}

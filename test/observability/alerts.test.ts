import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'yaml';
import {
  alerts_file,
  alerts_test_file,
  loadRules,
  type PrometheusBinaries,
  prometheusBinaries,
  runbooks_dir,
} from './rules.js';

/**
 * deploy/observability/alerts.yml: valid for promtool, its unit tests (alerts.test.yml) pass and cover
 * every alert firing and not firing, and every alert names a runbook page that exists.
 */
const runbook_url = /^https:\/\/[^/]+\/.+\/docs\/runbooks\/([a-z0-9-]+\.md)$/;

interface AlertRuleTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: unknown[] | null;
}

describe('Prometheus alert rules (promtool)', { timeout: 120_000 }, () => {
  let bin: PrometheusBinaries;
  const alerts = loadRules().filter((rule) => rule.alert !== undefined);

  before(() => {
    bin = prometheusBinaries();
  });

  it('pass `promtool check rules`', () => {
    const result = promtool(bin, ['check', 'rules', alerts_file]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, new RegExp(`SUCCESS: ${loadRules().length} rules found`));
  });

  it('pass their unit tests (`promtool test rules alerts.test.yml`)', () => {
    const result = promtool(bin, ['test', 'rules', alerts_test_file]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /SUCCESS/);
  });

  it('unit tests fail when a rule is wrong (a threshold raised, 4xx counted as errors)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'alerts-'));
    try {
      copyFileSync(alerts_test_file, join(dir, 'alerts.test.yml'));
      for (const [from, to] of [
        ['p95_rate5m > 0.15', 'p95_rate5m > 0.2'],
        ['status=~"5.."', 'status=~"[45].."'],
      ] as const) {
        const text = readFileSync(alerts_file, 'utf8');
        assert.ok(text.includes(from), from);
        writeFileSync(join(dir, 'alerts.yml'), text.replaceAll(from, to));
        const result = promtool(bin, ['test', 'rules', join(dir, 'alerts.test.yml')]);
        assert.notEqual(result.status, 0, `promtool test passed with ${to}`);
        assert.match(result.output, /FAILED/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('cover every alert both firing and not firing', () => {
    const doc = parse(readFileSync(alerts_test_file, 'utf8')) as {
      tests: { alert_rule_test?: AlertRuleTest[] }[];
    };
    const cases = doc.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const { alert } of alerts) {
      const of_alert = cases.filter((c) => c.alertname === alert);
      assert.ok(
        of_alert.some((c) => (c.exp_alerts ?? []).length > 0),
        `${alert}: no case where it fires`,
      );
      assert.ok(
        of_alert.some((c) => (c.exp_alerts ?? []).length === 0),
        `${alert}: no case where it stays silent`,
      );
    }
    const names = new Set(alerts.map((a) => a.alert));
    for (const c of cases) assert.ok(names.has(c.alertname), `alerts.test.yml tests unknown ${c.alertname}`);
  });

  it('give every alert a severity, a for: duration, a summary, a description and a runbook', () => {
    assert.ok(alerts.length >= 9, 'the brief asks for at least nine signals');
    for (const rule of alerts) {
      assert.match(rule.labels?.severity ?? '', /^(critical|warning)$/, `${rule.alert}: severity`);
      assert.match(rule.for ?? '', /^\d+[smh]$/, `${rule.alert}: for`);
      assert.ok(rule.annotations?.summary, `${rule.alert}: summary`);
      assert.ok(rule.annotations?.description, `${rule.alert}: description`);
    }
  });

  it("name an existing docs/runbooks/ page in every alert's runbook_url, and index every page", () => {
    const index = readFileSync(join(runbooks_dir, 'README.md'), 'utf8');
    for (const rule of alerts) {
      const match = runbook_url.exec(rule.annotations?.runbook_url ?? '');
      assert.ok(match, `${rule.alert}: runbook_url ${rule.annotations?.runbook_url}`);
      const page = match[1]!;
      assert.ok(existsSync(join(runbooks_dir, page)), `${rule.alert}: docs/runbooks/${page} does not exist`);
      const text = readFileSync(join(runbooks_dir, page), 'utf8');
      assert.ok(text.includes(rule.alert!), `docs/runbooks/${page} does not name ${rule.alert}`);
    }
    for (const page of readdirSync(runbooks_dir).filter((f) => f.endsWith('.md') && f !== 'README.md'))
      assert.ok(index.includes(`(${page})`), `docs/runbooks/README.md does not link ${page}`);
  });
});

function promtool(bin: PrometheusBinaries, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(bin.promtool, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

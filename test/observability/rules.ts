import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

/** Files and shapes the observability tests share (deploy/observability/, docs/runbooks/). */
export const repo_root = fileURLToPath(new URL('../../', import.meta.url));
export const observability_dir = `${repo_root}deploy/observability/`;
export const alerts_file = `${observability_dir}alerts.yml`;
export const alerts_test_file = `${observability_dir}alerts.test.yml`;
export const dashboard_file = `${observability_dir}dashboard.json`;
export const runbooks_dir = `${repo_root}docs/runbooks/`;

export interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function loadRules(file = alerts_file): Rule[] {
  const doc = parse(readFileSync(file, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
  return doc.groups.flatMap((group) => group.rules);
}

export interface PrometheusBinaries {
  prometheus: string;
  promtool: string;
  version: string;
}

/** scripts/prometheus.mjs: finds Debian's prometheus package, installing it when missing (as root). */
export function prometheusBinaries(): PrometheusBinaries {
  const result = spawnSync(process.execPath, [`${repo_root}scripts/prometheus.mjs`], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 600_000,
  });
  if (result.status !== 0) throw new Error(`scripts/prometheus.mjs failed (exit ${result.status})`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as PrometheusBinaries;
}

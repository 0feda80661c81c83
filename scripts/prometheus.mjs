// Finds `prometheus` and `promtool` (Debian's `prometheus` package), installing the package when they are
// missing, as tools/kafka/ fetches the broker's jars: idempotent, and safe when tests call it in parallel.
//
//   node scripts/prometheus.mjs            install if missing, print {"prometheus", "promtool", "version"}
//   PROMETHEUS_BIN=… PROMTOOL_BIN=…        use these binaries instead (a machine without apt, a newer release)
//
// The package must not leave a system Prometheus running on :9090 (it would collide with an operator's and
// it is not ours to run): while apt installs, a policy-rc.d that refuses service starts is put in place when
// none exists, and a service the package enabled anyway is stopped and disabled afterwards.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const cache_dir = fileURLToPath(new URL('../.cache/prometheus/', import.meta.url));
const lock_file = `${cache_dir}install.lock`;
const policy_rc_d = '/usr/sbin/policy-rc.d';
const APT_LOCK_WAIT_S = 300;

/** Returns the paths of both binaries and promtool's version line; throws with the fix when it cannot. */
export function ensurePrometheus() {
  const found = locate();
  if (found) return found;
  if (process.platform !== 'linux' || !existsSync('/usr/bin/apt-get'))
    throw new Error('prometheus/promtool not found and no apt-get here: set PROMETHEUS_BIN and PROMTOOL_BIN');
  if (process.getuid?.() !== 0)
    throw new Error(
      'prometheus/promtool not found: run `sudo node scripts/prometheus.mjs` once (apt-get install prometheus)',
    );
  mkdirSync(cache_dir, { recursive: true });
  // One installer at a time (two test files may ask at once); the second finds the binaries on re-check.
  const result = spawnSync(
    'flock',
    ['-w', String(APT_LOCK_WAIT_S), lock_file, process.execPath, self, 'install'],
    {
      stdio: ['ignore', 2, 2], // stdout carries only the JSON answer
    },
  );
  if (result.status !== 0)
    throw new Error(`installing Debian's prometheus package failed (exit ${result.status})`);
  const installed = locate();
  if (!installed)
    throw new Error('apt-get installed prometheus but promtool/prometheus are still not on PATH');
  return installed;
}

function locate() {
  const prometheus = process.env.PROMETHEUS_BIN || which('prometheus');
  const promtool = process.env.PROMTOOL_BIN || which('promtool');
  if (!prometheus || !promtool || !existsSync(prometheus) || !existsSync(promtool)) return null;
  const version = spawnSync(promtool, ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) return null;
  return { prometheus, promtool, version: version.stdout.split('\n')[0] ?? '' };
}

function which(name) {
  const result = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : null;
}

/** Runs under the lock. */
function install() {
  if (locate()) return 0;
  const own_policy = !existsSync(policy_rc_d);
  if (own_policy)
    writeFileSync(policy_rc_d, '#!/bin/sh\n# scripts/prometheus.mjs: no service starts\nexit 101\n', {
      mode: 0o755,
    });
  try {
    const apt = (...args) =>
      spawnSync('apt-get', ['-o', `DPkg::Lock::Timeout=${APT_LOCK_WAIT_S}`, ...args], {
        stdio: ['ignore', 2, 2],
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      }).status;
    process.stderr.write("installing Debian's prometheus package (promtool and the server), once ...\n");
    // --no-install-recommends: the recommended node exporter would be one more service on the machine.
    const args = ['install', '-y', '--no-install-recommends', 'prometheus'];
    if (apt(...args) !== 0 && (apt('update') !== 0 || apt(...args) !== 0)) return 1;
  } finally {
    if (own_policy) rmSync(policy_rc_d, { force: true });
  }
  stopSystemService();
  return 0;
}

/** The package enables `prometheus.service` (systemd) or its init script: none of it may stay running. */
function stopSystemService() {
  const quiet = { stdio: 'ignore' };
  const systemd = spawnSync('systemctl', ['is-system-running'], { encoding: 'utf8' });
  if (systemd.status !== null && !/offline|^$/.test(systemd.stdout.trim())) {
    spawnSync('systemctl', ['disable', '--now', 'prometheus.service'], quiet);
  } else if (existsSync('/etc/init.d/prometheus')) {
    if (spawnSync('/etc/init.d/prometheus', ['status'], quiet).status === 0)
      spawnSync('/etc/init.d/prometheus', ['stop'], quiet);
    spawnSync('update-rc.d', ['prometheus', 'disable'], quiet);
  }
}

if (process.argv[1] === self) {
  if (process.argv[2] === 'install') process.exit(install());
  try {
    process.stdout.write(`${JSON.stringify(ensurePrometheus())}\n`);
  } catch (err) {
    process.stderr.write(`prometheus.mjs: ${err.message}\n`);
    process.exit(1);
  }
}

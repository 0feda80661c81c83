// `npm test`: build, lint, typecheck, then every test under test/ against a real broker and Redis.
// Starts the local broker when KAFKA_BROKERS is unset and stops it afterwards if it started it.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ensureLocalKafka, kafkaCommand } from './local-kafka.mjs';

function run(cmd, args, env = process.env) {
  const result = spawnSync(cmd, args, { stdio: 'inherit', env });
  return result.status ?? 1;
}

function testFiles(dir) {
  return readdirSync(dir, { recursive: true })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => join(dir, f))
    .sort();
}

for (const [cmd, args] of [
  ['npm', ['run', '--silent', 'build']],
  ['npx', ['biome', 'check', '.']],
  ['npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']],
]) {
  if (run(cmd, args) !== 0) process.exit(1);
}

/**
 * Each test file runs in its own process group under a wall-clock bound: a file that hangs (an event loop
 * starved by a promise chain that never yields, which no in-process timer can interrupt) is killed with its
 * children and named, instead of stalling CI until its own limit (stop 20's CI, 2026-12-04). The bound is
 * the largest timeout a test declares (the chaos short run's 900 s) plus a margin.
 */
const file_timeout_s = Number(process.env.TEST_FILE_TIMEOUT_S ?? 960);
/** Per test: a hang with a live event loop fails the test by name (tests declaring more keep theirs). */
const test_timeout_ms = 300_000;

/** The running file's process group: detached, it does not get the terminal's Ctrl-C, so it is passed on. */
let current_group = null;
for (const signal of ['SIGINT', 'SIGTERM'])
  process.on(signal, () => {
    if (current_group !== null) killGroup(current_group);
    process.exitCode = 1;
  });

function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {} // already gone
}

function runFile(file, env) {
  return new Promise((resolve) => {
    const started_ms = Date.now();
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--test',
        '--test-reporter=spec',
        '--test-concurrency=1',
        `--test-timeout=${test_timeout_ms}`,
        file,
      ],
      { stdio: 'inherit', env, detached: true },
    );
    current_group = child.pid;
    let timed_out = false;
    const watchdog = setTimeout(() => {
      timed_out = true;
      console.error(`\n✖ ${file}: still running after ${file_timeout_s} s; killing its process group`);
      killGroup(child.pid);
    }, file_timeout_s * 1000);
    child.on('exit', (code, signal) => {
      clearTimeout(watchdog);
      // Whatever the file started and left behind (a node it spawned, say) goes with it.
      killGroup(child.pid);
      current_group = null;
      resolve({ file, ok: code === 0 && !timed_out, timed_out, signal, s: (Date.now() - started_ms) / 1000 });
    });
  });
}

const only = process.argv.slice(2);
const files = only.length > 0 ? only : testFiles('test');
const { brokers, started } = await ensureLocalKafka({ free_ports_if_taken: true });
let status = 1;
try {
  const results = [];
  for (const file of files) {
    if (process.exitCode === 1) break; // interrupted
    results.push(await runFile(file, { ...process.env, KAFKA_BROKERS: brokers }));
  }
  const failed = results.filter((r) => !r.ok);
  const total_s = results.reduce((sum, r) => sum + r.s, 0);
  console.log(
    `\ntest files: ${results.length - failed.length}/${results.length} passed in ${total_s.toFixed(0)} s`,
  );
  for (const r of [...results].sort((a, b) => b.s - a.s).slice(0, 5))
    console.log(`  ${r.s.toFixed(1)} s  ${r.file}`);
  for (const r of failed)
    console.log(
      `✖ ${r.file}${r.timed_out ? ` (killed after ${file_timeout_s} s)` : r.signal ? ` (${r.signal})` : ''}`,
    );
  status = failed.length === 0 && process.exitCode !== 1 ? 0 : 1;
} finally {
  if (started) kafkaCommand('stop');
}
process.exit(status);

// `npm test`: build, lint, typecheck, then every test under test/ against a real broker and Redis.
// Starts the local broker when KAFKA_BROKERS is unset and stops it afterwards if it started it.
import { spawnSync } from 'node:child_process';
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

const only = process.argv.slice(2);
const files = only.length > 0 ? only : testFiles('test');
const { brokers, started } = await ensureLocalKafka({ free_ports_if_taken: true });
let status = 1;
try {
  status = run(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', ...files],
    { ...process.env, KAFKA_BROKERS: brokers },
  );
} finally {
  if (started) kafkaCommand('stop');
}
process.exit(status);

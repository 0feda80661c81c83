// `npm start`: (built by prestart) starts the local broker when KAFKA_BROKERS is unset, runs the node,
// and prints a ready-to-paste curl example once /readyz answers.
import { spawn } from 'node:child_process';
import { ensureLocalKafka } from './local-kafka.mjs';

const { brokers } = await ensureLocalKafka();
const port = process.env.PORT ?? '8080';
const child = spawn(process.execPath, ['dist/node.js'], {
  stdio: 'inherit',
  env: { ...process.env, KAFKA_BROKERS: brokers },
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

const base = `http://127.0.0.1:${port}`;
const started_ms = Date.now();
while (Date.now() - started_ms < 120_000 && child.exitCode === null) {
  const ready = await fetch(`${base}/readyz`).then(
    (r) => r.ok,
    () => false,
  );
  if (ready) {
    const key = process.env.API_KEYS ? '<your API key>' : 'sk_test_local';
    const auth = `-H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json'`;
    process.stdout.write(`
  payment node ready at ${base} (Kafka ${brokers}), ${((Date.now() - started_ms) / 1000).toFixed(1)} s
  try:
    curl -s -X POST ${base}/v1/accounts ${auth} -d '{"id":"acct_alice","currency":"USD","kind":"customer"}'
    curl -s -X POST ${base}/v1/deposits ${auth} -d '{"account":"acct_alice","amount":5000,"currency":"USD"}'
    curl -s ${base}/v1/accounts/acct_alice -H 'Authorization: Bearer ${key}'
  stop with Ctrl-C; the local broker keeps running (npm run kafka -- stop)

`);
    break;
  }
  await new Promise((r) => setTimeout(r, 250));
}

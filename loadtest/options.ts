import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { isLoopback, parseTarget } from './http-client.js';
import { type AmountDist, type Mix, parseAmount, parseMix } from './workload.js';

export interface LoadtestOptions {
  url: string;
  api_key: string;
  allow_remote: boolean;
  transport: 'http' | 'ws';
  mode: 'open' | 'closed';
  rate_per_s: number;
  duration_s: number;
  warmup_s: number;
  connections: number;
  connections_max: number;
  pipeline: number;
  threads: number;
  timeout_ms: number;
  accounts: number;
  merchants: number;
  currency: string;
  mix: Mix;
  capture_ratio: number;
  amount: AmountDist;
  idempotency_ratio: number;
  retry_ratio: number;
  seed_balance: number;
  seed: boolean;
  random_seed: number;
  verify: boolean;
  verify_sample: number;
  kafka_brokers: string[];
  topic_prefix: string;
  out_dir: string | null;
  label: string;
  progress: 'auto' | 'tty' | 'plain' | 'none';
}

export const USAGE = `npm run loadtest -- [options]

Target
  --url URL               base URL of a node (default http://127.0.0.1:8080); non-loopback hosts need --allow-remote
  --api-key KEY           Bearer key (default $LOADTEST_API_KEY or sk_test_local)
  --ws                    WebSocket /v1/ws instead of HTTP (pipelined: --pipeline requests in flight per socket)
Load
  --rate N                open loop: N requests/s, constant arrival rate, latency from the scheduled time
  --connections N         closed loop (when --rate is absent): N connections each sending back to back
                          (open loop: initial pool for HTTP, sockets for WS; default 64 HTTP, 8 WS)
  --connections-max N     open-loop HTTP: cap on connections (default 4096); beyond, requests queue (counted)
  --pipeline N            WS closed loop: requests in flight per socket (default 32)
  --duration S            measured seconds (default 30)     --warmup S   unmeasured seconds first (default 5)
  --threads N             generator worker threads (default: min(4, cores))
  --timeout MS            per request (default 10000)
Workload
  --accounts N            customer accounts seeded and funded (default 10000)
  --merchants N           merchant accounts (default accounts/10, at least 1)
  --mix SPEC              weights, default create=70,capture=15,refund=10,deposit=5
  --capture-ratio R       share of created payments captured at once (default 0.7; the rest are authorized)
  --amount DIST           fixed:N | uniform:MIN:MAX | lognormal:MEDIAN:SIGMA (minor units, default uniform:100:10000)
  --idempotency-ratio R   share of requests with an Idempotency-Key (default 1; deposits always)
  --retry-ratio R         share of keyed payments resent with the same key, checked for the same id (default 0.05)
  --seed-balance N        deposit per customer before the run (default 1000000000)
  --no-seed               do not seed (the target must accept any ids, e.g. a hello-world baseline)
  --random-seed N         workload seed (default 1)
Checks and reports
  --verify                after the run: sum of balances = deposits, every answered payment readable with its status
  --verify-sample N       payments read back (default 20000)
  --kafka-brokers LIST    with --verify and --topic-prefix: also fold the node's events topic (ledger verifier)
  --topic-prefix P
  --out DIR               write report.json and report.html there (default loadtest/reports/<time>)
  --no-report             write no files
  --label TEXT            name of the run in reports
  --progress MODE         auto | tty | plain | none (default auto: bar on a TTY, plain lines otherwise)
`;

function num(
  text: string | undefined,
  name: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
) {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max)
    throw new Error(`--${name}: ${text} is not in [${min}, ${max}]`);
  return n;
}

export function parseOptions(argv: string[], env: Record<string, string | undefined> = {}): LoadtestOptions {
  const { values: a } = parseArgs({
    args: argv,
    strict: true,
    options: {
      url: { type: 'string' },
      'api-key': { type: 'string' },
      'allow-remote': { type: 'boolean', default: false },
      ws: { type: 'boolean', default: false },
      rate: { type: 'string' },
      connections: { type: 'string' },
      'connections-max': { type: 'string' },
      pipeline: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      threads: { type: 'string' },
      timeout: { type: 'string' },
      accounts: { type: 'string' },
      merchants: { type: 'string' },
      currency: { type: 'string' },
      mix: { type: 'string' },
      'capture-ratio': { type: 'string' },
      amount: { type: 'string' },
      'idempotency-ratio': { type: 'string' },
      'retry-ratio': { type: 'string' },
      'seed-balance': { type: 'string' },
      'no-seed': { type: 'boolean', default: false },
      'random-seed': { type: 'string' },
      verify: { type: 'boolean', default: false },
      'verify-sample': { type: 'string' },
      'kafka-brokers': { type: 'string' },
      'topic-prefix': { type: 'string' },
      out: { type: 'string' },
      'no-report': { type: 'boolean', default: false },
      label: { type: 'string' },
      progress: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (a.help) throw new HelpRequested();
  const url = a.url ?? 'http://127.0.0.1:8080';
  const target = parseTarget(url, '');
  if (!isLoopback(target.host) && !a['allow-remote'])
    throw new Error(`--url ${url} is not a loopback address: pass --allow-remote to load another host`);
  const transport = a.ws ? 'ws' : 'http';
  const mode = a.rate !== undefined ? 'open' : 'closed';
  const accounts = num(a.accounts, 'accounts', 10_000, 1, 10_000_000);
  const progress = a.progress ?? 'auto';
  if (!['auto', 'tty', 'plain', 'none'].includes(progress)) throw new Error(`--progress: ${progress}`);
  const ratio = (text: string | undefined, name: string, fallback: number) => num(text, name, fallback, 0, 1);
  return {
    url,
    api_key: a['api-key'] ?? env.LOADTEST_API_KEY ?? 'sk_test_local',
    allow_remote: a['allow-remote'] ?? false,
    transport,
    mode,
    rate_per_s: num(a.rate, 'rate', 0, 1, 10_000_000),
    duration_s: num(a.duration, 'duration', 30, 1, 24 * 3600),
    warmup_s: num(a.warmup, 'warmup', 5, 0, 3600),
    connections: num(a.connections, 'connections', transport === 'ws' ? 8 : 64, 1, 100_000),
    connections_max: num(a['connections-max'], 'connections-max', 4096, 1, 100_000),
    pipeline: num(a.pipeline, 'pipeline', 32, 1, 100_000),
    threads: num(a.threads, 'threads', Math.min(4, availableParallelism()), 1, 64),
    timeout_ms: num(a.timeout, 'timeout', 10_000, 1, 600_000),
    accounts,
    merchants: num(a.merchants, 'merchants', Math.max(1, Math.floor(accounts / 10)), 1, 10_000_000),
    currency: a.currency ?? 'USD',
    mix: parseMix(a.mix ?? 'create=70,capture=15,refund=10,deposit=5'),
    capture_ratio: ratio(a['capture-ratio'], 'capture-ratio', 0.7),
    amount: parseAmount(a.amount ?? 'uniform:100:10000'),
    idempotency_ratio: ratio(a['idempotency-ratio'], 'idempotency-ratio', 1),
    retry_ratio: ratio(a['retry-ratio'], 'retry-ratio', 0.05),
    seed_balance: num(a['seed-balance'], 'seed-balance', 1_000_000_000, 0, 2 ** 50),
    seed: !a['no-seed'],
    random_seed: num(a['random-seed'], 'random-seed', 1, 0, 2 ** 32),
    verify: a.verify ?? false,
    verify_sample: num(a['verify-sample'], 'verify-sample', 20_000, 0, 10_000_000),
    kafka_brokers: a['kafka-brokers'] ? a['kafka-brokers'].split(',') : [],
    topic_prefix: a['topic-prefix'] ?? '',
    out_dir: a['no-report']
      ? null
      : (a.out ?? `loadtest/reports/${new Date().toISOString().replace(/[:.]/g, '-')}`),
    label: a.label ?? `loadtest ${mode}-loop ${transport}`,
    progress: progress as LoadtestOptions['progress'],
  };
}

export class HelpRequested extends Error {}

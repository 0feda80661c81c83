// `npm run region:demo -- [--seconds 30] [--keep]`: a second region on this machine. The primary is the
// project's local broker (KAFKA_BROKERS, or this checkout's tools/kafka broker, started if needed); the
// second region is another KRaft broker (tools/kafka/kafka.sh, same jars, .cache/kafka-region, port 19192)
// and MirrorMaker 2 in dedicated mode (tools/kafka/mirror-maker.sh, .cache/kafka-mirror) copying the events
// topic of a node that the demo starts and loads. At the end the independent verifier reads the copy
// `primary.<prefix>.events` on the secondary and compares it with the primary's API. Then everything the
// demo started is stopped (also on Ctrl-C), unless --keep leaves it running for a look around.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { ensureLocalKafka, kafkaCommand } from '../../scripts/local-kafka.mjs';
import { topicNames } from '../../src/streams/topics.js';
import { nodeEnv, openAccounts, repo_root, run, sleep } from '../chaos/env.js';
import { apiBalances, formatVerdict, verifyEvents } from '../chaos/verify.js';
import {
  cleanup,
  type NodeProcess,
  redis_url,
  startNode,
  stopNode,
  uniqueName,
} from '../integration/helpers.js';
import { readEvents, waitQuiescent } from '../support/ledger-verifier.js';
import { drive } from '../support/load-driver.js';
import { copyOf, MirrorMaker, topicRegex } from './mirror-maker.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '30' }, keep: { type: 'boolean', default: false } },
});
const LOAD_S = Number(values.seconds);
const PROGRESS_INTERVAL_MS = 2_000;
const COPY_TIMEOUT_MS = 90_000;
const say = (line: string) => process.stdout.write(`region:demo: ${line}\n`);

const secondary_port = Number(process.env.REGION_KAFKA_PORT ?? 19192);
const secondary_env = {
  KAFKA_PORT: String(secondary_port),
  KAFKA_CONTROLLER_PORT: String(secondary_port + 1),
  KAFKA_CACHE_DIR: join(repo_root, '.cache', 'kafka-region'),
  KAFKA_LIBS_DIR: join(repo_root, '.cache', 'kafka', 'libs'),
};
const secondary = [`127.0.0.1:${secondary_port}`];
const kafkaSh = async (command: string, ...args: string[]) => {
  const script = join(repo_root, 'tools', 'kafka', 'kafka.sh');
  const result = await run('bash', [script, command, ...args], secondary_env, 180_000);
  if (result.code !== 0) throw new Error(`kafka.sh ${command} (second region) failed:\n${result.output}`);
  return result.output.trim();
};

const topic_prefix = uniqueName('region_demo');
const events_topic = topicNames(topic_prefix).events;
const redis_prefix = `chaos:${topic_prefix}:`; // nodeEnv's REDIS_KEY_PREFIX

let node: NodeProcess | null = null;
let mm2: MirrorMaker | null = null;
let primary_started = false;
let primary: string[] = [];
let stopping = false;

async function stopAll(): Promise<void> {
  if (stopping) return;
  stopping = true;
  say('stopping what the demo started ...');
  if (node) await stopNode(node, 'SIGTERM');
  await mm2?.stop().catch((err) => say(`mirror maker stop: ${err}`));
  await kafkaSh('stop').catch((err) => say(`${err}`));
  if (primary.length > 0) await cleanup(topic_prefix, redis_prefix).catch(() => {});
  if (primary_started) kafkaCommand('stop');
  say('stopped');
}

process.on('SIGINT', () => {
  say('Ctrl-C');
  stopAll().then(
    () => process.exit(130),
    () => process.exit(130),
  );
});

/** End offsets summed over partitions: on the copy they include MM2's transaction markers. */
async function endOffsets(brokers: string[], topic: string): Promise<number> {
  const kafka = new Kafka({ brokers, clientId: 'region-demo', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) return 0;
    return (await admin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high), 0);
  } finally {
    await admin.disconnect();
  }
}

async function main(): Promise<number> {
  const local = await ensureLocalKafka({ free_ports_if_taken: true });
  primary = local.brokers.split(',');
  primary_started = local.started;
  say(`primary region: Kafka ${primary.join(',')}${local.started ? ' (started by the demo)' : ''}`);
  say(
    `second region: starting a KRaft broker on 127.0.0.1:${secondary_port} (data ${secondary_env.KAFKA_CACHE_DIR})`,
  );
  await kafkaSh('reset'); // a fresh second region: its copy holds this demo's events only
  say(await kafkaSh('start'));
  node = await startNode(
    nodeEnv({ brokers: primary, redis_url, topic_prefix, extra: { NODE_ID: 'region-demo' } }),
  );
  say(`node ${node.base} on the primary, topics ${topic_prefix}.*`);
  mm2 = new MirrorMaker({
    source: primary,
    target: secondary,
    topics: topicRegex(events_topic),
    exactly_once: true,
    cache_dir: join(repo_root, '.cache', 'kafka-mirror'),
  });
  say('starting MirrorMaker 2 (dedicated mode, exactly-once source, read_committed source consumer) ...');
  say((await mm2.start()).trim());
  say(`mirroring ${events_topic} (primary) → ${copyOf(events_topic)} (second region)`);
  const accounts = await openAccounts(() => node!.base, 'demo', 100, 20);
  const all_accounts = [...accounts.customers, ...accounts.merchants];
  say(`opened ${all_accounts.length} accounts; driving payments for ${LOAD_S} s ...`);
  let load_done = false;
  const progress = (async () => {
    while (!load_done) {
      await sleep(PROGRESS_INTERVAL_MS);
      const [source_end, copy_end] = await Promise.all([
        endOffsets(primary, events_topic),
        endOffsets(secondary, copyOf(events_topic)),
      ]);
      say(`end offsets: primary ${source_end}, copy ${copy_end} (both count transaction markers too)`);
    }
  })();
  const result = await drive({
    base: () => node!.base,
    accounts,
    commands_total: 1_000_000,
    concurrency: 32,
    deadline_ms: Date.now() + LOAD_S * 1000,
    currency: 'USD',
    seed: 1,
  });
  load_done = true;
  await progress;
  say(`load done: ${result.sent} requests, ${result.acknowledged} acknowledged; waiting for the copy ...`);
  await waitQuiescent(primary, topic_prefix, 60_000);
  const source_total = (await readEvents(primary, events_topic, 30_000)).length;
  const deadline_ms = Date.now() + COPY_TIMEOUT_MS;
  let copy = await readEvents(secondary, copyOf(events_topic), 30_000);
  while (copy.length < source_total && Date.now() < deadline_ms) {
    await sleep(500);
    copy = await readEvents(secondary, copyOf(events_topic), 30_000);
  }
  const balances = await apiBalances(node.base, all_accounts);
  const verdict = verifyEvents(
    copy,
    {
      acknowledged: [...result.acknowledged_payments],
      accounts: all_accounts,
      acknowledged_deposits: result.acknowledged_deposits,
      acknowledged_refunds: result.acknowledged_refunds,
      acknowledged_captures: result.acknowledged_captures,
    },
    balances,
  );
  say(`primary events ${source_total}, copy ${copy.length}`);
  say(`verifier on the copy (read_committed) against the primary's API: ${formatVerdict(verdict)}`);
  for (const v of verdict.violations) say(`  violation: ${v}`);
  const ok = verdict.violations.length === 0 && copy.length === source_total;
  say(ok ? 'the second region holds the ledger exactly once' : 'MISMATCH: see the violations above');
  say('inspect (npm run region:demo -- --keep leaves it all running):');
  say(`inspect: MirrorMaker log ${mm2.log_file}, config ${mm2.config_file}`);
  say(
    `inspect: npm run kafka -- tool console-consumer --bootstrap-server ${secondary[0]} ` +
      `--topic ${copyOf(events_topic)} --from-beginning --isolation-level read_committed --max-messages 5`,
  );
  say(
    `inspect: npm run kafka -- tool consumer-groups --bootstrap-server ${secondary[0]} --list; ` +
      `npm run kafka -- tool transactions --bootstrap-server ${secondary[0]} list`,
  );
  return ok ? 0 : 1;
}

main()
  .then(
    async (code) => {
      if (values.keep) {
        say('left running (--keep): look around, then Ctrl-C stops everything the demo started');
        await new Promise(() => {}); // the SIGINT handler stops and exits
      }
      await stopAll();
      process.exit(code);
    },
    async (err) => {
      process.stderr.write(`region:demo: ${(err as Error).stack ?? err}\n`);
      await stopAll();
      process.exit(1);
    },
  )
  .catch(() => process.exit(1));

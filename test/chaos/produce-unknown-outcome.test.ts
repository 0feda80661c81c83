import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CommandSender } from '../../src/gateway/commands.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import type { CommandEnvelope } from '../../src/protocol/wire.js';
import { platformaticPort } from '../../src/streams/platformatic/index.js';
import { ProxiedBroker } from './env.js';

/**
 * Found by the chaos suite (network-faults on @platformatic/kafka, 2026-12-02): a payment answered 202 was
 * never applied; its command was not in the log at all. An idempotent producer numbers each partition's
 * batches; the clients advance that number only when a send succeeds. A batch whose request reached the
 * broker but whose answer was lost, past the client's retries, fails: the broker has it at sequence n, the
 * client still thinks n is free. The next batch to that partition is sent as n again, and the broker answers
 * it as a duplicate of the first (same producer, epoch and sequence range): success, nothing appended. The
 * gateway then waits for a reply that never comes and answers 202. The command sender now replaces its
 * producer (a new producer id, sequences from 0) after every failed batch.
 *
 * Own broker behind the fault proxy (advertised as the proxy), on ports and a dir of its own.
 */
const log = createLogger('silent', 'produce-unknown-outcome');
const makePort = (brokers: string[]) =>
  platformaticPort({ brokers, client_id: 'unknown-outcome-platformatic', log });

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const envelope = (request_id: string) => ({ request_id }) as unknown as CommandEnvelope;

describe('a produce whose answer was lost (own proxied broker)', () => {
  const broker = new ProxiedBroker(29292, 'kafka-unknown-outcome');

  before(async () => {
    await broker.start();
  });
  after(async () => {
    await broker.stop();
  });

  it(`the next command after a failed batch that landed is in the log`, async () => {
    const kafka = makePort(broker.brokers);
    const admin = kafka.admin();
    await admin.connect();
    const topic = `unknown-outcome-${Date.now()}`;
    await admin.createTopics([{ topic, partitions: 1, replication_factor: 1, configs: {} }]);
    const end = async () => Number((await admin.topicOffsets(topic))[0]!.high);
    const sender = new CommandSender({
      kafka,
      topic,
      linger_ms: 0,
      batch_max: 10,
      metrics: createMetrics(),
    });
    await sender.start();
    try {
      await sender.send(envelope('warm-up'), 0, 'k0');
      // The request reaches the broker; its answer, and every retry's, is held, then the connections
      // are dropped and refused until the client gives up.
      broker.proxy.hold_responses = true;
      const lost = sender.send(envelope('answer-lost'), 0, 'k1').then(
        () => 'acknowledged',
        () => 'failed',
      );
      let outcome: string | null = null;
      void lost.then((o) => {
        outcome = o;
      });
      for (let i = 0; i < 240 && outcome === null; i++) {
        await sleep(250);
        if (i === 2) broker.proxy.refuse = true;
        if (i >= 2) broker.proxy.drop();
      }
      broker.proxy.refuse = false;
      broker.proxy.hold_responses = false;
      assert.equal(outcome, 'failed', 'the client must report the batch whose answer it never saw as failed');
      assert.equal(await end(), 2, 'the failed batch must have landed, or this case tests nothing');
      await sender.send(envelope('next'), 0, 'k2');
      assert.equal(await end(), 3, 'the command acknowledged after the failure is missing from the log');
    } finally {
      broker.proxy.refuse = false;
      broker.proxy.hold_responses = false;
      await sender.stop().catch(() => {});
      await admin.disconnect();
    }
  });
});

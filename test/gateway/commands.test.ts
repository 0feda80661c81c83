import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommandSender } from '../../src/gateway/commands.js';
import { createMetrics } from '../../src/metrics.js';
import type { CommandEnvelope } from '../../src/protocol/wire.js';
import type { KafkaPort, Producer } from '../../src/streams/kafka-port.js';
import { connectionError, protocolError } from '../support/kafka-errors.js';

const out_of_order = () =>
  protocolError(
    'OUT_OF_ORDER_SEQUENCE_NUMBER',
    45,
    false,
    'The broker received an out of order sequence number',
  );

/** A scripted stand-in for the port's producer: each sendBatch takes the next outcome of its script. */
function scriptedProducer(script: (Error | null)[], log: string[], name: string): Producer {
  return {
    connect: async () => void log.push(`${name}.connect`),
    disconnect: async () => void log.push(`${name}.disconnect`),
    sendBatch: async ({ topicMessages }) => {
      const outcome = script.shift() ?? null;
      log.push(`${name}.send(${topicMessages[0]?.messages.length}) ${outcome ? 'fails' : 'ok'}`);
      if (outcome) throw outcome;
      return [];
    },
  };
}

function sender(scripts: (Error | null)[][], log: string[], metrics = createMetrics()) {
  let made = 0;
  return new CommandSender({
    kafka: null as unknown as KafkaPort,
    topic: 't',
    linger_ms: 0,
    batch_max: 10,
    metrics,
    createProducer: () => {
      const name = `p${made}`;
      return scriptedProducer(scripts[made++] ?? [], log, name);
    },
  });
}

const envelope = { request_id: 'r' } as unknown as CommandEnvelope;

describe('command sender', () => {
  it('replaces a producer whose idempotence state was lost; the next batch leaves on the new one', async () => {
    const log: string[] = [];
    const s = sender([[out_of_order(), out_of_order()], [null]], log);
    await s.start();
    await assert.rejects(s.send(envelope, 0, 'k1'), /out of order/);
    await s.send(envelope, 0, 'k2'); // would fail again on the old producer
    assert.deepEqual(log, ['p0.connect', 'p0.send(1) fails', 'p0.disconnect', 'p1.connect', 'p1.send(1) ok']);
  });

  it('replaces its producer after a transient failure too: the failed batch may have landed', async () => {
    // On the old producer the next batch would reuse the landed batch's sequence number and be dropped by
    // the broker as its duplicate (test/chaos/produce-unknown-outcome.test.ts shows it on the real broker).
    const log: string[] = [];
    const metrics = createMetrics();
    const s = sender([[connectionError('closed'), null], [null]], log, metrics);
    await s.start();
    await assert.rejects(s.send(envelope, 0, 'k1'), /closed/);
    await s.send(envelope, 0, 'k2');
    assert.deepEqual(log, ['p0.connect', 'p0.send(1) fails', 'p0.disconnect', 'p1.connect', 'p1.send(1) ok']);
    const replaced = await metrics.produce_producer_replaced_total.get();
    assert.deepEqual(
      replaced.values.map((v) => [v.labels.reason, v.value]),
      [['outcome_unknown', 1]],
    );
  });
});

describe('CommandSender: offsets of acknowledged commands', () => {
  it("resolves each command with its record's offset: the ack's base offset + its rank in its partition", async () => {
    const producer: Producer = {
      connect: async () => {},
      disconnect: async () => {},
      // Partition 0 was appended from 500, partition 1 from 70; partition 2's ack names no base offset.
      sendBatch: async () => [
        { topicName: 't', partition: 0, baseOffset: '500' },
        { topicName: 't', partition: 1, baseOffset: '70' },
        { topicName: 't', partition: 2 },
      ],
    };
    const s = new CommandSender({
      kafka: null as unknown as KafkaPort,
      topic: 't',
      linger_ms: 5,
      batch_max: 10,
      metrics: createMetrics(),
      createProducer: () => producer,
    });
    await s.start();
    const envelope = {
      command: {},
      reply_to: null,
      request_id: null,
      traceparent: null,
    } as unknown as CommandEnvelope;
    const sent = [0, 1, 0, 2, 0, 1].map((partition, i) => s.send(envelope, partition, `k${i}`));
    assert.deepEqual(await Promise.all(sent), [500, 70, 501, null, 502, 71]);
    await s.stop();
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/log.js';
import type { KafkaPort } from '../../src/streams/kafka-port.js';
import { replayPartitions } from '../../src/streams/restore.js';

/**
 * Found by the chaos suite (scenario 4, dropped node↔broker connections): the changelog replay consumer
 * crashed while it was still joining its group (inside `consumer.run`), the crash rejected the replay's
 * completion promise before anything awaited it, and Node ended the whole node on the unhandled
 * rejection (exit 1, every partition of the node moved). The failure must come back to the caller of
 * replayPartitions, which rebuilds the partition later.
 */
function crashingKafka(): KafkaPort {
  const consumer = {
    // The consumer joins the group inside start(); a connection closed meanwhile is reported as a crash.
    start: async (handlers: { onCrash?: (err: unknown, restarting: boolean) => void }) => {
      handlers.onCrash?.(new Error('Closed connection'), true);
      await new Promise((r) => setTimeout(r, 50));
    },
    seek: () => {},
    pause: () => {},
    commitOffsets: async () => {},
    stop: async () => {},
    disconnect: async () => {},
  };
  const admin = {
    connect: async () => {},
    disconnect: async () => {},
    topicOffsets: async () => [{ partition: 0, high: '10', low: '0' }],
    deleteGroups: async () => {},
  };
  return { admin: () => admin, consumer: () => consumer } as unknown as KafkaPort;
}

describe('changelog replay when its consumer crashes while joining', () => {
  it('rejects replayPartitions (no unhandled rejection ending the process)', async () => {
    const unhandled: unknown[] = [];
    const on_unhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', on_unhandled);
    try {
      await assert.rejects(
        replayPartitions({
          kafka: crashingKafka(),
          topic: 'events',
          group_prefix: 'test',
          targets: new Map([[0, { from: 0n }]]),
          timeout_ms: 5_000,
          log: createLogger('silent', 't'),
          onEvents: async () => {},
        }),
        /Closed connection/,
      );
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(unhandled, [], 'no unhandled rejection');
    } finally {
      process.off('unhandledRejection', on_unhandled);
    }
  });
});

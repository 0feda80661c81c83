import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { ChaosRedis } from '../chaos/env.js';
import {
  brokers,
  call,
  cleanup,
  json_auth,
  type NodeProcess,
  startNode,
  stopNode,
  uniqueName,
} from './helpers.js';

function runNode(env: Record<string, string>): { code: number | null; output: string } {
  const result = spawnSync(process.execPath, ['dist/node.js'], {
    env: { ...process.env, KAFKA_BROKERS: brokers.join(','), PORT: '0', LOG_LEVEL: 'fatal', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('infrastructure failures', { timeout: 180_000 }, () => {
  it('exits non-zero and names Redis when Redis is unreachable at start', () => {
    const { code, output } = runNode({ REDIS_URL: 'redis://127.0.0.1:1' });
    assert.equal(code, 1);
    assert.match(output, /Redis unreachable at redis:\/\/127\.0\.0\.1:1/);
    assert.match(output, /redis-server/);
  });

  it('exits non-zero and names Kafka when the broker is unreachable at start', () => {
    const { code, output } = runNode({ KAFKA_BROKERS: '127.0.0.1:1' });
    assert.equal(code, 1);
    assert.match(output, /Kafka unreachable at 127\.0\.0\.1:1/);
  });

  it('exits 2 naming the key of an invalid configuration value', () => {
    const { code, output } = runNode({ PARTITIONS: 'many' });
    assert.equal(code, 2);
    assert.match(output, /"partitions"/);
  });

  describe('Redis lost while running', () => {
    const topic_prefix = uniqueName('it_redis');
    let node: NodeProcess | undefined;
    const redis = new ChaosRedis();

    after(async () => {
      if (node) await stopNode(node, 'SIGKILL');
      await redis.kill();
      await cleanup(topic_prefix, `test:${topic_prefix}:`);
    });

    it('keeps taking payments when Redis goes away (checkpoints are only an accelerator)', async () => {
      // Waits until it accepts connections (a fixed 300 ms was not enough on a loaded machine).
      await redis.start();
      node = await startNode({
        TOPIC_PREFIX: topic_prefix,
        REDIS_URL: redis.url,
        REDIS_KEY_PREFIX: `test:${topic_prefix}:`,
        PARTITIONS: '4',
        NODE_ID: 'it-redis',
        LOG_LEVEL: 'warn',
        CHECKPOINT_INTERVAL_MS: '50',
        LANES: '1',
      });
      assert.equal(
        (await call(node, 'POST', '/v1/accounts', { id: 'acct_r', currency: 'USD', kind: 'customer' }))
          .status,
        201,
      );
      await redis.kill();
      for (let i = 0; i < 5; i++) {
        const res = await call(
          node,
          'POST',
          '/v1/deposits',
          { account: 'acct_r', amount: 10, currency: 'USD' },
          json_auth,
        );
        assert.equal(res.status, 201, JSON.stringify(res.body));
        await new Promise((r) => setTimeout(r, 60));
      }
      const read = await call(node, 'GET', '/v1/accounts/acct_r', undefined, json_auth);
      assert.equal(read.body.available, 50);
      const metrics = await (await fetch(`${node.base}/metrics`)).text();
      assert.match(metrics, /checkpoint_failures_total [1-9]/);
    });
  });
});

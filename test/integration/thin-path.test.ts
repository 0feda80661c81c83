import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import {
  auth,
  call,
  cleanup,
  json_auth,
  type NodeProcess,
  redis_url,
  startNode,
  stopNode,
  uniqueName,
} from './helpers.js';

/**
 * The walking skeleton end to end on the real broker and Redis: every answer below comes from a committed
 * Kafka transaction, and state survives restarts of the node (checkpoint + changelog replay).
 */
describe('thin payment path (real Kafka + Redis)', { timeout: 300_000 }, () => {
  const topic_prefix = uniqueName('it_thin');
  const redis_prefix = `test:${topic_prefix}:`;
  const env = {
    TOPIC_PREFIX: topic_prefix,
    REDIS_KEY_PREFIX: redis_prefix,
    PARTITIONS: '8',
    NODE_ID: 'it-node',
    LOG_LEVEL: 'warn',
    CHECKPOINT_INTERVAL_MS: '100',
    LANES: '1',
    SESSION_TIMEOUT_MS: '6000', // the broker's minimum: a killed node's partitions move sooner
  };
  let node: NodeProcess;

  before(async () => {
    node = await startNode(env);
  });

  after(async () => {
    if (node) await stopNode(node, 'SIGKILL');
    await cleanup(topic_prefix, redis_prefix);
  });

  it('opens an account, deposits, and reads the balance back', async () => {
    const opened = await call(node, 'POST', '/v1/accounts', {
      id: 'acct_alice',
      currency: 'USD',
      kind: 'customer',
    });
    assert.equal(opened.status, 201, JSON.stringify(opened.body));
    assert.equal(opened.body.id, 'acct_alice');
    assert.equal(opened.body.currency, 'usd', 'currencies are echoed in lower case, as Stripe does');
    const deposit = await call(node, 'POST', '/v1/deposits', {
      account: 'acct_alice',
      amount: 5000,
      currency: 'USD',
    });
    assert.equal(deposit.status, 201, JSON.stringify(deposit.body));
    assert.equal(deposit.body.amount, 5000);
    const read = await call(node, 'GET', '/v1/accounts/acct_alice', undefined, auth);
    assert.equal(read.status, 200);
    assert.equal(read.body.available, 5000);
    assert.equal(read.body.posted, 5000);
  });

  it('answers duplicates and conflicts of an Idempotency-Key', async () => {
    await call(node, 'POST', '/v1/accounts', { id: 'acct_bob', currency: 'EUR', kind: 'customer' });
    const headers = { ...json_auth, 'idempotency-key': 'dep-bob-1' };
    const body = { account: 'acct_bob', amount: 700, currency: 'EUR' };
    const first = await call(node, 'POST', '/v1/deposits', body, headers);
    const retry = await call(node, 'POST', '/v1/deposits', body, headers);
    assert.equal(first.status, 201);
    assert.deepEqual(retry, { ...retry, status: first.status, body: first.body });
    const reused = await call(node, 'POST', '/v1/deposits', { ...body, amount: 701 }, headers);
    assert.equal(reused.status, 409);
    assert.equal(reused.body.error.code, 'idempotency_key_reused');
    const read = await call(node, 'GET', '/v1/accounts/acct_bob', undefined, auth);
    assert.equal(read.body.available, 700, 'the retried deposit was applied once');
  });

  it('refuses bad input with catalog errors and keeps serving', async () => {
    const cases: [string, string, unknown, Record<string, string>, number, string][] = [
      ['POST', '/v1/deposits', '{"account": ', json_auth, 400, 'invalid_json'],
      [
        'POST',
        '/v1/deposits',
        { account: 'acct_alice', amount: 1.5, currency: 'USD' },
        json_auth,
        400,
        'invalid_request',
      ],
      [
        'POST',
        '/v1/deposits',
        { account: 'acct_alice', amount: -1, currency: 'USD' },
        json_auth,
        400,
        'invalid_request',
      ],
      [
        'POST',
        '/v1/deposits',
        { account: 'acct_alice', amount: 2 ** 60, currency: 'USD' },
        json_auth,
        400,
        'invalid_request',
      ],
      ['POST', '/v1/accounts', { currency: 'USD', kind: 'alien' }, json_auth, 400, 'invalid_request'],
      [
        'POST',
        '/v1/accounts',
        { currency: 'USD', kind: 'customer' },
        { 'content-type': 'application/json' },
        401,
        'authentication_required',
      ],
      [
        'POST',
        '/v1/accounts',
        { currency: 'USD', kind: 'customer' },
        { ...json_auth, authorization: 'Bearer nope' },
        401,
        'authentication_required',
      ],
      [
        'POST',
        '/v1/accounts',
        'currency=USD',
        { ...auth, 'content-type': 'text/plain' },
        415,
        'unsupported_media_type',
      ],
      ['POST', '/v1/accounts', 'x'.repeat(20_000), json_auth, 413, 'payload_too_large'],
      ['GET', '/v1/nope', undefined, auth, 404, 'not_found'],
      ['DELETE', '/v1/accounts', undefined, auth, 405, 'method_not_allowed'],
      ['GET', '/v1/accounts/acct_nobody', undefined, auth, 404, 'not_found'],
    ];
    for (const [method, path, body, headers, status, code] of cases) {
      const res = await call(node, method, path, body, headers);
      assert.equal(
        res.status,
        status,
        `${method} ${path} ${JSON.stringify(body)?.slice(0, 60)} → ${JSON.stringify(res.body)}`,
      );
      assert.equal(res.body.error.code, code);
      assert.equal(typeof res.body.error.message, 'string');
    }
    const dup = await call(node, 'POST', '/v1/accounts', {
      id: 'acct_alice',
      currency: 'USD',
      kind: 'customer',
    });
    assert.equal(dup.status, 409);
    assert.equal((await call(node, 'GET', '/healthz', undefined, {})).status, 200);
  });

  it('serves /metrics with process metrics and the request latency histogram', async () => {
    const res = await fetch(`${node.base}/metrics`);
    const text = await res.text();
    assert.equal(res.status, 200);
    assert.match(text, /process_cpu_user_seconds_total/);
    assert.match(text, /http_request_duration_seconds_bucket/);
    assert.match(text, /transaction_commit_duration_seconds_count [1-9]/);
  });

  it('keeps balances across a graceful restart and a kill -9 with the checkpoint gone', async () => {
    await new Promise((r) => setTimeout(r, 300)); // let a checkpoint land (interval 100 ms)
    const redis = new Redis(redis_url);
    try {
      const checkpoints = await redis.keys(`${redis_prefix}*ckpt*`);
      assert.ok(checkpoints.length > 0, 'a checkpoint was written to Redis');
      assert.equal(await stopNode(node, 'SIGTERM'), 0, 'SIGTERM drains and exits 0');
      node = await startNode(env);
      assert.equal(
        (await call(node, 'GET', '/v1/accounts/acct_alice', undefined, auth)).body.available,
        5000,
      );
      await stopNode(node, 'SIGKILL');
      await redis.del(...(await redis.keys(`${redis_prefix}*`)));
      node = await startNode(env);
      assert.equal(
        (await call(node, 'GET', '/v1/accounts/acct_alice', undefined, auth)).body.available,
        5000,
      );
      assert.equal((await call(node, 'GET', '/v1/accounts/acct_bob', undefined, auth)).body.available, 700);
    } finally {
      await redis.quit();
    }
  });
});

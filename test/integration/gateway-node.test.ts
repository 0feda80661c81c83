import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import WebSocket from 'ws';
import type { DomainEvent } from '../../src/domain/index.js';
import { findPanRuns } from '../../src/gateway/card.js';
import { decode } from '../../src/protocol/wire.js';
import { brokers, cleanup, type NodeProcess, redis_url, startNode, stopNode, uniqueName } from './helpers.js';

/**
 * The gateway on a real node (real Kafka + Redis): the whole API answered from committed transactions,
 * idempotency under concurrency, WebSocket outcome subscriptions, traceparent into Kafka headers, and the
 * PAN leak check (DESIGN invariant 4) over Kafka records, Redis values, logs and responses.
 */
const key_a = 'sk_test_it_gateway_a_0123456789';
const key_b = 'sk_test_it_gateway_b_0123456789';
const pans = ['4242424242424242', '5555555555554444', '378282246310005'];
const responses: string[] = [];

describe('gateway on a real node (Kafka + Redis)', { timeout: 300_000 }, () => {
  const topic_prefix = uniqueName('it_gw');
  const redis_prefix = `test:${topic_prefix}:`;
  let node: NodeProcess;

  before(async () => {
    node = await startNode({
      TOPIC_PREFIX: topic_prefix,
      REDIS_KEY_PREFIX: redis_prefix,
      PARTITIONS: '8',
      NODE_ID: 'it-gw',
      LOG_LEVEL: 'debug',
      LANES: '1',
      CHECKPOINT_INTERVAL_MS: '100',
      SESSION_TIMEOUT_MS: '6000',
      API_KEYS: `merchant_a:${key_a},merchant_b:${key_b}`,
    });
    for (const [id, kind] of [
      ['alice', 'customer'],
      ['bob', 'customer'],
      ['shop', 'merchant'],
    ]) {
      const res = await api(node, 'POST', '/v1/accounts', { id, currency: 'USD', kind });
      assert.equal(res.status, 201, res.text);
    }
    for (const account of ['alice', 'bob'])
      await api(node, 'POST', '/v1/deposits', { account, amount: 100_000, currency: 'USD' });
  });

  after(async () => {
    if (node) await stopNode(node, 'SIGKILL');
    await cleanup(topic_prefix, redis_prefix);
  });

  it('runs the payment API end to end: tokens, capture now and later, cancel, refunds, declines', async () => {
    const token = await api(node, 'POST', '/v1/tokens', {
      account: 'alice',
      card: { number: pans[0], exp_month: 1, exp_year: 2090, cvc: '314' },
    });
    assert.equal(token.status, 201, token.text);
    assert.deepEqual([token.body.last4, token.body.brand], ['4242', 'visa']);
    const by_card = await api(node, 'POST', '/v1/payments', {
      amount: 1500,
      currency: 'USD',
      source: token.body.id,
      destination: 'shop',
    });
    assert.equal(by_card.status, 201, by_card.text);
    assert.equal(by_card.body.status, 'succeeded');
    const held = await api(node, 'POST', '/v1/payments', {
      amount: 800,
      currency: 'USD',
      source: 'bob',
      destination: 'shop',
      capture: false,
    });
    assert.equal(held.body.status, 'requires_capture');
    const captured = await api(node, 'POST', `/v1/payments/${held.body.id}/capture`, { amount: 600 });
    assert.equal(captured.status, 200, captured.text);
    assert.equal(captured.body.amount_received, 600);
    const held2 = await api(node, 'POST', '/v1/payments', {
      amount: 100,
      currency: 'USD',
      source: 'bob',
      destination: 'shop',
      capture: false,
    });
    assert.equal((await api(node, 'POST', `/v1/payments/${held2.body.id}/cancel`)).body.status, 'canceled');
    const refund = await api(node, 'POST', '/v1/refunds', { payment: by_card.body.id, amount: 500 });
    assert.equal(refund.status, 201, refund.text);
    const declined = await api(node, 'POST', '/v1/payments', {
      amount: 900_000,
      currency: 'USD',
      source: 'alice',
      destination: 'shop',
    });
    assert.equal(declined.status, 402);
    assert.equal(declined.body.error.decline_code, 'insufficient_funds');
    await waitFor(
      async () => (await api(node, 'GET', `/v1/payments/${by_card.body.id}`)).body.amount_refunded === 500,
    );
    const shop = await api(node, 'GET', '/v1/accounts/shop');
    assert.equal(shop.body.available, 1500 + 600 - 500, 'credits and the refund debit reached the payee');
    assert.equal(
      (await api(node, 'GET', `/v1/payments/${by_card.body.id}`, undefined, key_b)).status,
      404,
      'scoped to merchant A',
    );
  });

  it('50 concurrent requests with one Idempotency-Key make one payment (one event in Kafka) and 50 equal answers', async () => {
    const body = { amount: 321, currency: 'USD', source: 'alice', destination: 'shop' };
    const answers = await Promise.all(
      Array.from({ length: 50 }, () =>
        api(node, 'POST', '/v1/payments', body, key_a, { 'idempotency-key': 'it-50' }),
      ),
    );
    for (const answer of answers) {
      assert.equal(answer.status, 201, answer.text);
      assert.deepEqual(answer.body, answers[0]!.body);
    }
    const reused = await api(node, 'POST', '/v1/payments', { ...body, amount: 322 }, key_a, {
      'idempotency-key': 'it-50',
    });
    assert.equal(reused.status, 409);
    assert.equal(reused.body.error.code, 'idempotency_key_reused');
    const other_payer = await api(node, 'POST', '/v1/payments', { ...body, source: 'bob' }, key_a, {
      'idempotency-key': 'it-50',
    });
    assert.equal(
      other_payer.status,
      409,
      'the Redis fence catches reuse for another payer (another partition)',
    );
    const records = await readTopics(topic_prefix, ['events']);
    const outcomes = records
      .map((r) => decode<DomainEvent>(r.value))
      .filter(
        (e) =>
          (e.type === 'payment_created' || e.type === 'payment_declined') &&
          e.payment_id === answers[0]!.body.id,
      );
    assert.equal(outcomes.length, 1, 'exactly one outcome event for the payment');
    const metrics = await (await fetch(`${node.base}/metrics`)).text();
    const sum = Number(/gateway_produce_batch_size_commands_sum (\d+)/.exec(metrics)?.[1]);
    const count = Number(/gateway_produce_batch_size_commands_count (\d+)/.exec(metrics)?.[1]);
    assert.ok(
      sum > count,
      `concurrent commands were micro-batched (${sum} commands in ${count} produce requests)`,
    );
  });

  it('WebSocket: same answers as HTTP; subscribers get their own merchant’s committed outcomes only', async () => {
    const ws_a = await openWs(node, key_a);
    const ws_b = await openWs(node, key_b);
    try {
      assert.equal((await ws_a.request({ op: 'payments.subscribe' })).status, 200);
      assert.equal((await ws_b.request({ op: 'payments.subscribe' })).status, 200);
      const body = { amount: 42, currency: 'USD', source: 'bob', destination: 'shop' };
      const via_ws = await ws_a.request({ op: 'payments.create', idempotency_key: 'ws-1', body });
      const via_http = await api(node, 'POST', '/v1/payments', body, key_a, { 'idempotency-key': 'ws-1' });
      assert.equal(via_ws.status, via_http.status);
      assert.deepEqual(
        via_ws.body,
        via_http.body,
        'the same key answers the same payment on both transports',
      );
      const read_ws = await ws_a.request({ op: 'payments.get', body: { id: via_ws.body.id } });
      const read_http = await api(node, 'GET', `/v1/payments/${via_ws.body.id}`);
      assert.deepEqual([read_ws.status, read_ws.body], [read_http.status, read_http.body]);
      await waitFor(async () => ws_a.unsolicited.some((f) => f.data?.payment_id === via_ws.body.id));
      const outcome = ws_a.unsolicited.find((f) => f.data?.payment_id === via_ws.body.id);
      assert.deepEqual(pick(outcome, ['channel', 'event']), {
        channel: 'payments',
        event: 'payment_created',
      });
      assert.deepEqual(pick(outcome.data, ['status', 'amount', 'source', 'destination']), {
        status: 'succeeded',
        amount: 42,
        source: 'bob',
        destination: 'shop',
      });
      assert.ok(
        !ws_b.unsolicited.some((f) => f.data?.payment_id === via_ws.body.id),
        'merchant B sees none of A’s outcomes',
      );
    } finally {
      ws_a.close();
      ws_b.close();
    }
  });

  it('passes a W3C traceparent into the Kafka record headers and logs it', async () => {
    const trace_id = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const res = await api(
      node,
      'POST',
      '/v1/deposits',
      { account: 'bob', amount: 1, currency: 'USD' },
      key_a,
      {
        traceparent: `00-${trace_id}-1112131415161718-01`,
      },
    );
    assert.equal(res.status, 201);
    const commands = await readTopics(topic_prefix, ['commands']);
    const traced = commands.filter((r) => r.headers.traceparent?.includes(trace_id));
    assert.equal(traced.length, 1, 'one command record carries the trace');
    assert.ok(node.output.join('').includes(trace_id), 'the trace id is logged');
  });

  it('no PAN in Kafka records, Redis values (outside vault ciphertext), logs or responses', async () => {
    for (const pan of pans.slice(1)) {
      const token = await api(node, 'POST', '/v1/tokens', {
        account: 'bob',
        card: { number: pan, exp_month: 6, exp_year: 2091, cvc: '1234' },
      });
      assert.equal(token.status, 201, token.text);
      assert.equal(
        (
          await api(node, 'POST', '/v1/payments', {
            amount: 5,
            currency: 'USD',
            source: token.body.id,
            destination: 'shop',
          })
        ).status,
        201,
      );
    }
    await api(node, 'POST', '/v1/tokens', {
      account: 'bob',
      card: { number: '4242424242424241', exp_month: 6, exp_year: 2091, cvc: '1' },
    });
    await new Promise((r) => setTimeout(r, 300)); // a checkpoint lands (interval 100 ms)
    const leaks: string[] = [];
    const scan = (where: string, text: string) => {
      for (const pan of pans) if (text.includes(pan)) leaks.push(`${where}: ${pan}`);
      for (const run of findPanRuns(text)) if (!isTimestamp(run)) leaks.push(`${where}: PAN-shaped ${run}`);
    };
    const records = await readTopics(topic_prefix, ['commands', 'events', 'replies.it-gw']);
    assert.ok(records.length > 50, `read ${records.length} Kafka records`);
    for (const r of records)
      scan(
        `kafka ${r.topic}`,
        [r.key, r.value, ...Object.values(r.headers)].map((b) => b?.toString('latin1') ?? '').join(' '),
      );
    const redis = new Redis(redis_url);
    try {
      const keys = await redis.keys(`${redis_prefix}*`);
      const vault_keys = keys.filter((k) => k.includes(':vault:'));
      assert.equal(vault_keys.length, 3, 'three cards vaulted (the Luhn-invalid one was refused)');
      assert.ok(
        keys.some((k) => k.includes('idem:')),
        'the idempotency fence wrote its keys',
      );
      for (const key of keys) {
        const type = await redis.type(key);
        const values =
          type === 'string'
            ? [await redis.getBuffer(key)]
            : type === 'hash'
              ? Object.values(await redis.hgetallBuffer(key))
              : [];
        for (const value of values) {
          const text = value?.toString('latin1') ?? '';
          if (key.includes(':vault:'))
            assert.match(
              text,
              /^v1\.dev\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/,
              'vault values are ciphertext records',
            );
          else scan(`redis ${key}`, text);
        }
      }
    } finally {
      await redis.quit();
    }
    scan('logs', node.output.join(''));
    scan('responses', responses.join('\n'));
    assert.deepEqual(leaks, []);
  });
});

async function api(
  node: NodeProcess,
  method: string,
  path: string,
  body?: unknown,
  key = key_a,
  extra: Record<string, string> = {},
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON bodies
): Promise<{ status: number; body: any; text: string }> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}`, ...extra };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${node.base}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  responses.push(text);
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed, text };
}

/** Every record of the test's topics (uncommitted ones too: a leak in an aborted transaction is a leak). */
async function readTopics(prefix: string, suffixes: string[]) {
  const kafka = new Kafka({ brokers, clientId: 'it-gw-reader', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topics = suffixes.map((s) => `${prefix}.${s}`);
  const ends = new Map<string, number>();
  for (const topic of topics)
    for (const p of await admin.fetchTopicOffsets(topic))
      if (Number(p.high) > 0) ends.set(`${topic}/${p.partition}`, Number(p.high));
  await admin.disconnect();
  const records: {
    topic: string;
    key: Buffer | null;
    value: Buffer;
    headers: Record<string, Buffer | undefined>;
  }[] = [];
  const consumer = kafka.consumer({
    groupId: `${prefix}.reader.${Date.now()}`,
    readUncommitted: true,
    maxWaitTimeInMs: 100,
  });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    if (ends.size === 0) resolve();
    consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        if (message.value)
          records.push({
            topic,
            key: message.key,
            value: message.value,
            headers: message.headers as Record<string, Buffer | undefined>,
          });
        const key = `${topic}/${partition}`;
        // The high watermark counts transaction markers, which are never delivered: the last record of a
        // partition sits at high - 1 (no marker after it) or high - 2 (a commit marker after it).
        if (Number(message.offset) + 2 >= (ends.get(key) ?? 0)) ends.delete(key);
        if (ends.size === 0) resolve();
      },
    });
  });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise((r) => (timer = setTimeout(r, 30_000)))]);
  clearTimeout(timer);
  await new Promise((r) => setTimeout(r, 500)); // the record before a trailing marker may still be in flight
  await consumer.disconnect();
  assert.equal(ends.size, 0, `read every partition to its end (${[...ends.keys()].join(', ')} left)`);
  return records;
}

/** ms timestamps (created_ms, expires_ms) are 13-digit numbers near now; they are not card numbers. */
function isTimestamp(run: string): boolean {
  const value = Number(run);
  return run.length === 13 && Math.abs(value - Date.now()) < 30 * 86_400_000;
}

async function waitFor(check: () => Promise<boolean>, timeout_ms = 10_000): Promise<void> {
  const deadline_ms = Date.now() + timeout_ms;
  while (Date.now() < deadline_ms) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail('condition not met in time');
}

function pick(value: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, value?.[k]]));
}

async function openWs(node: NodeProcess, key: string) {
  const socket = new WebSocket(`${node.base.replace('http', 'ws')}/v1/ws`, {
    headers: { authorization: `Bearer ${key}` },
  });
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  // biome-ignore lint/suspicious/noExplicitAny: frames are arbitrary JSON
  const unsolicited: any[] = [];
  // biome-ignore lint/suspicious/noExplicitAny: frames are arbitrary JSON
  const waiting = new Map<string, (frame: any) => void>();
  socket.on('message', (data: Buffer) => {
    const text = data.toString();
    responses.push(text);
    const frame = JSON.parse(text);
    const waiter = waiting.get(String(frame.request_id));
    if (waiter) {
      waiting.delete(String(frame.request_id));
      waiter(frame);
    } else unsolicited.push(frame);
  });
  let next = 0;
  return {
    unsolicited,
    // biome-ignore lint/suspicious/noExplicitAny: frames are arbitrary JSON
    request(frame: Record<string, unknown>): Promise<any> {
      const request_id = `w${next++}`;
      return new Promise((resolve) => {
        waiting.set(request_id, resolve);
        socket.send(JSON.stringify({ ...frame, request_id }));
      });
    },
    close: () => socket.close(),
  };
}

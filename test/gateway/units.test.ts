import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import type { DomainEvent } from '../../src/domain/index.js';
import { brandOf, findPanRuns, isPan, luhnValid } from '../../src/gateway/card.js';
import { IdempotencyFence } from '../../src/gateway/fence.js';
import { decodeFrame } from '../../src/gateway/frames.js';
import { canonicalJson } from '../../src/gateway/ops.js';
import { outcomeOf } from '../../src/gateway/outcomes.js';
import { RateLimiter } from '../../src/gateway/rate-limit.js';
import { MerchantScope, MerchantScopes } from '../../src/gateway/scope.js';
import { traceFrom } from '../../src/gateway/trace.js';
import { Vault } from '../../src/gateway/vault.js';
import { rewrapAll } from '../../src/gateway/vault-cli.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { deleteKeys, redis_url } from './harness.js';

const key1 = Buffer.alloc(32, 1).toString('base64');
const key2 = Buffer.alloc(32, 2).toString('base64');
const fp_key = Buffer.alloc(32, 3).toString('base64');
const prefix = `test:units_${randomUUID().slice(0, 8)}:`;
const silent = createLogger('silent', 'test');

after(() => deleteKeys(prefix));

describe('card numbers', () => {
  it('Luhn-checks and recognises brands', () => {
    for (const pan of [
      '4242424242424242',
      '5555555555554444',
      '378282246310005',
      '6011111111111117',
      '4000056655665556',
    ])
      assert.ok(isPan(pan), pan);
    assert.ok(!luhnValid('4242424242424241'));
    assert.ok(!isPan('424242424242'), 'too short');
    assert.ok(!isPan('42424242424242424242'), 'too long');
    assert.ok(!isPan('4242 4242 4242 4242'), 'callers strip separators first');
    assert.deepEqual(
      [
        '4242424242424242',
        '5555555555554444',
        '2223003122003222',
        '378282246310005',
        '6011111111111117',
        '3566002020360505',
        '6200000000000005',
        '9999999999999995',
      ].map(brandOf),
      ['visa', 'mastercard', 'mastercard', 'amex', 'discover', 'jcb', 'unionpay', 'unknown'],
    );
  });

  it('finds PAN-shaped runs in text, not inside longer words', () => {
    assert.deepEqual(findPanRuns('x 4242424242424242 y "5555555555554444"'), [
      '4242424242424242',
      '5555555555554444',
    ]);
    assert.deepEqual(findPanRuns('ab4242424242424242cd 4242424242424241 12345'), []);
  });
});

describe('trace context', () => {
  it('keeps a valid trace id with a new span; replaces a malformed header', () => {
    const t = traceFrom('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    assert.equal(t.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(t.parent_id, '00f067aa0ba902b7');
    assert.match(t.traceparent, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    assert.notEqual(t.traceparent.slice(36, 52), '00f067aa0ba902b7');
    for (const bad of [
      '',
      'x',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
    ]) {
      const fresh = traceFrom(bad);
      assert.equal(fresh.parent_id, null, bad);
      assert.match(fresh.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    }
  });
});

describe('rate limiter', () => {
  it('allows the burst, then refills at the rate, with a Retry-After', () => {
    const limiter = new RateLimiter({ rate_per_s: 2, burst: 3, buckets_max: 2 });
    assert.deepEqual(
      [0, 0, 0].map(() => limiter.take('m', 1000)),
      [0, 0, 0],
    );
    assert.equal(limiter.take('m', 1000), 1);
    assert.equal(limiter.take('m', 1500), 0, 'one token after 500 ms at 2/s');
    assert.equal(limiter.take('other', 1500), 0);
    limiter.take('third', 1500);
    assert.equal(limiter.size, 2, 'bounded map');
    const slow = new RateLimiter({ rate_per_s: 0.1 * 10, burst: 1, buckets_max: 10 });
    slow.take('m', 0);
    assert.equal(slow.take('m', 0), 1);
  });
});

describe('merchant scope', () => {
  it('namespaces accounts and recognises its own payment and token ids', () => {
    const a = new MerchantScope('merchant_a');
    const b = new MerchantScope('merchant_b');
    assert.notEqual(a.account('x'), b.account('x'));
    assert.equal(a.external(a.account('acct_1')), 'acct_1');
    assert.equal(a.external(b.account('acct_1')), b.account('acct_1'));
    const pay = `pay_0000abcd${a.tag}0123456789`;
    assert.ok(a.ownsPayment(pay));
    assert.ok(!b.ownsPayment(pay));
    assert.ok(!a.ownsPayment('pay_nope'));
    assert.ok(a.ownsToken(`tok_0000abcd${a.tag}zz`));
    assert.equal(a.externalText(`No such account: ${a.account('q')}`), 'No such account: q');
    const scopes = new MerchantScopes(['merchant_a', 'merchant_b', 'merchant_a']);
    assert.equal(scopes.byTag(a.tag)?.merchant_id, 'merchant_a');
    assert.throws(() => scopes.of('stranger'), /scope invariant/);
  });

  it('maps committed payment events to their merchant, with client ids', () => {
    const a = new MerchantScope('merchant_a');
    const scopes = new MerchantScopes(['merchant_a']);
    const event = {
      type: 'payment_created',
      event_id: 'c:0',
      account_id: a.account('cust'),
      time_ms: 1,
      command_id: 'c',
      fingerprint: null,
      payment_id: `pay_00000001${a.tag}abc`,
      source: a.account('cust'),
      payee_account_id: a.account('shop'),
      amount: 5,
      currency: 'usd',
      capture_method: 'automatic',
      description: null,
      metadata: null,
      expires_ms: 0,
    } as unknown as DomainEvent;
    const outcome = outcomeOf(event, scopes);
    assert.equal(outcome?.scope.merchant_id, 'merchant_a');
    assert.deepEqual(outcome?.data, {
      payment_id: `pay_00000001${a.tag}abc`,
      time_ms: 1,
      status: 'succeeded',
      amount: 5,
      currency: 'usd',
      source: 'cust',
      destination: 'shop',
      decline_code: null,
    });
    assert.equal(outcomeOf({ ...event, payment_id: 'pay_00000001ffffffffabc' } as DomainEvent, scopes), null);
    assert.equal(outcomeOf({ ...event, type: 'transfer_credited' } as DomainEvent, scopes), null);
  });
});

describe('WebSocket frames', () => {
  const packr = new Packr({ useRecords: false });
  const text = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).buffer as ArrayBuffer;
  it('decodes JSON and msgpack envelopes and moves body.id to the path id', () => {
    const json = decodeFrame(
      text({ op: 'payments.capture', request_id: 7, body: { id: 'pay_1', amount: 3 } }),
      false,
    );
    assert.ok(json.ok);
    assert.equal(json.frame.id, 'pay_1');
    assert.deepEqual(json.frame.body, { amount: 3 });
    const bin = packr.pack({
      op: 'accounts.create',
      request_id: 'r',
      idempotency_key: 'k',
      body: { currency: 'usd' },
    });
    const packed = decodeFrame(
      bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength) as ArrayBuffer,
      true,
    );
    assert.ok(packed.ok);
    assert.equal(packed.frame.idempotency_key, 'k');
  });

  it('refuses malformed envelopes with the request id when it is known', () => {
    const cases: [unknown, string | number | null, string | undefined][] = [
      [[1], null, undefined],
      [{ op: 'accounts.get' }, null, 'request_id'],
      [{ op: 'accounts.get', request_id: 'x'.repeat(129) }, null, 'request_id'],
      [{ op: 'nope', request_id: 1 }, 1, 'op'],
      [{ op: 'accounts.get', request_id: 1, body: [] }, 1, 'body'],
      [{ op: 'accounts.get', request_id: 1, idempotency_key: 5 }, 1, 'idempotency_key'],
      [{ op: 'accounts.get', request_id: 1, x: 1 }, 1, 'x'],
    ];
    for (const [value, request_id, param] of cases) {
      const decoded = decodeFrame(text(value), false);
      assert.ok(!decoded.ok, JSON.stringify(value));
      assert.equal(decoded.request_id, request_id);
      assert.equal(decoded.error.param, param);
    }
    assert.equal(
      (decodeFrame(new Uint8Array([0xc1]).buffer as ArrayBuffer, true) as { ok: false }).ok,
      false,
    );
  });
});

describe('canonical JSON', () => {
  it('sorts keys at every depth', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } }),
      '{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}',
    );
  });
});

describe('log redaction', () => {
  it('never prints authorization headers, card numbers or CVCs', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _e, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = createLogger('info', 'test', sink);
    log.info(
      { authorization: 'Bearer sk_live_secret', card: { number: '4242424242424242', cvc: '123' } },
      'a',
    );
    log.info(
      {
        req: { headers: { authorization: 'Bearer sk_live_secret' } },
        body: { card: { number: '4242424242424242', cvc: '123' } },
      },
      'b',
    );
    const text = lines.join('');
    assert.ok(
      !text.includes('4242424242424242') && !text.includes('sk_live_secret') && !text.includes('"123"'),
      text,
    );
    assert.equal(text.match(/\[redacted\]/g)?.length, 6);
  });
});

describe('vault (real Redis)', () => {
  const redis = new Redis(redis_url);
  after(() => redis.quit());
  const vaultWith = (keys: string, active: string) =>
    new Vault({ redis, key_prefix: prefix, keys, active_key_id: active, fingerprint_key: fp_key });

  it('encrypts with AES-256-GCM under the token id; keyed fingerprints; no PAN stored', async () => {
    const vault = vaultWith(`k1:${key1}`, 'k1');
    await vault.store('tok_a', '4242424242424242');
    const record = (await redis.get(`${prefix}vault:tok_a`))!;
    assert.match(record, /^v1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    assert.ok(!record.includes('4242'));
    assert.equal(await vault.reveal('tok_a'), '4242424242424242');
    await vault.store('tok_a', '5555555555554444');
    assert.equal(await vault.reveal('tok_a'), '4242424242424242', 'a record is never overwritten');
    assert.notEqual(
      vault.seal('tok_a', '4242424242424242'),
      vault.seal('tok_a', '4242424242424242'),
      'random IV',
    );
    assert.throws(
      () => vault.open('tok_b', record),
      'the token id is authenticated data: a record cannot move',
    );
    const tampered = record.slice(0, -3) + (record.endsWith('AAA') ? 'BBB' : 'AAA');
    assert.throws(() => vault.open('tok_a', tampered));
    assert.equal(vault.fingerprint('4242424242424242'), vault.fingerprint('4242424242424242'));
    assert.equal(vault.fingerprint('4242424242424242').length, 32);
    assert.equal(vault.metadata('4242424242424242').last4, '4242');
    assert.throws(() => vaultWith(`k1:${key1}`, 'k2'), /not configured/);
    assert.throws(() => vaultWith(`k1:${Buffer.alloc(16).toString('base64')}`, 'k1'), /32 bytes/);
  });

  it('rotation: old key ids still decrypt; rewrap moves records to the active key', async () => {
    const old = vaultWith(`k1:${key1}`, 'k1');
    for (let i = 0; i < 25; i++) await old.store(`tok_r${i}`, '5555555555554444');
    const rotated = vaultWith(`k1:${key1},k2:${key2}`, 'k2');
    assert.equal(await rotated.reveal('tok_r0'), '5555555555554444', 'old records decrypt after rotation');
    assert.equal(
      rotated.fingerprint('5555555555554444'),
      old.fingerprint('5555555555554444'),
      'fingerprints survive rotation',
    );
    const first = await rotated.rewrap(10);
    assert.equal(first.rewrapped, 10);
    assert.ok(first.remaining >= 15);
    const summary = await rewrapAll(rotated, 10);
    assert.equal(summary.remaining, 0);
    const records = await Promise.all(
      Array.from({ length: 25 }, (_, i) => redis.get(`${prefix}vault:tok_r${i}`)),
    );
    assert.ok(records.every((r) => r?.startsWith('v1.k2.')));
    const only_new = vaultWith(`k2:${key2}`, 'k2');
    assert.equal(
      await only_new.reveal('tok_r24'),
      '5555555555554444',
      'the old key can be retired after rewrap',
    );
  });

  it('the rewrap CLI runs from config (npm run vault:rewrap)', async () => {
    const cli_prefix = `${prefix}cli:`;
    const old = new Vault({
      redis,
      key_prefix: `${cli_prefix}t:`,
      keys: `k1:${key1}`,
      active_key_id: 'k1',
      fingerprint_key: fp_key,
    });
    await old.store('tok_cli', '4242424242424242');
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/gateway/vault-cli.ts', 'rewrap', '5'], {
      env: {
        ...process.env,
        REDIS_URL: redis_url,
        REDIS_KEY_PREFIX: cli_prefix,
        TOPIC_PREFIX: 't',
        VAULT_KEYS: `k1:${key1},k2:${key2}`,
        VAULT_ACTIVE_KEY_ID: 'k2',
        VAULT_FINGERPRINT_KEY: fp_key,
      },
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), { active_key_id: 'k2', scanned: 1, rewrapped: 1, remaining: 0 });
    assert.match((await redis.get(`${cli_prefix}t:vault:tok_cli`))!, /^v1\.k2\./);
  });
});

describe('idempotency fence (real Redis)', () => {
  it('first / same / conflict, release, and skipped (payments go on) when Redis is away', async () => {
    const redis = new Redis(redis_url);
    const metrics = createMetrics();
    const fence = new IdempotencyFence({ redis, key_prefix: prefix, ttl_s: 86_400, metrics, log: silent });
    try {
      assert.equal(await fence.check('m', 'k', 'fp1'), 'first');
      assert.equal(await fence.check('m', 'k', 'fp1'), 'same');
      assert.equal(await fence.check('m', 'k', 'fp2'), 'conflict');
      assert.equal(await fence.check('other', 'k', 'fp2'), 'first', 'keys are per merchant');
      const keys = await redis.keys(`${prefix}idem:*`);
      assert.ok((await redis.ttl(keys[0]!)) > 86_000, '24 h life');
      await fence.release('m', 'k', 'fp2');
      assert.equal(await fence.check('m', 'k', 'fp2'), 'conflict', 'release only frees its own fingerprint');
      await fence.release('m', 'k', 'fp1');
      assert.equal(await fence.check('m', 'k', 'fp2'), 'first');
    } finally {
      await redis.quit();
    }
    const down = new Redis('redis://127.0.0.1:1', {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      lazyConnect: true,
      retryStrategy: () => null,
    });
    down.on('error', () => {});
    const blind = new IdempotencyFence({
      redis: down,
      key_prefix: prefix,
      ttl_s: 86_400,
      metrics,
      log: silent,
    });
    assert.equal(await blind.check('m', 'k', 'fp'), 'skipped');
    assert.match(await metrics.registry.metrics(), /gateway_idempotency_fence_skipped_total 1/);
    down.disconnect();
  });
});

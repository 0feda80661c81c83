import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Packr } from 'msgpackr';
import { ERROR_CATALOG } from '../../src/domain/index.js';
import {
  auth_a,
  auth_b,
  http,
  json_a,
  json_b,
  jsonFrames,
  key_a,
  type Res,
  startGateway,
  type TestGateway,
  WsClient,
} from './harness.js';

/**
 * API conformance against an in-process gateway (real uWS, real Redis fence and vault, the real domain on
 * an in-memory ledger): every route's happy path and error codes, merchant scoping, idempotency, timeouts,
 * and the same operations over WebSocket giving the same results as over HTTP.
 */
const visa = '4242424242424242';
const mastercard = '5555555555554444';
const card = (number = visa) => ({ number, exp_month: 12, exp_year: 2099, cvc: '123' });
const packr = new Packr({ useRecords: false });

describe('gateway API (in-process, in-memory ledger)', { timeout: 120_000 }, () => {
  let gw: TestGateway;

  before(async () => {
    gw = await startGateway();
    await setupAccounts(gw, '');
  });

  after(async () => {
    await gw?.close();
  });

  it('accounts: create, read, duplicates and errors', async () => {
    const created = await http(gw, 'POST', '/v1/accounts', {
      id: 'acct_new',
      currency: 'EUR',
      kind: 'customer',
    });
    assert.equal(created.status, 201);
    assert.deepEqual(pick(created.body, ['id', 'object', 'currency', 'kind', 'available']), {
      id: 'acct_new',
      object: 'account',
      currency: 'eur',
      kind: 'customer',
      available: 0,
    });
    const generated = await http(gw, 'POST', '/v1/accounts', { currency: 'usd', kind: 'merchant' });
    assert.equal(generated.status, 201);
    assert.match(generated.body.id, /^acct_[0-9a-f]{24}$/);
    const dup = await http(gw, 'POST', '/v1/accounts', { id: 'acct_new', currency: 'EUR', kind: 'customer' });
    assertError(dup, 409, 'resource_already_exists', 'id');
    assert.doesNotMatch(dup.body.error.message, /[0-9a-f]{8}_acct/, 'ledger ids stay internal');
    const read = await http(gw, 'GET', '/v1/accounts/cust', undefined, auth_a);
    assert.equal(read.status, 200);
    assert.deepEqual(pick(read.body, ['id', 'available', 'pending', 'posted']), {
      id: 'cust',
      available: 100_000,
      pending: 0,
      posted: 100_000,
    });
    assertError(await http(gw, 'GET', '/v1/accounts/nobody', undefined, auth_a), 404, 'not_found', 'id');
    const long_id = 'a'.repeat(56);
    assertError(await http(gw, 'GET', `/v1/accounts/${long_id}`, undefined, auth_a), 404, 'not_found', 'id');
    const bad = await http(gw, 'POST', '/v1/accounts', { id: long_id, currency: 'USD', kind: 'customer' });
    assertError(bad, 400, 'invalid_request', 'id');
    assertError(
      await http(gw, 'POST', '/v1/accounts', { currency: 'XYZ', kind: 'customer' }),
      400,
      'invalid_request',
      'currency',
    );
  });

  it('deposits: credit the account; currency and account errors', async () => {
    await http(gw, 'POST', '/v1/accounts', { id: 'dep', currency: 'USD', kind: 'customer' });
    const deposit = await http(gw, 'POST', '/v1/deposits', { account: 'dep', amount: 250, currency: 'USD' });
    assert.equal(deposit.status, 201);
    assert.equal(deposit.body.object, 'deposit');
    assert.equal(deposit.body.account, 'dep');
    assert.equal(deposit.body.balance.id, 'dep');
    assert.equal(deposit.body.balance.available, 250);
    const mismatch = await http(gw, 'POST', '/v1/deposits', { account: 'dep', amount: 1, currency: 'EUR' });
    assertError(mismatch, 400, 'currency_mismatch', 'currency');
    const missing = await http(gw, 'POST', '/v1/deposits', { account: 'ghost', amount: 1, currency: 'USD' });
    assertError(missing, 404, 'not_found', 'account');
    assert.equal(missing.body.error.message, 'No such account: ghost');
  });

  it('tokens: Luhn-checked, metadata only, vaulted under the token id', async () => {
    const token = await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: card() });
    assert.equal(token.status, 201, token.text);
    assert.match(token.body.id, /^tok_[0-9a-f]{8}/);
    assert.deepEqual(pick(token.body, ['object', 'account', 'last4', 'brand', 'exp_month', 'exp_year']), {
      object: 'token',
      account: 'cust',
      last4: '4242',
      brand: 'visa',
      exp_month: 12,
      exp_year: 2099,
    });
    assert.ok(!token.text.includes(visa), 'no PAN in the response');
    assert.equal(await gw.stack.vault.reveal(token.body.id), visa, 'the vault decrypts the PAN');
    const again = await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: { ...card(), cvc: '999' } });
    assert.equal(again.body.fingerprint, token.body.fingerprint, 'same card, same fingerprint');
    assert.notEqual(again.body.id, token.body.id);
    const mc = await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: card(mastercard) });
    assert.equal(mc.body.brand, 'mastercard');
    assert.notEqual(mc.body.fingerprint, token.body.fingerprint);
    const luhn = await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: card('4242424242424241') });
    assertError(luhn, 400, 'invalid_request', 'card.number');
    const expired = { ...card(), exp_year: 2020 };
    assertError(
      await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: expired }),
      400,
      'invalid_request',
      'card.exp_year',
    );
    const cvc = { ...card(), cvc: 12 };
    assertError(
      await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: cvc }),
      400,
      'invalid_request',
      'card.cvc',
    );
    const orphan = await http(gw, 'POST', '/v1/tokens', { account: 'ghost', card: card() });
    assertError(orphan, 404, 'not_found', 'account');
    const token_cmd = gw.ledger.calls.at(-1)!.command as { token_id: string };
    assert.equal(
      await gw.stack.vault.reveal(token_cmd.token_id),
      null,
      'a refused token leaves no vault record',
    );
  });

  it('payments: capture now, authorize + partial capture, cancel, decline, GET', async () => {
    const paid = await pay(gw, { amount: 1000 });
    assert.equal(paid.status, 201, paid.text);
    assert.match(paid.body.id, /^pay_[0-9a-f]{16}/);
    assert.deepEqual(
      pick(paid.body, ['status', 'amount', 'amount_capturable', 'amount_received', 'source', 'destination']),
      {
        status: 'succeeded',
        amount: 1000,
        amount_capturable: 0,
        amount_received: 1000,
        source: 'cust',
        destination: 'shop',
      },
    );
    const auth = await pay(gw, { amount: 500, capture: false });
    assert.equal(auth.status, 201);
    assert.equal(auth.body.status, 'requires_capture');
    assert.equal(auth.body.amount_capturable, 500);
    const over = await http(gw, 'POST', `/v1/payments/${auth.body.id}/capture`, { amount: 501 });
    assertError(over, 400, 'amount_exceeds_capturable', 'amount');
    const captured = await http(gw, 'POST', `/v1/payments/${auth.body.id}/capture`, { amount: 300 });
    assert.equal(captured.status, 200, captured.text);
    assert.equal(captured.body.status, 'succeeded');
    assert.equal(captured.body.amount_received, 300);
    assertError(
      await http(gw, 'POST', `/v1/payments/${auth.body.id}/capture`, {}),
      409,
      'payment_invalid_state',
    );
    const auth2 = await pay(gw, { amount: 200, capture: false });
    const canceled = await http(gw, 'POST', `/v1/payments/${auth2.body.id}/cancel`, undefined, auth_a);
    assert.equal(canceled.status, 200, canceled.text);
    assert.equal(canceled.body.status, 'canceled');
    assertError(
      await http(gw, 'POST', `/v1/payments/${auth2.body.id}/cancel`, {}),
      409,
      'payment_invalid_state',
    );
    const declined = await pay(gw, { amount: 500_000 });
    assertError(declined, 402, 'payment_declined');
    assert.equal(declined.body.error.type, 'payment_declined');
    assert.equal(declined.body.error.decline_code, 'insufficient_funds');
    assert.match(declined.body.error.payment_id, /^pay_/);
    const read = await http(gw, 'GET', `/v1/payments/${declined.body.error.payment_id}`, undefined, auth_a);
    assert.equal(read.status, 200);
    assert.equal(read.body.status, 'declined');
    assert.equal(read.body.decline_code, 'insufficient_funds');
    const mismatch = await pay(gw, { currency: 'EUR' });
    assert.equal(mismatch.body.error.decline_code, 'currency_mismatch');
    assertError(await http(gw, 'GET', '/v1/payments/pay_nope', undefined, auth_a), 404, 'not_found', 'id');
    assertError(
      await http(gw, 'POST', '/v1/payments/pay_00000000abcdef0123/capture', {}),
      404,
      'not_found',
      'id',
    );
  });

  it('payments: by card token, to a missing destination (failed later), and input errors', async () => {
    const token = await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: card() });
    const paid = await pay(gw, { source: token.body.id, amount: 50 });
    assert.equal(paid.status, 201, paid.text);
    assert.equal(paid.body.source, token.body.id);
    const lost = await pay(gw, { destination: 'nowhere', amount: 70 });
    assert.equal(lost.status, 201);
    const read = await http(gw, 'GET', `/v1/payments/${lost.body.id}`, undefined, auth_a);
    assert.equal(read.body.status, 'failed');
    assert.equal(read.body.failure_code, 'destination_invalid');
    assertError(await pay(gw, { amount: 1.5 }), 400, 'invalid_request', 'amount');
    assertError(await pay(gw, { amount: -5 }), 400, 'invalid_request', 'amount');
    assertError(await pay(gw, { currency: 'ABC' }), 400, 'invalid_request', 'currency');
    assertError(await pay(gw, { destination: 'cust' }), 400, 'invalid_request', 'destination');
    assertError(await pay(gw, { capture: 'yes' }), 400, 'invalid_request', 'capture');
    assertError(await pay(gw, { metadata: { k: 1 } }), 400, 'invalid_request', 'metadata');
    assertError(await pay(gw, { source: 'ghost' }), 404, 'not_found', 'source');
    assertError(await pay(gw, { surprise: true }), 400, 'invalid_request', 'surprise');
  });

  // The in-memory ledger settles legs synchronously: this pins the gateway's refund routes and errors, and
  // proves nothing about the engine (that is test/integration/sequential.test.ts and the walkers).
  it('refunds (unit, in-memory ledger): partial, several, never above captured', async () => {
    const paid = await pay(gw, { amount: 900 });
    const first = await http(gw, 'POST', '/v1/refunds', { payment: paid.body.id, amount: 400 });
    assert.equal(first.status, 201, first.text);
    assert.deepEqual(pick(first.body, ['object', 'payment', 'amount']), {
      object: 'refund',
      payment: paid.body.id,
      amount: 400,
    });
    assert.match(first.body.id, /^re_/);
    const second = await http(gw, 'POST', '/v1/refunds', { payment: paid.body.id, amount: 300 });
    assert.equal(second.status, 201);
    assertError(
      await http(gw, 'POST', '/v1/refunds', { payment: paid.body.id, amount: 201 }),
      400,
      'amount_exceeds_refundable',
      'amount',
    );
    const rest = await http(gw, 'POST', '/v1/refunds', { payment: paid.body.id });
    assert.equal(rest.body.amount, 200);
    const read = await http(gw, 'GET', `/v1/payments/${paid.body.id}`, undefined, auth_a);
    assert.equal(read.body.amount_refunded, 900);
    const held = await pay(gw, { amount: 10, capture: false });
    assertError(
      await http(gw, 'POST', '/v1/refunds', { payment: held.body.id }),
      409,
      'payment_invalid_state',
    );
    assertError(
      await http(gw, 'POST', '/v1/refunds', { payment: 'pay_x' }),
      400,
      'invalid_request',
      'payment',
    );
    assertError(
      await http(gw, 'POST', '/v1/refunds', { payment: 'pay_00000000abcdef0123' }),
      404,
      'not_found',
      'payment',
    );
  });

  it('scopes every id to the merchant of the API key (404 for other merchants)', async () => {
    const paid = await pay(gw, { amount: 10 });
    const token = await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: card() });
    assertError(
      await http(gw, 'GET', `/v1/payments/${paid.body.id}`, undefined, auth_b),
      404,
      'not_found',
      'id',
    );
    assertError(
      await http(gw, 'POST', `/v1/payments/${paid.body.id}/capture`, {}, json_b),
      404,
      'not_found',
      'id',
    );
    assertError(
      await http(gw, 'POST', `/v1/payments/${paid.body.id}/cancel`, {}, json_b),
      404,
      'not_found',
      'id',
    );
    assertError(
      await http(gw, 'POST', '/v1/refunds', { payment: paid.body.id }, json_b),
      404,
      'not_found',
      'payment',
    );
    assertError(await http(gw, 'GET', '/v1/accounts/cust', undefined, auth_b), 404, 'not_found', 'id');
    await setupAccounts(gw, 'b');
    const b_pay = await pay(gw, { source: token.body.id }, json_b);
    assertError(b_pay, 404, 'not_found', 'source');
    const b_cust = await http(gw, 'GET', '/v1/accounts/cust', undefined, auth_b);
    assert.equal(b_cust.status, 200, 'B has its own "cust"');
    const a_cust = await http(gw, 'GET', '/v1/accounts/cust', undefined, auth_a);
    assert.notEqual(a_cust.body.available, b_cust.body.available);
    const b_paid = await pay(gw, { amount: 5 }, json_b);
    assertError(
      await http(gw, 'GET', `/v1/payments/${b_paid.body.id}`, undefined, auth_a),
      404,
      'not_found',
      'id',
    );
  });

  it('Idempotency-Key: 50 concurrent identical requests make one payment and 50 identical answers', async () => {
    const before_cust = await balance(gw, 'cust');
    const headers = { ...json_a, 'idempotency-key': 'order-50' };
    const body = { amount: 77, currency: 'USD', source: 'cust', destination: 'shop' };
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => http(gw, 'POST', '/v1/payments', body, headers)),
    );
    for (const answer of answers) {
      assert.equal(answer.status, 201);
      assert.deepEqual(answer.body, answers[0]!.body);
    }
    assert.equal(await balance(gw, 'cust'), before_cust - 77, 'charged once');
    const reordered = { destination: 'shop', source: 'cust', currency: 'usd', amount: 77 };
    const retry = await http(gw, 'POST', '/v1/payments', reordered, headers);
    assert.deepEqual(
      retry.body,
      answers[0]!.body,
      'key order and currency case do not change the fingerprint',
    );
    const reused = await http(gw, 'POST', '/v1/payments', { ...body, amount: 78 }, headers);
    assertError(reused, 409, 'idempotency_key_reused', 'idempotency_key');
    const other_payer = await http(gw, 'POST', '/v1/payments', { ...body, source: 'cust2' }, headers);
    assertError(other_payer, 409, 'idempotency_key_reused', 'idempotency_key');
    const other_op = await http(
      gw,
      'POST',
      '/v1/deposits',
      { account: 'cust', amount: 1, currency: 'USD' },
      headers,
    );
    assertError(other_op, 409, 'idempotency_key_reused', 'idempotency_key');
    const b_same_key = await http(
      gw,
      'POST',
      '/v1/accounts',
      { currency: 'USD', kind: 'customer' },
      { ...json_b, 'idempotency-key': 'order-50' },
    );
    assert.equal(b_same_key.status, 201, 'keys are per merchant');
  });

  it('Idempotency-Key: a refused request frees its key; a declined one keeps it; bad keys are 400', async () => {
    const headers = { ...json_a, 'idempotency-key': 'fix-and-retry' };
    const missing = await http(
      gw,
      'POST',
      '/v1/payments',
      { amount: 5, currency: 'USD', source: 'ghost', destination: 'shop' },
      headers,
    );
    assertError(missing, 404, 'not_found', 'source');
    const fixed = await http(
      gw,
      'POST',
      '/v1/payments',
      { amount: 5, currency: 'USD', source: 'cust', destination: 'shop' },
      headers,
    );
    assert.equal(fixed.status, 201, fixed.text);
    const decline_headers = { ...json_a, 'idempotency-key': 'declined-once' };
    const declined = await pay(gw, { amount: 500_000 }, decline_headers);
    assert.equal(declined.status, 402);
    assert.deepEqual(
      (await pay(gw, { amount: 500_000 }, decline_headers)).body,
      declined.body,
      'same decline again',
    );
    assertError(
      await pay(gw, { amount: 5 }, decline_headers),
      409,
      'idempotency_key_reused',
      'idempotency_key',
    );
    const long_key = { ...json_a, 'idempotency-key': 'k'.repeat(256) };
    assertError(await pay(gw, {}, long_key), 400, 'invalid_request', 'idempotency_key');
  });

  it('answers 202 processing after the reply timeout, 504 for reads, 503 when the ledger is away', async () => {
    gw.ledger.mode = 'timeout';
    try {
      const pending = await pay(gw, { amount: 3 });
      assert.equal(pending.status, 202);
      assert.deepEqual(Object.keys(pending.body).sort(), ['id', 'object', 'status']);
      assert.equal(pending.body.status, 'processing');
      assert.match(pending.body.id, /^pay_/);
      const read = await http(gw, 'GET', `/v1/payments/${pending.body.id}`, undefined, auth_a);
      assertError(read, 504, 'timeout');
      gw.ledger.mode = 'normal';
      const later = await http(gw, 'GET', `/v1/payments/${pending.body.id}`, undefined, auth_a);
      assert.equal(later.body.status, 'succeeded', 'the command was applied meanwhile');
      gw.ledger.mode = 'unavailable';
      assertError(await pay(gw, { amount: 3 }), 503, 'unavailable');
    } finally {
      gw.ledger.mode = 'normal';
    }
  });

  it('transport errors: 401, 404, 405 with Allow, 413, 415, invalid JSON', async () => {
    assertError(await http(gw, 'GET', '/v1/accounts/cust', undefined, {}), 401, 'authentication_required');
    assertError(
      await http(gw, 'GET', '/v1/accounts/cust', undefined, { authorization: `Basic ${key_a}` }),
      401,
      'authentication_required',
    );
    assertError(await http(gw, 'GET', '/v1/nothing', undefined, auth_a), 404, 'not_found');
    const wrong = await http(gw, 'DELETE', '/v1/payments/pay_x', undefined, auth_a);
    assertError(wrong, 405, 'method_not_allowed');
    assert.equal(wrong.headers.get('allow'), 'GET');
    assert.equal((await http(gw, 'GET', '/v1/payments', undefined, auth_a)).headers.get('allow'), 'POST');
    assertError(await http(gw, 'POST', '/v1/payments', 'x'.repeat(20_000)), 413, 'payload_too_large');
    assertError(
      await http(gw, 'POST', '/v1/payments', 'a=1', { ...auth_a, 'content-type': 'text/plain' }),
      415,
      'unsupported_media_type',
    );
    assertError(await http(gw, 'POST', '/v1/payments', '{"amount":', json_a), 400, 'invalid_json');
    assertError(await http(gw, 'POST', '/v1/payments', '[1]', json_a), 400, 'invalid_request');
  });

  it('accepts a W3C traceparent: same trace id into the command, a new span, logged', async () => {
    const trace_id = '4bf92f3577b34da6a3ce929d0e0e4736';
    const headers = { ...auth_a, traceparent: `00-${trace_id}-00f067aa0ba902b7-01` };
    await http(gw, 'GET', '/v1/accounts/cust', undefined, headers);
    const sent = gw.ledger.calls.at(-1)!.traceparent;
    assert.match(sent, new RegExp(`^00-${trace_id}-[0-9a-f]{16}-01$`));
    assert.ok(!sent.includes('00f067aa0ba902b7'), 'the gateway starts its own span');
    assert.ok(
      gw.logs.some((line) => line.includes(trace_id)),
      'the trace id is logged',
    );
    await http(gw, 'GET', '/v1/accounts/cust', undefined, { ...auth_a, traceparent: 'garbage' });
    assert.match(gw.ledger.calls.at(-1)!.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });

  it('HTTP and WebSocket (JSON and msgpack) give the same results for the same operations', async () => {
    const json_ws = await WsClient.open(gw.ws_url, auth_a, jsonFrames);
    const msgpack_ws = await WsClient.open(gw.ws_url, auth_a, (data, binary) =>
      binary ? packr.unpack(data) : JSON.parse(data.toString()),
    );
    try {
      const over_http = await scenario('h', async (op, body, key) => {
        const r = await http(gw, ...httpOf(op, body), {
          ...json_a,
          ...(key ? { 'idempotency-key': key } : {}),
        });
        return { status: r.status, body: r.body };
      });
      const over_ws = await scenario('w', async (op, body, key) => {
        const f = await json_ws.request({ op, body, ...(key ? { idempotency_key: key } : {}) });
        return { status: f.status, body: f.status < 400 ? f.body : { error: f.error } };
      });
      const over_msgpack = await scenario('m', async (op, body, key) => {
        const f = await msgpack_ws.request({ op, body, ...(key ? { idempotency_key: key } : {}) }, (v) =>
          packr.pack(v),
        );
        return { status: f.status, body: f.status < 400 ? f.body : { error: f.error } };
      });
      assert.deepEqual(normalize(over_ws, 'w'), normalize(over_http, 'h'));
      assert.deepEqual(normalize(over_msgpack, 'm'), normalize(over_http, 'h'));
    } finally {
      json_ws.close();
      msgpack_ws.close();
    }
  });

  it('WebSocket: pipelining, bad frames, auth at the upgrade, ping/pong', async () => {
    await assert.rejects(WsClient.open(gw.ws_url, {}, jsonFrames), /401/);
    const ws = await WsClient.open(gw.ws_url, auth_a, jsonFrames);
    try {
      const answers = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          ws.request({ op: 'accounts.get', request_id: i, body: { id: 'cust' } }),
        ),
      );
      assert.deepEqual(
        answers.map((a) => a.request_id),
        Array.from({ length: 200 }, (_, i) => i),
      );
      assert.ok(answers.every((a) => a.status === 200 && a.body.id === 'cust'));
      assert.deepEqual(await ws.raw('{not json', false), {
        request_id: null,
        status: 400,
        error: ERRORS('invalid_json'),
      });
      const no_op = await ws.request({ op: 'payments.destroy', body: {} });
      assert.equal(no_op.error.code, 'invalid_request');
      assert.equal(no_op.error.param, 'op');
      const extra = await ws.request({ op: 'accounts.get', body: { id: 'cust' }, surprise: 1 });
      assert.equal(extra.error.param, 'surprise');
      const bad_body = await ws.request({ op: 'payments.create', body: { amount: '1' } });
      assert.equal(bad_body.status, 400);
      assert.equal(bad_body.error.param, 'amount');
      const unsubscribed = await ws.request({ op: 'payments.subscribe' });
      assert.equal(unsubscribed.status, 404, 'no outcome feed in this gateway');
      const pong = new Promise<Buffer>((resolve) => ws.socket.once('pong', resolve));
      ws.socket.ping('hello');
      assert.equal((await pong).toString(), 'hello');
    } finally {
      ws.close();
    }
  });

  it('drain: /readyz 503 and new requests 503 (HTTP and WebSocket)', async () => {
    const other = await startGateway();
    try {
      const ws = await WsClient.open(other.ws_url, auth_a, jsonFrames);
      assert.equal((await http(other, 'GET', '/readyz', undefined, {})).status, 200);
      other.stack.gateway.drain();
      assert.equal((await http(other, 'GET', '/readyz', undefined, {})).status, 503);
      assertError(await http(other, 'GET', '/v1/accounts/x', undefined, auth_a), 503, 'unavailable');
      const frame = await ws.request({ op: 'accounts.get', body: { id: 'x' } });
      assert.equal(frame.error.code, 'unavailable');
      const closed = new Promise<number>((resolve) => ws.socket.once('close', resolve));
      other.stack.gateway.close();
      assert.equal(await closed, 1001, 'close ends WebSockets with 1001 going away');
    } finally {
      await other.close();
    }
  });
});

describe('gateway limits (in-process)', { timeout: 60_000 }, () => {
  let gw: TestGateway;

  before(async () => {
    gw = await startGateway({ RATE_LIMIT_PER_S: '1', RATE_LIMIT_BURST: '12', WS_IN_FLIGHT_MAX: '4' });
  });

  after(async () => {
    await gw?.close();
  });

  it('rate-limits per merchant: 429 with Retry-After, other merchants unaffected', async () => {
    const statuses: number[] = [];
    let limited: Res | null = null;
    for (let i = 0; i < 13; i++) {
      const res = await http(gw, 'GET', '/v1/accounts/x', undefined, auth_a);
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    assert.deepEqual(statuses.slice(0, 12), Array(12).fill(404));
    assert.ok(limited, 'the 13th request is limited');
    assertError(limited, 429, 'rate_limited');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    const ws = await WsClient.open(gw.ws_url, auth_a, jsonFrames);
    const frame = await ws.request({ op: 'accounts.get', body: { id: 'x' } });
    ws.close();
    assert.equal(frame.status, 429);
    assert.ok(frame.retry_after >= 1);
    assert.equal(
      (await http(gw, 'GET', '/v1/accounts/x', undefined, auth_b)).status,
      404,
      'merchant B has its own bucket',
    );
  });

  it('bounds requests in flight per WebSocket: beyond, an overloaded frame', async () => {
    gw.ledger.delay_ms = 300;
    const ws = await WsClient.open(gw.ws_url, auth_b, jsonFrames);
    try {
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          ws.request({ op: 'accounts.get', request_id: i, body: { id: 'x' } }),
        ),
      );
      assert.deepEqual(
        answers.map((a) => a.status),
        [404, 404, 404, 404, 503, 503, 503, 503],
      );
      assert.equal(answers[7].error.code, 'overloaded');
    } finally {
      gw.ledger.delay_ms = 0;
      ws.close();
    }
  });
});

describe('gateway backpressure and Redis loss (in-process)', { timeout: 60_000 }, () => {
  it('refuses new WebSocket requests while the client does not read, and answers every request', async () => {
    const gw = await startGateway({ WS_IN_FLIGHT_MAX: '65536', WS_BACKPRESSURE_MAX_BYTES: '65536' });
    try {
      await http(gw, 'POST', '/v1/accounts', { id: 'c', currency: 'USD', kind: 'customer' });
      await http(gw, 'POST', '/v1/accounts', { id: 's', currency: 'USD', kind: 'merchant' });
      await http(gw, 'POST', '/v1/deposits', { account: 'c', amount: 100, currency: 'USD' });
      const metadata = Object.fromEntries(
        Array.from({ length: 25 }, (_, i) => [`k${i}`.padEnd(40, 'k'), 'v'.repeat(500)]),
      );
      const paid = await http(gw, 'POST', '/v1/payments', {
        amount: 1,
        currency: 'USD',
        source: 'c',
        destination: 's',
        metadata,
      });
      assert.equal(paid.status, 201, paid.text);
      const ws = await WsClient.open(gw.ws_url, auth_a, jsonFrames);
      const tcp = (ws.socket as unknown as { _socket: { pause(): void; resume(): void } })._socket;
      tcp.pause(); // the client stops reading: ~14 KB answers pile up in the kernel, then in uWS
      const pending: Promise<{ status: number; error?: { code: string; message: string } }>[] = [];
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 100; i++)
          pending.push(ws.request({ op: 'payments.get', body: { id: paid.body.id } }));
        await new Promise((r) => setTimeout(r, 20));
      }
      tcp.resume();
      const frames = await Promise.all(pending);
      const refused = frames.filter((f) => f.status === 503);
      assert.ok(frames.some((f) => f.status === 200));
      assert.ok(refused.length > 0, 'some requests were refused for backpressure');
      assert.ok(refused.every((f) => f.error?.code === 'overloaded' && /backpressure/.test(f.error.message)));
      ws.close();
    } finally {
      await gw.close();
    }
  });

  it('Redis down: payments go on (the actors dedupe keys); tokenization answers 503', async () => {
    const gw = await startGateway({ REDIS_URL: 'redis://127.0.0.1:1' });
    try {
      await setupAccounts(gw, '');
      const headers = { ...json_a, 'idempotency-key': 'no-redis' };
      const first = await pay(gw, { amount: 10 }, headers);
      assert.equal(first.status, 201, first.text);
      assert.deepEqual(
        (await pay(gw, { amount: 10 }, headers)).body,
        first.body,
        'a retry is deduplicated durably',
      );
      assertError(await pay(gw, { amount: 11 }, headers), 409, 'idempotency_key_reused', 'idempotency_key');
      const dep_headers = { ...json_a, 'idempotency-key': 'dep-no-redis' };
      const dep = { account: 'cust', amount: 5, currency: 'USD' };
      assert.equal((await http(gw, 'POST', '/v1/deposits', dep, dep_headers)).status, 201);
      const dep_reused = await http(gw, 'POST', '/v1/deposits', { ...dep, amount: 6 }, dep_headers);
      assertError(dep_reused, 409, 'idempotency_key_reused', 'idempotency_key');
      const token = await http(gw, 'POST', '/v1/tokens', { account: 'cust', card: card() });
      assertError(token, 503, 'unavailable');
    } finally {
      await gw.close();
    }
  });
});

type Call = (
  op: string,
  body: Record<string, unknown>,
  key?: string,
) => Promise<{ status: number; body: unknown }>;

/** One sequence of operations touching every op; ids are prefixed so runs do not collide. */
async function scenario(p: string, call: Call) {
  const out: { status: number; body: unknown }[] = [];
  const run = async (op: string, body: Record<string, unknown>, key?: string) => {
    const r = await call(op, body, key);
    out.push(r);
    // biome-ignore lint/suspicious/noExplicitAny: arbitrary JSON
    return r.body as any;
  };
  await run('accounts.create', { id: `${p}_c`, currency: 'USD', kind: 'customer' });
  await run('accounts.create', { id: `${p}_m`, currency: 'USD', kind: 'merchant' });
  await run('accounts.create', { id: `${p}_c`, currency: 'USD', kind: 'customer' });
  await run('deposits.create', { account: `${p}_c`, amount: 5000, currency: 'USD' });
  const token = await run('tokens.create', { account: `${p}_c`, card: card() });
  await run('tokens.create', { account: `${p}_c`, card: card('1234') });
  const paid = await run(
    'payments.create',
    { amount: 1200, currency: 'USD', source: `${p}_c`, destination: `${p}_m` },
    `${p}-k1`,
  );
  await run(
    'payments.create',
    { amount: 1200, currency: 'USD', source: `${p}_c`, destination: `${p}_m` },
    `${p}-k1`,
  );
  await run(
    'payments.create',
    { amount: 1, currency: 'USD', source: `${p}_c`, destination: `${p}_m` },
    `${p}-k1`,
  );
  const held = await run('payments.create', {
    amount: 300,
    currency: 'USD',
    source: token.id,
    destination: `${p}_m`,
    capture: false,
  });
  await run('payments.capture', { id: held.id, amount: 100 });
  const held2 = await run('payments.create', {
    amount: 300,
    currency: 'USD',
    source: `${p}_c`,
    destination: `${p}_m`,
    capture: false,
  });
  await run('payments.cancel', { id: held2.id });
  await run('payments.create', { amount: 999_999, currency: 'USD', source: `${p}_c`, destination: `${p}_m` });
  await run('refunds.create', { payment: paid.id, amount: 200 });
  await run('refunds.create', { payment: paid.id, amount: 5000 });
  await run('payments.get', { id: paid.id });
  await run('payments.get', { id: 'pay_unknown' });
  await run('accounts.get', { id: `${p}_c` });
  await run('accounts.get', { id: `${p}_m` });
  await run('payments.create', { amount: 0.5, currency: 'USD', source: `${p}_c`, destination: `${p}_m` });
  return out;
}

function httpOf(op: string, body: Record<string, unknown>): [string, string, unknown] {
  const { id, ...rest } = body;
  switch (op) {
    case 'accounts.create':
      return ['POST', '/v1/accounts', body];
    case 'accounts.get':
      return ['GET', `/v1/accounts/${id}`, undefined];
    case 'deposits.create':
      return ['POST', '/v1/deposits', body];
    case 'tokens.create':
      return ['POST', '/v1/tokens', body];
    case 'payments.create':
      return ['POST', '/v1/payments', body];
    case 'payments.get':
      return ['GET', `/v1/payments/${id}`, undefined];
    case 'payments.capture':
      return ['POST', `/v1/payments/${id}/capture`, rest];
    case 'payments.cancel':
      return ['POST', `/v1/payments/${id}/cancel`, rest];
    default:
      return ['POST', '/v1/refunds', body];
  }
}

/** Replaces what legitimately differs between runs: the prefix, generated ids, times, fingerprints. */
function normalize(results: unknown, p: string): unknown {
  return JSON.parse(
    JSON.stringify(results)
      .replaceAll(`${p}_`, 'X_')
      .replace(/(pay|tok|re)_[0-9a-zA-Z_]+/g, '$1_ID')
      .replace(/"(created_ms|expires_ms)":\d+/g, '"$1":0')
      .replace(/"fingerprint":"[^"]+"/g, '"fingerprint":"F"')
      .replace(/"id":"(req|idem)_[0-9a-f]+"/g, '"id":"DEPOSIT"'),
  );
}

async function setupAccounts(gw: TestGateway, merchant: '' | 'b'): Promise<void> {
  const headers = merchant === 'b' ? json_b : json_a;
  for (const [id, currency, kind] of [
    ['cust', 'USD', 'customer'],
    ['cust2', 'USD', 'customer'],
    ['shop', 'USD', 'merchant'],
  ] as const) {
    const res = await http(gw, 'POST', '/v1/accounts', { id, currency, kind }, headers);
    assert.equal(res.status, 201, res.text);
  }
  const amount = merchant === 'b' ? 5_000 : 100_000;
  for (const account of ['cust', 'cust2'])
    await http(gw, 'POST', '/v1/deposits', { account, amount, currency: 'USD' }, headers);
}

function pay(
  gw: TestGateway,
  overrides: Record<string, unknown> = {},
  headers: Record<string, string> = json_a,
): Promise<Res> {
  return http(
    gw,
    'POST',
    '/v1/payments',
    { amount: 100, currency: 'USD', source: 'cust', destination: 'shop', ...overrides },
    headers,
  );
}

async function balance(gw: TestGateway, id: string): Promise<number> {
  return (await http(gw, 'GET', `/v1/accounts/${id}`, undefined, auth_a)).body.available;
}

function assertError(res: Res, status: number, code: string, param?: string): void {
  assert.equal(res.status, status, `${status} expected: ${res.text}`);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(res.body.error.code, code, res.text);
  assert.equal(res.body.error.type, ERROR_CATALOG[code as keyof typeof ERROR_CATALOG].type);
  assert.equal(typeof res.body.error.message, 'string');
  if (param !== undefined) assert.equal(res.body.error.param, param, res.text);
}

function ERRORS(code: 'invalid_json') {
  return { type: ERROR_CATALOG[code].type, code, message: 'frame is not a valid message' };
}

function pick(value: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, value[k]]));
}

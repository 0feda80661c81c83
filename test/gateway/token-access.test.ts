import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findPanRuns } from '../../src/gateway/card.js';
import { metricValue } from '../support/metrics.js';
import {
  http,
  json_a,
  json_b,
  jsonFrames,
  key_b,
  type Res,
  startGateway,
  type TestGateway,
  WsClient,
} from './harness.js';

/**
 * Unauthorized token access (the PaymentVaultTokenAccessDenied alert, docs/runbooks/vault-access-anomalies.md):
 * a merchant presenting a card token that is not its own gets the same 404 as for a token that does not
 * exist, and the vault counts it in `vault_token_access_denied_total{owner}` and logs one security event
 * with ids only. Also the vault's operation metrics the dashboard shows.
 */
const visa = '4242424242424242';
const card = { number: visa, exp_month: 12, exp_year: 2099, cvc: '123' };
const denied_other = 'vault_token_access_denied_total{owner="other_merchant"}';
const denied_unknown = 'vault_token_access_denied_total{owner="unknown"}';
/** A well-formed token id whose tag (`ffffffff`) belongs to no configured merchant. */
const forged_token = 'tok_00000001ffffffff0123456789abcdef01234567';

describe('unauthorized token access (in-process gateway)', { timeout: 60_000 }, () => {
  let gw: TestGateway;
  let token_a: string;

  before(async () => {
    gw = await startGateway();
    for (const headers of [json_a, json_b]) {
      for (const [id, kind] of [
        ['cust', 'customer'],
        ['shop', 'merchant'],
      ] as const) {
        const res = await http(gw, 'POST', '/v1/accounts', { id, currency: 'USD', kind }, headers);
        assert.equal(res.status, 201, res.text);
      }
    }
    const deposit = { account: 'cust', amount: 10_000, currency: 'USD' };
    assert.equal((await http(gw, 'POST', '/v1/deposits', deposit, json_a)).status, 201);
    const token = await http(gw, 'POST', '/v1/tokens', { account: 'cust', card }, json_a);
    assert.equal(token.status, 201, token.text);
    token_a = token.body.id;
  });

  after(async () => {
    await gw?.close();
  });

  it("counts and logs merchant B paying with merchant A's token, answered 404 like a missing token", async () => {
    assert.equal(await metric(gw, denied_other), 0, 'the series exists at 0 before any event');
    const res = await pay(json_b, token_a);
    assertNotFoundSource(res);
    assert.equal(await metric(gw, denied_other), 1);
    assert.equal(await metric(gw, denied_unknown), 0);
    const events = securityEvents(gw).filter((e) => e.token_id === token_a);
    assert.equal(events.length, 1, 'one security event per refused use');
    assert.deepEqual(
      {
        level: events[0].level,
        merchant_id: events[0].merchant_id,
        token_owner: events[0].token_owner,
        token_merchant_id: events[0].token_merchant_id,
      },
      {
        level: 40,
        merchant_id: 'merchant_b',
        token_owner: 'other_merchant',
        token_merchant_id: 'merchant_a',
      },
    );
    assert.match(events[0].trace_id, /^[0-9a-f]{32}$/, 'the trace id joins the event to the request log');
    assert.deepEqual(findPanRuns(gw.logs.join('')), [], 'no PAN in any log line');
  });

  it('counts a forged token id of no configured merchant as owner="unknown"', async () => {
    assertNotFoundSource(await pay(json_a, forged_token));
    assert.equal(await metric(gw, denied_unknown), 1);
    const [event] = securityEvents(gw).filter((e) => e.token_id === forged_token);
    assert.equal(event?.merchant_id, 'merchant_a');
    assert.equal(event?.token_owner, 'unknown');
    assert.equal(event?.token_merchant_id, undefined);
  });

  it('counts the WebSocket path the same way, and not the owner using its own token', async () => {
    const before_other = await metric(gw, denied_other);
    const ws = await WsClient.open(gw.ws_url, { authorization: `Bearer ${key_b}` }, jsonFrames);
    try {
      const frame = await ws.request({
        op: 'payments.create',
        body: { amount: 100, currency: 'USD', source: token_a, destination: 'shop' },
      });
      assert.equal(frame.status, 404);
      assert.equal(frame.error.code, 'not_found');
    } finally {
      ws.close();
    }
    assert.equal(await metric(gw, denied_other), before_other + 1);
    const own = await pay(json_a, token_a);
    assert.equal(own.status, 201, own.text);
    assert.equal(await metric(gw, denied_other), before_other + 1, 'the owner is never counted');
  });

  it('reports vault operations: stores, removals and their latency', async () => {
    const text = await (await fetch(`${gw.base}/metrics`)).text();
    assert.ok(metricValue(text, 'vault_operations_total{op="store",result="ok"}') >= 1, text);
    assert.equal(metricValue(text, 'vault_operations_total{op="store",result="error"}'), 0);
    assert.equal(
      metricValue(text, 'vault_operation_duration_seconds_count{op="store"}'),
      metricValue(text, 'vault_operations_total{op="store",result="ok"}'),
    );
    const orphan = await http(gw, 'POST', '/v1/tokens', { account: 'ghost', card }, json_a);
    assert.equal(orphan.status, 404, 'a token of a missing account is refused, and its record removed');
    assert.equal(await metric(gw, 'vault_operations_total{op="remove",result="ok"}'), 1);
  });

  it('counts a vault write that fails (Redis away) as result="error"', async () => {
    const down = await startGateway({ REDIS_URL: 'redis://127.0.0.1:1' });
    try {
      await http(down, 'POST', '/v1/accounts', { id: 'cust', currency: 'USD', kind: 'customer' }, json_a);
      const token = await http(down, 'POST', '/v1/tokens', { account: 'cust', card }, json_a);
      assert.equal(token.status, 503, token.text);
      assert.equal(await metric(down, 'vault_operations_total{op="store",result="error"}'), 1);
      assert.equal(await metric(down, 'vault_operations_total{op="store",result="ok"}'), 0);
    } finally {
      await down.close();
    }
  });

  function pay(headers: Record<string, string>, source: string): Promise<Res> {
    return http(
      gw,
      'POST',
      '/v1/payments',
      { amount: 100, currency: 'USD', source, destination: 'shop' },
      headers,
    );
  }
});

function assertNotFoundSource(res: Res): void {
  assert.equal(res.status, 404, res.text);
  assert.equal(res.body.error.code, 'not_found');
  assert.equal(res.body.error.param, 'source');
}

async function metric(gw: { base: string }, series: string): Promise<number> {
  return metricValue(await (await fetch(`${gw.base}/metrics`)).text(), series);
}

// biome-ignore lint/suspicious/noExplicitAny: log lines are arbitrary JSON
function securityEvents(gw: TestGateway): any[] {
  return gw.logs
    .flatMap((chunk) => chunk.split('\n'))
    .filter((line) => line.includes('"security_event"'))
    .map((line) => JSON.parse(line))
    .filter((event) => event.security_event === 'token_access_denied');
}

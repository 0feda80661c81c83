import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { type HttpsAnswer, httpsRequest, selfSignedCert } from '../support/tls.js';
import { auth_a, jsonFrames, key_a, startGateway, type TestGateway, WsClient } from './harness.js';

/** HTTPS and WSS through uWS.SSLApp with a self-signed certificate made here by openssl. */
describe('TLS (in-process gateway)', { timeout: 60_000 }, () => {
  let dir: string;
  let ca: Buffer;
  let cert_file: string;
  let key_file: string;
  let gw: TestGateway;

  before(async () => {
    ({ dir, ca, cert_file, key_file } = selfSignedCert());
    gw = await startGateway({ TLS_CERT_FILE: cert_file, TLS_KEY_FILE: key_file });
  });

  after(async () => {
    await gw?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the API over HTTPS (TLS 1.3 negotiated) with a verified certificate', async () => {
    const health = await httpsCall(gw.base, 'GET', '/healthz', ca);
    assert.equal(health.status, 200);
    assert.equal(health.protocol, 'TLSv1.3');
    const created = await httpsCall(gw.base, 'POST', '/v1/accounts', ca, {
      id: 'tls_acct',
      currency: 'EUR',
      kind: 'customer',
    });
    assert.equal(created.status, 201, created.body);
    assert.equal(JSON.parse(created.body).id, 'tls_acct');
    const unauth = await httpsCall(gw.base, 'GET', '/v1/accounts/tls_acct', ca, undefined, {});
    assert.equal(unauth.status, 401);
    await assert.rejects(
      httpsCall(gw.base, 'GET', '/healthz', undefined),
      /self.signed|certificate/i,
      'an unknown CA is refused',
    );
    await assert.rejects(
      fetch(gw.base.replace('https:', 'http:') + '/healthz'),
      'plain HTTP is not served on the TLS port',
    );
  });

  it('serves the WebSocket over WSS', async () => {
    const ws = await WsClient.open(gw.ws_url, auth_a, jsonFrames, { ca });
    try {
      const frame = await ws.request({ op: 'accounts.get', body: { id: 'tls_acct' } });
      assert.equal(frame.status, 200);
      assert.equal(frame.body.currency, 'eur');
    } finally {
      ws.close();
    }
  });
});

function httpsCall(
  base: string,
  method: string,
  path: string,
  ca: Buffer | undefined,
  body?: unknown,
  headers: Record<string, string> = { authorization: `Bearer ${key_a}`, 'content-type': 'application/json' },
): Promise<HttpsAnswer> {
  return httpsRequest(`${base}${path}`, {
    ca,
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

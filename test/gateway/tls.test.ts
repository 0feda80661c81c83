import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { auth_a, jsonFrames, key_a, startGateway, type TestGateway, WsClient } from './harness.js';

/** HTTPS and WSS through uWS.SSLApp with a self-signed certificate made here by openssl. */
describe('TLS (in-process gateway)', { timeout: 60_000 }, () => {
  let dir: string;
  let ca: Buffer;
  let gw: TestGateway;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gw-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    ca = readFileSync(join(dir, 'cert.pem'));
    gw = await startGateway({ TLS_CERT_FILE: join(dir, 'cert.pem'), TLS_KEY_FILE: join(dir, 'key.pem') });
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
): Promise<{ status: number; body: string; protocol: string | null }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers, ...(ca ? { ca } : {}), agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: text,
          protocol: (res.socket as TLSSocket).getProtocol?.() ?? null,
        }),
      );
    });
    req.on('error', reject);
    if (body !== undefined) req.end(JSON.stringify(body));
    else req.end();
  });
}

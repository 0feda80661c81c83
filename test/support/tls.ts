import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

/** A self-signed certificate for 127.0.0.1 and localhost, made by openssl in a new temporary folder. */
export function selfSignedCert(): { dir: string; cert_file: string; key_file: string; ca: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'tls-'));
  const cert_file = join(dir, 'cert.pem');
  const key_file = join(dir, 'key.pem');
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
      key_file,
      '-out',
      cert_file,
    ],
    { stdio: 'ignore' },
  );
  return { dir, cert_file, key_file, ca: readFileSync(cert_file) };
}

export interface HttpsAnswer {
  status: number;
  body: string;
  protocol: string | null;
}

/** One HTTPS request that trusts `ca` (undefined: the system's CAs only); no keep-alive. */
export function httpsRequest(
  url: string,
  opts: { ca: Buffer | undefined; method?: string; headers?: Record<string, string>; body?: string },
): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: opts.method ?? 'GET',
        headers: opts.headers ?? {},
        ...(opts.ca ? { ca: opts.ca } : {}),
        agent: false,
      },
      (res) => {
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
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

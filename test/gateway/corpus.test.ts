import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Packr } from 'msgpackr';
import { ERROR_CATALOG, type ErrorCode } from '../../src/domain/index.js';
import {
  auth_a,
  auth_b,
  http,
  json_a,
  json_b,
  jsonFrames,
  key_a,
  startGateway,
  type TestGateway,
  WsClient,
} from './harness.js';

/**
 * The bad-input corpus (DESIGN invariant 5): several hundred malformed requests, each answered with a 4xx
 * JSON error from the catalog, while the node keeps serving. Protocol-level garbage that the uWS parser
 * refuses itself (no Host, bad Content-Length, smuggling attempts) gets its connection closed: no JSON is
 * possible there, the test only proves the node keeps serving.
 */
interface Case {
  name: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  status?: number;
  code?: ErrorCode;
  param?: string;
}

const valid_card = { number: '4242424242424242', exp_month: 12, exp_year: 2099, cvc: '123' };
const bodies: Record<string, Record<string, unknown>> = {
  '/v1/accounts': { currency: 'USD', kind: 'customer' },
  '/v1/deposits': { account: 'cust', amount: 100, currency: 'USD' },
  '/v1/tokens': { account: 'cust', card: valid_card },
  '/v1/payments': { amount: 100, currency: 'USD', source: 'cust', destination: 'shop' },
  '/v1/refunds': { payment: 'PAYMENT', amount: 1 },
  '/v1/payments/PAYMENT/capture': { amount: 1 },
};
const X = '"__X__"';

/** The valid body of `path` with `field` replaced by the raw JSON text `raw` (so -0, 1e400 survive). */
function withRaw(path: string, field: string, raw: string): string {
  const body = { ...bodies[path]!, [field]: '__X__' };
  return JSON.stringify(body).replace(X, raw);
}

function post(
  name: string,
  path: string,
  body: string | Uint8Array,
  expect: Partial<Case> = {},
  headers: Record<string, string> = json_a,
): Case {
  return { name, method: 'POST', path, headers, body, ...expect };
}

function amountCases(): Case[] {
  const raws = [
    '1.5',
    '0.1',
    '1e-7',
    '100.000001',
    '-1',
    '-100',
    '0',
    '-0',
    '9007199254740992',
    '9007199254740993',
    '1e308',
    '1e400',
    '-1e400',
    '"100"',
    'true',
    'null',
    '[]',
    '{}',
    '"1e3"',
  ];
  const targets: [string, string][] = [
    ['/v1/deposits', 'amount'],
    ['/v1/payments', 'amount'],
    ['/v1/refunds', 'amount'],
    ['/v1/payments/PAYMENT/capture', 'amount'],
    ['/v1/accounts', 'overdraft_limit'],
  ];
  const cases: Case[] = [];
  for (const [path, field] of targets) {
    for (const raw of raws) {
      if (field === 'overdraft_limit' && (raw === '0' || raw === '-0')) continue;
      cases.push(
        post(`${path} ${field}=${raw}`, path, withRaw(path, field, raw), {
          status: 400,
          code: 'invalid_request',
          param: field,
        }),
      );
    }
    cases.push(
      post(`${path} ${field}=0x10`, path, withRaw(path, field, '0x10'), {
        status: 400,
        code: 'invalid_json',
      }),
    );
  }
  return cases;
}

function currencyCases(): Case[] {
  const raws = [
    '"XYZ"',
    '"US"',
    '"USDD"',
    '""',
    '"usd "',
    '"XAU"',
    '"123"',
    '"ÜSD"',
    'null',
    '5',
    '["USD"]',
    '"U$D"',
    '{"code":"USD"}',
  ];
  const cases: Case[] = [];
  for (const path of ['/v1/accounts', '/v1/deposits', '/v1/payments'])
    for (const raw of raws)
      cases.push(
        post(`${path} currency=${raw}`, path, withRaw(path, 'currency', raw), {
          status: 400,
          code: 'invalid_request',
          param: 'currency',
        }),
      );
  return cases;
}

function brokenJsonCases(): Case[] {
  const broken = [
    '{',
    '{"amount":',
    '{"a":1,}',
    '{a:1}',
    "{'a':1}",
    '{"amount":01}',
    '{"amount":1e}',
    'NaN',
    '{"a":NaN}',
    '{"a":Infinity}',
    '{}{}',
    '{"a":1}}',
    '\u0000',
    '{"a":"\u0001"}',
    '{"a":"\\x"}',
    '{"a":"unterminated}',
    'undefined',
    '{"a":tru}',
  ];
  const not_objects = ['null', '123', '"text"', 'true', '[]', '[{"amount":1}]'];
  const cases: Case[] = [];
  for (const path of ['/v1/accounts', '/v1/payments', '/v1/tokens']) {
    for (const body of broken)
      cases.push(
        post(`${path} broken ${JSON.stringify(body)}`, path, body, { status: 400, code: 'invalid_json' }),
      );
    for (const body of not_objects)
      cases.push(post(`${path} not an object ${body}`, path, body, { status: 400, code: 'invalid_request' }));
  }
  return cases;
}

function fieldCases(): Case[] {
  const p = '/v1/payments';
  const a = '/v1/accounts';
  const t = '/v1/tokens';
  const card = (field: string, raw: string) =>
    JSON.stringify({ account: 'cust', card: { ...valid_card, [field]: '__X__' } }).replace(X, raw);
  const list: [string, string, string, string][] = [
    [p, 'source', '5', 'source'],
    [p, 'source', 'null', 'source'],
    [p, 'source', '[]', 'source'],
    [p, 'source', '""', 'source'],
    [p, 'source', '"has space"', 'source'],
    [p, 'source', `"${'s'.repeat(56)}"`, 'source'],
    [p, 'source', '"tok_bad"', 'source'],
    [p, 'destination', '5', 'destination'],
    [p, 'destination', '{}', 'destination'],
    [p, 'destination', '"cust"', 'destination'],
    [p, 'destination', '"a/b"', 'destination'],
    [p, 'capture', '"true"', 'capture'],
    [p, 'capture', '1', 'capture'],
    [p, 'description', '5', 'description'],
    [p, 'description', '{}', 'description'],
    [p, 'description', `"${'d'.repeat(1001)}"`, 'description'],
    [p, 'metadata', '[]', 'metadata'],
    [p, 'metadata', '"k=v"', 'metadata'],
    [p, 'metadata', '{"k":1}', 'metadata'],
    [p, 'metadata', '{"a":{"b":"c"}}', 'metadata'],
    [
      p,
      'metadata',
      JSON.stringify(Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v']))),
      'metadata',
    ],
    [p, 'metadata', JSON.stringify({ ['k'.repeat(41)]: 'v' }), 'metadata'],
    [p, 'metadata', JSON.stringify({ k: 'v'.repeat(501) }), 'metadata'],
    [p, 'metadata', '{"":"v"}', 'metadata'],
    [a, 'id', '5', 'id'],
    [a, 'id', '""', 'id'],
    [a, 'id', '"a b"', 'id'],
    [a, 'id', '"ü"', 'id'],
    [a, 'id', `"${'i'.repeat(56)}"`, 'id'],
    [a, 'id', '"a.b"', 'id'],
    [a, 'id', '"world:0"', 'id'],
    [a, 'kind', '"world"', 'kind'],
    [a, 'kind', '""', 'kind'],
    [a, 'kind', '5', 'kind'],
    [a, 'kind', 'null', 'kind'],
    ['/v1/deposits', 'account', '5', 'account'],
    ['/v1/deposits', 'account', '"a b"', 'account'],
    ['/v1/deposits', 'account', 'null', 'account'],
    [t, 'account', '5', 'account'],
    [t, 'account', '""', 'account'],
    [t, 'card', 'null', 'card'],
    [t, 'card', '[]', 'card'],
    [t, 'card', '"4242424242424242"', 'card'],
    ['/v1/refunds', 'payment', '5', 'payment'],
    ['/v1/refunds', 'payment', '"pay_x"', 'payment'],
    ['/v1/refunds', 'payment', '""', 'payment'],
    ['/v1/refunds', 'payment', 'null', 'payment'],
  ];
  const cases = list.map(([path, field, raw, param]) =>
    post(`${path} ${field}=${raw.slice(0, 30)}`, path, withRaw(path, field, raw), {
      status: 400,
      code: 'invalid_request',
      param,
    }),
  );
  const cards: [string, string, string][] = [
    ['number', '4242424242424242', 'card.number'],
    ['number', '"4242424242424241"', 'card.number'],
    ['number', '"42424242"', 'card.number'],
    ['number', '"abcdabcdabcdabcd"', 'card.number'],
    ['number', '"4242-4242-4242-424x"', 'card.number'],
    ['number', '"42424242424242424242"', 'card.number'],
    ['number', '""', 'card.number'],
    ['number', 'null', 'card.number'],
    ['exp_month', '0', 'card.exp_month'],
    ['exp_month', '13', 'card.exp_month'],
    ['exp_month', '"12"', 'card.exp_month'],
    ['exp_month', '1.5', 'card.exp_month'],
    ['exp_year', '99', 'card.exp_year'],
    ['exp_year', '2020', 'card.exp_year'],
    ['exp_year', '"2030"', 'card.exp_year'],
    ['exp_year', '10000', 'card.exp_year'],
    ['cvc', '"12"', 'card.cvc'],
    ['cvc', '"12345"', 'card.cvc'],
    ['cvc', '123', 'card.cvc'],
    ['cvc', '"abc"', 'card.cvc'],
    ['cvc', 'null', 'card.cvc'],
    ['pin', '"1234"', 'card.pin'],
  ];
  for (const [field, raw, param] of cards)
    cases.push(
      post(`/v1/tokens card.${field}=${raw}`, t, card(field, raw), {
        status: 400,
        code: 'invalid_request',
        param,
      }),
    );
  return cases;
}

function structureCases(): Case[] {
  const deep_array = `${'['.repeat(5000)}${']'.repeat(5000)}`;
  const deep_object = `${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}`;
  const deep_meta = JSON.stringify({ ...bodies['/v1/payments'], metadata: '__X__' }).replace(
    X,
    `${'{"a":'.repeat(1000)}"v"${'}'.repeat(1000)}`,
  );
  const mb = 'x'.repeat(1_048_576);
  const mb_json = JSON.stringify({ ...bodies['/v1/payments'], description: 'd'.repeat(1_048_576) });
  return [
    post('deep array nesting', '/v1/payments', deep_array, { status: 400, code: 'invalid_request' }),
    post('deep object nesting', '/v1/payments', deep_object, {
      status: 400,
      code: 'invalid_request',
      param: 'a',
    }),
    post('deep metadata nesting', '/v1/payments', deep_meta, {
      status: 400,
      code: 'invalid_request',
      param: 'metadata',
    }),
    post('deep nesting in tokens', '/v1/tokens', `{"account":"cust","card":${deep_object}}`, {
      status: 400,
      code: 'invalid_request',
    }),
    post(
      '__proto__ field',
      '/v1/payments',
      '{"__proto__":{"admin":true},"amount":1,"currency":"usd","source":"cust","destination":"shop"}',
      { status: 400, code: 'invalid_request', param: '__proto__' },
    ),
    post(
      'constructor field',
      '/v1/accounts',
      '{"constructor":{"prototype":{}},"currency":"usd","kind":"customer"}',
      { status: 400, code: 'invalid_request', param: 'constructor' },
    ),
    post(
      'case-changed field',
      '/v1/payments',
      '{"Amount":1,"currency":"usd","source":"cust","destination":"shop"}',
      { status: 400, code: 'invalid_request', param: 'Amount' },
    ),
    post('unknown field with a 10 KB name', '/v1/accounts', `{"${'f'.repeat(10_000)}":1}`, {
      status: 400,
      code: 'invalid_request',
    }),
    post(
      'duplicate keys, last one invalid',
      '/v1/deposits',
      '{"account":"cust","amount":5,"amount":-5,"currency":"usd"}',
      { status: 400, code: 'invalid_request', param: 'amount' },
    ),
    post('cancel with a body field', '/v1/payments/PAYMENT/cancel', '{"amount":1}', {
      status: 400,
      code: 'invalid_request',
      param: 'amount',
    }),
    post('empty body on payments', '/v1/payments', '', {
      status: 400,
      code: 'invalid_request',
      param: 'amount',
    }),
    post('whitespace body', '/v1/payments', '   \n ', { status: 400, code: 'invalid_json' }),
    ...['/v1/accounts', '/v1/deposits', '/v1/tokens', '/v1/payments', '/v1/refunds'].map((path) =>
      post(`1 MB body on ${path}`, path, mb, { status: 413, code: 'payload_too_large' }),
    ),
    post('1 MB valid JSON', '/v1/payments', mb_json, { status: 413, code: 'payload_too_large' }),
    post('17 KB body', '/v1/payments/PAYMENT/capture', `{"amount":1${' '.repeat(17_000)}}`, {
      status: 413,
      code: 'payload_too_large',
    }),
  ];
}

function invalidUtf8Cases(): Case[] {
  const sequences = [
    [0xff],
    [0xfe],
    [0xc3, 0x28],
    [0xa0, 0xa1],
    [0xe2, 0x28, 0xa1],
    [0xf0, 0x28, 0x8c, 0xbc],
    [0xed, 0xa0, 0x80],
    [0xc0, 0xaf],
    [0xf8, 0x88, 0x80, 0x80, 0x80],
  ];
  const cases: Case[] = [];
  for (const path of ['/v1/accounts', '/v1/payments']) {
    for (const seq of sequences) {
      const body = Buffer.concat([
        Buffer.from('{"currency":"'),
        Buffer.from(seq),
        Buffer.from('","kind":"customer"}'),
      ]);
      cases.push(
        post(`${path} invalid UTF-8 ${Buffer.from(seq).toString('hex')}`, path, new Uint8Array(body), {
          status: 400,
          code: 'invalid_json',
        }),
      );
    }
  }
  return cases;
}

function authCases(): Case[] {
  const values = [
    '',
    'Bearer',
    'Bearer ',
    `bearer ${key_a}`,
    `Basic ${key_a}`,
    `Bearer ${key_a.slice(0, -1)}`,
    `Bearer ${key_a}x`,
    `Bearer  x${key_a}`,
    `Token ${key_a}`,
    key_a,
    'Bearer sk_test_local',
    `Bearer ${'k'.repeat(10_000)}`,
    'Bearer null',
    'Bearer undefined',
    `Bearer ${key_a.toUpperCase()}`,
  ];
  const cases: Case[] = [];
  for (const value of values) {
    const headers: Record<string, string> = value === '' ? {} : { authorization: value };
    cases.push({
      name: `GET with auth ${JSON.stringify(value.slice(0, 40))}`,
      method: 'GET',
      path: '/v1/accounts/cust',
      headers,
      status: 401,
      code: 'authentication_required',
    });
    cases.push(
      post(
        `POST with auth ${JSON.stringify(value.slice(0, 40))}`,
        '/v1/payments',
        JSON.stringify(bodies['/v1/payments']),
        { status: 401, code: 'authentication_required' },
        { ...headers, 'content-type': 'application/json' },
      ),
    );
  }
  return cases;
}

function headerCases(): Case[] {
  const types = [
    'text/plain',
    'application/xml',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/jsonx',
    'text/json',
    'application/json-patch+json',
    'json',
    'application/javascript',
  ];
  const cases: Case[] = types.map((type) =>
    post(
      `content-type ${type}`,
      '/v1/accounts',
      JSON.stringify(bodies['/v1/accounts']),
      { status: 415, code: 'unsupported_media_type' },
      { ...auth_a, 'content-type': type },
    ),
  );
  cases.push(
    post(
      'no content-type with a body',
      '/v1/accounts',
      JSON.stringify(bodies['/v1/accounts']),
      { status: 415, code: 'unsupported_media_type' },
      auth_a,
    ),
  );
  for (const key of ['k'.repeat(256), 'k'.repeat(4000), 'ключ']) {
    if (/[^\x20-\x7e]/.test(key)) continue; // non-ASCII header values go through the raw socket cases
    for (const path of ['/v1/payments', '/v1/accounts'])
      cases.push(
        post(
          `Idempotency-Key of ${key.length} chars on ${path}`,
          path,
          JSON.stringify(bodies[path]),
          { status: 400, code: 'invalid_request', param: 'idempotency_key' },
          { ...json_a, 'idempotency-key': key },
        ),
      );
  }
  cases.push(
    post(
      'garbage traceparent does not rescue a bad body',
      '/v1/payments',
      '{',
      { status: 400, code: 'invalid_json' },
      { ...json_a, traceparent: 'x'.repeat(500) },
    ),
  );
  return cases;
}

function routeCases(): Case[] {
  const get = (path: string, status: number, code: ErrorCode, param?: string): Case => ({
    name: `GET ${path.slice(0, 60)}`,
    method: 'GET',
    path,
    headers: auth_a,
    status,
    code,
    ...(param ? { param } : {}),
  });
  const cases: Case[] = [
    '/',
    '/v1',
    '/v1/',
    '/v1/payment',
    '/v1/payments/x/refund',
    '/V1/accounts',
    '/v1/accounts/x/y',
    '/v2/payments',
    '/v1/ws/x',
    '/v1/payments/pay_x/capture/now',
  ].map((path) => get(path, 404, 'not_found'));
  cases.push(
    get('/v1/payments/pay_x', 404, 'not_found', 'id'),
    get('/v1/payments/%zz', 404, 'not_found', 'id'),
    get(`/v1/payments/${'p'.repeat(3000)}`, 404, 'not_found', 'id'),
  );
  cases.push(
    get('/v1/accounts/%00', 404, 'not_found', 'id'),
    get('/v1/accounts/a%20b', 404, 'not_found', 'id'),
    get('/v1/accounts/..%2f..%2fetc', 404, 'not_found', 'id'),
  );
  cases.push(
    get('/v1/payments/OTHER_MERCHANT', 404, 'not_found', 'id'),
    get('/v1/accounts/b_only', 404, 'not_found', 'id'),
  );
  const wrong: [string, string][] = [
    ['PUT', '/v1/accounts'],
    ['DELETE', '/v1/payments/pay_x'],
    ['PATCH', '/v1/deposits'],
    ['GET', '/v1/deposits'],
    ['GET', '/v1/tokens'],
    ['GET', '/v1/refunds'],
    ['POST', '/healthz'],
    ['DELETE', '/metrics'],
    ['PUT', '/v1/payments/pay_x/capture'],
    ['GET', '/v1/payments/pay_x/cancel'],
    ['POST', '/v1/accounts/cust'],
    ['OPTIONS', '/v1/payments'],
  ];
  for (const [method, path] of wrong)
    cases.push({
      name: `${method} ${path}`,
      method,
      path,
      headers: auth_a,
      status: 405,
      code: 'method_not_allowed',
    });
  cases.push(
    post('capture of a malformed id', '/v1/payments/pay_x/capture', '{}', {
      status: 404,
      code: 'not_found',
      param: 'id',
    }),
  );
  cases.push(
    post('capture of another merchant payment', '/v1/payments/OTHER_MERCHANT/capture', '{}', {
      status: 404,
      code: 'not_found',
      param: 'id',
    }),
  );
  cases.push(
    post('refund of another merchant payment', '/v1/refunds', '{"payment":"OTHER_MERCHANT"}', {
      status: 404,
      code: 'not_found',
      param: 'payment',
    }),
  );
  cases.push(
    post(
      'payment from another merchant account',
      '/v1/payments',
      JSON.stringify({ ...bodies['/v1/payments'], source: 'b_only' }),
      { status: 404, code: 'not_found', param: 'source' },
    ),
  );
  cases.push(
    post(
      'deposit to another merchant account',
      '/v1/deposits',
      JSON.stringify({ ...bodies['/v1/deposits'], account: 'b_only' }),
      { status: 404, code: 'not_found', param: 'account' },
    ),
  );
  return cases;
}

/** Requests written by hand on a socket: header values fetch refuses to send. Each still answers JSON. */
const raw_cases: {
  name: string;
  request: (key: string) => string | Buffer;
  status: number;
  code: ErrorCode;
}[] = [
  {
    name: 'non-ASCII Idempotency-Key',
    request: (k) =>
      Buffer.concat([
        Buffer.from(
          `POST /v1/accounts HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${k}\r\nContent-Type: application/json\r\nIdempotency-Key: `,
        ),
        Buffer.from([0xd0, 0xba, 0xff]),
        Buffer.from('\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}'),
      ]),
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'duplicate Authorization, first one wrong',
    request: (k) =>
      `GET /v1/accounts/cust HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer nope\r\nAuthorization: Bearer ${k}\r\nConnection: close\r\n\r\n`,
    status: 401,
    code: 'authentication_required',
  },
  {
    name: '5 KB Authorization header',
    request: () =>
      `GET /v1/accounts/cust HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${'x'.repeat(5000)}\r\nConnection: close\r\n\r\n`,
    status: 401,
    code: 'authentication_required',
  },
  {
    name: '20 KB junk header without auth',
    request: () =>
      `GET /v1/accounts/cust HTTP/1.1\r\nHost: a\r\nX-Junk: ${'j'.repeat(20_000)}\r\nConnection: close\r\n\r\n`,
    status: 401,
    code: 'authentication_required',
  },
  {
    name: 'declared Content-Length of 100 MB',
    request: (k) =>
      `POST /v1/payments HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${k}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n{}`,
    status: 413,
    code: 'payload_too_large',
  },
  {
    name: 'chunked body with broken JSON',
    request: (k) =>
      `POST /v1/accounts HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${k}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{"a":\r\n0\r\n\r\n`,
    status: 400,
    code: 'invalid_json',
  },
  {
    name: 'non-UTF-8 bytes in a path id',
    request: (k) =>
      Buffer.concat([
        Buffer.from('GET /v1/accounts/'),
        Buffer.from([0xff, 0xfe]),
        Buffer.from(` HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${k}\r\nConnection: close\r\n\r\n`),
      ]),
    status: 404,
    code: 'not_found',
  },
];

/**
 * Refused by the uWS HTTP parser itself (connection closed, no response). The last one is HTTP/1.1
 * pipelining into routes that answer asynchronously, which uWS does not support: it closes the connection.
 */
const protocol_garbage = [
  'POST /v1/accounts HTTP/1.1\r\nHost: a\r\nIdempotency-Key: a\x01b\r\nContent-Length: 2\r\n\r\n{}',
  '\x00\x01\x02 garbage\r\n\r\n',
  'GET /v1/accounts/x HTTP/1.1\r\n\r\n',
  'GET /v1/accounts/x HTTP/1.0\r\n\r\n',
  'POST /v1/accounts HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'POST /v1/accounts HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n{}',
  'FOO /v1/accounts HTTP/1.1\r\nHost: a\r\n\r\n',
  `GET /v1/accounts/x HTTP/1.1\r\nHost: a\r\n${Array.from({ length: 200 }, (_, i) => `X-${i}: a`).join('\r\n')}\r\n\r\n`,
  `GET /v1/accounts/cust HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${key_a}\r\n\r\n`.repeat(3),
];

const bad_frames: [string, string | Uint8Array, boolean][] = [
  ['broken JSON', '{', false],
  ['JSON array', '[1]', false],
  ['JSON string', '"x"', false],
  ['empty text', '', false],
  [
    'msgpack string with invalid UTF-8',
    new Uint8Array([
      0x83,
      0xa2,
      0x6f,
      0x70,
      0xaf,
      ...Buffer.from('accounts.create'),
      0xaa,
      ...Buffer.from('request_id'),
      0x01,
      0xa4,
      ...Buffer.from('body'),
      0x81,
      0xa8,
      ...Buffer.from('currency'),
      0xa3,
      0xff,
      0xfe,
      0xfd,
    ]),
    true,
  ],
  ['invalid msgpack', new Uint8Array([0xc1]), true],
  ['msgpack string', new Packr().pack('x'), true],
  ['no request_id', '{"op":"accounts.get","body":{"id":"cust"}}', false],
  ['request_id object', '{"op":"accounts.get","request_id":{},"body":{}}', false],
  ['request_id float', '{"op":"accounts.get","request_id":1.5}', false],
  ['unknown op', '{"op":"x","request_id":1}', false],
  ['op number', '{"op":5,"request_id":1}', false],
  ['body array', '{"op":"accounts.get","request_id":1,"body":[]}', false],
  ['body string', '{"op":"payments.create","request_id":1,"body":"x"}', false],
  ['idempotency_key number', '{"op":"accounts.create","request_id":1,"idempotency_key":5,"body":{}}', false],
  [
    'idempotency_key too long',
    JSON.stringify({ op: 'accounts.create', request_id: 1, idempotency_key: 'k'.repeat(300), body: {} }),
    false,
  ],
  [
    'float amount',
    '{"op":"payments.create","request_id":1,"body":{"amount":1.5,"currency":"usd","source":"cust","destination":"shop"}}',
    false,
  ],
  [
    'negative amount',
    '{"op":"deposits.create","request_id":1,"body":{"account":"cust","amount":-1,"currency":"usd"}}',
    false,
  ],
  [
    'unknown currency',
    '{"op":"accounts.create","request_id":1,"body":{"currency":"zzz","kind":"customer"}}',
    false,
  ],
  [
    'bad card',
    '{"op":"tokens.create","request_id":1,"body":{"account":"cust","card":{"number":"1234"}}}',
    false,
  ],
  ['unknown frame field', '{"op":"accounts.get","request_id":1,"admin":true}', false],
  [
    'msgpack huge int amount',
    new Packr({ useRecords: false }).pack({
      op: 'deposits.create',
      request_id: 1,
      body: { account: 'cust', amount: 2n ** 60n, currency: 'usd' },
    }),
    true,
  ],
  [
    'msgpack binary body',
    new Packr({ useRecords: false }).pack({ op: 'payments.create', request_id: 1, body: new Uint8Array(4) }),
    true,
  ],
  ['get without id', '{"op":"payments.get","request_id":1,"body":{}}', false],
  ['other merchant payment', '{"op":"payments.get","request_id":1,"body":{"id":"OTHER_MERCHANT"}}', false],
];

describe('bad-input corpus (in-process gateway)', { timeout: 120_000 }, () => {
  let gw: TestGateway;
  let payment = '';
  let other_payment = '';

  before(async () => {
    gw = await startGateway({ RATE_LIMIT_PER_S: '100000', RATE_LIMIT_BURST: '100000' });
    for (const [id, kind] of [
      ['cust', 'customer'],
      ['shop', 'merchant'],
    ])
      await http(gw, 'POST', '/v1/accounts', { id, currency: 'USD', kind }, json_a);
    await http(gw, 'POST', '/v1/deposits', { account: 'cust', amount: 10_000, currency: 'USD' }, json_a);
    payment = (await http(gw, 'POST', '/v1/payments', { ...bodies['/v1/payments'], amount: 5000 }, json_a))
      .body.id;
    await http(gw, 'POST', '/v1/accounts', { id: 'b_only', currency: 'USD', kind: 'customer' }, json_b);
    await http(gw, 'POST', '/v1/accounts', { id: 'b_shop', currency: 'USD', kind: 'merchant' }, json_b);
    await http(gw, 'POST', '/v1/deposits', { account: 'b_only', amount: 100, currency: 'USD' }, json_b);
    other_payment = (
      await http(
        gw,
        'POST',
        '/v1/payments',
        { amount: 5, currency: 'USD', source: 'b_only', destination: 'b_shop' },
        json_b,
      )
    ).body.id;
    assert.match(payment, /^pay_/);
    assert.match(other_payment, /^pay_/);
  });

  after(async () => {
    await gw?.close();
  });

  const cases = [
    ...amountCases(),
    ...currencyCases(),
    ...brokenJsonCases(),
    ...fieldCases(),
    ...structureCases(),
    ...invalidUtf8Cases(),
    ...authCases(),
    ...headerCases(),
    ...routeCases(),
  ];

  it(`answers ${cases.length} + ${raw_cases.length} malformed HTTP requests with 4xx catalog errors`, async () => {
    assert.ok(cases.length + raw_cases.length + bad_frames.length >= 200, `corpus has ${cases.length} cases`);
    const failures: string[] = [];
    for (const c of cases) {
      const path = c.path.replace('PAYMENT', payment).replace('OTHER_MERCHANT', other_payment);
      const body =
        typeof c.body === 'string'
          ? c.body.replace('PAYMENT', payment).replace('OTHER_MERCHANT', other_payment)
          : c.body;
      const res = await http(gw, c.method, path, body, c.headers);
      const problem = checkError(res.status, res.headers.get('content-type'), res.body, c);
      if (problem) failures.push(`${c.name}: ${problem} (${res.text.slice(0, 160)})`);
    }
    const port = Number(new URL(gw.base).port);
    for (const c of raw_cases) {
      const answer = await rawRequest(port, c.request(key_a));
      const [head, json] = answer.split('\r\n\r\n');
      const status = Number(head?.split(' ')[1]);
      const type = /content-type: ([^\r]+)/i.exec(head ?? '')?.[1] ?? null;
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(json ?? '');
      } catch {}
      const problem = checkError(status, type, parsed, { ...c, method: 'RAW', path: '', headers: {} });
      if (problem) failures.push(`raw ${c.name}: ${problem} (${answer.slice(0, 160)})`);
    }
    assert.deepEqual(failures, []);
    await assertServing(gw);
  });

  it(`answers ${bad_frames.length} malformed WebSocket frames with 4xx error frames on a live connection`, async () => {
    const ws = await WsClient.open(gw.ws_url, auth_a, (data, binary) =>
      binary ? new Packr({ useRecords: false }).unpack(data) : JSON.parse(data.toString()),
    );
    try {
      const failures: string[] = [];
      for (const [name, data, binary] of bad_frames) {
        const text = typeof data === 'string' ? data.replace('OTHER_MERCHANT', other_payment) : data;
        const frame = await new Promise<{ status: number; error?: { code: ErrorCode; type: string } }>(
          (resolve) => {
            ws.socket.once('message', (m: Buffer, is_binary: boolean) =>
              resolve(is_binary ? new Packr({ useRecords: false }).unpack(m) : JSON.parse(m.toString())),
            );
            ws.socket.send(text, { binary });
          },
        );
        const code = frame.error?.code;
        if (
          !(frame.status >= 400 && frame.status < 500) ||
          code === undefined ||
          ERROR_CATALOG[code]?.type !== frame.error?.type
        )
          failures.push(`${name}: ${JSON.stringify(frame)}`);
      }
      assert.deepEqual(failures, []);
      const ok = await ws.request({ op: 'accounts.get', body: { id: 'cust' } });
      assert.equal(ok.status, 200, 'the connection still serves');
    } finally {
      ws.close();
    }
  });

  it('closes connections the HTTP parser refuses, and keeps serving', async () => {
    const port = Number(new URL(gw.base).port);
    for (const request of protocol_garbage) {
      const answer = await rawRequest(port, request, 300); // the parser closes at once, or waits for more bytes
      assert.ok(answer === '' || /^HTTP\/1\.1 4\d\d/.test(answer), JSON.stringify(answer.slice(0, 80)));
    }
    const frames = await WsClient.open(gw.ws_url, auth_b, jsonFrames);
    const closed = new Promise<number>((resolve) => frames.socket.once('close', resolve));
    frames.socket.send('x'.repeat(gw.config.request_body_max_bytes + 2048));
    assert.equal(await closed, 1006, 'a frame over maxPayloadLength closes the socket');
    const utf8 = await WsClient.open(gw.ws_url, auth_b, jsonFrames);
    const utf8_closed = new Promise<number>((resolve) => utf8.socket.once('close', resolve));
    utf8.socket.send(new Uint8Array([0x7b, 0xff, 0x7d]), { binary: false });
    assert.ok(
      [1006, 1007].includes(await utf8_closed),
      'a text frame of invalid UTF-8 fails the connection (RFC 6455)',
    );
    await assertServing(gw);
  });
});

function checkError(status: number, content_type: string | null, body: unknown, c: Case): string | null {
  if (!(status >= 400 && status < 500)) return `status ${status}`;
  if (content_type !== 'application/json') return `content-type ${content_type}`;
  const error = (body as { error?: { code?: ErrorCode; type?: string; message?: unknown; param?: string } })
    ?.error;
  if (!error?.code || !(error.code in ERROR_CATALOG)) return `code ${error?.code}`;
  if (ERROR_CATALOG[error.code].type !== error.type || ERROR_CATALOG[error.code].http_status !== status)
    return `catalog mismatch ${error.code}/${error.type}/${status}`;
  if (typeof error.message !== 'string') return 'no message';
  if (c.status !== undefined && status !== c.status) return `expected ${c.status}, got ${status}`;
  if (c.code !== undefined && error.code !== c.code) return `expected ${c.code}, got ${error.code}`;
  if (c.param !== undefined && error.param !== c.param)
    return `expected param ${c.param}, got ${error.param}`;
  return null;
}

function rawRequest(port: number, data: string | Buffer, wait_ms = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(data));
    let out = '';
    const timer = setTimeout(() => socket.destroy(), wait_ms);
    socket.on('data', (d) => {
      out += d.toString('latin1');
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on('error', () => {});
  });
}

async function assertServing(gw: TestGateway): Promise<void> {
  assert.equal((await http(gw, 'GET', '/healthz', undefined, {})).status, 200);
  const read = await http(gw, 'GET', '/v1/accounts/cust', undefined, auth_a);
  assert.equal(read.status, 200, read.text);
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  parseAccountId,
  parseAmount,
  parseCurrency,
  paymentIdFor,
  shard,
  shardOfPaymentId,
  shardOfTokenId,
  tokenIdFor,
} from '../../src/domain/index.js';

function fnv1aReference(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) hash = Math.imul(hash ^ byte, 0x01000193);
  return hash >>> 0;
}

test('shard is FNV-1a 32 over UTF-8 bytes (known vectors)', () => {
  assert.equal(shard(''), 0x811c9dc5);
  assert.equal(shard('a'), 0xe40c292c);
  assert.equal(shard('foobar'), 0xbf9cf968);
});

test('shard equals a TextEncoder reference for any string, including astral and lone surrogates', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (text) => shard(text) === fnv1aReference(text)),
    { numRuns: 2000 },
  );
});

test('payment and token ids embed the owner shard and parse back', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
      (s, unique) => {
        const pay = paymentIdFor(s, unique);
        const tok = tokenIdFor(s, unique);
        return (
          shardOfPaymentId(pay) === s &&
          shardOfTokenId(tok) === s &&
          pay.startsWith('pay_') &&
          tok.startsWith('tok_')
        );
      },
    ),
  );
  assert.equal(paymentIdFor(255, 'x'), 'pay_000000ffx');
  assert.equal(shardOfPaymentId('pay_000000ff'), null, 'needs a unique suffix');
  assert.equal(shardOfPaymentId('pay_0000GGffx'), null);
  assert.equal(shardOfPaymentId('tok_000000ffx'), null);
  assert.equal(shardOfTokenId('pay_000000ffx'), null);
  assert.throws(() => paymentIdFor(-1, 'x'), RangeError);
  assert.throws(() => paymentIdFor(1, 'bad id'), RangeError);
});

test('account ids, amounts and currencies are parsed once at the edge', () => {
  assert.equal(parseAccountId('acct_1-A'), 'acct_1-A');
  for (const bad of ['', 'a b', 'x'.repeat(65), 'world:0', 12, null]) assert.equal(parseAccountId(bad), null);
  assert.equal(parseAmount(1), 1);
  for (const bad of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN, Infinity, '5', null]) {
    assert.equal(parseAmount(bad), null);
  }
  assert.equal(parseCurrency('USD'), 'usd');
  assert.equal(parseCurrency('eur'), 'eur');
  for (const bad of ['usdd', 'abc', 'xau', 1]) assert.equal(parseCurrency(bad), null);
});

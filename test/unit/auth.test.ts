import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiKeys } from '../../src/gateway/auth.js';

describe('API keys', () => {
  it('accepts the dev key only when no keys are configured', () => {
    assert.equal(ApiKeys.parse('').authenticate('Bearer sk_test_local'), 'merchant_local');
    const keys = ApiKeys.parse('m1:sk_live_aaaaaaaaaaaaaaaa,m2:sk_live_bbbbbbbbbbbbbbbb');
    assert.equal(keys.authenticate('Bearer sk_test_local'), null);
    assert.equal(keys.authenticate('Bearer sk_live_aaaaaaaaaaaaaaaa'), 'm1');
    assert.equal(keys.authenticate('Bearer sk_live_bbbbbbbbbbbbbbbb'), 'm2');
  });

  it('refuses malformed headers and wrong keys', () => {
    const keys = ApiKeys.parse('m1:sk_live_aaaaaaaaaaaaaaaa');
    for (const header of [
      '',
      'sk_live_aaaaaaaaaaaaaaaa',
      'Basic sk_live_aaaaaaaaaaaaaaaa',
      'Bearer sk_live_aaaaaaaaaaaaaaab',
    ]) {
      assert.equal(keys.authenticate(header), null, header);
    }
  });

  it('does not keep keys in clear', () => {
    const keys = ApiKeys.parse('m1:sk_live_aaaaaaaaaaaaaaaa');
    assert.doesNotMatch(JSON.stringify(keys) + String(Object.values(keys)), /sk_live/);
  });

  it('rejects short keys and malformed entries', () => {
    assert.throws(() => ApiKeys.parse('m1:short'), /entry 1/);
    assert.throws(() => ApiKeys.parse('m1:sk_live_aaaaaaaaaaaaaaaa,nokey'), /entry 2/);
  });
});

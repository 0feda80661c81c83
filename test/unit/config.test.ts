import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, configKeys, loadConfig, riskRules } from '../../src/config.js';
import { DEFAULT_DOMAIN_CONFIG, DEFAULT_RISK_RULES, resolveConfig } from '../../src/domain/state.js';

const prod_vault = {
  VAULT_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}`,
  VAULT_ACTIVE_KEY_ID: 'k1',
  VAULT_FINGERPRINT_KEY: Buffer.alloc(32, 9).toString('base64'),
};

describe('config', () => {
  it('loads the defaults', () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.partitions, 64);
    assert.equal(config.redis_url, 'redis://127.0.0.1:6379');
    assert.ok(config.lanes_effective >= 1);
  });

  it('lets an environment variable override every key', () => {
    assert.equal(loadConfig({ PORT: '9999' }).port, 9999);
    assert.equal(loadConfig({ KAFKA_BROKERS: 'a:1,b:2' }).kafka_brokers, 'a:1,b:2');
    assert.equal(loadConfig({ LANES: '3' }).lanes_effective, 3);
    for (const key of configKeys()) {
      assert.ok(key === key.toLowerCase(), `${key} maps to env ${key.toUpperCase()}`);
    }
  });

  it('takes one transaction per node unless told per partition (auto is node)', () => {
    assert.equal(loadConfig({}).transaction_scope_effective, 'node');
    assert.equal(loadConfig({ TRANSACTION_SCOPE: 'node' }).transaction_scope_effective, 'node');
    assert.equal(loadConfig({ TRANSACTION_SCOPE: 'partition' }).transaction_scope_effective, 'partition');
    assert.ok(!(configKeys() as string[]).includes('kafka_client'), 'one client: @platformatic/kafka');
  });

  it('gives new accounts the risk rules of the risk_* keys, the domain defaults unless set', () => {
    assert.deepEqual(riskRules(loadConfig({})), DEFAULT_RISK_RULES);
    const rules = riskRules(loadConfig({ RISK_VELOCITY_COUNT_MAX: '500', RISK_SINGLE_PAYMENT_MAX: '7' }));
    assert.equal(rules.velocity_count_max, 500);
    assert.equal(rules.single_payment_max, 7);
    assert.deepEqual(resolveConfig({ risk_rules: rules }).risk_rules, rules, 'the domain accepts them');
    assert.throws(() => loadConfig({ RISK_VELOCITY_COUNT_MAX: '0' }), /"risk_velocity_count_max"/);
    assert.throws(() => loadConfig({ RISK_VELOCITY_COUNT_MAX: '10001' }), /"risk_velocity_count_max"/);
  });

  it('reserves table rows as the domain does, within the domain bound', () => {
    const config = loadConfig({});
    assert.equal(config.payment_rows_reserved, DEFAULT_DOMAIN_CONFIG.payment_rows_reserved);
    assert.equal(config.record_rows_reserved, DEFAULT_DOMAIN_CONFIG.record_rows_reserved);
    assert.equal(loadConfig({ PAYMENT_ROWS_RESERVED: '65536' }).payment_rows_reserved, 65_536);
    assert.throws(() => loadConfig({ PAYMENT_ROWS_RESERVED: '0' }), /"payment_rows_reserved"/);
    assert.throws(() => loadConfig({ RECORD_ROWS_RESERVED: String(2 ** 24 + 1) }), /"record_rows_reserved"/);
    assert.throws(() => resolveConfig({ payment_rows_reserved: 2 ** 24 + 1 }), /payment_rows_reserved/);
  });

  it('names the key of an invalid value', () => {
    assert.throws(
      () => loadConfig({ PORT: 'eighty' }),
      (e: Error) => e instanceof ConfigError && /"port"/.test(e.message),
    );
    assert.throws(() => loadConfig({ PARTITIONS: '0' }), /"partitions"/);
    assert.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), /"log_level"/);
    assert.throws(() => loadConfig({ REDIS_URL: 'http://x' }), /"redis_url"/);
  });

  it('refuses unknown keys in a config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ prot: 1 }));
    assert.throws(() => loadConfig({ CONFIG_FILE: file }), /prot/);
    writeFileSync(file, JSON.stringify({ port: 7000 }));
    assert.equal(loadConfig({ CONFIG_FILE: file }).port, 7000);
  });

  it('refuses production without real API keys', () => {
    assert.throws(() => loadConfig({ NODE_ENV: 'production' }), /"api_keys"/);
    assert.equal(
      loadConfig({ NODE_ENV: 'production', API_KEYS: 'm1:sk_live_0123456789abcdef', ...prod_vault }).node_env,
      'production',
    );
  });

  it('refuses production with the development vault keys', () => {
    const api = { NODE_ENV: 'production', API_KEYS: 'm1:sk_live_0123456789abcdef' };
    assert.throws(() => loadConfig(api), /"vault_keys"/);
    assert.throws(
      () => loadConfig({ ...api, VAULT_KEYS: prod_vault.VAULT_KEYS, VAULT_ACTIVE_KEY_ID: 'k1' }),
      /"vault_fingerprint_key"/,
    );
    assert.throws(() => loadConfig({ VAULT_ACTIVE_KEY_ID: 'nope' }), /"vault_active_key_id"/);
    assert.throws(() => loadConfig({ TLS_CERT_FILE: '/x.pem' }), /"tls_key_file"/);
  });
});

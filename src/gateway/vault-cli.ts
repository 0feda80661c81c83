import { Redis } from 'ioredis';
import { ConfigError, loadConfig } from '../config.js';
import { Vault } from './vault.js';

/**
 * `npm run vault:rewrap` (node dist/gateway/vault-cli.js rewrap [records per round]): after a key rotation
 * (new key added to VAULT_KEYS and made VAULT_ACTIVE_KEY_ID, old key kept), moves every vault record to the
 * active key, in bounded rounds, then prints a JSON summary. Safe to run while nodes serve: each record is
 * swapped only if unchanged (compare-and-set). Remove the old key from VAULT_KEYS only after `remaining`
 * is 0.
 */
const ROUNDS_MAX = 10_000;

export async function rewrapAll(vault: Vault, records_per_round: number) {
  let rewrapped = 0;
  let scanned = 0;
  let remaining = 0;
  for (let round = 0; round < ROUNDS_MAX; round++) {
    const result = await vault.rewrap(records_per_round);
    rewrapped += result.rewrapped;
    scanned = result.scanned;
    remaining = result.remaining;
    if (result.remaining === 0 || result.rewrapped === 0) break;
  }
  return { active_key_id: vault.active_key_id, scanned, rewrapped, remaining };
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] !== 'rewrap') {
    process.stderr.write('usage: vault-cli rewrap [records per round, default 1000]\n');
    return 2;
  }
  const records_per_round = Number(argv[1] ?? 1000);
  if (!Number.isSafeInteger(records_per_round) || records_per_round < 1) {
    process.stderr.write('records per round must be a positive integer\n');
    return 2;
  }
  const config = loadConfig();
  const redis = new Redis(config.redis_url, { maxRetriesPerRequest: 2, lazyConnect: true });
  try {
    await redis.connect();
    const vault = new Vault({
      redis,
      key_prefix: `${config.redis_key_prefix}${config.topic_prefix}:`,
      keys: config.vault_keys,
      active_key_id: config.vault_active_key_id,
      fingerprint_key: config.vault_fingerprint_key,
    });
    const summary = await rewrapAll(vault, records_per_round);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return summary.remaining === 0 ? 0 : 1;
  } finally {
    redis.disconnect();
  }
}

if (process.argv[1]?.endsWith('vault-cli.js') || process.argv[1]?.endsWith('vault-cli.ts')) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      const message = err instanceof ConfigError ? err.message : ((err as Error).stack ?? String(err));
      process.stderr.write(`vault-cli: ${message}\n`);
      process.exit(1);
    },
  );
}

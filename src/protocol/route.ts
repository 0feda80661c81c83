import { type Command, shard, shardOfPaymentId, shardOfTokenId } from '../domain/index.js';

/**
 * The shard that owns a command: the account it addresses, or the payer encoded in a payment or token id.
 * Every command of one account goes to partition `shard mod P`, so one actor sees all of them, in order.
 * Null for a command that names no owner (a bug at the edge: the caller refuses it).
 */
export function shardOfCommand(command: Command): number | null {
  const c = command as { account_id?: unknown; payment_id?: unknown; source?: unknown; type: string };
  if (c.type === 'create_payment' && typeof c.source === 'string') {
    return c.source.startsWith('tok_') ? shardOfTokenId(c.source) : shard(c.source);
  }
  if (typeof c.account_id === 'string') return shard(c.account_id);
  if (typeof c.payment_id === 'string') return shardOfPaymentId(c.payment_id);
  return null;
}

export function partitionOf(command: Command, partitions_total: number): number | null {
  const owner = shardOfCommand(command);
  return owner === null ? null : owner % partitions_total;
}

import type { Admin } from './kafka-port.js';

export interface TopicNames {
  commands: string;
  events: string;
  replies_prefix: string;
}

export function topicNames(prefix: string): TopicNames {
  return { commands: `${prefix}.commands`, events: `${prefix}.events`, replies_prefix: `${prefix}.replies.` };
}

export function replyTopic(prefix: string, node_id: string): string {
  return `${topicNames(prefix).replies_prefix}${node_id}`;
}

/**
 * Creates the topics if absent. The events topic is the ledger's changelog: kept forever. An existing topic
 * with another partition count means P changed, which is a migration, never done silently.
 */
export async function ensureTopics(
  admin: Admin,
  opts: { prefix: string; node_id: string; partitions: number; replication_factor: number },
): Promise<void> {
  const names = topicNames(opts.prefix);
  const reply = replyTopic(opts.prefix, opts.node_id);
  const existing = new Set(await admin.listTopics());
  const wanted = [
    { topic: names.commands, partitions: opts.partitions, configs: { 'retention.ms': '604800000' } },
    { topic: names.events, partitions: opts.partitions, configs: { 'retention.ms': '-1' } },
    { topic: reply, partitions: 1, configs: { 'retention.ms': '3600000' } },
  ];
  const missing = wanted.filter((t) => !existing.has(t.topic));
  if (missing.length > 0) {
    await admin.createTopics(missing.map((t) => ({ ...t, replication_factor: opts.replication_factor })));
  }
  const counts = await admin.partitionCounts([names.commands, names.events]);
  for (const [topic, count] of counts) {
    if (count !== opts.partitions) {
      throw new Error(
        `topic ${topic} has ${count} partitions but config partitions=${opts.partitions}: ` +
          'changing P is a migration (see docs), set PARTITIONS to the existing count',
      );
    }
  }
}

// Types of scripts/local-kafka.mjs for the TypeScript callers (test/region/demo.ts).
export function kafkaCommand(...args: string[]): number;
export function ensureLocalKafka(opts?: {
  free_ports_if_taken?: boolean;
}): Promise<{ brokers: string; started: boolean }>;

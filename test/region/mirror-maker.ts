import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { repo_root, run } from '../chaos/env.js';

/**
 * MirrorMaker 2 in dedicated mode through tools/kafka/mirror-maker.sh, for the second-region test, bench and
 * demo: one flow `primary -> secondary` of the topics matching `topics` (a regex), exactly-once on or off,
 * its own cache directory (config, logs, pid) and the shared jars. The copy of topic T is `primary.T`.
 */
export interface MirrorMakerOptions {
  source: string[];
  target: string[];
  /** A Java regex of the source topics to mirror, e.g. `demo\.events`. */
  topics: string;
  exactly_once: boolean;
  /** Under .cache/; removed by dispose(). */
  cache_dir: string;
  /** mm2.properties lines appended last (they win over the template's). */
  extra_properties?: string[];
}

export const source_alias = 'primary';

/** The name DefaultReplicationPolicy gives the copy of `topic` in the target cluster. */
export function copyOf(topic: string): string {
  return `${source_alias}.${topic}`;
}

/** A regex matching exactly this topic name (dots are literal). */
export function topicRegex(topic: string): string {
  return topic.replace(/[.\\^$|?*+()[\]{}]/g, (c) => `\\${c}`);
}

export class MirrorMaker {
  readonly cache_dir: string;
  readonly log_file: string;
  readonly config_file: string;
  readonly #env: Record<string, string>;

  constructor(opts: MirrorMakerOptions) {
    this.cache_dir = opts.cache_dir;
    this.log_file = join(opts.cache_dir, 'logs', 'mirror-maker.log');
    this.config_file = join(opts.cache_dir, 'run', 'mm2.properties');
    mkdirSync(opts.cache_dir, { recursive: true });
    this.#env = {
      MM2_SOURCE_BOOTSTRAP: opts.source.join(','),
      MM2_TARGET_BOOTSTRAP: opts.target.join(','),
      MM2_TOPICS: opts.topics,
      MM2_EXACTLY_ONCE: opts.exactly_once ? 'enabled' : 'disabled',
      MM2_CACHE_DIR: opts.cache_dir,
      MM2_EXTRA_PROPERTIES: (opts.extra_properties ?? []).join('\n'),
      MM2_HEAP_OPTS: '-Xms128m -Xmx512m',
    };
  }

  async #cmd(command: string, timeout_ms: number): Promise<string> {
    const script = join(repo_root, 'tools', 'kafka', 'mirror-maker.sh');
    const { code, output } = await run('bash', [script, command], this.#env, timeout_ms);
    if (code !== 0)
      throw new Error(`mirror-maker.sh ${command} exited ${code} (log ${this.log_file}):\n${output}`);
    return output;
  }

  /** Resolves once MirrorMaker logged its start (its tasks start a few seconds later). */
  start = () => this.#cmd('start', 360_000);
  stop = () => this.#cmd('stop', 60_000);
  /** SIGKILL: a crash, with whatever transaction it had open left open. */
  kill = () => this.#cmd('kill', 30_000);
  fetch = () => this.#cmd('fetch', 360_000);

  /** SIGKILL, then a new start (same transactional ids): resolves with how long the start took, in ms. */
  async killAndRestart(): Promise<number> {
    await this.kill();
    const started_ms = Date.now();
    await this.start();
    return Date.now() - started_ms;
  }

  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.cache_dir, { recursive: true, force: true });
  }
}

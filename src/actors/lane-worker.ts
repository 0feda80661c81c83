import { workerData } from 'node:worker_threads';
import { move } from 'piscina';
import {
  apply,
  type Command,
  createPartitionState,
  type DomainConfig,
  type DomainEvent,
  evolve,
  InvariantError,
  type PartitionState,
} from '../domain/index.js';
import {
  type CheckpointParts,
  DirtyTracker,
  stateFromParts,
  takeDelta,
} from '../protocol/checkpoint-delta.js';
import { partitionOf } from '../protocol/route.js';
import {
  type BatchOutput,
  type CommandEnvelope,
  decode,
  encodeOwned,
  type ReplyRecord,
} from '../protocol/wire.js';
import type { LaneStats, LaneTask } from './protocol.js';

/**
 * One lane = one worker thread. It owns the actor tables of the partitions pinned to it (p mod W), so an
 * account is only ever touched by this thread. Tasks for one partition arrive strictly in order.
 */
const domain_config = (workerData?.domain_config ?? {}) as Partial<DomainConfig>;
interface Actors {
  state: PartitionState;
  dirty: DirtyTracker;
}
const partitions = new Map<number, Actors>();
/** The seq of the last op this lane ran: ops arrive numbered in the order they were queued (Lanes.#runOn). */
let seq_last = 0;

export default function run(task: LaneTask): unknown {
  if (task.seq !== seq_last + 1)
    throw new Error(`lane invariant: op ${task.op} #${task.seq} ran after #${seq_last}: out of queue order`);
  seq_last = task.seq;
  switch (task.op) {
    case 'apply':
      return move(applyBatch(task.partition, task.partitions_total, task.input));
    case 'replay':
      return replayChecked(task.partition, task.input);
    case 'load':
      partitions.set(task.partition, load(task.partition, task.parts));
      return null;
    case 'drop':
      partitions.delete(task.partition);
      return null;
    case 'checkpoint': {
      const { state, dirty } = actorsOf(task.partition);
      return move(encodeOwned(takeDelta(state, dirty)));
    }
    case 'checkpoint_failed':
      actorsOf(task.partition).dirty.full = true;
      return null;
    case 'stats':
      return stats();
  }
}

function actorsOf(partition: number): Actors {
  const actors = partitions.get(partition);
  if (!actors) throw new Error(`lane invariant: partition ${partition} is not loaded on this lane`);
  return actors;
}

function load(partition: number, parts: Uint8Array | null): Actors {
  const dirty = new DirtyTracker();
  if (parts === null) return { state: createPartitionState(partition, domain_config), dirty };
  const decoded = decode<CheckpointParts>(parts);
  const state = stateFromParts(decoded);
  if (state.partition !== partition)
    throw new Error(`lane invariant: checkpoint of ${state.partition} loaded as ${partition}`);
  dirty.full = false;
  dirty.generation_current_id = decoded.generation_current_id;
  dirty.generation_previous_id = decoded.generation_previous_id;
  return { state, dirty };
}

function applyBatch(partition: number, partitions_total: number, input: Uint8Array): Uint8Array {
  const { state, dirty } = actorsOf(partition);
  const records = decode<Uint8Array[]>(input);
  const event_starts = new Uint32Array(records.length); // little-endian on every platform Node runs on
  const output: BatchOutput = {
    events: [],
    event_starts: new Uint8Array(event_starts.buffer),
    replies: [],
    follow_ups: [],
    rejected: [],
    dirty_total: 0,
  };
  for (let index = 0; index < records.length; index++) {
    event_starts[index] = output.events.length;
    const envelope = decodeEnvelope(records[index]!);
    if (envelope === null) {
      output.rejected.push(index);
      continue;
    }
    assertOwned(envelope.command, partition, partitions_total);
    const decision = apply(state, envelope.command);
    for (const event of decision.events) {
      output.events.push({ key: event.account_id, value: encodeOwned(event) });
      dirty.track(partition, event);
    }
    for (const follow_up of decision.follow_ups) {
      const leg: CommandEnvelope = {
        command: follow_up,
        reply_to: null,
        request_id: null,
        traceparent: envelope.traceparent,
      };
      const owner = partitionOf(follow_up, partitions_total);
      const value = encodeOwned(leg);
      output.follow_ups.push({ partition: owner, key: follow_up.command_id, value, source: index });
    }
    if (decision.reply && envelope.reply_to && envelope.request_id) {
      const { request_id } = envelope;
      const value = encodeOwned({ request_id, reply: decision.reply } satisfies ReplyRecord);
      output.replies.push({ reply_to: envelope.reply_to, key: request_id, value });
    }
  }
  output.dirty_total = dirty.size;
  return encodeOwned(output);
}

/**
 * Only the gateway and the lanes write the commands topic, so an undecodable record is a bug or foreign data;
 * it is reported back (logged with its offset by the stream loop) instead of blocking the partition forever.
 */
function decodeEnvelope(bytes: Uint8Array): CommandEnvelope | null {
  try {
    const envelope = decode<CommandEnvelope>(bytes);
    const command = envelope?.command as { type?: unknown; command_id?: unknown } | undefined;
    if (typeof command?.type !== 'string' || typeof command.command_id !== 'string') return null;
    return envelope;
  } catch {
    return null;
  }
}

/** A command on the wrong partition would split an account's state across two actors: crash loudly. */
function assertOwned(command: Command, partition: number, partitions_total: number): void {
  const owner = partitionOf(command, partitions_total);
  if (owner === null && command.type === 'expire_authorizations') return; // partition-wide timer
  if (owner !== partition) {
    throw new Error(
      `lane invariant: command ${command.command_id} (${command.type}) of partition ${owner} reached ${partition}`,
    );
  }
}

/**
 * An event that does not apply to the loaded state (a payment created twice, a leg of an unknown refund)
 * means the checkpoint and the log disagree: answered as data, not thrown, so the stream loop can tell it
 * from a crash by type (errors lose their class crossing the thread) and replay without the checkpoint.
 */
function replayChecked(partition: number, input: Uint8Array): { invariant_failed: string } | null {
  try {
    replay(partition, input);
    return null;
  } catch (err) {
    if (err instanceof InvariantError) return { invariant_failed: err.message };
    throw err;
  }
}

function replay(partition: number, input: Uint8Array): void {
  const { state, dirty } = actorsOf(partition);
  for (const record of decode<Uint8Array[]>(input)) {
    const event = decode<DomainEvent>(record);
    evolve(state, event);
    dirty.track(partition, event);
  }
}

function stats(): LaneStats {
  let accounts = 0;
  for (const { state } of partitions.values()) accounts += state.accounts.size;
  return { partitions: partitions.size, accounts };
}

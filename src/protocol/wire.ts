import { Packr } from 'msgpackr';
import type { Command, Reply } from '../domain/index.js';

/**
 * Wire records. Commands travel in an envelope that says where the reply goes; the domain only sees
 * `command`. Records are msgpack (no shared structures: every record must decode alone, by any consumer,
 * including the independent verifiers).
 */
export interface CommandEnvelope {
  command: Command;
  /** Reply topic of the gateway that waits for this command, or null for follow-up legs. */
  reply_to: string | null;
  request_id: string | null;
  traceparent: string | null;
}

export interface ReplyRecord {
  request_id: string;
  reply: Reply;
}

/** A record the lane has serialized already: the bytes that go on the wire, and its key. */
export interface WireRecord {
  key: string;
  value: Uint8Array;
}

/**
 * What a lane returns for one batch of one partition. Every record is serialized once, in the lane (off the
 * main thread): the stream loop only routes the bytes.
 */
export interface BatchOutput {
  /** The partition's events (DomainEvent), keyed by account id. */
  events: WireRecord[];
  /** Replies (ReplyRecord), keyed by request id, with the reply topic of the gateway that waits. */
  replies: (WireRecord & { reply_to: string })[];
  /**
   * Follow-up legs (CommandEnvelope), keyed by command id, with the partition that owns them (null: none) and
   * the index of the input record they come from (tracing gives a leg its source's trace).
   */
  follow_ups: (WireRecord & { partition: number | null; source?: number })[];
  /**
   * Per input record i, the number of events written before it, as little-endian uint32 (4 bytes each): record
   * i wrote events [start(i), start(i + 1)), the last one up to events.length (read with `eventStart`).
   * Tracing names each command's event offsets with it. Bytes, not a number[]: msgpack copies them in one
   * piece, so a lane pays a store per command and one copy per batch for it.
   */
  event_starts: Uint8Array;
  /** Indexes of input records that did not decode as a command envelope (skipped, logged). */
  rejected: number[];
  /** Entities of the partition changed since its last checkpoint (checkpoint early past a bound). */
  dirty_total: number;
}

/** Events written before input record `index` (events.length past the last record). */
export function eventStart(output: BatchOutput, index: number): number {
  const bytes = output.event_starts;
  const at = index * 4;
  if (at + 4 > bytes.length) return output.events.length;
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

export function decode<T>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}

/**
 * msgpackr packs into a shared arena; a buffer that is transferred to another thread must own its memory,
 * or the transfer would detach the arena.
 */
export function encodeOwned(value: unknown): Uint8Array {
  const packed = packr.pack(value);
  const owned = new Uint8Array(packed.byteLength);
  owned.set(packed);
  return owned;
}

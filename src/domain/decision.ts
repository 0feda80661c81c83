import type { Command, Decision, DomainEvent, FollowUpCommand, PartitionState, Reply } from './types.js';
import { fail, replyFromEvent } from './views.js';

/** Small builders shared by the decide modules. */

/**
 * Shared empty lists for decisions without events or legs: most decisions have no legs and every rejected
 * one has neither, and an empty array each is garbage on the hot path. Frozen, so a caller that tried to
 * push into one would throw instead of corrupting every later decision.
 */
const NO_EVENTS: DomainEvent[] = Object.freeze([]) as unknown as DomainEvent[];
const NO_FOLLOW_UPS: FollowUpCommand[] = Object.freeze([]) as unknown as FollowUpCommand[];

export function rejected(reply: Reply | null): Decision {
  return { events: NO_EVENTS, reply, follow_ups: NO_FOLLOW_UPS };
}

export function invalid(message: string, param?: string): Decision {
  return rejected(fail('invalid_request', message, param));
}

/** A command answered by its single outcome event (the reply is rebuilt the same way on a retry). */
export function accepted(
  state: PartitionState,
  command: Command,
  event: DomainEvent,
  follow_ups: FollowUpCommand[] = NO_FOLLOW_UPS,
): Decision {
  return {
    events: [event],
    reply: isClientCommand(command) ? replyFromEvent(state, event) : null,
    follow_ups,
  };
}

/** Legs and timers get no reply; everything else comes from a client. A switch, not a Set: hot path. */
export function isClientCommand(command: Command): boolean {
  switch (command.type) {
    case 'credit':
    case 'credit_rejected':
    case 'debit':
    case 'debit_settled':
    case 'debit_rejected':
    case 'expire_authorizations':
      return false;
    default:
      return true;
  }
}

export function fingerprintOf(command: Command): string | null {
  return command.fingerprint ?? null;
}

/** event ids are `<command_id>:<index>`: deterministic and unique, as command ids are. */
export function eventId(command: Command, index: number): string {
  // Most commands have one event: skip the number-to-string conversion for it.
  return index === 0 ? command.command_id + ':0' : command.command_id + ':' + index;
}

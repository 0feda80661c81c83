import type { Command, Decision, DomainEvent, FollowUpCommand, PartitionState, Reply } from './types.js';
import { fail, replyFromEvent } from './views.js';

/** Small builders shared by the decide modules. */

const NO_FOLLOW_UPS: FollowUpCommand[] = [];
Object.freeze(NO_FOLLOW_UPS);

export function rejected(reply: Reply | null): Decision {
  return { events: [], reply, follow_ups: [] };
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
    follow_ups: follow_ups === NO_FOLLOW_UPS ? [] : follow_ups,
  };
}

const NON_CLIENT_TYPES: ReadonlySet<string> = new Set([
  'credit',
  'credit_rejected',
  'debit',
  'debit_settled',
  'debit_rejected',
  'expire_authorizations',
]);

export function isClientCommand(command: Command): boolean {
  return !NON_CLIENT_TYPES.has(command.type);
}

export function fingerprintOf(command: Command): string | null {
  return command.fingerprint ?? null;
}

/** event ids are `<command_id>:<index>`: deterministic and unique, as command ids are. */
export function eventId(command: Command, index: number): string {
  return command.command_id + ':' + index;
}

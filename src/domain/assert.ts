/**
 * Assertions for programmer bugs and broken invariants: they throw and are never caught inside the domain.
 * A lane that hits one must crash and rebuild from the changelog rather than carry on with bad money.
 */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}

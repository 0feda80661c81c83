/**
 * Assertions for programmer bugs and broken invariants: they throw and are never caught inside the domain.
 * A lane that hits one must crash and rebuild from the changelog rather than carry on with bad money.
 */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

/**
 * `details` fill the `%s` of `message` in order. They are formatted only when the assertion fails: a
 * template literal would build its string on every call, and the hot path asserts several times a command
 * (turning numbers into strings there cost more than the checks themselves).
 */
export function assert(condition: boolean, message: string, ...details: unknown[]): asserts condition {
  if (!condition) throw new InvariantError(formatMessage(message, details));
}

function formatMessage(message: string, details: unknown[]): string {
  let i = 0;
  const text = message.replace(/%s/g, () => (i < details.length ? String(details[i++]) : '%s'));
  return i < details.length ? `${text} ${details.slice(i).map(String).join(' ')}` : text;
}

/** For checks whose details cost something to compute (an id rebuilt from a table): `if (!ok) failed(...)`. */
export function invariantFailed(message: string, ...details: unknown[]): never {
  throw new InvariantError(formatMessage(message, details));
}

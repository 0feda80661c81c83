/**
 * Shutdown bounds. A node's shutdown has shutdown_timeout_ms in all (10 s by default), half of it for the
 * replies still awaited: a client close or a LeaveGroup the broker does not answer (an outage, a connection
 * cut) must not take the rest. What is not closed in time dies with the process; the broker expires it.
 */
export const leave_ms_max = 1_500;
export const close_ms_max = 1_000;

export function withinMs(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([p.then(() => {}), timeout])
    .catch(() => {})
    .finally(() => clearTimeout(timer));
}

/** Closes a producer or consumer of the library (force: in-flight requests fail, not awaited), bounded. */
export function closeWithin(client: {
  close(force: boolean, cb: (error?: unknown) => void): void;
}): Promise<void> {
  return withinMs(close_ms_max, new Promise<void>((resolve) => client.close(true, () => resolve())));
}

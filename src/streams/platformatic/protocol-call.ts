import { kGetApi, kGetConnection } from '@platformatic/kafka';

interface ClientInternals {
  [kGetApi](name: string, cb: (error: Error | null, api: (...args: unknown[]) => void) => void): void;
  [kGetConnection](broker: unknown, cb: (error: Error | null, connection: unknown) => void): void;
}

/**
 * One request of the client's protocol layer (the API named `api`, at the version the broker supports),
 * sent on the client's connection to `broker`, for the two calls whose high-level forms do not fit: one
 * TxnOffsetCommit for every partition, and a Fetch whose aborted-transaction filter is ours.
 */
export async function protocolCall<T>(
  client: object,
  api: string,
  broker: unknown,
  args: unknown[],
): Promise<T> {
  const internals = client as ClientInternals;
  const call = await new Promise<(...a: unknown[]) => void>((resolve, reject) =>
    internals[kGetApi](api, (e, a) => (e ? reject(e) : resolve(a))),
  );
  const connection = await new Promise<unknown>((resolve, reject) =>
    internals[kGetConnection](broker, (e, c) => (e ? reject(e) : resolve(c))),
  );
  return new Promise<T>((resolve, reject) =>
    call(connection, ...args, (e: Error | null, r: T) => (e ? reject(e) : resolve(r))),
  );
}

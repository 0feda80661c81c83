import type { Kafka } from 'kafkajs';
import { type RetryPolicy, retryBusy } from '../transaction.js';

/**
 * kafkajs sends AddOffsetsToTxn and EndTxn once, outside any retrier, and leaves its transaction state
 * machine stuck in COMMITTING when EndTxn fails: a CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS or
 * NOT_COORDINATOR answer (a coordinator still writing the previous transaction's markers, loading, or moved)
 * failed the whole transaction, where the Java client's TransactionManager retries after ~20 ms. This wraps,
 * for every cluster the Kafka instance creates, the transaction coordinator that kafkajs' transaction manager
 * looks up, so that its AddPartitionsToTxn, AddOffsetsToTxn and EndTxn retry those answers with a capped
 * backoff (re-finding the coordinator after NOT_COORDINATOR). The same request is resent unchanged: the
 * coordinator treats a repeat as the same step (a retried EndTxn of a completed commit answers success).
 *
 * It reaches kafkajs' private cluster factory by its symbol's description; if a kafkajs upgrade renames it,
 * install throws at start (never silently running without the retries). Temporary by design: the Kafka port
 * of issue 13 replaces kafkajs in the node.
 */
const TRANSACTION_COORDINATOR = 1; // kafkajs protocol/coordinatorTypes
const wrapped_methods = new Set(['addPartitionsToTxn', 'addOffsetsToTxn', 'endTxn']);
const create_cluster_description = 'private:Kafka:createCluster';
export const wrapped_marker = Symbol('transactional-retries');

interface ClusterLike {
  findGroupCoordinator(o: { groupId: string; coordinatorType?: number }): Promise<object>;
}

export function installTransactionalRetries(
  kafka: Kafka,
  policy: RetryPolicy,
  onRetry: (type: string) => void,
): void {
  const owner = kafka as unknown as Record<symbol, unknown>;
  const symbol = Object.getOwnPropertySymbols(owner).find(
    (s) => s.description === create_cluster_description,
  );
  const create = symbol ? owner[symbol] : undefined;
  if (!symbol || typeof create !== 'function') {
    throw new Error(
      `kafka invariant: kafkajs has no ${create_cluster_description}; transactional retries not installed`,
    );
  }
  if ((create as { [wrapped_marker]?: boolean })[wrapped_marker]) return; // idempotent
  const wrappedCreate = (options: unknown) => {
    const cluster = (create as (o: unknown) => ClusterLike).call(kafka, options);
    wrapCluster(cluster, policy, onRetry);
    return cluster;
  };
  Object.assign(wrappedCreate, { [wrapped_marker]: true });
  owner[symbol] = wrappedCreate;
}

export function wrapCluster(
  cluster: ClusterLike,
  policy: RetryPolicy,
  onRetry: (type: string) => void,
): void {
  const find = cluster.findGroupCoordinator.bind(cluster);
  const wrappedFind = async (o: { groupId: string; coordinatorType?: number }) => {
    const broker = await find(o);
    if (o.coordinatorType !== TRANSACTION_COORDINATOR) return broker;
    return retryingCoordinator(broker, () => find(o), policy, onRetry);
  };
  Object.assign(wrappedFind, { [wrapped_marker]: true });
  cluster.findGroupCoordinator = wrappedFind;
}

function retryingCoordinator(
  broker: object,
  refind: () => Promise<object>,
  policy: RetryPolicy,
  onRetry: (type: string) => void,
): object {
  return new Proxy(broker, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      if (typeof property !== 'string' || !wrapped_methods.has(property)) return value.bind(target);
      return async (args: unknown) => {
        let coordinator = target as Record<string, (a: unknown) => Promise<unknown>>;
        let moved = false;
        const send = async () => {
          if (moved) coordinator = (await refind()) as typeof coordinator;
          moved = false;
          return coordinator[property]!.call(coordinator, args);
        };
        return retryBusy(send, policy, (type) => {
          onRetry(type);
          moved = type === 'NOT_COORDINATOR' || type === 'COORDINATOR_NOT_AVAILABLE';
        });
      };
    },
  });
}

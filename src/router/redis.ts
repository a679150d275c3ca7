// Redis connections and key names. BullMQ needs maxRetriesPerRequest: null; the subscriber
// connection is separate because a subscribed ioredis client cannot run other commands.
import { Redis } from 'ioredis';

export type { Redis };

/**
 * onError: where connection errors go (ioredis reconnects by itself; without a listener it
 * prints every failed reconnect as an "unhandled error event").
 */
export function connectRedis(url: string, name: string, onError: (err: Error) => void = () => undefined, opts: { autoPipelining?: boolean; failFast?: boolean } = {}): Redis {
  const r = new Redis(url, {
    // A long-running router waits for Redis to come back. A one-shot command (`relay admin`, the
    // demo's provisioning) fails after a few tries instead of hanging: commands are refused once
    // a reconnection failed, and ioredis stops after three.
    ...(opts.failFast ? { maxRetriesPerRequest: 1, retryStrategy: (times: number) => (times > 3 ? null : 200) } : { maxRetriesPerRequest: null }),
    enableReadyCheck: true,
    connectionName: `relay-${name}`,
    lazyConnect: false,
    // Commands issued in the same tick go out in one write: on the hot path many requests
    // each send a few commands at once, and one write syscall per command was the router's
    // largest single cost.
    enableAutoPipelining: opts.autoPipelining ?? false,
  });
  r.on('error', onError);
  return r;
}

/**
 * A connection for a one-shot command (`relay admin`, the demo's provisioning): it gives up after
 * a few tries instead of waiting for Redis. `failure(err)` gives what a command threw as the
 * connection's own error when there was one (ioredis's says only that it gave up); `setting`
 * names where the URL came from.
 */
export function connectOneShot(url: string, name: string, setting: string): { redis: Redis; failure(err: unknown): unknown } {
  let unreachable: Error | undefined;
  const redis = connectRedis(url, name, (err) => (unreachable = err), { failFast: true });
  return { redis, failure: (err) => (unreachable ? new Error(`cannot reach Redis (${setting}): ${unreachable.message}`) : err) };
}

/** A connector's in-flight set lives this long after its last addition (a stale set cleans itself up). */
export const IN_FLIGHT_TTL_S = 86_400;

const P = 'relay:';
export const keys = {
  tenants: `${P}tenants`,
  secret: (hash: string) => `${P}secret:${hash}`,
  connector: (id: string) => `${P}connector:${id}`,
  tenantConnectors: (tenant: string) => `${P}tenant:${tenant}:connectors`,
  tenantClients: (tenant: string) => `${P}tenant:${tenant}:clients`,
  presence: (connector: string) => `${P}presence:${connector}`,
  inFlight: (connector: string) => `${P}inflight:${connector}`,
  request: (id: string) => `${P}req:${id}`,
  chunks: (id: string) => `${P}req:${id}:chunks`,
  /** Held while one call completes a request's result (an offload's upload): Requests.claimCompletion. */
  completing: (id: string) => `${P}req:${id}:completing`,
  idempotency: (tenant: string, key: string) => `${P}idem:${tenant}:${key}`,
  commandLog: (connector: string) => `${P}cmdlog:${connector}`,
  pending: (connector: string) => `${P}pending:${connector}`,
  /** Concurrency slots (leases) of a size class, its recently refused tenants, and a connector's. */
  limitClass: (mode: string) => `${P}limit:${mode}`,
  limitWaiting: (mode: string) => `${P}limit:${mode}:waiting`,
  limitConnector: (connector: string) => `${P}limit:connector:${connector}`,
  /** Pub/sub: every command/cancel event, every request state change, every stream takeover. */
  busChannel: `${P}bus`,
} as const;

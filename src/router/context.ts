// Everything a route needs, built once by server.ts.
import type { Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import type { RouterConfig } from '../config.js';
import type { Logger } from '../log.js';
import { RelayError } from '../protocol/errors.js';
import type { Auth, Principal } from './auth.js';
import type { BufferPool } from '../protocol/buffer-pool.js';
import type { YoungGc } from '../protocol/young-gc.js';
import type { Bus } from './bus.js';
import type { CommandLog, Hub } from './commands.js';
import type { Dispatcher } from './dispatch.js';
import type { Handoff } from './handoff.js';
import type { Limiter } from './limits.js';
import type { Metrics } from './metrics.js';
import type { Redis } from './redis.js';
import type { Requests } from './requests.js';
import type { Sinks } from './results.js';
import type { SyncSpill } from './spill.js';
import type { Storage } from './storage.js';

export interface RouterDeps {
  cfg: RouterConfig;
  redis: Redis;
  auth: Auth;
  bus: Bus;
  requests: Requests;
  commands: CommandLog;
  hub: Hub;
  dispatcher: Dispatcher;
  sinks: Sinks;
  /** Uploads for answers held by another instance are passed to it. */
  handoff: Handoff;
  /** Reused buffers for chunk bodies (uploadLimit(chunkSize) bytes each). */
  chunkBuffers: BufferPool;
  /** Scavenges after every few MB of upload bodies read (frees Node's dead socket buffers). */
  youngGc: YoungGc;
  /** The memory budget and spill files that sync results share. */
  spill: SyncSpill;
  storage: Storage;
  /** Concurrency slots per size class and per connector, shared through Redis. */
  limiter: Limiter;
  metrics: Metrics;
  log: Logger;
  /** Client answers this instance is still working on: a stopping router waits for them. */
  openAnswers: { count: number };
  /** False once shutdown has begun: new client requests are refused. */
  accepting: () => boolean;
}

export type Env = { Bindings: HttpBindings };
export type Ctx = Context<Env>;

export async function principalOf<K extends Principal['kind']>(deps: RouterDeps, c: Ctx, ...kinds: K[]): Promise<Extract<Principal, { kind: K }>> {
  const p = await deps.auth.authenticate(c.req.header('authorization'));
  if (!(kinds as string[]).includes(p.kind)) {
    throw new RelayError('FORBIDDEN', `a ${p.kind} secret cannot be used on this route`);
  }
  return p as Extract<Principal, { kind: K }>;
}

/** JSON body limit for control calls (a SQL text may be long, nothing else is). */
export const JSON_LIMIT = 64 * 1024;
export const CLIENT_JSON_LIMIT = 1_100_000;

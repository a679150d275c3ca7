// Idempotency-Key (PROTOCOL.md §2.2): a client's key names one request of its tenant for up to
// 24 h (never longer than the request's record).
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../log.js';
import { RelayError } from '../protocol/errors.js';
import { HEADERS } from '../protocol/wire.js';
import { sha256 } from './auth.js';
import { LuaScript } from './lua.js';
import { keys, type Redis } from './redis.js';

const IDEMPOTENCY_TTL_S = 86_400;
/** How long a repeat waits for the record of the request its key names (see claimKey). */
export const UNSTORED_WAIT_MS = 5000;
// KEYS: an Idempotency-Key. ARGV: the request id it should name now, the id it names, ttl_s.
const TAKE_OVER_KEY = new LuaScript(1, `if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1`);
// KEYS: an Idempotency-Key. ARGV: the request id it names. Deletes it only if it still does.
const DROP_KEY = new LuaScript(1, `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`);

/** The Redis key of the request's Idempotency-Key, or null without one (BAD_REQUEST if malformed). */
export function idempotencyKeyOf(req: IncomingMessage, tenant: string): string | null {
  const v = req.headers[HEADERS.idempotencyKey];
  if (v === undefined) return null;
  const key = Array.isArray(v) ? v[0]! : v;
  if (!/^[\x21-\x7e]{1,200}$/.test(key)) throw new RelayError('BAD_REQUEST', 'Idempotency-Key must be 1 to 200 printable ASCII characters');
  return keys.idempotency(tenant, sha256(key));
}

/**
 * The request an Idempotency-Key names, or null once it names `id` (a new request). The key is
 * set before the request's record is (an offload's record needs its multipart upload first), so
 * a repeat may find the key before the record, or with no record ever coming if the router
 * stopped in between (the soak's router kills: the retry got GONE "expired"). The repeat waits a
 * little for the record, then takes the key over. The key never outlives its record (its TTL is
 * at most the record's), so a key without a record is never an expired request.
 */
export async function claimKey(redis: Redis, log: Logger, key: string, id: string, recordTtlS: number, waitMs = UNSTORED_WAIT_MS): Promise<string | null> {
  const ttl = Math.min(IDEMPOTENCY_TTL_S, recordTtlS);
  for (;;) {
    if ((await redis.set(key, id, 'EX', ttl, 'NX')) === 'OK') return null;
    const existing = await redis.get(key);
    if (existing === null) continue; // expired in between: try again
    // Our own SET NX ran, but its reply was lost (Redis restarted) and ioredis sent it again.
    if (existing === id) return null;
    for (const until = Date.now() + waitMs; ; ) {
      if ((await redis.exists(keys.request(existing))) === 1) return existing;
      if (Date.now() >= until) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if ((await TAKE_OVER_KEY.run<number>(redis, key, id, existing, ttl)) === 1) {
      log.warn({ request: id, unstored: existing }, 'the Idempotency-Key named a request that was never stored (its router stopped first): a new request');
      return null;
    }
  }
}

/** Frees a key that names `id` (a request that will not be stored); one naming another is left. */
export async function dropKey(redis: Redis, key: string, id: string): Promise<void> {
  await DROP_KEY.run(redis, key, id);
}

// Concurrency limits shared by every router instance (PROTOCOL.md §1 RATE_LIMITED).
// A client request holds one slot of its size class (sync, stream, offload) and one of its
// connector's command cap from acceptance until its answer ends. Slots are leases in Redis
// sorted sets (score = expiry): this instance renews its own every lease/3, releases them on
// every ending, and a crashed instance's slots come back when their leases lapse.
//
// A slot names its request: a repeat of a request (same Idempotency-Key) takes over that
// request's slot instead of taking a second one, so a client re-attaching after its router
// crashed is not refused while the dead router's slots wait to lapse.
//
// Fairness: a tenant that was refused recently is "waiting". While another tenant waits, a
// tenant may take a free slot only below its fair share (limit / tenants holding or waiting),
// so a tenant flooding requests cannot keep every slot as they free up.
import { nanoid } from 'nanoid';
import type { Logger } from '../log.js';
import { RelayError } from '../protocol/errors.js';
import type { Mode } from '../protocol/wire.js';
import { LuaScript } from './lua.js';
import { keys, type Redis } from './redis.js';

export interface LimitsConfig {
  /** Concurrent requests per size class, over all router instances. */
  perClass: Record<Mode, number>;
  /** Concurrent requests (commands in flight) per connector. */
  perConnector: number;
  leaseS: number;
  /** Base Retry-After of a RATE_LIMITED answer; up to 50 % jitter is added. */
  retryAfterMs: number;
}

// KEYS: class slots, class waiting tenants, connector slots.
// ARGV: tenant, lease, class limit, connector limit, lease ms, waiting ms, request to take over
// (or ''). A lease is "<request id>|<token>"; members of the class set are "<tenant>|<lease>"
// (none of tenant, request id and token contains '|'). Taking over removes the request's other
// slots first (put back if this one is refused); it reads every slot of the class and of the
// connector, and only a repeat does it.
// Returns {'OK', slots held in the class now}, or {reason, slots held, the tenant's slots, its
// fair share}. The last two are counted only while another tenant waits (else 0): that count
// reads every slot of the class, and at 100 requests at a time it made this the costliest
// script of a small request.
const ACQUIRE = new LuaScript(
  3,
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tenant, lease, take = ARGV[1], ARGV[2], ARGV[7]
local limit, connLimit, ttl, waitMs = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 1, 3 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
-- This very acquire again: ioredis sends a script again when a Redis restart lost its reply.
if redis.call('ZSCORE', KEYS[1], tenant .. '|' .. lease) then return {'OK', redis.call('ZCARD', KEYS[1])} end
local taken = {}
if take ~= '' then
  local prefix = take .. '|'
  for _, k in ipairs({1, 3}) do
    local members = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
    for i = 1, #members, 2 do
      local m = members[i]
      local l = k == 1 and string.match(m, '^[^|]*|(.*)$') or m
      if l and string.sub(l, 1, #prefix) == prefix then
        taken[#taken + 1] = {k, members[i + 1], m}
        redis.call('ZREM', KEYS[k], m)
      end
    end
  end
end
local total = redis.call('ZCARD', KEYS[1])
local mine, share = 0, 0
local reason
if total >= limit then reason = 'CLASS'
else
  local others = {}
  for _, w in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if w ~= tenant then others[#others + 1] = w end
  end
  if #others > 0 then
    local seen, n = {}, 0
    for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
      local mt = string.match(m, '^([^|]*)|')
      if mt == tenant then mine = mine + 1 end
      if mt and not seen[mt] then seen[mt] = true; n = n + 1 end
    end
    for _, w in ipairs(others) do
      if not seen[w] then seen[w] = true; n = n + 1 end
    end
    if not seen[tenant] then n = n + 1 end
    share = math.max(1, math.floor(limit / n))
    if mine >= share then reason = 'SHARE' end
  end
  if not reason and redis.call('ZCARD', KEYS[3]) >= connLimit then reason = 'CONNECTOR' end
end
if reason then
  for _, x in ipairs(taken) do redis.call('ZADD', KEYS[x[1]], x[2], x[3]) end
  if reason ~= 'CONNECTOR' then
    redis.call('ZADD', KEYS[2], now + waitMs, tenant)
    redis.call('PEXPIRE', KEYS[2], waitMs * 2)
  end
  return {reason, total, mine, share}
end
redis.call('ZADD', KEYS[1], now + ttl, tenant .. '|' .. lease)
redis.call('ZADD', KEYS[3], now + ttl, lease)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[3], ttl * 2)
return {'OK', total + 1}`,
);

// KEYS: class slots, connector slots. ARGV: class member, lease id, lease ms.
// Only renews what is still there: a lease that lapsed is not brought back.
const RENEW = new LuaScript(
  2,
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
redis.call('ZADD', KEYS[2], 'XX', now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return 1`,
);

interface Held {
  mode: Mode;
  connector: string;
  member: string;
  lease: string;
}

export interface Slot {
  /** Gives the slot back (idempotent; never throws). */
  release(): Promise<void>;
}

export class Limiter {
  private readonly held = new Map<string, Held>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly r: Redis,
    private readonly cfg: LimitsConfig,
    private readonly log: Logger,
    private readonly onLimited: (mode: Mode, reason: string) => void = () => undefined,
  ) {}

  /** Number of slots this instance holds. */
  get size(): number {
    return this.held.size;
  }

  start(): void {
    this.timer = setInterval(() => void this.renewAll(), (this.cfg.leaseS * 1000) / 3);
    this.timer.unref();
  }

  /**
   * Takes a slot for request `requestId` of `tenant` on `connector`, or throws RATE_LIMITED.
   * With `takeOver` (a repeat of that request), the request's other slots are given up for it.
   */
  async acquire(mode: Mode, tenant: string, connector: string, requestId: string, takeOver = false): Promise<Slot> {
    // The token tells this answer's slot from an earlier answer's to the same request, whose
    // release must not remove this one. nanoid: pooled random bytes, as request ids.
    const lease = `${requestId}|${nanoid(8)}`;
    const leaseMs = Math.round(this.cfg.leaseS * 1000);
    const retryAfterMs = Math.round(this.cfg.retryAfterMs * (1 + Math.random() * 0.5));
    const [verdict, total, mine, share] = await ACQUIRE.run<[string, number, number?, number?]>(
      this.r,
      keys.limitClass(mode),
      keys.limitWaiting(mode),
      keys.limitConnector(connector),
      tenant,
      lease,
      this.cfg.perClass[mode],
      this.cfg.perConnector,
      leaseMs,
      Math.max(5000, 3 * retryAfterMs),
      takeOver ? requestId : '',
    );
    if (verdict !== 'OK') {
      this.onLimited(mode, verdict.toLowerCase());
      const why =
        verdict === 'CLASS'
          ? `${total} ${mode} requests are running, the limit is ${this.cfg.perClass[mode]}`
          : verdict === 'SHARE'
            ? `your tenant holds ${mine} of the ${this.cfg.perClass[mode]} ${mode} slots, its fair share while others wait is ${share}`
            : `connector ${connector} has ${this.cfg.perConnector} commands in flight, its limit`;
      throw new RelayError('RATE_LIMITED', `too many concurrent requests: ${why}; retry later`, { retryAfterMs });
    }
    const h: Held = { mode, connector, member: `${tenant}|${lease}`, lease };
    this.held.set(lease, h);
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        this.held.delete(lease);
        await this.drop(h);
      },
    };
  }

  private async drop(h: Held): Promise<void> {
    try {
      // Two plain commands, not MULTI: they join the same tick's auto-pipelined write, and a
      // lease one of them misses lapses by itself.
      await Promise.all([this.r.zrem(keys.limitClass(h.mode), h.member), this.r.zrem(keys.limitConnector(h.connector), h.lease)]);
    } catch (err) {
      // Redis away: the lease lapses by itself.
      this.log.warn({ err: (err as Error).message }, 'could not release a concurrency slot (its lease will lapse)');
    }
  }

  private async renewAll(): Promise<void> {
    if (this.held.size === 0) return;
    const leaseMs = Math.round(this.cfg.leaseS * 1000);
    // Issued in one tick: auto-pipelining writes them together.
    const renewals = [...this.held.values()].map((h) => RENEW.run(this.r, keys.limitClass(h.mode), keys.limitConnector(h.connector), h.member, h.lease, leaseMs));
    await Promise.all(renewals).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not renew concurrency slots'));
  }

  /** Stops renewing and gives back every slot still held (shutdown). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    const all = [...this.held.values()];
    this.held.clear();
    await Promise.all(all.map((h) => this.drop(h)));
  }
}

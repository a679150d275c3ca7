// Secrets → principals. Secrets are stored as SHA-256 hashes only; lookups are cached for a
// couple of seconds so the hot upload path does not pay a Redis round trip per chunk, and a
// connector's stay resolved while its event stream is open here. A revocation is announced on
// the bus and drops both at once; the cache's TTL bounds how long a revoked secret keeps
// working on a router that missed the announcement.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { RelayError } from '../protocol/errors.js';
import { connectorIdSchema, tenantIdSchema } from '../protocol/wire.js';
import { keys, type Redis } from './redis.js';

export type Principal =
  | { kind: 'admin' }
  | { kind: 'client'; tenant: string; id: string }
  | { kind: 'connector'; tenant: string; id: string };

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

const CACHE_TTL_MS = 2000;
const CACHE_MAX = 10_000;
const REVOKED_MS = 60_000;
/**
 * A pinned secret is looked up again after this long: the bus's revocation event drops it at
 * once, and this bounds how long a router that missed that event keeps accepting it.
 */
const PIN_MS = 60_000;

export class Auth {
  private readonly cache = new Map<string, { principal: Principal | null; expires: number }>();
  private readonly owners = new Map<string, { tenant: string | null; expires: number }>();
  /**
   * Connectors with an event stream open here, by secret hash and by id: their acks and uploads
   * are authenticated, and client requests to them resolved, without Redis. With many connectors
   * the cache above rarely holds the one a command went to (10,000 connectors: two Redis round
   * trips per request, one of them before the command is sent). A revoked secret is dropped at
   * once (forget()), and its stream closed (commands.ts); a pin is checked again every PIN_MS.
   */
  private readonly pinned = new Map<string, { principal: Principal; streams: number; verifiedAt: number }>();
  private readonly liveOwners = new Map<string, { tenant: string; streams: number }>();
  /** Secrets revoked in the last REVOKED_MS: a stream that authenticated just before is not pinned. */
  private readonly revoked = new Map<string, number>();
  private readonly adminHash: Buffer | null;

  constructor(
    private readonly redis: Redis,
    adminToken: string | undefined,
  ) {
    this.adminHash = adminToken ? Buffer.from(sha256(adminToken), 'hex') : null;
  }

  /** Resolves an Authorization header; throws UNAUTHORIZED when missing or unknown. */
  async authenticate(header: string | undefined | null): Promise<Principal> {
    const secret = bearer(header);
    if (!secret) throw new RelayError('UNAUTHORIZED', 'missing Authorization: Bearer <secret>');
    const principal = await this.lookup(secret);
    if (!principal) throw new RelayError('UNAUTHORIZED', 'unknown or revoked secret');
    return principal;
  }

  isAdminSecret(secret: string): boolean {
    return this.isAdminHash(sha256(secret));
  }

  private isAdminHash(hash: string): boolean {
    if (!this.adminHash) return false;
    return timingSafeEqual(Buffer.from(hash, 'hex'), this.adminHash);
  }

  async lookup(secret: string): Promise<Principal | null> {
    const hash = sha256(secret);
    if (this.isAdminHash(hash)) return { kind: 'admin' };
    const now = Date.now();
    const pin = this.pinned.get(hash);
    if (pin && now - pin.verifiedAt < PIN_MS) return pin.principal;
    const hit = this.cache.get(hash);
    if (hit && hit.expires > now) return hit.principal;
    const rec = await this.redis.hgetall(keys.secret(hash));
    const principal: Principal | null =
      rec.kind === 'client' || rec.kind === 'connector' ? { kind: rec.kind, tenant: rec.tenant!, id: rec.id! } : null;
    if (pin && this.pinned.get(hash) === pin) {
      if (principal) pin.verifiedAt = now;
      else this.pinned.delete(hash);
    }
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(hash, { principal, expires: now + CACHE_TTL_MS });
    return principal;
  }

  /**
   * The tenant a connector belongs to (null: no such connector), cached like secrets: every
   * client request asks, and the answer changes only when an operator removes a connector.
   */
  async connectorTenant(id: string): Promise<string | null> {
    const live = this.liveOwners.get(id);
    if (live) return live.tenant;
    const now = Date.now();
    const hit = this.owners.get(id);
    if (hit && hit.expires > now) return hit.tenant;
    const tenant = await connectorTenant(this.redis, id);
    if (this.owners.size >= CACHE_MAX) this.owners.clear();
    this.owners.set(id, { tenant, expires: now + CACHE_TTL_MS });
    return tenant;
  }

  forget(secretHash: string): void {
    this.cache.delete(secretHash);
    this.pinned.delete(secretHash);
    const now = Date.now();
    for (const [h, until] of this.revoked) if (until <= now || this.revoked.size >= CACHE_MAX) this.revoked.delete(h);
    this.revoked.set(secretHash, now + REVOKED_MS);
  }

  /**
   * Keeps a connector's secret (its Authorization header) resolved while its event stream is
   * open; the returned function ends that. A connector's tenant never changes, so its id stays
   * resolved too until its last stream here closes.
   */
  pinStream(header: string | undefined | null, principal: Extract<Principal, { kind: 'connector' }>): () => void {
    const secret = bearer(header);
    if (!secret) return () => undefined;
    const hash = sha256(secret);
    // Its revocation may have been heard between the lookup and now (the stream is closed by
    // the connector's id only once open, so it may stay open): not pinned, it expires as cached.
    if ((this.revoked.get(hash) ?? 0) > Date.now()) return () => undefined;
    const pin = this.pinned.get(hash) ?? { principal, streams: 0, verifiedAt: Date.now() };
    pin.streams++;
    this.pinned.set(hash, pin);
    const owner = this.liveOwners.get(principal.id) ?? { tenant: principal.tenant, streams: 0 };
    owner.streams++;
    this.liveOwners.set(principal.id, owner);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      // The pin may be gone already (revoked) or be another one by now: only this one's count.
      if (this.pinned.get(hash) === pin && --pin.streams === 0) this.pinned.delete(hash);
      if (this.liveOwners.get(principal.id) === owner && --owner.streams === 0) this.liveOwners.delete(principal.id);
    };
  }
}

export function bearer(header: string | undefined | null): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}

// ---- provisioning (PROTOCOL.md §5), used by `relay admin` ----------------------------

const newSecret = (prefix: string) => `${prefix}_${randomBytes(32).toString('base64url')}`;

export async function addTenant(redis: Redis, tenant: string): Promise<boolean> {
  tenantIdSchema.parse(tenant);
  return (await redis.sadd(keys.tenants, tenant)) === 1;
}

async function requireTenant(redis: Redis, tenant: string): Promise<void> {
  if (!(await redis.sismember(keys.tenants, tenant))) throw new RelayError('NOT_FOUND', `no tenant ${tenant} (add it with: relay admin add-tenant ${tenant})`);
}

/** Adds a connector, or rotates its token if it exists in the same tenant. Returns the token. */
export async function addConnector(redis: Redis, tenant: string, id: string, token?: string): Promise<string> {
  connectorIdSchema.parse(id);
  await requireTenant(redis, tenant);
  const secret = token ?? newSecret('ct');
  if (secret.length < 16) throw new RelayError('BAD_REQUEST', 'a token must be at least 16 characters');
  const existing = await redis.hgetall(keys.connector(id));
  if (existing.tenant && existing.tenant !== tenant) throw new RelayError('CONFLICT', `connector ${id} belongs to another tenant`);
  const hash = sha256(secret);
  const taken = await redis.hget(keys.secret(hash), 'kind');
  if (taken && existing.token_hash !== hash) throw new RelayError('CONFLICT', 'that secret is already in use');
  const multi = redis.multi();
  if (existing.token_hash && existing.token_hash !== hash) {
    // Rotation: the old token stops working now and its open event stream is closed.
    multi.del(keys.secret(existing.token_hash));
    multi.publish(keys.busChannel, JSON.stringify({ t: 'revoke', connector: id, hash: existing.token_hash }));
  }
  multi.hset(keys.secret(hash), { kind: 'connector', tenant, id });
  multi.hset(keys.connector(id), { tenant, token_hash: hash, created_at: existing.created_at ?? new Date().toISOString() });
  multi.sadd(keys.tenantConnectors(tenant), id);
  await multi.exec();
  return secret;
}

export async function addClient(redis: Redis, tenant: string, key?: string): Promise<string> {
  await requireTenant(redis, tenant);
  const secret = key ?? newSecret('rk');
  if (secret.length < 16) throw new RelayError('BAD_REQUEST', 'a key must be at least 16 characters');
  const hash = sha256(secret);
  const taken = await redis.hgetall(keys.secret(hash));
  if (taken.kind && !(taken.kind === 'client' && taken.tenant === tenant)) throw new RelayError('CONFLICT', 'that secret is already in use');
  await redis.multi().hset(keys.secret(hash), { kind: 'client', tenant, id: hash.slice(0, 12) }).sadd(keys.tenantClients(tenant), hash).exec();
  return secret;
}

/** Revokes a connector token or client key. Returns what was revoked, or null if unknown. */
export async function revokeSecret(redis: Redis, secret: string): Promise<Principal | null> {
  const hash = sha256(secret);
  const rec = await redis.hgetall(keys.secret(hash));
  if (rec.kind !== 'client' && rec.kind !== 'connector') return null;
  const multi = redis.multi().del(keys.secret(hash));
  if (rec.kind === 'connector') multi.hdel(keys.connector(rec.id!), 'token_hash');
  else multi.srem(keys.tenantClients(rec.tenant!), hash);
  // Open event streams of a revoked connector are closed by every router (see commands.ts).
  multi.publish(keys.busChannel, JSON.stringify({ t: 'revoke', connector: rec.kind === 'connector' ? rec.id : undefined, hash }));
  await multi.exec();
  return { kind: rec.kind, tenant: rec.tenant!, id: rec.id! };
}

export async function connectorTenant(redis: Redis, id: string): Promise<string | null> {
  return (await redis.hget(keys.connector(id), 'tenant')) ?? null;
}

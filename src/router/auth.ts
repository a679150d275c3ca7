// Secrets → principals. Secrets are stored as SHA-256 hashes only; lookups are cached for a
// couple of seconds so the hot upload path does not pay a Redis round trip per chunk, which
// bounds how long a revoked secret keeps working.
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

export class Auth {
  private readonly cache = new Map<string, { principal: Principal | null; expires: number }>();
  private readonly owners = new Map<string, { tenant: string | null; expires: number }>();
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
    const hit = this.cache.get(hash);
    if (hit && hit.expires > now) return hit.principal;
    const rec = await this.redis.hgetall(keys.secret(hash));
    const principal: Principal | null =
      rec.kind === 'client' || rec.kind === 'connector' ? { kind: rec.kind, tenant: rec.tenant!, id: rec.id! } : null;
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(hash, { principal, expires: now + CACHE_TTL_MS });
    return principal;
  }

  /**
   * The tenant a connector belongs to (null: no such connector), cached like secrets: every
   * client request asks, and the answer changes only when an operator removes a connector.
   */
  async connectorTenant(id: string): Promise<string | null> {
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

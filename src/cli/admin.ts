// `relay admin ...`: provisioning (PROTOCOL.md §5), written to the router's Redis. Redis and the
// router's auth module are loaded when a sub-command runs, not when it is registered.
import type { Command } from 'commander';
import { adminConfig } from '../config.js';
import type { Redis } from '../router/redis.js';
import { exitWithError } from './fail.js';

type Auth = typeof import('../router/auth.js');

async function withRedis(opts: Record<string, unknown>, fn: (redis: Redis, auth: Auth) => Promise<void>): Promise<void> {
  let conn: { redis: Redis; failure(err: unknown): unknown } | null = null;
  try {
    const [{ connectOneShot }, auth] = await Promise.all([import('../router/redis.js'), import('../router/auth.js')]);
    conn = connectOneShot(adminConfig(opts).redisUrl, 'admin', 'RELAY_REDIS_URL / --redis-url');
    await fn(conn.redis, auth);
    await conn.redis.quit();
  } catch (err) {
    conn?.redis.disconnect();
    exitWithError(conn ? conn.failure(err) : err);
  }
}

export function register(program: Command): void {
  const admin = program.command('admin').description('provision tenants, connectors and client keys (writes to RELAY_REDIS_URL)').option('--redis-url <url>', 'Redis URL (RELAY_REDIS_URL)');
  const common = (cmd: Command) => ({ ...admin.opts(), ...cmd.opts() });

  admin
    .command('add-tenant <tenant>')
    .description('create a tenant')
    .action(async (tenant: string, _o, cmd: Command) =>
      withRedis(common(cmd), async (r, auth) => {
        const created = await auth.addTenant(r, tenant);
        process.stderr.write(created ? `tenant ${tenant} created\n` : `tenant ${tenant} already exists\n`);
      }),
    );

  admin
    .command('add-connector')
    .description('register a connector (prints the token if generated)')
    .requiredOption('--tenant <tenant>', 'owning tenant')
    .requiredOption('--id <id>', 'connector id (e.g. its MAC address cc-28-aa-01-02-03)')
    .option('--token <secret>', 'use this token instead of generating one')
    .action(async (o: { tenant: string; id: string; token?: string }, cmd: Command) =>
      withRedis(common(cmd), async (r, auth) => {
        const token = await auth.addConnector(r, o.tenant, o.id, o.token);
        if (!o.token) process.stdout.write(`${token}\n`);
        process.stderr.write(`connector ${o.id} registered in tenant ${o.tenant}\n`);
      }),
    );

  admin
    .command('add-client')
    .description('create a client key (prints the key if generated)')
    .requiredOption('--tenant <tenant>', 'owning tenant')
    .option('--key <secret>', 'use this key instead of generating one')
    .action(async (o: { tenant: string; key?: string }, cmd: Command) =>
      withRedis(common(cmd), async (r, auth) => {
        const key = await auth.addClient(r, o.tenant, o.key);
        if (!o.key) process.stdout.write(`${key}\n`);
        process.stderr.write(`client key added to tenant ${o.tenant}\n`);
      }),
    );

  admin
    .command('revoke')
    .description('revoke a connector token or a client key (open event streams are closed)')
    .option('--token <secret>', 'connector token to revoke')
    .option('--key <secret>', 'client key to revoke')
    .action(async (o: { token?: string; key?: string }, cmd: Command) =>
      withRedis(common(cmd), async (r, auth) => {
        const secret = o.token ?? o.key;
        if (!secret || (o.token && o.key)) throw new Error('give exactly one of --token or --key');
        const what = await auth.revokeSecret(r, secret);
        if (!what || what.kind === 'admin') throw new Error('no such secret (already revoked?)');
        process.stderr.write(`revoked ${what.kind}${what.kind === 'connector' ? ` ${what.id}` : ''} of tenant ${what.tenant}\n`);
      }),
    );
}

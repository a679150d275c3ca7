// Operators (PROTOCOL.md §4): health, readiness, metrics, the fleet list, the queue dashboard.
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Hono } from 'hono';
import { RelayError } from '../../protocol/errors.js';
import type { ConnectorInfo, QueueCounts } from '../../protocol/wire.js';
import { bearer } from '../auth.js';
import { principalOf, type Env, type RouterDeps } from '../context.js';
import { keys } from '../redis.js';

const withTimeout = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${what} did not answer within ${ms} ms`)), ms).unref())]);

export function opsRoutes(app: Hono<Env>, deps: RouterDeps): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.get('/readyz', async (c) => {
    const checks = await Promise.allSettled([withTimeout(deps.redis.ping(), 2000, 'redis'), withTimeout(deps.storage.ping(), 2000, 'object store')]);
    const failed = checks.flatMap((r, i) => (r.status === 'rejected' ? [`${['redis', 'object store'][i]}: ${(r.reason as Error).message}`] : []));
    if (!deps.accepting()) failed.push('shutting down');
    if (failed.length) return c.json({ status: 'error', error: { code: 'INTERNAL', message: `not ready: ${failed.join('; ')}` } }, 503);
    return c.json({ status: 'ok' });
  });

  app.get('/metrics', async (c) => {
    c.header('content-type', deps.metrics.registry.contentType);
    return c.body(await deps.metrics.registry.metrics());
  });

  app.get('/v1/connectors', async (c) => {
    const p = await principalOf(deps, c, 'client', 'admin');
    const tenants = p.kind === 'admin' ? await deps.redis.smembers(keys.tenants) : [p.tenant];
    const out: ConnectorInfo[] = [];
    for (const tenant of tenants.sort()) {
      const ids = (await deps.redis.smembers(keys.tenantConnectors(tenant))).sort();
      const pipe = deps.redis.pipeline();
      for (const id of ids) pipe.hgetall(keys.connector(id)).hgetall(keys.presence(id)).scard(keys.inFlight(id));
      const rows = (await pipe.exec()) ?? [];
      ids.forEach((id, i) => {
        const conn = rows[i * 3]![1] as Record<string, string>;
        const pres = rows[i * 3 + 1]![1] as Record<string, string>;
        const inFlight = rows[i * 3 + 2]![1] as number;
        out.push({
          connector_id: id,
          tenant,
          online: Boolean(pres.session_id),
          last_seen: pres.last_seen ?? conn.last_seen ?? null,
          version: pres.version || conn.version || null,
          in_flight: inFlight,
          session_id: pres.session_id ?? null,
        });
      });
    }
    return c.json(out);
  });

  app.get('/v1/queue', async (c) => {
    await principalOf(deps, c, 'admin');
    const n = await deps.dispatcher.queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
    const body: QueueCounts = {
      queue: deps.dispatcher.queue.name,
      waiting: n.waiting ?? 0,
      active: n.active ?? 0,
      delayed: n.delayed ?? 0,
      failed: n.failed ?? 0,
      completed: n.completed ?? 0,
    };
    return c.json(body);
  });

  // The queue dashboard, behind the admin secret: Bearer, or Basic with it as the password so
  // a browser can sign in.
  const board = new HonoAdapter(serveStatic);
  createBullBoard({ queues: [new BullMQAdapter(deps.dispatcher.queue)], serverAdapter: board });
  board.setBasePath('/admin/queues');
  app.use('/admin/queues/*', async (c, next) => {
    const h = c.req.header('authorization') ?? '';
    let secret = bearer(h);
    const basic = /^Basic\s+(\S+)$/i.exec(h);
    if (!secret && basic) secret = Buffer.from(basic[1]!, 'base64').toString('utf8').split(':').slice(1).join(':');
    if (!secret || !deps.auth.isAdminSecret(secret)) {
      c.header('www-authenticate', 'Basic realm="relay admin", charset="UTF-8"');
      throw new RelayError('UNAUTHORIZED', deps.cfg.adminToken ? 'the admin secret is required' : 'the dashboard is disabled: set RELAY_ADMIN_TOKEN');
    }
    await next();
  });
  app.route('/admin/queues', board.registerPlugin());
}

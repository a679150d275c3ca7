// GET /v1/connectors/events: the connector's command stream (PROTOCOL.md §3.1).
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Hono } from 'hono';
import { RelayError } from '../../protocol/errors.js';
import { principalOf, type Env, type RouterDeps } from '../context.js';
import { onClosed } from '../http.js';

export function eventRoutes(app: Hono<Env>, deps: RouterDeps): void {
  app.get('/v1/connectors/events', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    // A stopping router sends connectors elsewhere (another instance, or itself once restarted).
    if (!deps.accepting()) throw new RelayError('CONNECTOR_OFFLINE', 'this router is shutting down; reconnect', { retryAfterMs: 1000 });
    const concurrency = Number(c.req.query('concurrency'));
    const version = c.req.query('version')?.slice(0, 64) ?? null;
    const lastEventId = c.req.header('last-event-id')?.slice(0, 64) ?? null;
    const res = c.env.outgoing;
    const closed = new Promise<void>((r) => onClosed(res, r));
    const unpin = deps.auth.pinStream(c.req.header('authorization'), p);
    try {
      await deps.hub.open(p.id, res, { lastEventId, version, concurrency: Number.isSafeInteger(concurrency) && concurrency > 0 ? concurrency : null });
      await closed;
    } finally {
      unpin();
    }
    return RESPONSE_ALREADY_SENT;
  });
}

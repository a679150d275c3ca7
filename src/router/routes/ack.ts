// POST /v1/requests/{id}/ack: receipt of a command, and the connector's lease (PROTOCOL.md §3.2).
import type { Hono } from 'hono';
import { ackSchema } from '../../protocol/wire.js';
import { JSON_LIMIT, principalOf, type Env, type RouterDeps } from '../context.js';
import { readJson } from '../http.js';

export function ackRoutes(app: Hono<Env>, deps: RouterDeps): void {
  app.post('/v1/requests/:id/ack', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    const id = c.req.param('id');
    const { attempt } = await readJson(c.env.incoming, JSON_LIMIT, ackSchema);
    if ((await deps.requests.ack(id, p.id, attempt)) === 'OK') deps.metrics.commandsAcked.inc();
    return c.body(null, 204);
  });
}

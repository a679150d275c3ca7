// POST /v1/requests/{id}/error: the connector's final failure report (PROTOCOL.md §3.3).
import type { Hono } from 'hono';
import { RelayError } from '../../protocol/errors.js';
import { connectorErrorSchema } from '../../protocol/wire.js';
import { JSON_LIMIT, principalOf, type Env, type RouterDeps } from '../context.js';
import { readJson } from '../http.js';

export function errorRoutes(app: Hono<Env>, deps: RouterDeps): void {
  app.post('/v1/requests/:id/error', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    const id = c.req.param('id');
    const body = await readJson(c.env.incoming, JSON_LIMIT, connectorErrorSchema);
    try {
      const state = await deps.requests.guard(id, p.id, body.attempt, 'final');
      if (state === 'COMPLETE') throw new RelayError('CONFLICT', 'the request is already complete', { requestId: id });
    } catch (err) {
      // Repeating the same error is harmless.
      const rec = err instanceof RelayError && err.code === 'GONE' ? await deps.requests.get(id) : null;
      if (rec?.status === 'failed' && rec.error?.code === body.code && rec.attempt === body.attempt) return c.body(null, 204);
      throw err;
    }
    if (await deps.requests.fail(id, new RelayError(body.code, body.message, { requestId: id }))) {
      await deps.commands.dropPending(p.id, id);
      deps.log.info({ request: id, connector: p.id, code: body.code }, 'connector reported a failure');
    }
    return c.body(null, 204);
  });
}

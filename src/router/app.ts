// The router's HTTP surface: routes only; protocol logic lives in the modules they call.
import { Hono } from 'hono';
import { RelayError, toRelayError } from '../protocol/errors.js';
import type { Env, RouterDeps } from './context.js';
import { logInternal } from './http.js';
import { ackRoutes } from './routes/ack.js';
import { clientRoutes } from './routes/client.js';
import { errorRoutes } from './routes/error.js';
import { eventRoutes } from './routes/events.js';
import { offloadRoutes } from './routes/offload.js';
import { opsRoutes } from './routes/ops.js';
import { streamRoutes } from './routes/stream.js';
import { webRoutes } from './routes/web.js';

export function createApp(deps: RouterDeps): Hono<Env> {
  const app = new Hono<Env>();
  opsRoutes(app, deps);
  clientRoutes(app, deps);
  eventRoutes(app, deps);
  ackRoutes(app, deps);
  streamRoutes(app, deps);
  offloadRoutes(app, deps);
  errorRoutes(app, deps);
  webRoutes(app, deps);

  app.notFound((c) => c.json(new RelayError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`).toBody(), 404));
  app.onError((err, c) => {
    const e = toRelayError(err);
    logInternal(deps.log, e, err, { path: c.req.path });
    if (e.retryAfterMs !== undefined) {
      c.header('retry-after', String(Math.max(1, Math.ceil(e.retryAfterMs / 1000))));
      c.header('retry-after-ms', String(e.retryAfterMs));
    }
    return c.json(e.toBody(), e.status as 400);
  });
  return app;
}

// Client API (PROTOCOL.md §2): ask for data in one of three modes, follow, cancel.
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Hono } from 'hono';
import { RelayError, toRelayError } from '../../protocol/errors.js';
import { clientRequestSchema, HEADERS, requestIdSchema, type ClientRequest, type Mode, type OffloadResponse } from '../../protocol/wire.js';
import { claimKey, dropKey, idempotencyKeyOf } from '../idempotency.js';
import { CLIENT_JSON_LIMIT, principalOf, type Env, type RouterDeps } from '../context.js';
import { logInternal, onClosed, readJson, sendError } from '../http.js';
import { newRequestId, statusBody, TERMINAL, type RequestRecord, type RequestSpec } from '../requests.js';
import { StreamSink, SyncSink, type Sink } from '../results.js';

export function clientRoutes(app: Hono<Env>, deps: RouterDeps): void {
  // A client re-attached through another instance: the answer it left here ends.
  deps.bus.on('answer', (ev: { id: string; at: string }) => {
    const old = deps.sinks.get(ev.id);
    if (old && !old.isEnded && ev.at !== deps.handoff.self) old.fail(tookOver(ev.id));
  });
  for (const mode of ['sync', 'stream', 'offload'] as const) {
    app.post(`/v1/datasets/request-${mode}`, async (c) => {
      const res = c.env.outgoing;
      try {
        await handleRequest(deps, c.env.incoming, res, mode, await principalOf(deps, c, 'client'));
      } catch (err) {
        const e = toRelayError(err);
        logInternal(deps.log, e, err, { path: c.req.path });
        sendError(res, e);
      }
      return RESPONSE_ALREADY_SENT;
    });
  }

  app.get('/v1/requests/:id', async (c) => {
    const rec = await ownRequest(deps, c.req.param('id'), await principalOf(deps, c, 'client', 'admin'));
    return c.json(statusBody(rec));
  });

  app.delete('/v1/requests/:id', async (c) => {
    const rec = await ownRequest(deps, c.req.param('id'), await principalOf(deps, c, 'client', 'admin'));
    await cancelRequest(deps, rec, 'cancelled by the client');
    return c.json(statusBody((await deps.requests.get(rec.id)) ?? rec));
  });
}

async function ownRequest(deps: RouterDeps, id: string, p: { kind: string; tenant?: string }): Promise<RequestRecord> {
  const rec = requestIdSchema.safeParse(id).success ? await deps.requests.get(id) : null;
  // Another tenant's request is indistinguishable from a missing one.
  if (!rec || (p.kind !== 'admin' && rec.tenant !== p.tenant)) throw new RelayError('NOT_FOUND', `no request ${id}`);
  return rec;
}

export async function cancelRequest(deps: RouterDeps, rec: RequestRecord, reason: string): Promise<void> {
  if (await deps.requests.finish(rec.id, 'cancelled', { error_code: 'GONE', error_message: reason })) {
    await deps.commands.sendCancel(rec.connector, rec.id);
    if (rec.offload) await deps.storage.abortMultipart(rec.offload.key, rec.offload.uploadId);
  }
}

/**
 * A repeated Idempotency-Key names the request made the first time: an offload gets that
 * request's answer (waiting for it if needed), a failed request its error. Sync and stream
 * results are not kept after they were delivered, so those get CONFLICT with the status.
 */
async function answerExisting(deps: RouterDeps, res: ServerResponse, id: string, mode: Mode): Promise<void> {
  let rec = await deps.requests.get(id);
  if (!rec) throw new RelayError('GONE', `the request made with this Idempotency-Key (${id}) has expired`, { requestId: id });
  if (rec.mode !== mode) throw new RelayError('CONFLICT', `this Idempotency-Key was used for a ${rec.mode} request (${id})`, { requestId: id });
  if (mode === 'offload' && !TERMINAL.includes(rec.status)) {
    rec = (await deps.bus.waitFor(id, async () => {
      const r = await deps.requests.get(id);
      return r && TERMINAL.includes(r.status) ? r : null;
    }, rec.deadline, { pollMs: 2000 })) ?? rec;
  }
  if (rec.status === 'complete' && mode === 'offload') return sendOffloadAnswer(res, rec);
  if (rec.status === 'failed' && rec.error) throw new RelayError(rec.error.code, rec.error.message, { requestId: id });
  if (rec.status === 'cancelled') throw new RelayError('GONE', `request ${id} was cancelled`, { requestId: id });
  throw new RelayError('CONFLICT', `request ${id} made with this Idempotency-Key is ${rec.status}; ${mode} results are not kept after delivery (see GET /v1/requests/${id})`, { requestId: id });
}

function sendOffloadAnswer(res: ServerResponse, rec: RequestRecord): void {
  const answer: OffloadResponse = {
    status: 'success',
    request_id: rec.id,
    download_url: rec.download!.url,
    expires_at: rec.download!.expiresAt,
    bytes: rec.bytes,
    checksum: rec.checksum!,
    content_encoding: rec.download!.contentEncoding,
    ...(rec.download!.storedBytes !== null ? { stored_bytes: rec.download!.storedBytes } : {}),
  };
  res.writeHead(200, { 'content-type': 'application/json', [HEADERS.requestId]: rec.id });
  res.end(JSON.stringify(answer));
}

async function handleRequest(
  deps: RouterDeps,
  req: IncomingMessage,
  res: ServerResponse,
  mode: Mode,
  p: { tenant: string; id: string },
): Promise<void> {
  if (!deps.accepting()) throw new RelayError('CONNECTOR_OFFLINE', 'this router is shutting down; retry', { retryAfterMs: 1000 });
  const body = await readJson(req, CLIENT_JSON_LIMIT, clientRequestSchema);
  const owner = await deps.auth.connectorTenant(body.connector);
  if (owner !== p.tenant) throw new RelayError('NOT_FOUND', `no connector ${body.connector}`);
  const key = idempotencyKeyOf(req, p.tenant);
  const id = newRequestId();
  // The key first: a repeat takes over the slot of the request it names (limits.ts).
  const existing = key ? await claimKey(deps.redis, deps.log, key, id, deps.cfg.requestTtlS) : null;
  // One slot of the size class and of the connector, held until this answer ends however it ends.
  const slot = await deps.limiter.acquire(mode, p.tenant, body.connector, existing ?? id, existing !== null).catch(async (err: unknown) => {
    // Refused: the key must not name a request that will never be stored.
    if (key && !existing) await dropKey(deps.redis, key, id);
    throw err;
  });
  try {
    if (!existing) await accepted(deps, req, res, mode, p, body, id, key);
    else if (mode === 'offload' || !(await reattach(deps, req, res, existing, mode))) await answerExisting(deps, res, existing, mode);
  } finally {
    await slot.release();
  }
}

async function accepted(
  deps: RouterDeps,
  req: IncomingMessage,
  res: ServerResponse,
  mode: Mode,
  p: { tenant: string; id: string },
  body: ClientRequest,
  id: string,
  key: string | null,
): Promise<void> {
  const { cfg, requests } = deps;
  const started = Date.now();
  const deadline = started + (body.timeout_s ?? cfg.defaultTimeoutS) * 1000;
  const spec: RequestSpec = {
    ...(body.dataset !== undefined ? { dataset: body.dataset } : { sql: body.sql!, ...(body.database ? { database: body.database } : {}) }),
    format: body.format ?? (body.sql !== undefined ? 'arrow' : 'raw'),
  };
  let offload: RequestRecord['offload'] = null;
  if (mode === 'offload') {
    const objectKey = deps.storage.newKey(p.tenant, id);
    offload = { key: objectKey, uploadId: await deps.storage.createMultipart(objectKey).catch(async (err: unknown) => {
      if (key) await dropKey(deps.redis, key, id);
      throw err;
    }), partSize: cfg.partSize };
  }
  const sink = newSink(deps, req, res, id, mode, body.connector, started);
  // The record and its job, then the command (Dispatcher.submit): persisted before sent. The
  // sink exists before the command goes out, since the result may come back at once.
  const rec = { id, tenant: p.tenant, connector: body.connector, mode, spec, deadline, offload, answerAt: sink ? deps.handoff.self : null };
  try {
    await deps.dispatcher.submit(rec, requests.create(rec));
  } catch (err) {
    if (!sink) throw err;
    // The sink answers the client (and leaves the router's list of sinks).
    const e = toRelayError(err);
    deps.log.error({ err, request: id }, 'request could not be stored');
    sink.fail(e);
    return;
  }
  deps.log.info({ request: id, tenant: p.tenant, client: p.id, connector: body.connector, mode, dataset: spec.dataset }, 'request accepted');
  await follow(deps, res, { id, mode, deadline, started, fresh: true }, sink, key !== null);
}

function newSink(deps: RouterDeps, req: IncomingMessage, res: ServerResponse, id: string, mode: Mode, connector: string, started: number): Sink | null {
  const { cfg, metrics } = deps;
  let first = true;
  const onBytes = (n: number) => {
    if (first && n > 0) {
      first = false;
      metrics.timeToFirstByte.observe({ mode }, (Date.now() - started) / 1000);
    }
    metrics.bytesRelayed.inc({ mode }, n);
  };
  let sink: Sink | null = null;
  if (mode === 'stream') {
    const onSupersede = (chunk: number, idleMs: number) => deps.log.warn({ request: id, chunk, idle_ms: Math.round(idleMs) }, 'a repeat replaced a copy of the chunk that had stopped coming');
    sink = new StreamSink(id, res, cfg.streamWindowChunks, /\bzstd\b/.test(String(req.headers['accept-encoding'] ?? '')), onBytes, onSupersede);
  } else if (mode === 'sync') sink = new SyncSink(id, res, cfg.syncLimitBytes, /application\/json/.test(req.headers['accept'] ?? ''), onBytes, deps.spill);
  if (sink) {
    sink.connector = connector;
    deps.sinks.add(sink);
  }
  return sink;
}

/** How an older answer ends when a re-attach (here or on another instance) takes over. */
const tookOver = (id: string) => new RelayError('GONE', 'a retry with the same Idempotency-Key took over this answer', { requestId: id });

/**
 * The same Idempotency-Key again for a sync or stream request that is still running: the
 * client lost its answer (dropped connection, router restart). This answer takes over and the
 * transfer starts again from chunk 0, because the bytes sent so far went to the lost answer.
 * A completed request is fetched again too: its answer may have been cut on the way (the
 * client compares the bytes it already has). Returns false when the request failed, was
 * cancelled or expired (answerExisting says how).
 */
async function reattach(deps: RouterDeps, req: IncomingMessage, res: ServerResponse, id: string, mode: Mode): Promise<boolean> {
  const rec = await deps.requests.get(id);
  if (!rec || rec.mode !== mode || rec.status === 'failed' || rec.status === 'cancelled') return false;
  const old = deps.sinks.get(id);
  const sink = newSink(deps, req, res, id, mode, rec.connector, Date.now())!;
  if (old && !old.isEnded) old.fail(tookOver(id));
  // Before the restart: the new attempt's uploads must find this answer wherever they land.
  await deps.requests.moveAnswer(id, deps.handoff.self);
  if (!(await deps.dispatcher.restartFromZero(id))) {
    sink.fail(new RelayError('GONE', `request ${id} ended while re-attaching`, { requestId: id }));
    return true;
  }
  deps.log.info({ request: id, mode }, 'client re-attached');
  await follow(deps, res, { id, mode, deadline: rec.deadline, started: Date.parse(rec.createdAt) }, sink, true);
  return true;
}

/** Waits for the request to end and answers the client (the sink does, for sync and stream). */
async function follow(
  deps: RouterDeps,
  res: ServerResponse,
  r: { id: string; mode: Mode; deadline: number; started: number; fresh?: boolean },
  sink: Sink | null,
  reattachable: boolean,
): Promise<void> {
  deps.openAnswers.count++;
  deps.metrics.inFlight.inc({ mode: r.mode });
  try {
    await answer(deps, res, r, sink, reattachable);
  } finally {
    deps.openAnswers.count--;
    deps.metrics.inFlight.dec({ mode: r.mode });
  }
}

async function answer(...[deps, res, r, sink, reattachable]: Parameters<typeof follow>): Promise<void> {
  const { requests, metrics, cfg } = deps;
  const { id, mode, deadline, started, fresh = false } = r;
  let clientGone = false;
  /** heldHere: only while this instance still holds the answer (not re-attached elsewhere). */
  const cancel = (heldHere = false) =>
    void requests
      .get(id)
      .then((x) => (x && (!heldHere || (x.answerAt ?? deps.handoff.self) === deps.handoff.self) ? cancelRequest(deps, x, 'the client went away') : undefined))
      .catch((err: unknown) => deps.log.warn({ err, request: id }, 'could not cancel a request whose client went away'));
  const gone = () => {
    clientGone = true;
    if (!reattachable) return cancel();
    // An offload result waits in the object store for a retry with the same key.
    if (mode === 'offload') return;
    // A sync or stream client with an Idempotency-Key may come back, here or through another
    // instance: give it time to re-attach.
    setTimeout(() => {
      const now = deps.sinks.get(id);
      if (!now || now.isEnded) cancel(true);
    }, cfg.reattachGraceS * 1000).unref();
  };
  if (sink) sink.whenClientGone(gone);
  else onClosed(res, () => !res.writableEnded && gone());

  const stop = new AbortController();
  const end = deps.bus.waitFor(
    id,
    async () => {
      const x = await requests.get(id);
      return x && TERMINAL.includes(x.status) && (x.status !== 'complete' || !sink) ? x : null;
    },
    deadline,
    {
      pollMs: 2000,
      signal: stop.signal,
      // With a sink, a completed request is answered by the sink: only a failure matters here.
      onEvent: (ev) => ((sink ? ev.status === 'failed' || ev.status === 'cancelled' : (TERMINAL as string[]).includes(ev.status)) ? null : undefined),
      // A new request cannot have ended yet (its events come in later ticks than this one); a
      // re-attached one may have.
      checkFirst: !fresh,
    },
  );
  const outcome = await Promise.race([sink ? sink.done.then(() => 'sink' as const) : new Promise<never>(() => {}), end]);
  // A reason of our own: abort() without one builds a DOMException (a stack trace) per request.
  stop.abort('answered');
  let final: RequestRecord | null = outcome === 'sink' ? null : outcome;
  if (outcome === null) {
    // Deadline: fail the request unless it ended in the meantime.
    const timeout = new RelayError('TIMEOUT', `no result within ${(deadline - started) / 1000} s`, { requestId: id });
    if (await requests.fail(id, timeout)) {
      const x = await requests.get(id);
      if (x) await deps.commands.sendCancel(x.connector, id);
    }
    final = await requests.get(id);
  }
  const seconds = (Date.now() - started) / 1000;
  if (final && final.status === 'complete' && mode === 'offload') {
    metrics.requestDuration.observe({ mode }, seconds);
    metrics.timeToFirstByte.observe({ mode }, seconds);
    metrics.requests.inc({ mode, outcome: 'complete' });
    sendOffloadAnswer(res, final);
    return;
  }
  if (final) {
    const err = final.error
      ? new RelayError(final.error.code, final.error.message, { requestId: id })
      : new RelayError('GONE', `request ${final.status}`, { requestId: id });
    metrics.requestDuration.observe({ mode }, seconds);
    metrics.requests.inc({ mode, outcome: final.status === 'cancelled' ? 'cancelled' : err.code });
    if (sink) sink.fail(err);
    else if (!clientGone) sendError(res, err);
    return;
  }
  // The sink ended: delivered, the client went away, or a re-attached answer took over.
  if (sink && deps.sinks.get(id) !== undefined && deps.sinks.get(id) !== sink) return;
  metrics.requestDuration.observe({ mode }, seconds);
  metrics.requests.inc({ mode, outcome: clientGone ? 'client_gone' : 'complete' });
}

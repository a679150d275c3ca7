// Results in chunks (PROTOCOL.md §3.3): init, chunk/{index}, complete; and the one-call /result.
import type { Hono } from 'hono';
import type { Lease } from '../../protocol/buffer-pool.js';
import { xxh64 } from '../../protocol/checksum.js';
import { RelayError } from '../../protocol/errors.js';
import { HEADERS, streamCompleteSchema, streamInitSchema } from '../../protocol/wire.js';
import { JSON_LIMIT, principalOf, type Ctx, type Env, type RouterDeps } from '../context.js';
import { readJson } from '../http.js';
import type { Sink } from '../results.js';
import { decodeUpload, readUpload, uploadBody, uploadHead } from './uploads.js';

const MAX_INDEX = 10_000_000;
/** How long a chunk may wait for room in a stream window before BACKPRESSURE is answered. */
const ROOM_WAIT_MS = 2000;

export function streamRoutes(app: Hono<Env>, deps: RouterDeps): void {
  const { requests, sinks, metrics } = deps;

  /** This router's live sink for the request, if this connector's uploads may go to it. */
  function liveSink(id: string, connector: string): Sink | undefined {
    const sink = sinks.get(id);
    // Another connector's upload never touches the sink: the guard answers it (FORBIDDEN).
    return sink && !sink.isEnded && sink.connector === connector ? sink : undefined;
  }

  /**
   * No live sink here: if another instance holds the client's answer, the upload goes there
   * (handoff.ts) and its answer is this one's. That instance guards it, as for a direct upload.
   * body: what the route has read already (an upload's bytes, or its parsed JSON).
   */
  async function passOn(c: Ctx, id: string, attempt: number, body?: Buffer | object): Promise<Response | null> {
    const target = await deps.handoff.target(c.env.incoming, id, attempt, () => requests.answerAt(id));
    if (!target) return null;
    // A streamed body leaves dead socket buffers here too (young-gc.ts).
    if (body === undefined) deps.youngGc.read(Number(c.env.incoming.headers['content-length']) || 0);
    try {
      const res = await deps.handoff.forward(target, c.env.incoming, id, body === undefined || Buffer.isBuffer(body) ? body : JSON.stringify(body));
      metrics.uploadsForwarded.inc({ outcome: String(res.status) });
      return res;
    } catch (err) {
      metrics.uploadsForwarded.inc({ outcome: err instanceof RelayError && err.code === 'GONE' ? 'unreachable' : 'failed' });
      throw err;
    }
  }

  /** Why there is no answer anywhere for a request whose guard passed. */
  async function noSink(id: string): Promise<never> {
    const rec = await requests.get(id);
    if (rec?.mode === 'offload') throw new RelayError('BAD_REQUEST', 'offload results go to the object store (offload/parts, offload/complete)', { requestId: id });
    throw new RelayError('GONE', 'no client is waiting for this result on this router: stop sending', { requestId: id });
  }

  /** The local sink of a live request, the answer of the instance that holds it, or the reason there is neither. */
  async function sinkFor(c: Ctx, id: string, connector: string, attempt: number, body?: object): Promise<Sink | Response> {
    const sink = liveSink(id, connector);
    if (sink) return sink;
    const passed = await passOn(c, id, attempt, body);
    if (passed) return passed;
    await requests.guard(id, connector, attempt, 'upload');
    return noSink(id);
  }

  /** Fails the request and the client's answer with err, then rethrows it to the connector. */
  async function failWith(id: string, sink: Sink, err: RelayError): Promise<never> {
    err.requestId ??= id;
    if (await requests.fail(id, err)) {
      const rec = await requests.get(id);
      if (rec) await deps.commands.sendCancel(rec.connector, id);
    }
    sink.fail(err);
    throw err;
  }

  app.post('/v1/requests/:id/stream/init', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    const id = c.req.param('id');
    const body = await readJson(c.env.incoming, JSON_LIMIT, streamInitSchema);
    const sink = await sinkFor(c, id, p.id, body.attempt, body);
    if (sink instanceof Response) return sink;
    await requests.guard(id, p.id, body.attempt, 'upload');
    try {
      sink.init({ contentType: body.content_type, totalBytes: body.total_bytes ?? null });
    } catch (err) {
      if (err instanceof RelayError) await failWith(id, sink, err);
      throw err;
    }
    await requests.setFields(id, {
      content_type: body.content_type,
      ...(body.total_bytes != null ? { total_bytes: body.total_bytes } : {}),
      ...(body.schema ? { schema: JSON.stringify(body.schema) } : {}),
    });
    return c.body(null, 204);
  });

  app.post('/v1/requests/:id/stream/chunk/:index', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    const id = c.req.param('id');
    const indexText = c.req.param('index');
    if (!/^\d{1,8}$/.test(indexText) || Number(indexText) > MAX_INDEX) throw new RelayError('BAD_REQUEST', `chunk index must be an integer from 0 to ${MAX_INDEX}`);
    const index = Number(indexText);
    const req = c.env.incoming;
    // Room first, body second: a chunk that would only be answered BACKPRESSURE is never
    // buffered (a slow client must not turn into allocations on the router).
    const head = uploadHead(req, deps.cfg.chunkSize);
    const sink = await sinkFor(c, id, p.id, head.attempt);
    if (sink instanceof Response) return sink;
    let admitted;
    // Every body read or discarded leaves dead socket buffers behind (young-gc.ts).
    deps.youngGc.read(Number(req.headers['content-length']) || 0);
    try {
      admitted = await sink.admitWithin(index, head.decodedLength, ROOM_WAIT_MS, req);
    } catch (err) {
      req.resume();
      if (err instanceof RelayError && err.code === 'BACKPRESSURE') {
        metrics.backpressure.inc();
        // A connector held back by a slow client is alive: its lease is renewed.
        await requests.guard(id, p.id, head.attempt, 'upload');
      }
      // Only the current attempt may fail the request (a stale one gets GONE from the guard).
      if (err instanceof RelayError && err.code === 'RESULT_TOO_LARGE') {
        await requests.guard(id, p.id, head.attempt, 'upload');
        await failWith(id, sink, err);
      }
      throw err;
    }
    let stored = false;
    const lease = deps.chunkBuffers.acquire();
    /** A pooled buffer for the decoded bytes (a zstd chunk for a sink that keeps decoded bytes). */
    let decodedLease: Lease | undefined;
    /** The lease behind what the sink keeps, once put: the sink releases it. */
    let handedOver: Lease | undefined;
    try {
      let up;
      try {
        up = await uploadBody(req, head, deps.cfg.chunkSize, lease.buf);
      } catch (err) {
        if (err instanceof RelayError && err.code === 'CHECKSUM_MISMATCH') {
          metrics.chunksReceived.inc({ outcome: 'checksum_mismatch' });
          metrics.checksumFailures.inc({ stage: 'chunk' });
        }
        throw err;
      }
      let decoded: Buffer | undefined;
      if (admitted === 'ok' && !sink.passthrough) {
        if (up.encoding === 'zstd') decodedLease = deps.chunkBuffers.acquire();
        decoded = await decodeUpload(up, decodedLease?.buf);
      }
      const state = await requests.putChunk(id, p.id, up.attempt, index, up.checksum, up.decodedLength);
      if (state === 'COMPLETE') throw new RelayError('GONE', 'the request is already complete: stop sending', { requestId: id });
      // Admitted means the sink lacks the chunk, even when Redis has it (DUP): an earlier copy
      // can be recorded and still fail before its put (Redis restarted before its reply came;
      // ioredis sent the script again, or the route failed and the connector repeated it).
      if (admitted === 'ok') {
        // The sink keeps the decoded bytes, or the body when it writes it as is (pass-through,
        // or a raw chunk, which decodes to itself); the other buffer is free at once.
        const kept = decodedLease ?? lease;
        handedOver = kept;
        sink.put({ index, body: up.body, encoding: up.encoding, decodedLength: up.decodedLength, decoded, release: () => kept.release() });
        stored = true;
      }
      metrics.chunksReceived.inc({ outcome: state === 'NEW' ? 'stored' : 'duplicate' });
      if (state === 'NEW') metrics.bytesIn.inc({ mode: sink.mode }, up.body.length);
      else metrics.chunkRetries.inc();
      return c.body(null, state === 'NEW' ? 201 : 200);
    } finally {
      if (handedOver !== lease) lease.release();
      if (decodedLease && handedOver !== decodedLease) decodedLease.release();
      if (!stored && admitted === 'ok') sink.release(index);
    }
  });

  app.post('/v1/requests/:id/stream/complete', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    const id = c.req.param('id');
    const body = await readJson(c.env.incoming, JSON_LIMIT, streamCompleteSchema);
    if ((await requests.guard(id, p.id, body.attempt, 'final')) === 'COMPLETE') return c.body(null, 204);
    const sink = await sinkFor(c, id, p.id, body.attempt, body);
    if (sink instanceof Response) return sink;
    try {
      await sink.complete(body);
    } catch (err) {
      if (err instanceof RelayError && err.code === 'CHECKSUM_MISMATCH') metrics.checksumFailures.inc({ stage: 'result' });
      if (err instanceof RelayError && err.code !== 'GONE') await failWith(id, sink, err);
      throw err;
    }
    await requests.finish(id, 'complete', { bytes: body.bytes, chunks: body.chunks, checksum: body.checksum });
    return c.body(null, 204);
  });

  app.post('/v1/requests/:id/result', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    const id = c.req.param('id');
    const up = await readUpload(c.env.incoming, deps.cfg.chunkSize);
    const contentType = String(c.req.header(HEADERS.contentType) ?? 'application/octet-stream').slice(0, 200);
    // With a live sink, recording chunk 0 is also the guard (connector, attempt, live): one
    // round trip, then one more for the end. A repeat after the end is harmless (204).
    const sink = liveSink(id, p.id);
    if (!sink) {
      const passed = await passOn(c, id, up.attempt, up.body);
      if (passed) return passed;
      if ((await requests.guard(id, p.id, up.attempt, 'upload')) === 'COMPLETE') return c.body(null, 204);
      return noSink(id);
    }
    const state = await requests.putChunk(id, p.id, up.attempt, 0, up.checksum, up.decodedLength);
    if (state === 'COMPLETE') return c.body(null, 204);
    const decoded = await decodeUpload(up);
    metrics.bytesIn.inc({ mode: sink.mode }, up.body.length);
    const meta = { chunks: 1, bytes: decoded.length, checksum: up.encoding === 'identity' ? up.checksum : xxh64(decoded) };
    try {
      sink.init({ contentType, totalBytes: decoded.length });
      if (sink.admit(0, decoded.length) === 'ok') sink.put({ index: 0, body: up.body, encoding: up.encoding, decodedLength: up.decodedLength, decoded });
      await sink.complete(meta);
    } catch (err) {
      if (err instanceof RelayError && err.code !== 'GONE' && err.code !== 'BACKPRESSURE') await failWith(id, sink, err);
      throw err;
    }
    await requests.finish(id, 'complete', { ...meta, content_type: contentType });
    return c.body(null, 204);
  });
}

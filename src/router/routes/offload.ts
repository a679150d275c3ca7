// Offload (PROTOCOL.md §3.4): the connector PUTs parts straight to the object store with
// presigned URLs; the router only signs, completes and answers with a presigned GET.
import type { Hono } from 'hono';
import { RelayError } from '../../protocol/errors.js';
import { offloadCompleteSchema, offloadPartsSchema, type OffloadComplete } from '../../protocol/wire.js';
import { JSON_LIMIT, principalOf, type Env, type RouterDeps } from '../context.js';
import { readJson } from '../http.js';
import { COMPLETION_CLAIM_MS, TERMINAL, type RequestRecord } from '../requests.js';

export function offloadRoutes(app: Hono<Env>, deps: RouterDeps): void {
  const { requests, storage, cfg } = deps;

  async function offloadOf(id: string): Promise<NonNullable<RequestRecord['offload']>> {
    const rec = await requests.get(id);
    if (!rec?.offload) throw new RelayError('BAD_REQUEST', 'this request is not an offload request', { requestId: id });
    return rec.offload;
  }

  app.post('/v1/requests/:id/offload/parts', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    const id = c.req.param('id');
    const body = await readJson(c.env.incoming, JSON_LIMIT, offloadPartsSchema);
    if ((await requests.guard(id, p.id, body.attempt, 'upload')) === 'COMPLETE') throw new RelayError('GONE', 'the request is already complete: stop sending', { requestId: id });
    const off = await offloadOf(id);
    return c.json(await storage.presignParts(off.key, off.uploadId, body.parts, cfg.partUrlTtlS));
  });

  app.post('/v1/requests/:id/offload/complete', async (c) => {
    const p = await principalOf(deps, c, 'connector');
    const id = c.req.param('id');
    const body = await readJson(c.env.incoming, 1024 * 1024, offloadCompleteSchema);
    const parts = [...body.parts].sort((a, b) => a.part - b.part);
    if (parts.some((x, i) => x.part !== i + 1)) throw new RelayError('BAD_REQUEST', 'parts must be numbered 1..n without gaps or repeats', { requestId: id });
    // One completion at a time (Requests.claimCompletion): a repeat sent while the first is
    // under way waits for its outcome, then answers as a repeat after the end would.
    for (let waited = false; ; waited = true) {
      if ((await requests.guard(id, p.id, body.attempt, 'final')) === 'COMPLETE') return c.body(null, 204);
      const claim = await requests.claimCompletion(id);
      if (claim) {
        try {
          await completeOffload(id, body, parts);
        } finally {
          await claim.release();
        }
        return c.body(null, 204);
      }
      if (waited) throw new RelayError('BACKPRESSURE', 'another complete of this request is under way: send it again', { requestId: id, retryAfterMs: 1000 });
      await completionSettled(id);
    }
  });

  async function completeOffload(id: string, body: OffloadComplete, parts: OffloadComplete['parts']): Promise<void> {
    const off = await offloadOf(id);
    let size: number;
    try {
      size = await storage.completeMultipart(off.key, off.uploadId, parts);
    } catch (err) {
      const code = (err as { code?: string }).code;
      // Completed by a call whose router died before recording it: the object is there (the
      // key is this request's own, and only a complete makes an object of it). S3 and MinIO
      // answer such a repeat NoSuchUpload; s3rver answers 500.
      const stored = await storage.storedSize(off.key).catch(() => null);
      if (stored !== null) {
        size = stored;
        if (code !== 'NoSuchUpload') deps.log.warn({ request: id, err: (err as Error).message }, 'the object store failed a complete whose object is already there: taken as completed');
      }
      else if (code === 'InvalidPart' || code === 'InvalidPartOrder' || code === 'NoSuchUpload' || code === 'EntityTooSmall') {
        throw new RelayError('CONFLICT', `the object store refused to complete the upload: ${code}: ${(err as Error).message}`, { requestId: id });
      } else throw err;
    }
    if (body.content_encoding === 'identity' && size !== body.bytes) {
      throw new RelayError('CONFLICT', `stored object has ${size} bytes, complete says ${body.bytes}`, { requestId: id });
    }
    const ttl = Math.min(cfg.getUrlTtlS, cfg.retentionS);
    const url = await storage.presignGet(off.key, ttl);
    await requests.finish(id, 'complete', {
      bytes: body.bytes,
      chunks: parts.length,
      checksum: body.checksum,
      download_url: url,
      download_expires_at: new Date(Date.now() + ttl * 1000).toISOString(),
      content_encoding: body.content_encoding,
      stored_bytes: size,
    });
    deps.metrics.bytesRelayed.inc({ mode: 'offload' }, body.bytes);
    deps.metrics.bytesIn.inc({ mode: 'offload' }, size);
  }

  /** Until the request ended or nobody holds its completion claim (at most a claim's life). */
  async function completionSettled(id: string): Promise<void> {
    const settled = async () => {
      const r = await requests.get(id);
      return !r || TERMINAL.includes(r.status) || !(await requests.completionClaimed(id)) ? true : null;
    };
    await deps.bus.waitFor(id, settled, Date.now() + COMPLETION_CLAIM_MS, {
      pollMs: 250,
      onEvent: (ev) => ((TERMINAL as string[]).includes(ev.status) ? true : undefined),
    });
  }
}

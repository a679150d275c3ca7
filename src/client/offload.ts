// Pattern C (PROTOCOL.md §2.1): the result is in the object store; the router hands out a
// presigned URL, and `bytes`/`checksum` describe the decoded result we must end up with.
import type { Writable } from 'node:stream';
import type { ClientConfig } from '../config.js';
import { RelayError, type ClientRequest, type OffloadResponse } from '../protocol/index.js';
import { DecodeError, OutputError, Sink, decoderFor, pump } from './body.js';
import { elapsed, failureAfterStart, startRequest, verify, withReconnects, type RequestOptions, type RequestResult } from './common.js';
import { callPresigned, ConnectionLost, describe, errorFromResponse, readJson, waitMs } from './http.js';

export interface OffloadOptions extends RequestOptions {
  /** Return the presigned URL without downloading. */
  urlOnly?: boolean;
}

export async function requestOffload(cfg: ClientConfig, req: ClientRequest, out: Writable | null, opts: OffloadOptions = {}): Promise<RequestResult> {
  const start = process.hrtime.bigint();
  // A lost connection while the router prepares the result is retried with the same key: the
  // router answers the same request (waiting for it if needed).
  const { offload, headerId } = await withReconnects(opts, null, async () => {
    const { res, requestId } = await startRequest(cfg, 'offload', req, opts, { accept: 'application/json' });
    return { offload: checkOffload(await readJson<OffloadResponse>(res, 'offload answer'), requestId), headerId: requestId };
  });
  const requestId = offload.request_id || headerId;
  if (!headerId && requestId) opts.onRequestId?.(requestId);
  const base = { requestId, downloadUrl: offload.download_url, expiresAt: offload.expires_at };
  if (opts.urlOnly) return { ...base, bytes: offload.bytes, checksum: offload.checksum, verified: false, seconds: elapsed(start) };
  if (!out) throw new RelayError('INTERNAL', 'requestOffload needs an output unless urlOnly is set', { requestId });

  const sink = new Sink(out, offload.bytes, opts.onProgress, opts.signal);
  try {
    // The object stays in the store until the retention: a cut download is simply fetched again.
    await withReconnects(opts, sink, async () => {
      const dl = await callPresigned(offload.download_url, { signal: opts.signal, timeoutMs: waitMs(req.timeout_s) });
      if (dl.statusCode !== 200) throw await downloadError(dl.statusCode, await errorFromResponse(dl), requestId);
      try {
        // The stored object's encoding is the router's word, not the object store's headers.
        await pump(dl.body, decoderFor(offload.content_encoding, sink));
      } catch (err) {
        if (opts.signal?.aborted || sink.failure || err instanceof OutputError || err instanceof DecodeError || err instanceof RelayError) {
          throw await failureAfterStart(cfg, requestId, sink, err, opts.signal, 'download');
        }
        throw new ConnectionLost(`download truncated after ${sink.bytes} bytes (${describe(err)})`, { requestId, cause: err });
      }
    });
    const checksum = sink.checksum();
    if (sink.bytes !== offload.bytes) {
      throw new RelayError('CHECKSUM_MISMATCH', `downloaded ${sink.bytes} decoded bytes, the router says ${offload.bytes}`, { requestId });
    }
    const verified = verify(requestId, checksum, sink.bytes, offload.checksum);
    return { ...base, bytes: sink.bytes, checksum, verified, seconds: elapsed(start) };
  } finally {
    sink.release();
  }
}

function checkOffload(body: OffloadResponse, requestId: string): OffloadResponse {
  const ok =
    body &&
    typeof body.download_url === 'string' &&
    Number.isSafeInteger(body.bytes) &&
    body.bytes >= 0 &&
    typeof body.checksum === 'string' &&
    (body.content_encoding === 'zstd' || body.content_encoding === 'identity');
  if (!ok) throw new RelayError('INTERNAL', `unexpected offload answer: ${JSON.stringify(body).slice(0, 300)}`, { requestId });
  return body;
}

/** S3 says 403 for an expired signature and 404 once retention removed the object. */
function downloadError(status: number, err: RelayError, requestId: string): RelayError {
  const s3Code = /<Code>([^<]+)<\/Code>/.exec(err.message)?.[1];
  const detail = `download from the object store failed: HTTP ${status}${s3Code ? ` ${s3Code}` : ''}`;
  if (status === 403 || status === 404 || status === 410) {
    return new RelayError('GONE', `${detail} (URL expired or object past retention)`, { requestId });
  }
  return new RelayError(status >= 500 ? 'INTERNAL' : 'BAD_REQUEST', detail, { requestId });
}

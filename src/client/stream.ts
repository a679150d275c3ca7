// Pattern B (PROTOCOL.md §2.1): bytes pass through as chunks arrive; the checksum comes
// last, as an HTTP trailer (or from the request's status when a proxy dropped trailers).
import type { Writable } from 'node:stream';
import type { ClientConfig } from '../config.js';
import { HEADERS, type ClientRequest } from '../protocol/index.js';
import { Sink, decoderFor, pump } from './body.js';
import { checksumFromStatus, elapsed, failureAfterStart, startRequest, verify, withReconnects, type RequestOptions, type RequestResult } from './common.js';
import { header } from './http.js';

export interface StreamOptions extends RequestOptions {
  /** Ask for the connector's zstd frames as they are (default true): less to carry, same bytes out. */
  zstd?: boolean;
}

export async function requestStream(cfg: ClientConfig, req: ClientRequest, out: Writable, opts: StreamOptions = {}): Promise<RequestResult> {
  const start = process.hrtime.bigint();
  const sink = new Sink(out, null, opts.onProgress, opts.signal);
  try {
    return await withReconnects(opts, sink, async () => {
      const { res, requestId } = await startRequest(cfg, 'stream', req, opts, {
        accept: '*/*',
        'accept-encoding': opts.zstd === false ? 'identity' : 'zstd',
      });
      try {
        await pump(res.body, decoderFor(header(res, 'content-encoding'), sink));
      } catch (err) {
        throw await failureAfterStart(cfg, requestId, sink, err, opts.signal, 'stream');
      }
      const checksum = sink.checksum();
      // undici fills trailers before the body reports its end.
      const trailer = res.trailers[HEADERS.checksum];
      const expected = trailer ? trailer : await checksumFromStatus(cfg, requestId, opts.signal);
      const verified = verify(requestId, checksum, sink.bytes, expected);
      return { requestId, bytes: sink.bytes, checksum, verified, seconds: elapsed(start) };
    });
  } finally {
    sink.release();
  }
}

// Pattern A (PROTOCOL.md §2.1): the router answers with the whole verified result.
import type { Writable } from 'node:stream';
import type { ClientConfig } from '../config.js';
import { HEADERS, type ClientRequest } from '../protocol/index.js';
import { IdentityDecoder, Sink, pump } from './body.js';
import { checksumFromStatus, elapsed, failureAfterStart, startRequest, verify, withReconnects, type RequestOptions, type RequestResult } from './common.js';
import { header } from './http.js';

export async function requestSync(cfg: ClientConfig, req: ClientRequest, out: Writable, opts: RequestOptions = {}): Promise<RequestResult> {
  const start = process.hrtime.bigint();
  let total: number | null = null;
  const sink = new Sink(out, null, (n) => opts.onProgress?.(n, total), opts.signal);
  try {
    return await withReconnects(opts, sink, async () => {
      // Not application/json: that would ask for the JSON envelope instead of the bytes.
      const { res, requestId } = await startRequest(cfg, 'sync', req, opts, { accept: '*/*' });
      const length = Number(header(res, 'content-length'));
      total = Number.isFinite(length) ? length : null;
      try {
        await pump(res.body, new IdentityDecoder(sink));
      } catch (err) {
        throw await failureAfterStart(cfg, requestId, sink, err, opts.signal, 'response');
      }
      const checksum = sink.checksum();
      const expected = header(res, HEADERS.checksum) ?? (await checksumFromStatus(cfg, requestId, opts.signal));
      const verified = verify(requestId, checksum, sink.bytes, expected);
      return { requestId, bytes: sink.bytes, checksum, verified, seconds: elapsed(start) };
    });
  } finally {
    sink.release();
  }
}

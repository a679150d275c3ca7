// Pattern C (PROTOCOL.md §2.1): the result is in the object store; the router hands out a
// presigned URL, and `bytes`/`checksum` describe the decoded result we must end up with.
import type { Writable } from 'node:stream';
import { anySignal } from 'any-signal';
import type { ClientConfig } from '../config.js';
import { RelayError, type ClientRequest, type OffloadResponse } from '../protocol/index.js';
import { DecodeError, OutputError, Sink, decoderFor, eachPiece, type Decoder } from './body.js';
import { elapsed, failureAfterStart, startRequest, verify, withReconnects, type RequestOptions, type RequestResult } from './common.js';
import { callPresigned, ConnectionLost, describe, errorFromResponse, networkError, readJson, waitMs, type Response } from './http.js';

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
      // The stored object's encoding is the router's word, not the object store's headers.
      const ranged = new RangedDownload(offload.download_url, requestId, opts.signal, waitMs(req.timeout_s), offload.stored_bytes ?? null);
      let first: Response;
      try {
        first = await ranged.first();
      } catch (err) {
        ranged.stop();
        throw err;
      }
      try {
        await ranged.pipe(first, decoderFor(offload.content_encoding, sink));
      } catch (err) {
        if (err instanceof ConnectionLost) throw err;
        if (opts.signal?.aborted || sink.failure || err instanceof OutputError || err instanceof DecodeError || err instanceof RelayError) {
          throw await failureAfterStart(cfg, requestId, sink, err, opts.signal, 'download');
        }
        throw new ConnectionLost(`download truncated after ${sink.bytes} bytes (${describe(err)})`, { requestId, cause: err });
      } finally {
        ranged.stop();
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

/**
 * The stored object in ranges of RANGE_BYTES, RANGES_IN_FLIGHT at once, decoded in order: one
 * TCP stream over a long round trip is held to its window (through the WAN bench's 80 ms link,
 * curl took 29 MB in 340 ms with one GET, 190 ms with four ranges). The first range is decoded
 * as it arrives; the ones after it are held until their turn, so at most
 * (RANGES_IN_FLIGHT - 1) × RANGE_BYTES wait in memory. A store that ignores Range sends the
 * whole object with 200, which is then read as one stream.
 *
 * When the router said the object's size (`stored_bytes`), the ranges after the first are
 * asked for together with it; otherwise only once the first answer's Content-Range tells the
 * size, a round trip later (plus a connection set-up per range). A store whose size disagrees
 * with the router's is believed: those early ranges are dropped and fetched again by its size.
 */
export const RANGE_BYTES = 8 * 1024 * 1024;
export const RANGES_IN_FLIGHT = 4;

class RangedDownload {
  private readonly stopper = new AbortController();
  /** The caller's signal or stop() (any-signal: stop() also takes its listener off the caller's). */
  private readonly signal: AbortSignal;

  /** Ranges after the first, asked for before its answer came (the size was known). */
  private early: Promise<Buffer[]>[] = [];

  constructor(
    private readonly url: string,
    private readonly requestId: string,
    signal: AbortSignal | undefined,
    private readonly timeoutMs: number,
    /** The object's size if the router said it. */
    private readonly size: number | null = null,
  ) {
    this.signal = anySignal([signal, this.stopper.signal]);
  }

  /** Ends the ranges still under way (after a failure; a no-op once all arrived). */
  stop(): void {
    this.stopper.abort();
  }

  private get(from: number, to: number) {
    return callPresigned(this.url, { signal: this.signal, timeoutMs: this.timeoutMs, headers: { range: `bytes=${from}-${to}` } });
  }

  /** The first range's answer: where a failure to start is told apart from one mid-way. */
  async first(): Promise<Response> {
    const asked = this.get(0, RANGE_BYTES - 1);
    if (this.size !== null) {
      for (let from = RANGE_BYTES; from < this.size && this.early.length < RANGES_IN_FLIGHT - 1; from += RANGE_BYTES) {
        const p = this.range(from, Math.min(from + RANGE_BYTES, this.size) - 1);
        p.catch(() => undefined); // awaited in its turn, or dropped
        this.early.push(p);
      }
    }
    const res = await asked;
    if (res.statusCode !== 200 && res.statusCode !== 206 && res.statusCode !== 416) {
      throw await downloadError(res.statusCode, await errorFromResponse(res), this.requestId);
    }
    return res;
  }

  async pipe(first: Response, decoder: Decoder): Promise<void> {
    // 416: an empty object has no byte 0.
    if (first.statusCode === 416) {
      first.body.resume();
      return decoder.end();
    }
    const total = first.statusCode === 206 ? totalOf(first.headers['content-range']) : null;
    if (first.statusCode === 206 && total === null) throw new ConnectionLost(`the object store sent a range without its total size`, { requestId: this.requestId });
    const later: Promise<Buffer[]>[] = [];
    let next = RANGE_BYTES;
    if (total !== null && total === this.size) {
      later.push(...this.early);
      next += this.early.length * RANGE_BYTES;
    }
    this.early = [];
    const launch = () => {
      if (total === null || next >= total) return;
      const p = this.range(next, Math.min(next + RANGE_BYTES, total) - 1);
      p.catch(() => undefined); // awaited in its turn
      later.push(p);
      next += RANGE_BYTES;
    };
    for (let i = later.length + 1; i < RANGES_IN_FLIGHT; i++) launch();
    await eachPiece(first.body, (piece) => decoder.push(piece));
    while (later.length) {
      const pieces = await later.shift()!;
      launch();
      for (const piece of pieces) await decoder.push(piece);
    }
    await decoder.end();
  }

  private async range(from: number, to: number): Promise<Buffer[]> {
    const res = await this.get(from, to);
    if (res.statusCode !== 206) throw await downloadError(res.statusCode, await errorFromResponse(res), this.requestId);
    const pieces: Buffer[] = [];
    let n = 0;
    try {
      await eachPiece(res.body, (piece) => {
        pieces.push(piece);
        n += piece.length;
        return undefined;
      });
    } catch (err) {
      throw networkError(err, 'object store', this.signal);
    }
    if (n !== to - from + 1) throw new ConnectionLost(`range ${from}-${to} of the download ended after ${n} bytes`, { requestId: this.requestId });
    return pieces;
  }
}

/** "bytes 0-8388607/28997466" → 28997466. */
function totalOf(header: string | string[] | undefined): number | null {
  const m = /\/(\d+)\s*$/.exec(String(header ?? ''));
  return m ? Number(m[1]) : null;
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
  // An addition of this router (optional): anything but a size is ignored.
  if (body.stored_bytes !== undefined && !(Number.isSafeInteger(body.stored_bytes) && body.stored_bytes >= 0)) {
    const { stored_bytes: _ignored, ...rest } = body;
    return rest;
  }
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

// Sync and stream results (PROTOCOL.md §3.3): one `result` call for a result that fits in one
// chunk, else stream/init → stream/chunk/{i} (parallel, out of order, retried) → stream/complete.
import { xxh64, Xxh64Stream } from '../protocol/checksum.js';
import { encodeChunk, type EncodedChunk } from '../protocol/codec.js';
import { CONTENT_TYPES, HEADERS } from '../protocol/wire.js';
import { requestPath, retryLogger, type ResultSummary, type UploadContext } from './context.js';
import { InFlight } from './inflight.js';
import type { ChunkSource } from './sources/file.js';

/** The headers every binary upload carries (§3.3). */
export function binaryHeaders(chunk: EncodedChunk, attempt: number): Record<string, string> {
  const h: Record<string, string> = {
    [HEADERS.attempt]: String(attempt),
    [HEADERS.checksum]: chunk.checksum,
    [HEADERS.decodedLength]: String(chunk.decodedLength),
  };
  if (chunk.encoding === 'zstd') h['content-encoding'] = 'zstd';
  return h;
}

/**
 * Encodes a chunk as the CompressionChooser says and tells it what that cost; `done` tells it
 * the chunk's upload has ended (the chooser measures whole chunks, encoding to acceptance).
 */
async function encode(ctx: UploadContext, decoded: Buffer): Promise<{ chunk: EncodedChunk; done: () => void }> {
  const choice = ctx.compression.choose(decoded.length, ctx.cmd);
  try {
    const t0 = performance.now();
    const chunk = await encodeChunk(decoded, { compression: choice.compress, level: choice.level });
    ctx.compression.encoded(choice.compress, decoded.length, chunk.body.length, performance.now() - t0, choice.level);
    return { chunk, done: choice.done };
  } catch (err) {
    choice.done();
    throw err;
  }
}

export async function uploadResult(ctx: UploadContext, source: ChunkSource, contentType = CONTENT_TYPES[ctx.cmd.format]): Promise<ResultSummary> {
  const { cmd } = ctx;
  const it = source.chunks()[Symbol.asyncIterator]();
  try {
    // One chunk of look-ahead tells a one-chunk result from a longer one without knowing the size.
    const pending: Buffer[] = [];
    if (cmd.resume_from === 0) {
      const first = await it.next();
      if (!first.done) {
        pending.push(first.value);
        const second = await it.next();
        if (!second.done) pending.push(second.value);
      }
      if (pending.length < 2) {
        const only = pending[0] ?? Buffer.alloc(0);
        const summary = await uploadSingle(ctx, only, contentType);
        source.release?.(only);
        return summary;
      }
    }
    return await uploadChunked(ctx, source, pending, it, contentType);
  } finally {
    await it.return?.();
  }
}

async function uploadSingle(ctx: UploadContext, decoded: Buffer, contentType: string): Promise<ResultSummary> {
  const { cmd, http, signal } = ctx;
  const { chunk, done } = await encode(ctx, decoded);
  const headers = { ...binaryHeaders(chunk, cmd.attempt), [HEADERS.contentType]: contentType };
  try {
    await http.send('result', () => http.postBinary(`${requestPath(cmd.request_id)}/result`, chunk.body, headers, signal), {
      signal,
      policy: ctx.policy,
      onRetry: retryLogger(ctx),
    });
  } finally {
    done();
  }
  ctx.renew();
  // A raw body is the result itself: its checksum is already known.
  const checksum = chunk.encoding === 'identity' ? chunk.checksum : xxh64(decoded);
  return { bytes: decoded.length, chunks: 1, checksum, sentChunks: 1, sentBytes: decoded.length };
}

async function uploadChunked(ctx: UploadContext, source: ChunkSource, pending: Buffer[], it: AsyncIterator<Buffer>, contentType: string): Promise<ResultSummary> {
  const { cmd, http, signal } = ctx;
  const base = requestPath(cmd.request_id);
  const total = source.totalBytes;
  const init = {
    attempt: cmd.attempt,
    content_type: contentType,
    total_bytes: total,
    total_chunks: total === null ? null : Math.ceil(total / cmd.chunk_size),
    ...(source.schema ? { schema: source.schema } : {}),
  };
  await http.send('stream/init', () => http.postJson(`${base}/stream/init`, init, signal), { signal, policy: ctx.policy, retry: { resend422: false }, onRetry: retryLogger(ctx) });
  ctx.renew();

  const hash = new Xxh64Stream();
  const inflight = new InFlight(ctx.parallel, signal, ctx.inflightBytes);
  let index = 0;
  let bytes = 0;
  let sentChunks = 0;
  let sentBytes = 0;
  try {
    for (;;) {
      let decoded: Buffer;
      if (pending.length) decoded = pending.shift()!;
      else {
        const next = await it.next();
        if (next.done) break;
        decoded = next.value;
      }
      // Every chunk is hashed; only those the router does not have yet are sent.
      hash.update(decoded);
      bytes += decoded.length;
      const i = index++;
      if (i < cmd.resume_from) {
        source.release?.(decoded);
        continue;
      }
      sentChunks++;
      sentBytes += decoded.length;
      // Weighed by its decoded size until encoded, then by its body: raw chunks on a fast link
      // keep few in flight (router memory), compressed ones on a slow link many (the link's
      // bandwidth × delay).
      await inflight.slot(decoded.length);
      // The decoded bytes are reused once the chunk is accepted (or its upload has given up).
      inflight.launch((s, resize) => sendChunk(ctx, i, decoded, s, resize).finally(() => source.release?.(decoded)), decoded.length);
    }
    await inflight.drain();
  } catch (err) {
    await inflight.cancel(err);
    throw err;
  }

  const summary = { bytes, chunks: index, checksum: hash.digest() };
  const complete = { attempt: cmd.attempt, ...summary };
  await http.send('stream/complete', () => http.postJson(`${base}/stream/complete`, complete, signal), {
    signal,
    policy: ctx.policy,
    retry: { resend422: false },
    onRetry: retryLogger(ctx),
  });
  ctx.renew();
  return { ...summary, sentChunks, sentBytes };
}

async function sendChunk(ctx: UploadContext, index: number, decoded: Buffer, signal: AbortSignal, resize: (bytes: number) => void): Promise<void> {
  const { cmd, http } = ctx;
  const { chunk, done } = await encode(ctx, decoded);
  try {
    resize(chunk.body.length);
    signal.throwIfAborted();
    const headers = binaryHeaders(chunk, cmd.attempt);
    await http.send(`chunk ${index}`, () => http.postBinary(`${requestPath(cmd.request_id)}/stream/chunk/${index}`, chunk.body, headers, signal), {
      signal,
      policy: ctx.policy,
      onRetry: retryLogger(ctx),
    });
  } finally {
    done();
  }
  ctx.renew();
}

// Offload results (PROTOCOL.md §3.4): the result goes straight to the object store as a
// multipart upload the router created; the router only hands out presigned part URLs and
// completes the upload.
import { Xxh64Stream } from '../protocol/checksum.js';
import { rawZstdFrame, zstdCompress } from '../protocol/codec.js';
import { RelayError } from '../protocol/errors.js';
import { MAX_PARTS, MIN_PART_SIZE, type OffloadPartsResponse } from '../protocol/wire.js';
import { requestPath, retryLogger, type ResultSummary, type UploadContext } from './context.js';
import { HttpError, isOk } from './http.js';
import { GrowingPart } from './growing-part.js';
import { InFlight } from './inflight.js';
import { OffloadLevel, ShrinkWatch } from './compression.js';
import { Lent, sharedPool, type BufferPool, type Lease } from '../protocol/buffer-pool.js';
import type { ChunkSource } from './sources/file.js';

/** Part URLs asked for in one call; more are asked for as the upload gets to them. */
export const URL_BATCH = 16;
/** A URL this close to expiry is asked for again rather than risking a 403 mid-upload. */
const URL_MARGIN_MS = 30_000;
/** PUTs in flight per offload command. */
export const MAX_OFFLOAD_PARALLEL = 4;

/** Chunks compressed at once: the pool's threads on two cores (more only queue). */
const COMPRESS_AHEAD = 2;
/** A part is PUT while it is packed when the result is expected to fill this many parts after it. */
const GROW_AFTER_PARTS = 1;
/** Part buffers kept per part size: the parts in flight and the one being filled, for one command or two. */
const PART_POOL_FREE = 2 * (MAX_OFFLOAD_PARALLEL + 1);

/**
 * Cuts a byte stream into object-store parts of exactly `partSize` bytes, the last one
 * shorter. Part boundaries need not fall between zstd frames: the object is the parts
 * concatenated. Parts are yielded one at a time and the next one is only allocated once the
 * caller asks for it, so the caller controls how many exist at once.
 */
export class PartPacker {
  private part: Buffer | undefined;
  private lease: Lease | undefined;
  private fill = 0;
  private emitted = 0;
  /** Pooled parts handed out and not released yet. */
  private readonly lent = new Lent();

  /** pool: where part buffers come from (of partSize bytes); without one, each part is new. */
  constructor(
    readonly partSize: number,
    private readonly pool?: BufferPool,
  ) {
    if (!Number.isInteger(partSize) || partSize <= 0) throw new RangeError(`invalid part size ${partSize}`);
    if (pool && pool.size !== partSize) throw new RangeError(`pool buffers of ${pool.size} bytes for parts of ${partSize}`);
  }

  /** The caller is done with a part it was given: its buffer may be filled again. */
  release(part: Buffer): void {
    this.lent.giveBack(part);
  }

  private take(buf: Buffer): Buffer {
    if (this.lease) this.lent.lend(buf, this.lease);
    this.part = undefined;
    this.lease = undefined;
    this.fill = 0;
    this.emitted += 1;
    return buf;
  }

  /** The part being filled, if one is: its buffer and how many bytes it holds so far. */
  get filling(): { buf: Buffer; fill: number } | null {
    return this.part ? { buf: this.part, fill: this.fill } : null;
  }

  /** Parts completed so far. */
  get parts(): number {
    return this.emitted;
  }

  *push(data: Uint8Array): Generator<Buffer> {
    let off = 0;
    while (off < data.length) {
      if (!this.part) {
        this.lease = this.pool?.acquire();
        this.part = this.lease?.buf ?? Buffer.allocUnsafeSlow(this.partSize);
      }
      const n = Math.min(this.partSize - this.fill, data.length - off);
      this.part.set(data.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
      if (this.fill === this.partSize) yield this.take(this.part);
    }
  }

  /** The last, shorter part; one empty part when nothing was pushed at all; else null. */
  end(): Buffer | null {
    if (this.fill > 0) return this.take(this.part!.subarray(0, this.fill));
    if (this.emitted === 0) {
      this.emitted = 1;
      return Buffer.alloc(0);
    }
    return null;
  }
}

/**
 * One chunk as it goes into the object: a zstd frame, or a raw-block frame when zstd did not
 * shrink it or `compress` is false.
 */
export async function zstdFrameOf(decoded: Buffer, level: number, compress = true): Promise<Buffer> {
  if (decoded.length === 0 || !compress) return rawZstdFrame(decoded);
  const z = await zstdCompress(decoded, level);
  return z.length < decoded.length ? z : rawZstdFrame(decoded);
}

/** Presigned part URLs, asked for in batches and asked for again when expired. */
class PartUrls {
  /** freshUntil: when to stop using a URL (a margin before its expiry: 30 s, or half a short life). */
  private readonly urls = new Map<number, { url: string; freshUntil: number }>();
  private readonly pending = new Map<number, Promise<void>>();

  constructor(private readonly ctx: UploadContext) {
    // This router sends the first parts' URLs with the command (docs/protocol.md, gap list).
    const off = ctx.cmd.offload;
    if (off?.urls) this.store(off.urls, off.expires_at);
  }

  async get(part: number, signal: AbortSignal): Promise<string> {
    for (let tries = 0; tries < 3; tries++) {
      const hit = this.urls.get(part);
      if (hit && hit.freshUntil > Date.now()) return hit.url;
      await (this.pending.get(part) ?? this.fetch(part, signal));
    }
    throw new RelayError('CONNECTOR_ERROR', `offload/parts gave no usable URL for part ${part}`);
  }

  /**
   * Asks for the first batch of parts without a URL now: the first part then finds its URL
   * instead of waiting a round trip for it (the next ones, when the command brought the first).
   */
  prefetch(signal: AbortSignal): void {
    let first = 1;
    while ((this.urls.get(first)?.freshUntil ?? 0) > Date.now()) first++;
    // A failure is seen by the get() that needs it, which awaits the same call.
    this.fetch(first, signal).catch(() => undefined);
  }

  /** Keeps URLs until a margin before `expires` (30 s, or half a short life). */
  private store(urls: Record<string, string>, expires: string | undefined): void {
    const parsed = Date.parse(String(expires ?? ''));
    // Without a usable expiry, assume a short life; a 403 makes us ask again anyway.
    const got = Date.now();
    const expiresAt = Number.isNaN(parsed) ? got + 5 * 60_000 : parsed;
    // Short-lived URLs (a router configured with a TTL under a minute) are used for half their life.
    const freshUntil = expiresAt - Math.min(URL_MARGIN_MS, Math.max(0, expiresAt - got) / 2);
    for (const [k, url] of Object.entries(urls)) {
      const n = Number(k);
      if (Number.isInteger(n) && typeof url === 'string' && url) this.urls.set(n, { url, freshUntil });
    }
  }

  invalidate(part: number): void {
    this.urls.delete(part);
  }

  private fetch(first: number, signal: AbortSignal): Promise<void> {
    const { cmd, http } = this.ctx;
    const parts: number[] = [];
    const now = Date.now();
    for (let p = first; p < first + URL_BATCH && p <= MAX_PARTS; p++) {
      const hit = this.urls.get(p);
      if (!this.pending.has(p) && !(hit && hit.freshUntil > now)) parts.push(p);
    }
    if (parts.length === 0) return Promise.resolve();
    const job = (async () => {
      const res = await http.send('offload/parts', () => http.postJson(`${requestPath(cmd.request_id)}/offload/parts`, { attempt: cmd.attempt, parts }, signal), {
        signal,
        policy: this.ctx.policy,
        retry: { resend422: false },
        onRetry: retryLogger(this.ctx),
      });
      this.ctx.renew();
      const body = res.data as Partial<OffloadPartsResponse> | undefined;
      this.store(body?.urls ?? {}, body?.expires_at);
    })();
    const settled = job.finally(() => {
      for (const p of parts) if (this.pending.get(p) === settled) this.pending.delete(p);
    });
    for (const p of parts) this.pending.set(p, settled);
    return settled;
  }
}

export async function offloadResult(ctx: UploadContext, source: ChunkSource): Promise<ResultSummary> {
  const { cmd, http, signal, log } = ctx;
  if (!cmd.offload) throw new RelayError('BAD_REQUEST', 'offload command without an "offload" section');
  let partSize = cmd.offload.part_size;
  if (partSize < MIN_PART_SIZE) {
    // The object store rejects smaller parts at completion; failing then would waste the upload.
    log.warn({ request: cmd.request_id, partSize }, `part_size below the object store's minimum; using ${MIN_PART_SIZE}`);
    partSize = MIN_PART_SIZE;
  }
  const encoding = cmd.compression === 'zstd' ? 'zstd' : 'identity';
  const packer = new PartPacker(partSize, sharedPool(partSize, PART_POOL_FREE));
  const urls = new PartUrls(ctx);
  urls.prefetch(signal);
  const etags = new Map<number, string>();
  const hash = new Xxh64Stream();
  // Memory: at most `parallel` parts in flight plus the one being filled.
  const inflight = new InFlight(Math.max(1, Math.min(MAX_OFFLOAD_PARALLEL, ctx.parallel)), signal);
  let bytes = 0;
  let partNo = 0;

  // A part is PUT while it is packed (growing-part.ts) when a whole part is expected after it,
  // so that it will be full: expected = the source's size (files) times the ratio packed so far.
  // Without that, a part goes out only once packed, and the link waits for it (through the WAN
  // bench's link, 125 ms between part 1's end and part 2's start).
  let growing: GrowingPart | undefined;
  let packedWire = 0;
  let packedDecoded = 0;
  const worthGrowing = (part: number) =>
    source.totalBytes !== null && packedDecoded > 0 && (source.totalBytes * packedWire) / packedDecoded >= (part + GROW_AFTER_PARTS) * partSize;
  const grow = () => {
    const filling = packer.filling;
    if (!filling) return;
    if (growing) return growing.grew(filling.fill);
    const n = partNo + 1;
    // A growing part holds its slot until packed; feed() never waits for one, so it needs a
    // free slot now (it is tried again after the next chunk).
    if (!inflight.hasRoom() || n > MAX_PARTS || !worthGrowing(n)) return;
    const g = new GrowingPart(filling.buf, partSize);
    g.grew(filling.fill);
    growing = g;
    partNo = n;
    inflight.launch((s) =>
      putGrowing(ctx, urls, n, g, s)
        .then((etag) => {
          etags.set(n, etag);
          level?.stored(partSize);
        })
        .finally(() => g.done && packer.release(g.done)),
    );
  };

  const put = async (body: Buffer) => {
    if (growing) {
      // The part being PUT while packed: its PUT now has all of it (or fails and sends this whole).
      growing.finish(body);
      growing = undefined;
      return;
    }
    const n = ++partNo;
    if (n > MAX_PARTS) throw new RelayError('CONNECTOR_ERROR', `result needs more than ${MAX_PARTS} parts of ${partSize} bytes`);
    // A packed part waits here for a slot: with `parallel` in flight, memory holds one more.
    await inflight.slot();
    inflight.launch((s) =>
      putPart(ctx, urls, n, body, s)
        .then((etag) => {
          etags.set(n, etag);
          level?.stored(body.length);
        })
        .finally(() => packer.release(body)),
    );
  };
  // Offload compresses every chunk ('always'): a stored object is downloaded later, and an S3
  // store handles fewer bytes faster; the chooser is asked all the same (mode 'never' says no).
  // Data that does not compress is soon no longer tried (ShrinkWatch).
  const shrink = new ShrinkWatch();
  const level = ctx.adaptLevel ? new OffloadLevel(ctx.zstdLevel, partSize, { base: ctx.compression.base }) : null;
  const frame = async (decoded: Buffer): Promise<Buffer> => {
    const tried = ctx.compression.choose().compress && decoded.length > 0 && shrink.worthTrying();
    const framed = await zstdFrameOf(decoded, level?.level ?? ctx.zstdLevel, tried);
    if (tried) shrink.saw(decoded.length, framed.length);
    return framed;
  };
  const feed = async (data: Buffer) => {
    // Parts PUT while packed never wait for a slot (which throws a failure): a failed upload or
    // a cancelled command stops the packing here, not after the whole source was read.
    inflight.check();
    for (const part of packer.push(data)) await put(part);
    grow();
  };

  // Chunks being compressed, in order: the next ones compress (on the thread pool) while the
  // oldest is packed, so the first part is ready sooner and zstd is not the pipeline's one lane.
  const ahead: { decoded: Buffer; framed: Promise<Buffer> }[] = [];
  const packOldest = async () => {
    const { decoded, framed } = ahead.shift()!;
    const wire = await framed;
    packedWire += wire.length;
    packedDecoded += decoded.length;
    await feed(wire);
    level?.packed(wire.length);
    // The packer has copied it (and the frame was made from it).
    source.release?.(decoded);
  };
  try {
    for await (const decoded of source.chunks()) {
      hash.update(decoded);
      bytes += decoded.length;
      const framed = encoding === 'zstd' ? frame(decoded) : Promise.resolve(decoded);
      framed.catch(() => undefined); // awaited in its turn
      ahead.push({ decoded, framed });
      if (ahead.length >= COMPRESS_AHEAD) await packOldest();
    }
    while (ahead.length) await packOldest();
    // An empty result is still one valid zstd stream (some decoders refuse zero bytes).
    if (bytes === 0 && encoding === 'zstd') {
      const empty = rawZstdFrame(Buffer.alloc(0));
      packedWire += empty.length;
      await feed(empty);
    }
    const last = packer.end();
    if (last) await put(last);
    await inflight.drain();
  } catch (err) {
    await inflight.cancel(err);
    throw err;
  }

  const summary: ResultSummary = { bytes, chunks: partNo, checksum: hash.digest(), storedBytes: packedWire, ...(encoding === 'zstd' ? { zstdLevel: level?.level ?? ctx.zstdLevel } : {}) };
  const parts = [...etags.entries()].sort(([a], [b]) => a - b).map(([part, etag]) => ({ part, etag }));
  const complete = { attempt: cmd.attempt, parts, bytes, checksum: summary.checksum, content_encoding: encoding };
  await http.send('offload/complete', () => http.postJson(`${requestPath(cmd.request_id)}/offload/complete`, complete, signal), {
    signal,
    policy: ctx.policy,
    retry: { resend422: false },
    onRetry: retryLogger(ctx),
  });
  ctx.renew();
  return summary;
}

/**
 * PUTs part `n` while it is packed; when that fails (the result ended inside the part, or the
 * store or network refused it) the finished part is PUT whole, under the retry policy.
 */
async function putGrowing(ctx: UploadContext, urls: PartUrls, n: number, part: GrowingPart, signal: AbortSignal): Promise<string> {
  // The router's refusal of a URL (GONE: cancelled) is final, not a reason to send the part whole.
  const url = await urls.get(n, signal);
  try {
    const r = await ctx.http.putPresignedStream(url, part.body(signal), part.size, signal);
    const etag = r.headers.etag;
    const value = Array.isArray(etag) ? etag[0] : etag;
    if (isOk(r.status) && value && part.full) return value;
    if (r.status === 403) urls.invalidate(n);
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    if (err instanceof RelayError && !(err instanceof HttpError)) throw err;
    // else: sent whole below
  }
  return putPart(ctx, urls, n, await part.whenFinished(signal), signal);
}

/** PUTs one part; a 403 means the presigned URL expired, so a fresh one is asked for. */
async function putPart(ctx: UploadContext, urls: PartUrls, n: number, body: Buffer, signal: AbortSignal): Promise<string> {
  const res = await ctx.http.send(
    `PUT part ${n}`,
    async () => {
      const url = await urls.get(n, signal);
      const r = await ctx.http.putPresigned(url, body, signal);
      if (r.status === 403) urls.invalidate(n);
      return r;
    },
    { signal, policy: ctx.policy, retryWhen: (r) => r.status === 403, onRetry: retryLogger(ctx) },
  );
  const etag = res.headers.etag;
  const value = Array.isArray(etag) ? etag[0] : etag;
  if (!value) throw new HttpError('CONNECTOR_ERROR', `PUT part ${n}: the object store answered without an ETag`, res.status);
  return value;
}

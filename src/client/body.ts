// Moving result bytes from an HTTP body to the caller's Writable: decoded incrementally,
// hashed as they pass, written with backpressure, never held whole in memory.
import { WriteStream } from 'node:fs';
import { Socket } from 'node:net';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BufferPool, type Lease } from '../protocol/buffer-pool.js';
import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, RelayError, Xxh64Stream, ZstdFrameSplitter, ZstdFrameStream, isSkippableMagic, zstdFrameDecoded } from '../protocol/index.js';
import { YoungGc } from '../protocol/young-gc.js';
import { describe } from './http.js';

export type ProgressFn = (bytesSoFar: number, total: number | null) => void;

/** Failures of the local output (disk full, closed pipe): never the router's fault. */
export class OutputError extends RelayError {
  constructor(cause: unknown) {
    super('INTERNAL', `cannot write the output: ${describe(cause)}`, { cause });
  }
}

/** The body does not decode: corrupt bytes, not a short read. */
export class DecodeError extends Error {
  override name = 'DecodeError';
}

/** Socket buffers read between two scavenges (young-gc.ts), for every body this process reads. */
const youngGc = new YoungGc(2 * 1024 * 1024);

/** Bytes `out` may hold before we wait for it (see Sink.write). */
const OUT_BATCH = 1 << 20;

/**
 * Whether `out` is done with a buffer once its write callback has run, so the buffer may be
 * reused: files and sockets (pipes, terminals) hand the bytes to the kernel first; process
 * stdout/stderr written to a file do it synchronously. Any other Writable may keep what it was
 * given (a collector, a parser), and gets fresh buffers.
 */
function recyclesBuffers(out: Writable): boolean {
  return out instanceof WriteStream || out instanceof Socket || out === process.stdout || out === process.stderr;
}

/** The decoded result on its way to `out`: hash, count, progress, backpressure. */
export class Sink {
  readonly hash = new Xxh64Stream();
  bytes = 0;
  failure: OutputError | undefined;
  /** `out` lets buffers be reused once written (recyclesBuffers). */
  readonly recycles: boolean;
  private readonly onError = (err: Error): void => {
    this.failure ??= new OutputError(err);
  };

  constructor(
    private readonly out: Writable,
    private readonly total: number | null,
    private readonly onProgress?: ProgressFn,
    private readonly signal?: AbortSignal,
  ) {
    out.on('error', this.onError);
    this.recycles = recyclesBuffers(out);
  }

  /** Set by replay(): the first bytes of a retried answer, compared instead of written again. */
  private replayed: { bytes: number; seen: number; hash: Xxh64Stream; expected: string } | null = null;

  /**
   * The answer was lost after `bytes` bytes and is asked for again: the retry starts from
   * byte 0, so its first `bytes` bytes are checked against what was written, not rewritten.
   */
  replay(): void {
    if (this.replayed && this.replayed.seen < this.replayed.bytes) {
      // Lost again inside the replayed prefix: start that comparison over.
      this.replayed = { ...this.replayed, seen: 0, hash: new Xxh64Stream() };
      return;
    }
    this.replayed = this.bytes > 0 ? { bytes: this.bytes, seen: 0, hash: new Xxh64Stream(), expected: this.hash.digest() } : null;
  }

  private skipReplayed(buf: Buffer): Buffer {
    const r = this.replayed!;
    const n = Math.min(buf.length, r.bytes - r.seen);
    r.hash.update(buf.subarray(0, n));
    r.seen += n;
    if (r.seen === r.bytes) {
      this.replayed = null;
      if (r.hash.digest() !== r.expected) {
        throw new RelayError('CHECKSUM_MISMATCH', `the retried answer's first ${r.bytes} bytes differ from those already written`);
      }
    }
    return buf.subarray(n);
  }

  /**
   * Returns a promise only when `out` asked us to wait, so the fast path allocates none.
   * `out` is waited for once it holds OUT_BATCH bytes, not at its own highWaterMark: a file
   * stream with the default 16 KiB would otherwise take one piece (64-128 KiB, a socket read)
   * per write syscall, each awaited, instead of the pieces that queue behind a write in one
   * writev (100 MB to a file on this VM: 100 ms CPU in 64 KiB writes, 35 ms in 1 MiB batches).
   */
  write(buf: Buffer, lease?: Lease): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    if (this.replayed) buf = this.skipReplayed(buf);
    if (buf.length === 0) {
      lease?.release();
      return undefined;
    }
    this.hash.update(buf);
    this.bytes += buf.length;
    // A leased buffer goes back to its pool once `out` has written it (or failed to).
    const ok = lease ? this.out.write(buf, () => lease.release()) : this.out.write(buf);
    this.onProgress?.(this.bytes, this.total);
    if (ok || this.out.writableLength < OUT_BATCH) return undefined;
    return drain(this.out, this.signal).catch((err: unknown) => {
      this.failure ??= new OutputError(err);
      throw this.failure;
    });
  }

  checksum(): string {
    return this.hash.digest();
  }

  release(): void {
    this.out.off('error', this.onError);
  }
}

/** Waits for `out` to take more; a stuck consumer must not outlive a cancel. */
function drain(out: Writable, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (out.destroyed) return reject(out.errored ?? new Error('output closed'));
    if (!out.writableNeedDrain) return resolve();
    if (signal?.aborted) return reject(new Error('cancelled'));
    const done = (err?: Error): void => {
      out.off('drain', onDrain);
      out.off('error', onError);
      out.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onError = (err: Error): void => done(err);
    const onClose = (): void => done(out.errored ?? new Error('output closed'));
    const onAbort = (): void => done(new Error('cancelled'));
    out.on('drain', onDrain);
    out.on('error', onError);
    out.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface Decoder {
  push(chunk: Buffer): Promise<void> | undefined;
  /** Flushes what is pending; throws if the encoded stream ended in the middle of a frame. */
  end(): Promise<void>;
}

export class IdentityDecoder implements Decoder {
  constructor(private readonly sink: Sink) {}
  push(chunk: Buffer): Promise<void> | undefined {
    return this.sink.write(chunk);
  }
  async end(): Promise<void> {}
}

/** Thrown by end() when the encoded stream stopped inside a frame: a truncation. */
export class TruncatedError extends Error {
  override name = 'TruncatedError';
}

/**
 * A frame still incomplete with this many bytes held is decoded as it arrives instead of whole:
 * a chunk's frame is at most MAX_CHUNK_SIZE, but PROTOCOL.md §3.4 allows an offload object to be
 * any zstd stream, one frame of gigabytes included.
 */
const HOLD_MAX = MAX_CHUNK_SIZE + 64 * 1024;

/**
 * Buffers frames are decoded into, given back once `out` has written them. Fresh ones are
 * memory outside V8's heap, which V8 answers with full collections when a download decodes
 * fast, and each faults in page by page: 100 MB of the CSV (level-6 frames) decoded to
 * /dev/null took 247-288 ms of CPU, 142-156 ms this way; the WAN offload's download and
 * decoding after the object is complete ~0.1 s less. Only frames of up to the default
 * chunk size; the rest get fresh buffers.
 */
const decodePool = new BufferPool(DEFAULT_CHUNK_SIZE, 16, { keep: 0, ms: 10_000 });

/**
 * Concatenated zstd frames (one per chunk, PROTOCOL.md §3.3) decoded frame by frame as they
 * complete, on this thread (zstdFrameDecoded: ~1 ms per 512 KiB frame), and written in order;
 * a full `out` stops the decoding and the reading from the socket until it drains. A frame
 * larger than HOLD_MAX is decoded as a stream (ZstdFrameStream), so memory stays bounded.
 */
export class ZstdDecoder implements Decoder {
  private readonly splitter = new ZstdFrameSplitter();
  /** The oversized frame being decoded as it arrives, if any. */
  private stream: ZstdFrameStream | null = null;

  constructor(private readonly sink: Sink) {}

  push(chunk: Buffer): Promise<void> | undefined {
    if (this.stream) return this.feedStream(this.stream, chunk);
    let frames: Buffer[][];
    try {
      frames = this.splitter.pushPieces(chunk);
    } catch (err) {
      throw new DecodeError(`invalid zstd stream: ${describe(err)}`);
    }
    const w = this.writeFrames(frames, 0);
    if (this.splitter.pending <= HOLD_MAX) return w;
    return w ? w.then(() => this.startStream()) : this.startStream();
  }

  private startStream(): Promise<void> | undefined {
    this.stream = new ZstdFrameStream();
    return this.pushAll(this.splitter.takePending(), 0);
  }

  private pushAll(pieces: Buffer[], from: number): Promise<void> | undefined {
    for (let i = from; i < pieces.length; i++) {
      const w = this.push(pieces[i]!);
      if (w) return w.then(() => this.pushAll(pieces, i + 1));
    }
    return undefined;
  }

  private feedStream(stream: ZstdFrameStream, piece: Buffer): Promise<void> | undefined {
    const w = this.writePieces(guarded(stream.feed(piece)));
    const next = (): Promise<void> | undefined => {
      if (stream.rest === null) return undefined;
      // The frame ended in this piece: what follows is the next frame's.
      this.stream = null;
      return stream.rest.length ? this.push(stream.rest) : undefined;
    };
    return w ? w.then(next) : next();
  }

  /** Returns a promise only when `out` asked us to wait; the rest follows once it drained. */
  private writeFrames(frames: Buffer[][], from: number): Promise<void> | undefined {
    for (let i = from; i < frames.length; i++) {
      const w = this.writeFrame(frames[i]!);
      if (w) return w.then(() => this.writeFrames(frames, i + 1));
    }
    return undefined;
  }

  private writeFrame(frame: Buffer[]): Promise<void> | undefined {
    if (!this.sink.recycles) return this.writePieces(decodedPieces(frame));
    // A frame that declares its size is decoded in one call into one buffer: the lease taken
    // for it goes with the piece it yields.
    let lease: Lease | undefined;
    const alloc = (size: number): Buffer => {
      if (size === 0 || size > decodePool.size) return Buffer.allocUnsafe(size);
      lease = decodePool.acquire();
      return lease.buf.subarray(0, size);
    };
    const take = (): Lease | undefined => {
      const l = lease;
      lease = undefined;
      return l;
    };
    return this.writePieces(decodedPieces(frame, alloc), take);
  }

  private writePieces(pieces: Iterator<Buffer>, lease?: () => Lease | undefined): Promise<void> | undefined {
    for (let r = pieces.next(); !r.done; r = pieces.next()) {
      const w = this.sink.write(r.value, lease?.());
      if (w) return w.then(() => this.writePieces(pieces, lease));
    }
    return undefined;
  }

  async end(): Promise<void> {
    try {
      if (this.stream) throw new Error('zstd stream truncated inside a frame');
      this.splitter.end();
    } catch (err) {
      throw new TruncatedError(describe(err));
    }
  }
}

/** A decoder's failures as DecodeError (corrupt data, not a short read). */
function* guarded(pieces: Iterable<Buffer>): Generator<Buffer, void, undefined> {
  try {
    yield* pieces;
  } catch (err) {
    throw new DecodeError(`invalid zstd frame: ${describe(err)}`);
  }
}

/**
 * A frame's decoded bytes. Frames made only of stored blocks (incompressible chunks, and every
 * chunk a connector sends raw: rawZstdFrame) are sliced out as views, skipping the decoder,
 * the joining of the pieces and two copies; skippable frames carry no data.
 */
function* decodedPieces(pieces: Buffer[], alloc?: (size: number) => Buffer): Generator<Buffer, void, undefined> {
  if (isSkippableMagic(new PieceCursor(pieces).u32())) return;
  const stored = storedBlocks(pieces);
  if (stored) return yield* stored;
  yield* guarded(zstdFrameDecoded(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces), Infinity, alloc));
}

/** Reads a frame spread over the pieces it arrived in, without joining them. */
class PieceCursor {
  private i = 0;
  private off = 0;
  /** Bytes consumed so far. */
  pos = 0;
  readonly length: number;

  constructor(private readonly pieces: Buffer[]) {
    this.length = pieces.reduce((a, p) => a + p.length, 0);
  }

  byte(): number {
    while (this.off >= this.pieces[this.i]!.length) {
      this.i++;
      this.off = 0;
    }
    this.pos++;
    return this.pieces[this.i]![this.off++]!;
  }

  /** Little-endian unsigned integer of n ≤ 6 bytes (8: as a Number, exact below 2^53). */
  uint(n: number): number {
    let v = 0;
    for (let k = 0; k < n; k++) v += this.byte() * 2 ** (8 * k);
    return v;
  }

  u32(): number {
    return this.uint(4);
  }

  /** The next n bytes as views into the pieces. */
  views(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0) {
      const p = this.pieces[this.i]!;
      if (this.off >= p.length) {
        this.i++;
        this.off = 0;
        continue;
      }
      const k = Math.min(n, p.length - this.off);
      out.push(p.subarray(this.off, this.off + k));
      this.off += k;
      this.pos += k;
      n -= k;
    }
    return out;
  }
}

/**
 * The payloads of a frame made only of raw (stored) blocks, as views into the frame (or the
 * pieces it arrived in), or null when it holds compressed blocks. Incompressible chunks, and
 * every chunk a connector sends raw, travel this way (rawZstdFrame): slicing them out skips a
 * native round trip, joining the pieces, and two copies.
 */
export function storedBlocks(frame: Buffer | Buffer[]): Buffer[] | null {
  const c = new PieceCursor(Array.isArray(frame) ? frame : [frame]);
  if (c.length < 6) return null;
  c.u32(); // magic, checked by the splitter
  const fhd = c.byte();
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const hasChecksum = (fhd >> 2) & 1;
  const dictBytes = [0, 1, 2, 4][fhd & 3]!;
  const fcsBytes = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag]!;
  const headerEnd = 5 + (singleSegment ? 0 : 1) + dictBytes + fcsBytes;
  if (c.length < headerEnd) return null;
  if (!singleSegment) c.byte();
  c.uint(dictBytes);
  let contentSize: number | undefined;
  if (fcsBytes > 0) contentSize = c.uint(fcsBytes) + (fcsBytes === 2 ? 256 : 0);
  const out: Buffer[] = [];
  let size = 0;
  for (;;) {
    if (c.pos + 3 > c.length) return null;
    const header = c.uint(3);
    if (((header >> 1) & 3) !== 0) return null;
    const blockSize = header >>> 3;
    if (c.pos + blockSize > c.length) return null;
    if (blockSize > 0) out.push(...c.views(blockSize));
    size += blockSize;
    if (header & 1) break;
  }
  // Anything odd (a size that does not add up) goes to the real decoder to be judged.
  if (c.pos + (hasChecksum ? 4 : 0) !== c.length) return null;
  if (contentSize !== undefined && contentSize !== size) return null;
  return out;
}

export function decoderFor(encoding: string | undefined, sink: Sink): Decoder {
  const enc = (encoding ?? 'identity').trim().toLowerCase();
  if (enc === 'zstd') return new ZstdDecoder(sink);
  if (enc === '' || enc === 'identity') return new IdentityDecoder(sink);
  throw new RelayError('INTERNAL', `unsupported Content-Encoding "${encoding}" in the answer`);
}

/** Reads the whole body through the decoder. Errors of the body (a cut connection) propagate. */
export function pump(body: Readable, decoder: Decoder): Promise<void> {
  return eachPiece(body, (chunk) => decoder.push(chunk), () => decoder.end());
}

/**
 * Hands a body to `take` one socket read at a time, waiting for the promise it returns before
 * the next; `end` runs after the last. Not `for await`: a paused stream's iterator gets all it
 * has buffered joined into one new Buffer (Readable.read → fromList), a copy of every byte and
 * an allocation per read as soon as the consumer falls behind (bulk bench, 100 MB stream: 240
 * ms of the client's CPU and the garbage collections after it). Flowing mode passes each read
 * as it came. An error from `take` or `end`, or of the body, rejects with that error.
 */
export function eachPiece(body: Readable, take: (piece: Buffer) => Promise<void> | undefined, end?: () => Promise<void>): Promise<void> {
  const out = new Writable({
    // 1 byte: every piece waits for the one before it; the body's own buffer holds the rest.
    highWaterMark: 1,
    write(piece: Buffer, _enc, done) {
      youngGc.read(piece.length);
      let w: Promise<void> | undefined;
      try {
        w = take(piece);
      } catch (err) {
        return done(err as Error);
      }
      if (w) w.then(() => done(), done);
      else done();
    },
    final(done) {
      if (!end) return done();
      end().then(() => done(), done);
    },
  });
  return pipeline(body, out);
}

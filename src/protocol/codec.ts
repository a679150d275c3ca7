// Chunk framing (PROTOCOL.md §3.3): each chunk of at most chunk_size decoded bytes is one
// zstd frame (unless compression would not shrink it) with an xxh64 of the body as sent.
import zstdNapi from 'zstd-napi/binding.js';
import { xxh64 } from './checksum.js';
import { RelayError } from './errors.js';

// The native binding is CommonJS: its exports are known only once it is loaded.
const { DCtx, getFrameContentSize } = zstdNapi;
type DCtx = InstanceType<typeof DCtx>;

export const DEFAULT_CHUNK_SIZE = 512 * 1024;
export const MAX_CHUNK_SIZE = 8 * 1024 * 1024;
export const DEFAULT_ZSTD_LEVEL = 1;

export type Encoding = 'zstd' | 'identity';

/**
 * @mongodb-js/zstd compresses on the libuv pool. Only a connector compresses, so the module (a
 * native addon, ~13 ms to load on its own) is loaded on first use, not by a client that only
 * decodes.
 */
let compressor: typeof import('@mongodb-js/zstd').compress | undefined;
async function compress(data: Buffer, level: number): Promise<Buffer> {
  compressor ??= (await import('@mongodb-js/zstd')).compress;
  return compressor(data, level);
}

export interface EncodedChunk {
  body: Buffer;
  encoding: Encoding;
  /** xxh64 of body (as sent). */
  checksum: string;
  decodedLength: number;
}

/** Compresses one chunk; keeps the raw bytes when zstd would not make them smaller. */
export async function encodeChunk(decoded: Buffer, opts: { compression: boolean; level?: number }): Promise<EncodedChunk> {
  let body = decoded;
  let encoding: Encoding = 'identity';
  if (opts.compression && decoded.length > 0) {
    const z = await compress(decoded, opts.level ?? DEFAULT_ZSTD_LEVEL);
    if (z.length < decoded.length) {
      body = z;
      encoding = 'zstd';
    }
  }
  return { body, encoding, checksum: xxh64(body), decodedLength: decoded.length };
}

/**
 * Decodes a chunk body and checks its decoded length. A zstd body is decoded into `into` (a
 * reused buffer) when the bytes fit: fresh memory costs a page fault per 4 KiB on first touch.
 */
export async function decodeChunk(body: Buffer, encoding: Encoding, decodedLength?: number, into?: Buffer): Promise<Buffer> {
  if (encoding === 'identity') {
    if (decodedLength !== undefined && body.length !== decodedLength) {
      throw new RelayError('BAD_REQUEST', `X-Relay-Decoded-Length ${decodedLength} does not match body length ${body.length}`);
    }
    return body;
  }
  let out: Buffer;
  try {
    // The declared length bounds the work: a frame that decodes to more is cut off, not inflated.
    const alloc = into ? (size: number) => (size <= into.length ? into.subarray(0, size) : Buffer.allocUnsafe(size)) : undefined;
    const pieces = [...zstdFrameDecoded(body, decodedLength, alloc)];
    out = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  } catch (err) {
    if (err instanceof RelayError) throw err;
    throw new RelayError('BAD_REQUEST', `body is not a valid zstd frame: ${(err as Error).message}`);
  }
  if (decodedLength !== undefined && out.length !== decodedLength) {
    throw new RelayError('BAD_REQUEST', `decoded ${out.length} bytes, X-Relay-Decoded-Length says ${decodedLength}`);
  }
  return out;
}

export async function zstdCompress(data: Buffer, level = DEFAULT_ZSTD_LEVEL): Promise<Buffer> {
  return compress(data, level);
}

/** Concatenated zstd frames, decoded whole (tests, small bodies; results go through zstdFrameDecoded). */
export async function zstdDecompress(data: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  for (const frame of new ZstdFrameSplitter().push(data)) {
    if (!isSkippableFrame(frame)) out.push(...zstdFrameDecoded(frame));
  }
  return Buffer.concat(out);
}

/** Output pieces of a frame decoded as a stream (size unknown, or over MAX_CHUNK_SIZE). */
const STREAM_PIECE = 1 << 20;
/** One context for every frame decoded in one go: a fresh context per frame costs allocations. */
let sharedDctx: DCtx | undefined;

/**
 * One whole zstd frame, decoded on the calling thread (zstd-napi). A frame that declares its
 * size (every chunk of this protocol does, ≤ MAX_CHUNK_SIZE) is decoded in one call into a
 * buffer of that size; others are decoded as a stream, yielding pieces of STREAM_PIECE, so a
 * large frame from another connector is not held whole. Over `limit` decoded bytes it throws.
 *
 * Not @mongodb-js/zstd's decompress (it stays for compression, on the libuv pool): it has no
 * bound (an 80 KB frame of RLE blocks inflated to 2.6 GB), copies the input twice and the output
 * once on the JS thread, and grows its output 128 KiB at a time with a context per frame, all in
 * fresh memory. 100 MB of the CSV as level-1 chunks: 1.2-1.4 s of CPU (0.17-0.48 s of it on the
 * JS thread) against 0.10-0.12 s this way, all on the JS thread. `alloc` gives the buffer for
 * a declared size (the router passes one from its pool).
 */
export function* zstdFrameDecoded(frame: Buffer, limit = Infinity, alloc: (size: number) => Buffer = Buffer.allocUnsafe): Generator<Buffer, void, undefined> {
  const size = getFrameContentSize(frame);
  if (size !== null && size <= MAX_CHUNK_SIZE) {
    if (size > limit) throw tooLarge(limit);
    const out = alloc(size);
    const n = (sharedDctx ??= new DCtx()).decompress(out, frame);
    if (n !== size) throw new Error(`the frame decoded to ${n} bytes, its header says ${size}`);
    if (size > 0) yield out;
    return;
  }
  const stream = new ZstdFrameStream();
  let total = 0;
  for (const piece of stream.feed(frame)) {
    total += piece.length;
    if (total > limit) throw tooLarge(limit);
    yield piece;
  }
  if (stream.rest === null) throw new Error('the frame is truncated');
  if (stream.rest.length > 0) throw new Error(`${stream.rest.length} bytes after the end of the frame`);
}

/**
 * One zstd (or skippable) frame decoded as its bytes arrive, in pieces of STREAM_PIECE: for
 * frames too large to hold whole. Its own context, since the caller may decode other frames
 * between two pieces of this one.
 */
export class ZstdFrameStream {
  private readonly dctx = new DCtx();
  /** The bytes after the end of the frame, once it ended (empty when it ended with the input). */
  rest: Buffer | null = null;

  /** Decodes the frame's next bytes: yields what they decode to, and sets `rest` if the frame ended in them. */
  *feed(input: Buffer): Generator<Buffer, void, undefined> {
    let src = input;
    for (;;) {
      const out = Buffer.allocUnsafe(STREAM_PIECE);
      const [left, produced, consumed] = this.dctx.decompressStream(out, src);
      src = src.subarray(consumed);
      if (produced > 0) yield out.subarray(0, produced);
      if (left === 0) {
        this.rest = src;
        return;
      }
      // A full output may hold back more; otherwise the frame waits for more input.
      if (produced < STREAM_PIECE && src.length === 0) return;
      if (produced === 0 && consumed === 0) return;
    }
  }
}

function tooLarge(limit: number): RelayError {
  return new RelayError('BAD_REQUEST', `the zstd frame decoded to more than the ${limit} bytes declared`);
}

/** A skippable frame's magic number (0x184D2A50-0x184D2A5F): such frames carry no data. */
export function isSkippableMagic(magic: number): boolean {
  return (magic & 0xfffffff0) === 0x184d2a50;
}

export function isSkippableFrame(frame: Buffer): boolean {
  return frame.length >= 4 && isSkippableMagic(frame.readUInt32LE(0));
}

// ---- zstd frame format helpers (RFC 8878) ---------------------------------------------

const ZSTD_MAGIC = 0xfd2fb528;
const MAX_RAW_BLOCK = 128 * 1024;

/**
 * Wraps bytes in a zstd frame of raw (stored) blocks, without compressing them.
 * Used where a stream must stay valid zstd but a chunk was sent uncompressed
 * (stream pass-through to `Accept-Encoding: zstd` clients, offload objects).
 */
export function rawZstdFrame(data: Uint8Array): Buffer {
  const blocks = Math.max(1, Math.ceil(data.length / MAX_RAW_BLOCK));
  const out = Buffer.allocUnsafe(4 + 1 + 8 + blocks * 3 + data.length);
  let o = out.writeUInt32LE(ZSTD_MAGIC, 0);
  // Frame header descriptor: FCS field 8 bytes (flag 3), single segment, no checksum, no dict.
  o = out.writeUInt8((3 << 6) | (1 << 5), o);
  o = out.writeBigUInt64LE(BigInt(data.length), o);
  for (let b = 0; b < blocks; b++) {
    const start = b * MAX_RAW_BLOCK;
    const size = Math.min(MAX_RAW_BLOCK, data.length - start);
    const last = b === blocks - 1 ? 1 : 0;
    o = out.writeUIntLE(last | (0 << 1) | (size << 3), o, 3);
    if (size > 0) {
      out.set(data.subarray(start, start + size), o);
      o += size;
    }
  }
  return out;
}

/**
 * The same frame as rawZstdFrame, as a list of buffers that reference the data instead of
 * copying it: the router writes a raw chunk to a pass-through client without a 512 KiB copy.
 */
export function rawZstdFramePieces(pieces: readonly Buffer[]): Buffer[] {
  const total = pieces.reduce((n, p) => n + p.length, 0);
  const head = Buffer.allocUnsafe(13);
  head.writeUInt32LE(ZSTD_MAGIC, 0);
  head.writeUInt8((3 << 6) | (1 << 5), 4);
  head.writeBigUInt64LE(BigInt(total), 5);
  const out: Buffer[] = [head];
  const blocks = Math.max(1, Math.ceil(total / MAX_RAW_BLOCK));
  let p = 0;
  let at = 0;
  for (let b = 0; b < blocks; b++) {
    let size = Math.min(MAX_RAW_BLOCK, total - b * MAX_RAW_BLOCK);
    const bh = Buffer.allocUnsafe(3);
    bh.writeUIntLE((b === blocks - 1 ? 1 : 0) | (size << 3), 0, 3);
    out.push(bh);
    while (size > 0) {
      const piece = pieces[p]!;
      const k = Math.min(size, piece.length - at);
      out.push(at === 0 && k === piece.length ? piece : piece.subarray(at, at + k));
      size -= k;
      at += k;
      if (at === piece.length) {
        p++;
        at = 0;
      }
    }
  }
  return out;
}

/**
 * Cuts a byte stream of concatenated zstd (or skippable) frames into whole frames without
 * decompressing it, reading block headers as bytes arrive (no re-scan, one copy per frame).
 */
export class ZstdFrameSplitter {
  private parts: Buffer[] = [];
  private total = 0;
  /** Offset of the next block header in the current frame, or -1 before the frame header is read. */
  private scan = -1;
  private hasChecksum = false;
  /** Length of the current frame once known. */
  private frameLength = -1;

  /** Feeds bytes; returns the frames completed by them. */
  push(data: Buffer): Buffer[] {
    return this.pushPieces(data).map((pieces) => (pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces)));
  }

  /**
   * Feeds bytes; returns the frames completed by them, each as the pieces of the reads it came
   * in (views, not copies): a reader that only needs the frame's stored blocks never has to
   * join a 512 KiB frame into one buffer.
   */
  pushPieces(data: Buffer): Buffer[][] {
    if (data.length) {
      this.parts.push(data);
      this.total += data.length;
    }
    const frames: Buffer[][] = [];
    while (this.total > 0) {
      if (this.frameLength < 0 && !this.findFrameLength()) break;
      if (this.total < this.frameLength) break;
      frames.push(this.take(this.frameLength));
      this.scan = -1;
      this.frameLength = -1;
    }
    return frames;
  }

  /** Bytes held of a frame that is not complete yet. */
  get pending(): number {
    return this.total;
  }

  /** Hands over the bytes held (the start of a frame) and starts over; the caller decodes that frame as it arrives. */
  takePending(): Buffer[] {
    const held = this.parts;
    this.parts = [];
    this.total = 0;
    this.scan = -1;
    this.frameLength = -1;
    return held;
  }

  /** Throws if the stream ended inside a frame. */
  end(): void {
    if (this.total > 0) throw new Error(`zstd stream truncated: ${this.total} bytes of an incomplete frame`);
  }

  private byte(offset: number): number {
    for (const p of this.parts) {
      if (offset < p.length) return p[offset]!;
      offset -= p.length;
    }
    throw new RangeError('offset past buffered data');
  }

  private u32(offset: number): number {
    return (this.byte(offset) | (this.byte(offset + 1) << 8) | (this.byte(offset + 2) << 16) | (this.byte(offset + 3) << 24)) >>> 0;
  }

  private findFrameLength(): boolean {
    if (this.scan < 0) {
      if (this.total < 8) return false;
      const magic = this.u32(0);
      if (isSkippableMagic(magic)) {
        this.frameLength = 8 + this.u32(4);
        return true;
      }
      if (magic !== ZSTD_MAGIC) throw new Error('not a zstd frame (bad magic number)');
      const fhd = this.byte(4);
      const fcsFlag = fhd >> 6;
      const singleSegment = (fhd >> 5) & 1;
      this.hasChecksum = ((fhd >> 2) & 1) === 1;
      let pos = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
      pos += fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
      this.scan = pos;
    }
    while (this.total >= this.scan + 3) {
      const header = this.byte(this.scan) | (this.byte(this.scan + 1) << 8) | (this.byte(this.scan + 2) << 16);
      const type = (header >> 1) & 3;
      if (type === 3) throw new Error('not a zstd frame (reserved block type)');
      this.scan += 3 + (type === 1 ? 1 : header >>> 3);
      if (header & 1) {
        this.frameLength = this.scan + (this.hasChecksum ? 4 : 0);
        return true;
      }
    }
    return false;
  }

  private take(n: number): Buffer[] {
    const out: Buffer[] = [];
    let o = 0;
    while (o < n) {
      const p = this.parts[0]!;
      const k = Math.min(p.length, n - o);
      out.push(k === p.length ? p : p.subarray(0, k));
      o += k;
      if (k === p.length) this.parts.shift();
      else this.parts[0] = p.subarray(k);
    }
    this.total -= n;
    return out;
  }
}

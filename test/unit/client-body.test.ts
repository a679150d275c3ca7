import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DecodeError, Sink, TruncatedError, ZstdDecoder, eachPiece, storedBlocks } from '../../src/client/body.js';
import { DEFAULT_CHUNK_SIZE, rawZstdFrame, xxh64, zstdCompress } from '../../src/protocol/index.js';
import { collector } from './client-fake-router.js';

test('storedBlocks: raw frames give their payload as views, compressed frames go to zstd', async () => {
  const data = randomBytes(300_000); // three raw blocks
  const frame = rawZstdFrame(data);
  const parts = storedBlocks(frame)!;
  assert.equal(parts.length, 3);
  assert.ok(Buffer.concat(parts).equals(data));
  assert.equal(parts[0]!.buffer, frame.buffer, 'no copy');
  assert.deepEqual(storedBlocks(rawZstdFrame(Buffer.alloc(0))), []);
  assert.equal(storedBlocks(await zstdCompress(Buffer.from('z'.repeat(100_000)))), null);
  // A frame whose declared size disagrees with its blocks is left to the real decoder.
  const lying = Buffer.from(frame);
  lying.writeBigUInt64LE(5n, 5);
  assert.equal(storedBlocks(lying), null);
});

test('storedBlocks over the pieces a frame arrived in: same payload, views into those pieces, never joined', async () => {
  const data = randomBytes(300_000);
  const frame = rawZstdFrame(data);
  for (const cuts of [[1], [3, 7], [5, 200_000], [131_075, 131_078, 262_150], [frame.length - 1]]) {
    const pieces: Buffer[] = [];
    let at = 0;
    for (const c of [...cuts, frame.length]) {
      pieces.push(Buffer.from(frame.subarray(at, c)));
      at = c;
    }
    const parts = storedBlocks(pieces)!;
    assert.ok(parts, `cuts ${cuts.join(',')}`);
    assert.ok(Buffer.concat(parts).equals(data), `cuts ${cuts.join(',')}`);
    assert.ok(parts.every((p) => pieces.some((x) => x.buffer === p.buffer)), 'views, no copies');
  }
  const z = await zstdCompress(Buffer.from('z'.repeat(100_000)));
  assert.equal(storedBlocks([z.subarray(0, 4), z.subarray(4)]), null);
});

test('ZstdDecoder: many frames fed byte-unaligned come out in order; skippable frames are ignored', async () => {
  const pieces: Buffer[] = [];
  const encoded: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    const p = i % 3 === 0 ? randomBytes(1000 + i * 997) : Buffer.from(`${i},`.repeat(5000 + i * 100));
    pieces.push(p);
    encoded.push(i % 3 === 0 ? rawZstdFrame(p) : await zstdCompress(p));
    if (i === 7) {
      const skippable = Buffer.alloc(8 + 5);
      skippable.writeUInt32LE(0x184d2a53, 0);
      skippable.writeUInt32LE(5, 4);
      encoded.push(skippable);
    }
  }
  const all = Buffer.concat(encoded);
  const { out, data } = collector();
  const sink = new Sink(out, null);
  const dec = new ZstdDecoder(sink);
  for (let o = 0; o < all.length; o += 3001) {
    const w = dec.push(all.subarray(o, o + 3001));
    if (w) await w;
  }
  await dec.end();
  const expected = Buffer.concat(pieces);
  assert.ok(data().equals(expected));
  assert.equal(sink.checksum(), xxh64(expected));
  assert.equal(sink.bytes, expected.length);
});

/** A file stream that records the memory (ArrayBuffer) of every chunk it is given. */
function recordingFile(path: string): { file: WriteStream; memory: Set<ArrayBufferLike> } {
  const file = createWriteStream(path);
  const memory = new Set<ArrayBufferLike>();
  const write = file._write.bind(file);
  const writev = file._writev!.bind(file);
  file._write = (chunk: Buffer, enc, cb) => {
    memory.add(chunk.buffer);
    write(chunk, enc, cb);
  };
  file._writev = (chunks, cb) => {
    for (const c of chunks) memory.add((c.chunk as Buffer).buffer);
    writev(chunks, cb);
  };
  return { file, memory };
}

async function decodeTo(sink: Sink, frames: Buffer[]): Promise<void> {
  const dec = new ZstdDecoder(sink);
  for (const f of frames) {
    // Socket-sized reads.
    for (let o = 0; o < f.length; o += 65_536) {
      const w = dec.push(f.subarray(o, o + 65_536));
      if (w) await w;
    }
  }
  await dec.end();
}

test('ZstdDecoder: to a file, chunk-sized frames are decoded into a few reused buffers; to any other Writable, into fresh ones it may keep', async () => {
  const chunks: Buffer[] = [];
  for (let i = 0; i < 64; i++) chunks.push(Buffer.from(`${i};`.repeat(DEFAULT_CHUNK_SIZE)).subarray(0, DEFAULT_CHUNK_SIZE));
  const frames = await Promise.all(chunks.map((c) => zstdCompress(c)));
  const expected = Buffer.concat(chunks);
  const dir = await mkdtemp(join(tmpdir(), 'relay-body-'));
  try {
    const path = join(dir, 'out.bin');
    const { file, memory } = recordingFile(path);
    const sink = new Sink(file, null);
    assert.equal(sink.recycles, true);
    await decodeTo(sink, frames);
    file.end();
    await once(file, 'close');
    assert.ok((await readFile(path)).equals(expected), 'every frame written before its buffer was reused');
    assert.ok(memory.size <= 16, `64 frames written from ${memory.size} buffers`);

    // A collector keeps every chunk: reusing one would overwrite what it holds.
    const { out, data } = collector();
    const kept = new Sink(out, null);
    assert.equal(kept.recycles, false);
    await decodeTo(kept, frames);
    assert.ok(data().equals(expected));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('ZstdDecoder: a read full of tiny frames stops decoding while the output is stuck', async () => {
  const zeros = await zstdCompress(Buffer.alloc(512 * 1024));
  assert.ok(zeros.length < 1000);
  const all = Buffer.concat(Array.from({ length: 1000 }, () => zeros)); // 500 MiB decoded
  const { Writable } = await import('node:stream');
  const stuck = new Writable({ highWaterMark: 1024, write: () => undefined });
  const sink = new Sink(stuck, null);
  const dec = new ZstdDecoder(sink);
  const p = dec.push(all);
  assert.ok(p, 'the decoder waits for the output');
  p.catch(() => undefined);
  await new Promise((r) => setTimeout(r, 300));
  // The sink waits for its output once that holds 1 MiB (Sink.write): two frames of 512 KiB.
  assert.equal(sink.bytes, 1024 * 1024);
  stuck.destroy();
});

/** One zstd frame from a streaming compressor: no content size in its header. */
async function streamCompressed(data: Buffer): Promise<Buffer> {
  const { CompressStream } = await import('zstd-napi');
  const streamed: Buffer[] = [];
  const cs = new CompressStream();
  cs.on('data', (b: Buffer) => streamed.push(b));
  await new Promise<void>((resolve, reject) => cs.end(data, () => resolve()).on('error', reject));
  return Buffer.concat(streamed);
}

/**
 * Feeds `encoded` to a ZstdDecoder in 64 KiB reads; returns the sink, the sizes of the writes
 * its output got, and the most bytes the decoder's splitter held after a read.
 */
async function decodeInReads(encoded: Buffer): Promise<{ sink: Sink; writes: number[]; held: number }> {
  const { Writable } = await import('node:stream');
  const writes: number[] = [];
  const out = new Writable({
    write(chunk: Buffer, _e, cb) {
      writes.push(chunk.length);
      cb();
    },
  });
  const sink = new Sink(out, null);
  const dec = new ZstdDecoder(sink);
  let held = 0;
  for (let o = 0; o < encoded.length; o += 65536) {
    const w = dec.push(encoded.subarray(o, o + 65536));
    if (w) await w;
    held = Math.max(held, (dec as unknown as { splitter: { pending: number } }).splitter.pending);
  }
  await dec.end();
  return { sink, writes, held };
}

test('ZstdDecoder: a frame without a declared size, or larger than a chunk, is decoded as a stream in pieces', async () => {
  const data = Buffer.from('0123456789,abcdef\n'.repeat(600_000)); // 10.8 MB: over MAX_CHUNK_SIZE
  const frame = await streamCompressed(data);
  assert.equal(frame[4]! >> 6, 0, 'no content size in the header');
  const sized = await zstdCompress(data); // declares 10.8 MB
  for (const encoded of [frame, sized]) {
    const { sink, writes } = await decodeInReads(encoded);
    assert.equal(sink.checksum(), xxh64(data));
    assert.ok(Math.max(...writes) <= 1 << 20, `pieces of at most 1 MiB, got ${Math.max(...writes)}`);
  }
});

test('ZstdDecoder: a frame larger than any chunk (an offload object may be one frame) is decoded as it arrives, in bounded memory', async () => {
  const { Writable } = await import('node:stream');
  const { MAX_CHUNK_SIZE } = await import('../../src/protocol/index.js');
  const big = Buffer.concat([randomBytes(9 * 1024 * 1024), Buffer.from('x,y\n'.repeat(500_000))]);
  const small = Buffer.from('after the big frame\n'.repeat(100));
  const unsized = await streamCompressed(big);
  const sized = await zstdCompress(big);
  for (const frame of [unsized, sized]) {
    assert.ok(frame.length > MAX_CHUNK_SIZE + 64 * 1024, `one frame of ${frame.length} bytes`);
    const { sink, writes, held } = await decodeInReads(Buffer.concat([frame, await zstdCompress(small)]));
    assert.equal(sink.checksum(), xxh64(Buffer.concat([big, small])));
    assert.ok(held <= MAX_CHUNK_SIZE + 128 * 1024, `held at most a chunk's frame, held ${held}`);
    assert.ok(Math.max(...writes) <= 1 << 20, 'written in pieces of at most 1 MiB');
    // Cut inside the big frame: a truncation, not a success.
    const cut = new ZstdDecoder(new Sink(new Writable({ write: (_c, _e, cb) => cb() }), null));
    for (let o = 0; o < frame.length - 1000; o += 65536) await cut.push(frame.subarray(o, Math.min(o + 65536, frame.length - 1000)));
    await assert.rejects(cut.end(), TruncatedError);
  }
});

test('ZstdDecoder: a frame that does not decode to its declared size is a DecodeError', async () => {
  const z = await zstdCompress(Buffer.from('abc,def\n'.repeat(10_000)));
  assert.equal(z[4]! & 0xe0, 0xa0, 'single segment, 4-byte content size');
  z.writeUInt32LE(1000, 5);
  const { out } = collector();
  const dec = new ZstdDecoder(new Sink(out, null));
  assert.throws(() => dec.push(z), (err: Error) => err instanceof DecodeError && /invalid zstd frame/.test(err.message));
});

test('Sink: a Writable with a small buffer gets the pieces that queue behind a write in one writev, and is waited for only at 1 MiB', async () => {
  const { Writable } = await import('node:stream');
  const calls: number[] = []; // buffers per write call
  let release: (() => void) | null = null;
  const out = new Writable({
    highWaterMark: 16 * 1024,
    write(_chunk, _enc, cb) {
      calls.push(1);
      release = cb;
    },
    writev(chunks, cb) {
      calls.push(chunks.length);
      release = cb;
    },
  });
  const sink = new Sink(out, null);
  const piece = randomBytes(64 * 1024);
  const results: (Promise<void> | undefined)[] = [];
  for (let i = 0; i < 20; i++) results.push(sink.write(piece));
  // 64 KiB is over the 16 KiB mark already; the sink waits only once 1 MiB is held.
  assert.equal(results.slice(0, 15).filter(Boolean).length, 0, 'no wait below 1 MiB held');
  assert.ok(results.slice(16).every(Boolean), 'waits once 1 MiB is held');
  assert.deepEqual(calls, [1], 'one write in flight, the rest queued behind it');
  release!();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(calls, [1, 19], 'the 19 queued pieces in one writev');
  release!();
  await Promise.all(results);
  assert.equal(sink.bytes, 20 * piece.length);
  sink.release();
});

test('eachPiece: every read is handed over as it came (no joined copies), one at a time, and errors keep their identity', async () => {
  // A body that has buffered several reads before its consumer gets to them (a client busy
  // writing): the async iterator of a paused stream would join them into one new Buffer.
  const pushed = Array.from({ length: 6 }, (_, i) => Buffer.alloc(64 * 1024, i));
  const body = new Readable({ read() {}, highWaterMark: 1 << 20 });
  for (const b of pushed) body.push(b);
  body.push(null);
  const got: Buffer[] = [];
  let busy = false;
  let ended = false;
  await eachPiece(
    body,
    async (piece) => {
      assert.equal(busy, false, 'a piece arrived while the one before was still being taken');
      busy = true;
      got.push(piece);
      await new Promise((r) => setTimeout(r, 5));
      busy = false;
    },
    async () => {
      ended = true;
    },
  );
  assert.equal(got.length, pushed.length);
  assert.ok(got.every((b, i) => b === pushed[i]), 'the very buffers the body read, not copies');
  assert.ok(ended, 'end ran after the last piece');

  // The consumer's own error comes back as is and stops the body.
  const fail = new Error('disk full');
  const body2 = new Readable({ read() {} });
  body2.push(Buffer.from('x'));
  const p = eachPiece(body2, () => {
    throw fail;
  });
  await assert.rejects(p, (err) => err === fail);
  assert.ok(body2.destroyed);

  // A body cut short: its error.
  const cut = new Error('socket hang up');
  const body3 = new Readable({ read() {} });
  body3.push(Buffer.from('x'));
  setTimeout(() => body3.destroy(cut), 5);
  await assert.rejects(eachPiece(body3, () => undefined), (err) => err === cut);
});

test('eachPiece: the socket buffers of a body are collected as it is read (a scavenge every 2 MiB), not left to pile up', async () => {
  const { PerformanceObserver, constants } = await import('node:perf_hooks');
  let minor = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
  });
  obs.observe({ entryTypes: ['gc'] });
  // 32 MiB in 64 KiB reads, all one reused buffer: nothing here would make V8 scavenge on its own.
  const piece = Buffer.alloc(64 * 1024);
  await eachPiece(Readable.from((function* () { for (let i = 0; i < 512; i++) yield piece; })()), () => undefined);
  await new Promise((r) => setTimeout(r, 50)); // gc entries are delivered asynchronously
  obs.disconnect();
  assert.ok(minor >= 12, `${minor} minor collections for 32 MiB read`);
});

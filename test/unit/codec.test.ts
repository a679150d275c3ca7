import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeChunk, decodeChunk, rawZstdFrame, rawZstdFramePieces, zstdDecompress, zstdCompress, ZstdFrameSplitter } from '../../src/protocol/codec.js';
import { XXH64_IMPL, loadWasm, xxh64, Xxh64Stream } from '../../src/protocol/checksum.js';
import { RelayError } from '../../src/protocol/errors.js';

test('xxh64 matches the reference value and the streaming form', () => {
  // Reference: xxh64("", seed 0) = ef46db3751d8e999
  assert.equal(xxh64(new Uint8Array()), 'ef46db3751d8e999');
  const data = randomBytes(100_000);
  assert.equal(new Xxh64Stream().update(data.subarray(0, 7)).update(data.subarray(7)).digest(), xxh64(data));
});

test('xxh64 hashes natively here, with the same digests as the WebAssembly fallback', async () => {
  // The prebuilt binary exists for this platform: falling back here would mean a broken install.
  assert.equal(XXH64_IMPL, 'native');
  assert.equal(xxh64(Buffer.from('abc')), '44bc2cf5ad770999');
  const wasm = await loadWasm();
  assert.equal(wasm.name, 'wasm');
  const hex = (h: bigint) => h.toString(16).padStart(16, '0');
  for (const n of [0, 1, 31, 32, 33, 4096, 524_288 + 3]) {
    const data = randomBytes(n);
    assert.equal(hex(wasm.h64(data)), xxh64(data), `one-shot, length ${n}`);
    const cut = n >> 1;
    const state = wasm.create();
    state.update(data.subarray(0, cut));
    state.update(data.subarray(cut));
    assert.equal(hex(state.digest()), new Xxh64Stream().update(data.subarray(0, cut)).update(data.subarray(cut)).digest(), `incremental, length ${n}`);
    // Leading zeros are kept: 16 digits always.
    assert.match(xxh64(data), /^[0-9a-f]{16}$/);
  }
});

test('encodeChunk compresses text and keeps random bytes raw', async () => {
  const text = Buffer.from('id,name,amount\n'.repeat(10_000));
  const z = await encodeChunk(text, { compression: true });
  assert.equal(z.encoding, 'zstd');
  assert.ok(z.body.length < text.length);
  assert.equal(z.checksum, xxh64(z.body));
  assert.deepEqual(await decodeChunk(z.body, 'zstd', text.length), text);
  const rnd = randomBytes(4096);
  const r = await encodeChunk(rnd, { compression: true });
  assert.equal(r.encoding, 'identity');
  assert.equal(r.body, rnd);
  await assert.rejects(decodeChunk(z.body, 'zstd', 5), /decoded/);
});

/** A zstd frame of RLE blocks without a content size: 4 bytes for every 128 KiB it decodes to. */
function rleBomb(blocks: number): Buffer {
  // Frame header: no content size, not single segment; window 2^27 (128 MiB).
  const head = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x88]);
  const body = Buffer.alloc(blocks * 4);
  for (let i = 0; i < blocks; i++) {
    body.writeUIntLE((i === blocks - 1 ? 1 : 0) | (1 << 1) | ((128 * 1024) << 3), i * 4, 3);
    body[i * 4 + 3] = 0x41;
  }
  return Buffer.concat([head, body]);
}

test('decodeChunk stops at the declared length: a frame that inflates far beyond it is refused, not decoded', async () => {
  // 80 KB that decode to 2.6 GB. The decoder before zstd-napi inflated it whole (5 GB RSS, 38 s).
  const bomb = rleBomb(20_000);
  const before = process.memoryUsage().rss;
  await assert.rejects(decodeChunk(bomb, 'zstd', 512 * 1024), (err: Error) => err instanceof RelayError && err.code === 'BAD_REQUEST' && /decoded to more than the 524288 bytes/.test(err.message));
  assert.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024, 'no more than a few pieces were decoded');
  // The same kind of frame (no content size) within its declared length decodes as a stream.
  assert.deepEqual(await decodeChunk(rleBomb(3), 'zstd', 3 * 128 * 1024), Buffer.alloc(3 * 128 * 1024, 0x41));
});

test('decodeChunk decodes into the buffer it is given when the bytes fit, and into a new one otherwise', async () => {
  const data = Buffer.from('id,name,amount\n'.repeat(4_000));
  const frame = await zstdCompress(data);
  const into = Buffer.alloc(data.length + 100, 0xee);
  const got = await decodeChunk(frame, 'zstd', data.length, into);
  assert.ok(got.equals(data));
  assert.equal(got.buffer, into.buffer, 'decoded in place');
  assert.equal(got.byteOffset, into.byteOffset);
  const small = Buffer.alloc(100);
  const other = await decodeChunk(frame, 'zstd', data.length, small);
  assert.ok(other.equals(data));
  assert.notEqual(other.buffer, small.buffer, 'too small: a buffer of its own');
  // A raw chunk decodes to its body, whatever is offered.
  assert.equal(await decodeChunk(data, 'identity', data.length, into), data);
});

test('rawZstdFrame is a valid zstd frame for empty, small and multi-block inputs', async () => {
  for (const n of [0, 1, 131072, 131073, 600_000]) {
    const data = randomBytes(n);
    assert.deepEqual(await zstdDecompress(rawZstdFrame(data)), data, `size ${n}`);
  }
});

test('rawZstdFramePieces builds the same frame from pieces of any size, without copying them', () => {
  for (const n of [0, 1, 131072, 131073, 600_000]) {
    const data = randomBytes(n);
    // Socket-like pieces: 64 KiB and odd sizes that straddle the 128 KiB block boundaries.
    const pieces: Buffer[] = [];
    for (let at = 0, k = 0; at < n; k++) {
      const len = Math.min(n - at, k % 2 ? 65536 : 40_001);
      pieces.push(data.subarray(at, at + len));
      at += len;
    }
    const out = rawZstdFramePieces(pieces);
    assert.deepEqual(Buffer.concat(out), rawZstdFrame(data), `size ${n}`);
    if (n > 0) assert.ok(out.some((b) => b.buffer === data.buffer), 'data is referenced, not copied');
  }
});

test('ZstdFrameSplitter cuts concatenated frames fed in arbitrary pieces', async () => {
  const inputs = [Buffer.from('a'.repeat(300_000)), randomBytes(200_000), Buffer.alloc(0), Buffer.from('hello')];
  const frames = [
    await zstdCompress(inputs[0]!),
    rawZstdFrame(inputs[1]!),
    rawZstdFrame(inputs[2]!),
    await zstdCompress(inputs[3]!),
  ];
  const stream = Buffer.concat(frames);
  for (const piece of [1, 7, 1000, 65536, stream.length]) {
    const s = new ZstdFrameSplitter();
    const out: Buffer[] = [];
    for (let i = 0; i < stream.length; i += piece) out.push(...s.push(stream.subarray(i, i + piece)));
    s.end();
    assert.equal(out.length, frames.length, `piece ${piece}`);
    out.forEach((f, i) => assert.deepEqual(f, frames[i]));
  }
  const s = new ZstdFrameSplitter();
  s.push(stream.subarray(0, 100));
  assert.throws(() => s.end(), /truncated/);
  assert.throws(() => new ZstdFrameSplitter().push(Buffer.from('not zstd at all')), /magic/);
});

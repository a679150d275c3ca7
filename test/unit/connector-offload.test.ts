import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { xxh64 } from '../../src/protocol/checksum.js';
import { zstdDecompress } from '../../src/protocol/codec.js';
import { RelayError } from '../../src/protocol/errors.js';
import { MIN_PART_SIZE, type Command } from '../../src/protocol/wire.js';
import type { UploadContext } from '../../src/connector/context.js';
import { RouterHttp } from '../../src/connector/http.js';
import { PartPacker, offloadResult, zstdFrameOf } from '../../src/connector/offload.js';
import { UPLOAD_RETRY } from '../../src/connector/retry.js';
import { resolveDataset } from '../../src/connector/sandbox.js';
import { FileSource, type ChunkSource } from '../../src/connector/sources/file.js';
import { FakeRouter } from './connector-fake-router.js';
import { CompressionChooser } from '../../src/connector/compression.js';

test('PartPacker: parts of exactly part_size, the last shorter, concatenation intact', () => {
  const p = new PartPacker(10);
  const input = randomBytes(37);
  const parts: Buffer[] = [];
  for (const piece of [input.subarray(0, 3), input.subarray(3, 25), input.subarray(25, 25), input.subarray(25)]) parts.push(...p.push(piece));
  const last = p.end();
  assert.ok(last);
  parts.push(last);
  assert.deepEqual(parts.map((x) => x.length), [10, 10, 10, 7]);
  assert.deepEqual(Buffer.concat(parts), input);
  assert.equal(p.parts, 4);
});

test('PartPacker: an exact multiple has no extra part; nothing at all is one empty part', () => {
  const p = new PartPacker(4);
  assert.equal([...p.push(Buffer.alloc(8, 1))].length, 2);
  assert.equal(p.end(), null);
  const empty = new PartPacker(4);
  const only = empty.end();
  assert.ok(only);
  assert.equal(only.length, 0);
  assert.equal(empty.parts, 1);
});

test('PartPacker: a frame larger than a part yields several parts, one at a time', () => {
  const p = new PartPacker(3);
  const gen = p.push(Buffer.from('abcdefgh'));
  const first = gen.next();
  assert.equal(first.value?.toString(), 'abc');
  // The next part is not built until asked for: the caller bounds memory by pausing here.
  assert.equal(p.parts, 1);
  assert.equal(gen.next().value?.toString(), 'def');
  assert.equal(gen.next().done, true);
  assert.equal(p.end()?.toString(), 'gh');
});

test('zstdFrameOf: compressible chunks compress, others are wrapped as raw frames; both decode', async () => {
  const text = Buffer.from('hello world '.repeat(1000));
  const rnd = randomBytes(5000);
  const a = await zstdFrameOf(text, 1);
  const b = await zstdFrameOf(rnd, 1);
  assert.ok(a.length < text.length);
  assert.ok(b.length > rnd.length, 'raw frame = data + a few header bytes');
  assert.deepEqual(await zstdDecompress(Buffer.concat([a, b])), Buffer.concat([text, rnd]));
});

// ---- the flow against a fake router and object store ----------------------------------

const log = pino({ level: 'silent' });
const FAST = { ...UPLOAD_RETRY, baseMs: 5, maxMs: 20 };
let router: FakeRouter;
let http: RouterHttp;
let dir: string;

before(async () => {
  router = await new FakeRouter().start();
  http = new RouterHttp({ routerUrl: router.url, token: 'tok-123', connections: 8 });
  dir = await mkdtemp(path.join(tmpdir(), 'relay-offload-'));
});
after(async () => {
  await http.destroy();
  await router.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => router.reset());

function command(over: Partial<Command> = {}): Command {
  return {
    request_id: `r_${randomBytes(6).toString('hex')}`,
    attempt: 1,
    mode: 'offload',
    dataset: 'x',
    format: 'raw',
    chunk_size: 512 * 1024,
    compression: 'zstd',
    resume_from: 0,
    deadline: new Date(Date.now() + 60_000).toISOString(),
    offload: { upload_id: 'up-1', key: 'results/x', part_size: MIN_PART_SIZE },
    ...over,
  };
}

async function offload(data: Buffer, cmd: Command, parallel = 4) {
  const name = `${cmd.request_id}.bin`;
  await writeFile(path.join(dir, name), data);
  const source = await FileSource.open(await resolveDataset(dir, name), cmd.chunk_size);
  const ctx: UploadContext = { http, cmd, signal: new AbortController().signal, log, policy: FAST, zstdLevel: 1, compression: new CompressionChooser(cmd.compression === 'zstd' ? 'always' : 'never'), parallel, renew() {} };
  try {
    return await offloadResult(ctx, source);
  } finally {
    await source.close();
  }
}

function object(): Buffer {
  return Buffer.concat([...router.parts.entries()].sort(([a], [b]) => a - b).map(([, b]) => b));
}

test('offload: parts of part_size to presigned URLs, ETags kept, one valid zstd stream', async () => {
  const data = randomBytes(12 * 1024 * 1024 + 1234); // incompressible: every chunk becomes a raw frame
  const cmd = command();
  let inFlight = 0;
  let peak = 0;
  router.faults.push(async (r) => {
    if (r.method !== 'PUT') return undefined;
    inFlight += 1;
    peak = Math.max(peak, inFlight);
    await new Promise((ok) => setTimeout(ok, 30));
    inFlight -= 1;
    return undefined;
  });
  const summary = await offload(data, cmd, 2);
  assert.ok(peak <= 2, `at most 2 PUTs in flight, saw ${peak}`);
  const puts = router.find((r) => r.method === 'PUT');
  assert.equal(puts.length, 3);
  assert.ok(puts.every((p) => p.headers.authorization === undefined), 'the router token never goes to the object store');
  const sizes = [...router.parts.entries()].sort(([a], [b]) => a - b).map(([, b]) => b.length);
  assert.deepEqual(sizes.slice(0, 2), [MIN_PART_SIZE, MIN_PART_SIZE]);
  assert.deepEqual(await zstdDecompress(object()), data);

  const asks = router.find((r) => r.path.endsWith('/offload/parts'));
  assert.equal(asks.length, 1, 'one batch covers three parts');
  assert.deepEqual(asks[0]!.json.parts.slice(0, 3), [1, 2, 3]);
  const complete = router.find((r) => r.path.endsWith('/offload/complete'));
  assert.equal(complete.length, 1);
  const body = complete[0]!.json;
  assert.equal(body.attempt, 1);
  assert.equal(body.bytes, data.length);
  assert.equal(body.checksum, xxh64(data));
  assert.equal(body.content_encoding, 'zstd');
  assert.deepEqual(
    body.parts.map((p: { part: number }) => p.part),
    [1, 2, 3],
  );
  for (const p of body.parts as { part: number; etag: string }[]) assert.equal(p.etag, `"etag-${p.part}-${xxh64(router.parts.get(p.part)!)}"`, 'ETag as sent, quotes included');
  assert.deepEqual(summary, { bytes: data.length, chunks: 3, checksum: xxh64(data), storedBytes: object().length, zstdLevel: 1 });
});

test('offload: URLs that came with the command are used at once; offload/parts is asked only for the parts after them', async () => {
  const data = randomBytes(17 * 1024 * 1024); // 4 parts: 3 sent with the command, the 4th asked for
  const urls: Record<string, string> = {};
  for (const p of [1, 2, 3]) urls[String(p)] = `${router.url}/s3/part/${p}?exp=cmd`;
  const cmd = command({ offload: { upload_id: 'up-1', key: 'results/x', part_size: MIN_PART_SIZE, urls, expires_at: new Date(Date.now() + 3_600_000).toISOString() } });
  // offload/parts answers slowly: the first PUT must not wait for it.
  let partsAnswered = Infinity;
  router.faults.push(async (r) => {
    if (!r.path.endsWith('/offload/parts')) return undefined;
    await new Promise((ok) => setTimeout(ok, 300));
    partsAnswered = Date.now();
    return undefined;
  });
  await offload(data, cmd);
  assert.deepEqual(await zstdDecompress(object()), data);
  const firstPut = router.arrivals.find((a) => a.method === 'PUT' && a.path === '/s3/part/1');
  assert.ok(firstPut && firstPut.at < partsAnswered, 'part 1 was on its way before offload/parts answered');
  const asks = router.find((r) => r.path.endsWith('/offload/parts'));
  assert.equal(asks.length, 1);
  assert.equal(asks[0]!.json.parts[0], 4, 'asked from the first part without a URL');
});

test('offload: compressible data shrinks into one part', async () => {
  const data = Buffer.from('id,region,amount\n1,north,10.5\n'.repeat(300_000));
  await offload(data, command());
  assert.equal(router.parts.size, 1);
  assert.ok(router.parts.get(1)!.length < data.length / 10);
  assert.deepEqual(await zstdDecompress(object()), data);
});

test('offload: compression none stores the bytes as they are', async () => {
  const data = Buffer.from('plain '.repeat(2_000_000));
  await offload(data, command({ compression: 'none' }));
  assert.deepEqual(object(), data);
  assert.equal(router.find((r) => r.path.endsWith('/offload/complete'))[0]!.json.content_encoding, 'identity');
});

test('offload: an empty result is one part, still a valid zstd stream', async () => {
  const summary = await offload(Buffer.alloc(0), command());
  assert.equal(router.parts.size, 1);
  assert.equal(summary.storedBytes, object().length, 'the empty frame is what was stored');
  assert.deepEqual(await zstdDecompress(object()), Buffer.alloc(0));
  const body = router.find((r) => r.path.endsWith('/offload/complete'))[0]!.json;
  assert.deepEqual({ parts: body.parts.length, bytes: body.bytes, checksum: body.checksum }, { parts: 1, bytes: 0, checksum: xxh64(Buffer.alloc(0)) });

  await offload(Buffer.alloc(0), command({ compression: 'none' }));
  assert.equal(router.parts.get(1)!.length, 0, 'identity: one empty part');
});

test('offload: a 403 (expired URL) asks for a new URL; a 500 is retried', async () => {
  const data = randomBytes(6 * 1024 * 1024);
  router.faults.push((r, n) => (r.method === 'PUT' && r.path.endsWith('/part/2') && n === 1 ? { status: 403, body: '<Error><Code>AccessDenied</Code></Error>' } : undefined));
  router.faults.push((r, n) => (r.method === 'PUT' && r.path.endsWith('/part/1') && n === 1 ? { status: 500, body: '<Error><Code>InternalError</Code></Error>' } : undefined));
  await offload(data, command());
  const asks = router.find((r) => r.path.endsWith('/offload/parts'));
  assert.equal(asks.length, 2);
  assert.ok(asks[1]!.json.parts.includes(2), 'asked again for part 2');
  assert.equal(router.find((r) => r.method === 'PUT' && r.path.endsWith('/part/1')).length, 2);
  assert.deepEqual(await zstdDecompress(object()), data);
});

test('offload: GONE from the router stops; a missing offload section is BAD_REQUEST', async () => {
  router.faults.push((r) => (r.path.endsWith('/offload/parts') ? { status: 410, body: { status: 'error', error: { code: 'GONE', message: 'cancelled' } } } : undefined));
  await assert.rejects(offload(randomBytes(1000), command()), (e: RelayError) => e.code === 'GONE');
  assert.equal(router.find((r) => r.method === 'PUT').length, 0);
  const cmd = command();
  delete cmd.offload;
  await assert.rejects(offload(randomBytes(10), cmd), (e: RelayError) => e.code === 'BAD_REQUEST');
});

// ---- parts PUT while they are packed (growing-part.ts) -----------------------------------

/** `n` incompressible chunks of 512 KiB (the default chunk size). */
const randomChunks = (n: number) => Array.from({ length: n }, () => randomBytes(512 * 1024));

/** A result arriving chunk by chunk, `gapMs` apart, that says it will be `claimed` bytes long. */
function slowSource(chunks: Buffer[], claimed: number, gapMs: number): ChunkSource & { yieldedAt: number[] } {
  const yieldedAt: number[] = [];
  return {
    totalBytes: claimed,
    yieldedAt,
    async *chunks() {
      for (const c of chunks) {
        await new Promise((ok) => setTimeout(ok, gapMs));
        yieldedAt.push(Date.now());
        yield c;
      }
    },
    async close() {},
  };
}

async function offloadFrom(source: ChunkSource, cmd: Command, parallel = 4) {
  const ctx: UploadContext = { http, cmd, signal: new AbortController().signal, log, policy: FAST, zstdLevel: 1, compression: new CompressionChooser('always'), parallel, renew() {} };
  return offloadResult(ctx, source);
}

test('offload: each part with a whole part expected after it is PUT while it is packed, not after', async () => {
  const chunks = randomChunks(48); // 24 MiB, incompressible: 5 parts
  const data = Buffer.concat(chunks);
  const source = slowSource(chunks, data.length, 5);
  const cmd = command();
  const summary = await offloadFrom(source, cmd);
  // Raw frames add a few bytes per chunk, so part n (5 MiB each) is complete with chunk 10n + 1.
  // Parts 1-3 have a whole part expected after them; part 4 (the last full one) and the shorter
  // part 5 go once packed.
  for (const n of [1, 2, 3]) {
    const put = router.arrivals.find((a) => a.method === 'PUT' && a.path === `/s3/part/${n}`);
    assert.ok(put, `part ${n} was PUT`);
    const packed = source.yieldedAt[10 * n - 1]!;
    assert.ok(put.at < packed, `part ${n}'s PUT began ${put.at - packed} ms after its chunk ${10 * n} was read; it must begin before its part is packed`);
  }
  const put4 = router.arrivals.find((a) => a.method === 'PUT' && a.path === '/s3/part/4');
  assert.ok(put4 && put4.at >= source.yieldedAt[40]!, 'part 4 is PUT once packed');
  for (const n of [1, 2, 3, 4, 5]) assert.equal(router.find((r) => r.method === 'PUT' && r.path === `/s3/part/${n}`).length, 1, `part ${n} sent once`);
  for (const n of [1, 2, 3, 4]) assert.equal(router.parts.get(n)!.length, MIN_PART_SIZE);
  assert.deepEqual(await zstdDecompress(object()), data);
  const body = router.find((r) => r.path.endsWith('/offload/complete'))[0]!.json;
  assert.deepEqual(body.parts.map((p: { part: number }) => p.part), [1, 2, 3, 4, 5]);
  for (const p of body.parts as { part: number; etag: string }[]) assert.equal(p.etag, `"etag-${p.part}-${xxh64(router.parts.get(p.part)!)}"`);
  assert.deepEqual(summary, { bytes: data.length, chunks: 5, checksum: xxh64(data), storedBytes: object().length, zstdLevel: 1 });
});

test('offload: with one upload in flight, parts still all go (a part PUT while packed never waits on itself)', { timeout: 20_000 }, async () => {
  const chunks = randomChunks(24); // 12 MiB: 3 parts
  const data = Buffer.concat(chunks);
  let inFlight = 0;
  let peak = 0;
  router.faults.push(async (r) => {
    if (r.method !== 'PUT') return undefined;
    peak = Math.max(peak, ++inFlight);
    await new Promise((ok) => setTimeout(ok, 20));
    inFlight -= 1;
    return undefined;
  });
  const summary = await offloadFrom(slowSource(chunks, data.length, 1), command(), 1);
  assert.equal(summary.chunks, 3);
  assert.equal(peak, 1, 'one PUT at a time');
  assert.deepEqual(await zstdDecompress(object()), data);
});

test('offload: a result that ends inside the part being PUT sends that part again whole', async () => {
  // Claims 24 MiB (a file that shrank while read), ends after 1 MiB.
  const chunks = randomChunks(2);
  const data = Buffer.concat(chunks);
  const cmd = command();
  await offloadFrom(slowSource(chunks, 24 * 1024 * 1024, 5), cmd);
  assert.ok(router.arrivals.filter((a) => a.method === 'PUT' && a.path === '/s3/part/1').length === 2, 'the streamed PUT, then the whole part');
  assert.equal(router.parts.size, 1);
  assert.ok(router.parts.get(1)!.length < MIN_PART_SIZE);
  assert.deepEqual(await zstdDecompress(object()), data);
  const body = router.find((r) => r.path.endsWith('/offload/complete'))[0]!.json;
  assert.deepEqual(body.parts, [{ part: 1, etag: `"etag-1-${xxh64(router.parts.get(1)!)}"` }]);
  assert.equal(body.bytes, data.length);
});

test('offload: a later part PUT while packed that the result ends inside is sent again whole', async () => {
  // Claims 24 MiB (a file that shrank while read), ends after 7 MiB: inside part 2.
  const chunks = randomChunks(14);
  const data = Buffer.concat(chunks);
  await offloadFrom(slowSource(chunks, 24 * 1024 * 1024, 5), command());
  assert.equal(router.arrivals.filter((a) => a.method === 'PUT' && a.path === '/s3/part/1').length, 1);
  assert.equal(router.arrivals.filter((a) => a.method === 'PUT' && a.path === '/s3/part/2').length, 2, 'the streamed PUT, then the whole part');
  assert.equal(router.parts.get(1)!.length, MIN_PART_SIZE);
  assert.ok(router.parts.get(2)!.length < MIN_PART_SIZE);
  assert.deepEqual(await zstdDecompress(object()), data);
  const body = router.find((r) => r.path.endsWith('/offload/complete'))[0]!.json;
  assert.deepEqual(body.parts.map((p: { part: number }) => p.part), [1, 2]);
});

test('offload: a failure while parts are PUT as they are packed stops reading the source', { timeout: 20_000 }, async () => {
  const chunks = randomChunks(48); // 24 MiB: every part but the last two grows
  const data = Buffer.concat(chunks);
  router.faults.push((r) => (r.path.endsWith('/offload/parts') ? { status: 410, body: { status: 'error', error: { code: 'GONE', message: 'cancelled' } } } : undefined));
  const source = slowSource(chunks, data.length, 10);
  await assert.rejects(offloadFrom(source, command()), (e: RelayError) => e.code === 'GONE');
  // The first offload/parts answer says GONE: a few chunks are read by then, not the file.
  assert.ok(source.yieldedAt.length < 8, `read ${source.yieldedAt.length} of 48 chunks after the upload had failed`);
});

test('offload: a part PUT while packed that waits to be sent whole gives up when the upload fails', { timeout: 20_000 }, async () => {
  // The store refuses part 2's streamed PUT as soon as it starts (before part 2 is packed), so
  // it waits for its part to send it whole; then part 1's PUT fails for good (400), the upload
  // stops, and part 2 must not wait for a part that will never be finished.
  const chunks = randomChunks(48);
  const data = Buffer.concat(chunks);
  router.headFaults.push((r) => (r.method === 'PUT' && r.path === '/s3/part/2' ? { status: 503, body: '<Error><Code>SlowDown</Code></Error>' } : undefined));
  router.faults.push((r) => (r.method === 'PUT' && r.path === '/s3/part/1' ? { status: 400, body: '<Error><Code>InvalidArgument</Code></Error>' } : undefined));
  const source = slowSource(chunks, data.length, 5);
  await assert.rejects(offloadFrom(source, command()), (e: RelayError) => e instanceof RelayError);
  assert.ok(source.yieldedAt.length < 48, 'stopped before the end of the source');
});

test('offload: a streamed part the store refuses is PUT again whole', async () => {
  const chunks = randomChunks(24);
  const data = Buffer.concat(chunks);
  router.faults.push((r, n) => (r.method === 'PUT' && r.path.endsWith('/part/1') && n === 1 ? { status: 500, body: '<Error><Code>InternalError</Code></Error>' } : undefined));
  await offloadFrom(slowSource(chunks, data.length, 1), command());
  const puts = router.find((r) => r.method === 'PUT' && r.path.endsWith('/part/1'));
  assert.equal(puts.length, 2);
  assert.deepEqual(puts[1]!.body, puts[0]!.body, 'the same bytes, whole');
  assert.deepEqual(await zstdDecompress(object()), data);
});

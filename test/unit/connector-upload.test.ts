import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { xxh64 } from '../../src/protocol/checksum.js';
import { RelayError } from '../../src/protocol/errors.js';
import type { Command } from '../../src/protocol/wire.js';
import type { UploadContext } from '../../src/connector/context.js';
import { RouterHttp } from '../../src/connector/http.js';
import { UPLOAD_RETRY } from '../../src/connector/retry.js';
import { resolveDataset } from '../../src/connector/sandbox.js';
import { FileSource } from '../../src/connector/sources/file.js';
import { uploadResult } from '../../src/connector/uploader.js';
import { FakeRouter, assembled } from './connector-fake-router.js';
import { CompressionChooser } from '../../src/connector/compression.js';

const log = pino({ level: 'silent' });
const FAST = { ...UPLOAD_RETRY, baseMs: 5, maxMs: 20 };
let router: FakeRouter;
let http: RouterHttp;
let dir: string;

before(async () => {
  router = await new FakeRouter().start();
  http = new RouterHttp({ routerUrl: router.url, token: 'tok-123', connections: 8 });
  dir = await mkdtemp(path.join(tmpdir(), 'relay-upload-'));
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
    mode: 'stream',
    dataset: 'x',
    format: 'raw',
    chunk_size: 1024,
    compression: 'zstd',
    resume_from: 0,
    deadline: new Date(Date.now() + 60_000).toISOString(),
    ...over,
  };
}

/** Text that compresses, with random runs that do not, cut so some chunks are each. */
function mixed(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0; off < n; off += 1024) {
    const piece = (off / 1024) % 3 === 1 ? randomBytes(1024) : Buffer.from('id,region,amount\n1,north,10.5\n'.repeat(40));
    piece.copy(out, off, 0, Math.min(1024, n - off));
  }
  return out;
}

async function run(data: Buffer, cmd: Command, parallel = 3): Promise<{ summary: Awaited<ReturnType<typeof uploadResult>>; renewals: number }> {
  const file = path.join(dir, `${cmd.request_id}.bin`);
  await writeFile(file, data);
  const ds = await resolveDataset(dir, path.basename(file));
  const source = await FileSource.open(ds, cmd.chunk_size);
  let renewals = 0;
  const ctx: UploadContext = { http, cmd, signal: new AbortController().signal, log, policy: FAST, zstdLevel: 1, compression: new CompressionChooser(cmd.compression === 'zstd' ? 'always' : 'never'), parallel, renew: () => void renewals++ };
  try {
    return { summary: await uploadResult(ctx, source), renewals };
  } finally {
    await source.close();
  }
}

test('a result that fits in one chunk is one POST /result with the §3.3 headers', async () => {
  const data = Buffer.from('id,name\n'.repeat(100));
  const cmd = command({ chunk_size: 4096, attempt: 3 });
  const { summary } = await run(data, cmd);
  assert.deepEqual(router.paths(), [`POST /v1/requests/${cmd.request_id}/result`]);
  const req = router.requests[0]!;
  assert.equal(req.headers.authorization, 'Bearer tok-123');
  assert.equal(req.headers['x-relay-attempt'], '3');
  assert.equal(req.headers['x-relay-checksum'], xxh64(req.body));
  assert.equal(req.headers['content-encoding'], 'zstd');
  assert.equal(req.headers['x-relay-decoded-length'], String(data.length));
  assert.equal(req.headers['content-type'], 'application/octet-stream');
  assert.equal(req.headers['x-relay-content-type'], 'application/octet-stream');
  assert.ok(req.body.length < data.length);
  assert.deepEqual(router.results.get(cmd.request_id), data);
  assert.deepEqual(summary, { bytes: data.length, chunks: 1, checksum: xxh64(data), sentChunks: 1, sentBytes: data.length });
});

test('an empty result is one empty POST /result; a chunk exactly chunk_size long too', async () => {
  const cmd = command();
  await run(Buffer.alloc(0), cmd);
  const req = router.requests[0]!;
  assert.deepEqual(router.paths(), [`POST /v1/requests/${cmd.request_id}/result`]);
  assert.equal(req.body.length, 0);
  assert.equal(req.headers['content-encoding'], undefined);
  assert.equal(req.headers['x-relay-decoded-length'], '0');
  assert.equal(req.headers['x-relay-checksum'], xxh64(Buffer.alloc(0)));

  router.requests.length = 0;
  const exact = command();
  await run(randomBytes(1024), exact);
  assert.deepEqual(router.paths(), [`POST /v1/requests/${exact.request_id}/result`]);
  assert.equal(router.requests[0]!.headers['content-encoding'], undefined, 'random bytes do not shrink: sent as they are');
});

test('a longer result: init, every chunk (valid, checksummed), complete with the whole xxh64', async () => {
  const data = mixed(10 * 1024 + 500);
  const cmd = command();
  const { summary, renewals } = await run(data, cmd);
  const base = `/v1/requests/${cmd.request_id}`;
  const init = router.find((r) => r.path === `${base}/stream/init`);
  assert.equal(init.length, 1);
  assert.deepEqual(init[0]!.json, { attempt: 1, content_type: 'application/octet-stream', total_bytes: data.length, total_chunks: 11 });
  const chunks = router.find((r) => r.path.startsWith(`${base}/stream/chunk/`));
  assert.equal(chunks.length, 11);
  assert.ok(chunks.every((c) => c.at >= init[0]!.at));
  for (const c of chunks) {
    assert.equal(c.headers['x-relay-checksum'], xxh64(c.body));
    assert.equal(c.headers['x-relay-attempt'], '1');
    assert.equal(c.headers['content-type'], 'application/octet-stream');
    assert.equal(c.headers['x-relay-content-type'], undefined);
  }
  const encodings = new Set(chunks.map((c) => c.headers['content-encoding'] ?? 'identity'));
  assert.deepEqual([...encodings].sort(), ['identity', 'zstd']);
  assert.deepEqual(assembled(router, cmd.request_id), data);
  const complete = router.find((r) => r.path === `${base}/stream/complete`);
  assert.equal(complete.length, 1);
  assert.deepEqual(complete[0]!.json, { attempt: 1, chunks: 11, bytes: data.length, checksum: xxh64(data) });
  assert.ok(complete[0]!.at >= Math.max(...chunks.map((c) => c.at)), 'complete after every chunk');
  assert.deepEqual(summary, { bytes: data.length, chunks: 11, checksum: xxh64(data), sentChunks: 11, sentBytes: data.length });
  assert.equal(renewals, 13, 'init, 11 chunks and complete each renew the lease');
});

test('no more than uploadParallel chunks in flight', async () => {
  let inFlight = 0;
  let peak = 0;
  router.faults.push(async (r) => {
    if (!r.path.includes('/stream/chunk/')) return undefined;
    inFlight += 1;
    peak = Math.max(peak, inFlight);
    await new Promise((ok) => setTimeout(ok, 20));
    inFlight -= 1;
    return undefined;
  });
  await run(mixed(20 * 1024), command(), 3);
  assert.equal(peak, 3);
});

test('resume_from: earlier chunks are read and hashed but not sent', async () => {
  const data = mixed(8 * 1024);
  const cmd = command({ resume_from: 5, attempt: 2 });
  await run(data, cmd);
  const base = `/v1/requests/${cmd.request_id}`;
  const sent = router.find((r) => r.path.startsWith(`${base}/stream/chunk/`)).map((r) => Number(r.path.split('/').at(-1)));
  assert.deepEqual(sent.sort(), [5, 6, 7]);
  assert.deepEqual(router.find((r) => r.path.endsWith('/stream/init'))[0]!.json, { attempt: 2, content_type: 'application/octet-stream', total_bytes: 8192, total_chunks: 8 });
  assert.deepEqual(router.find((r) => r.path.endsWith('/stream/complete'))[0]!.json, { attempt: 2, chunks: 8, bytes: 8192, checksum: xxh64(data) });

  // A retry of a one-chunk result that already arrived uses the chunked flow with nothing to send.
  router.requests.length = 0;
  const small = command({ resume_from: 1, attempt: 2 });
  await run(Buffer.from('tiny'), small);
  assert.deepEqual(router.paths().map((p) => p.split('/').slice(4).join('/')), ['stream/init', 'stream/complete']);
});

test('422 is resent, 503 with Retry-After waits and is resent', async () => {
  const data = mixed(4 * 1024);
  const cmd = command();
  router.faults.push((r, n) => (r.path.endsWith('/stream/chunk/1') && n === 1 ? { status: 422, body: { status: 'error', error: { code: 'CHECKSUM_MISMATCH', message: 'damaged' } } } : undefined));
  router.faults.push((r, n) =>
    r.path.endsWith('/stream/chunk/2') && n <= 2 ? { status: 503, headers: { 'retry-after-ms': '60' }, body: { status: 'error', error: { code: 'BACKPRESSURE', message: 'full' } } } : undefined,
  );
  await run(data, cmd);
  const tries = (i: number) => router.find((r) => r.path.endsWith(`/stream/chunk/${i}`));
  assert.equal(tries(1).length, 2);
  assert.equal(tries(2).length, 3);
  assert.ok(tries(2)[1]!.at - tries(2)[0]!.at >= 55, 'Retry-After-Ms honoured');
  assert.deepEqual(assembled(router, cmd.request_id), data);
});

test('410 GONE stops the upload at once: no retry, no complete', async () => {
  const cmd = command();
  router.faults.push((r) => (r.path.endsWith('/stream/chunk/2') ? { status: 410, body: { status: 'error', error: { code: 'GONE', message: 'attempt superseded' } } } : undefined));
  await assert.rejects(run(mixed(30 * 1024), cmd, 1), (e: RelayError) => e.code === 'GONE');
  assert.equal(router.find((r) => r.path.endsWith('/stream/chunk/2')).length, 1);
  assert.equal(router.find((r) => r.path.endsWith('/stream/complete')).length, 0);
  assert.ok(router.find((r) => r.path.includes('/stream/chunk/')).length < 30, 'the rest is not sent');
});

test('other 4xx fail at once; a network error is retried', async () => {
  const cmd = command();
  router.faults.push((r) => (r.path.endsWith('/stream/chunk/0') ? { status: 409, body: { status: 'error', error: { code: 'CONFLICT', message: 'other checksum' } } } : undefined));
  await assert.rejects(run(mixed(3 * 1024), cmd), (e: RelayError) => e.code === 'CONFLICT');
  assert.equal(router.find((r) => r.path.endsWith('/stream/chunk/0')).length, 1);

  const flaky = command();
  router.faults = [];
  // Drop the connection without an answer the first time.
  router.faults.push((r, n) => (r.path.endsWith('/stream/chunk/1') && n === 1 ? { status: 0, destroy: true } : undefined));
  const data = mixed(3 * 1024);
  await run(data, flaky);
  assert.equal(router.find((r) => r.path === `/v1/requests/${flaky.request_id}/stream/chunk/1`).length, 2);
  assert.deepEqual(assembled(router, flaky.request_id), data);
});

test('a network error or 5xx that never ends gives up after 10 tries', async () => {
  const cmd = command();
  router.faults.push((r) => (r.path.endsWith('/result') ? { status: 500, body: { status: 'error', error: { code: 'INTERNAL', message: 'bug' } } } : undefined));
  await assert.rejects(run(Buffer.from('x'), cmd), (e: RelayError) => e.code === 'INTERNAL');
  assert.equal(router.find((r) => r.path.endsWith('/result')).length, 10);
});

test('compression none: no Content-Encoding anywhere', async () => {
  const cmd = command({ compression: 'none' });
  const data = Buffer.from('a'.repeat(5000));
  await run(data, cmd);
  const chunks = router.find((r) => r.path.includes('/stream/chunk/'));
  assert.equal(chunks.length, 5);
  assert.ok(chunks.every((c) => c.headers['content-encoding'] === undefined && c.body.length === Number(c.headers['x-relay-decoded-length'])));
  assert.deepEqual(assembled(router, cmd.request_id), data);
});

test('an abort stops the upload and sends no complete', async () => {
  const cmd = command();
  const ac = new AbortController();
  router.faults.push(async (r) => (r.path.includes('/stream/chunk/') ? { status: 201, delay: 50 } : undefined));
  const file = path.join(dir, 'abort.bin');
  await writeFile(file, mixed(40 * 1024));
  const source = await FileSource.open(await resolveDataset(dir, 'abort.bin'), 1024, { signal: ac.signal });
  const ctx: UploadContext = { http, cmd, signal: ac.signal, log, policy: FAST, zstdLevel: 1, compression: new CompressionChooser(cmd.compression === 'zstd' ? 'always' : 'never'), parallel: 2, renew() {} };
  setTimeout(() => ac.abort(new Error('cancelled')), 80);
  await assert.rejects(uploadResult(ctx, source), /cancelled/);
  await source.close();
  assert.equal(router.find((r) => r.path.endsWith('/stream/complete')).length, 0);
  assert.ok(router.find((r) => r.path.includes('/stream/chunk/')).length < 40);
});

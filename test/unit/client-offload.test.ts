import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { requestOffload, closeHttp } from '../../src/client/index.js';
import { RelayError, rawZstdFrame, xxh64, zstdCompress } from '../../src/protocol/index.js';
import { fakeRouter, collector, json, RID } from './client-fake-router.js';

after(() => closeHttp());

const req = { connector: 'cc-28-aa-01', sql: 'SELECT 1', database: 'main', format: 'csv' as const };

async function zstdObject(): Promise<{ decoded: Buffer; object: Buffer }> {
  const a = Buffer.from('region,amount\nnorth,12\n'.repeat(40_000));
  const b = randomBytes(250_000);
  return { decoded: Buffer.concat([a, b]), object: Buffer.concat([await zstdCompress(a), rawZstdFrame(b)]) };
}

test('offload: downloads the presigned zstd object without Authorization, decodes and verifies it', async () => {
  const { decoded, object } = await zstdObject();
  const router = await fakeRouter((req, res) => {
    if (req.url?.startsWith('/bucket/')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': object.length });
      return void res.end(object);
    }
    json(res, 200, {
      status: 'success',
      request_id: RID,
      download_url: `http://${req.headers.host}/bucket/r.zst?X-Amz-Signature=abc`,
      expires_at: '2030-01-01T00:00:00Z',
      bytes: decoded.length,
      checksum: xxh64(decoded),
      content_encoding: 'zstd',
    });
  });
  try {
    const { out, data } = collector();
    const progress: [number, number | null][] = [];
    const r = await requestOffload({ routerUrl: router.url, apiKey: 'secret-key' }, req, out, { onProgress: (b, t) => progress.push([b, t]) });
    assert.ok(data().equals(decoded));
    assert.equal(r.verified, true);
    assert.equal(r.requestId, RID);
    assert.equal(r.bytes, decoded.length);
    assert.match(r.downloadUrl ?? '', /X-Amz-Signature=abc/);
    assert.deepEqual(progress.at(-1), [decoded.length, decoded.length]);
    const dl = router.calls.find((c) => c.url.startsWith('/bucket/'))!;
    assert.equal(dl.method, 'GET');
    assert.equal(dl.url, '/bucket/r.zst?X-Amz-Signature=abc');
    assert.equal(dl.headers.authorization, undefined);
    assert.equal(router.calls[0]!.headers.authorization, 'Bearer secret-key');
  } finally {
    await router.close();
  }
});

test('offload: urlOnly returns the URL and downloads nothing', async () => {
  const router = await fakeRouter((req, res) =>
    json(res, 200, { status: 'success', request_id: RID, download_url: `http://${req.headers.host}/bucket/x`, expires_at: 'later', bytes: 5, checksum: 'abcdefabcdefabcd', content_encoding: 'identity' }),
  );
  try {
    const r = await requestOffload({ routerUrl: router.url, apiKey: 'k' }, req, null, { urlOnly: true });
    assert.equal(r.verified, false);
    assert.match(r.downloadUrl ?? '', /\/bucket\/x$/);
    assert.equal(router.calls.length, 1);
  } finally {
    await router.close();
  }
});

test('offload: an object that does not match bytes/checksum is CHECKSUM_MISMATCH; an expired URL is GONE', async () => {
  const body = randomBytes(10_000);
  let expired = false;
  const router = await fakeRouter((req, res) => {
    if (req.url?.startsWith('/bucket/')) {
      if (expired) {
        res.writeHead(403, { 'content-type': 'application/xml' });
        return void res.end('<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
      }
      return void res.end(body);
    }
    json(res, 200, { status: 'success', request_id: RID, download_url: `http://${req.headers.host}/bucket/x`, expires_at: 'later', bytes: body.length, checksum: xxh64(Buffer.from('other')), content_encoding: 'identity' });
  });
  try {
    const cfg = { routerUrl: router.url, apiKey: 'k' };
    await assert.rejects(requestOffload(cfg, req, collector().out), { code: 'CHECKSUM_MISMATCH', requestId: RID });
    expired = true;
    await assert.rejects(requestOffload(cfg, req, collector().out), (err: unknown) => {
      assert.ok(err instanceof RelayError);
      assert.equal(err.code, 'GONE');
      assert.match(err.message, /AccessDenied/);
      return true;
    });
  } finally {
    await router.close();
  }
});

/**
 * A zstd object of more than one 8 MiB range: `count` frames of several sizes, compressed and
 * raw in turn, so range edges fall inside frames.
 */
async function bigObject(count = 10): Promise<{ decoded: Buffer; object: Buffer }> {
  const pieces: Buffer[] = [];
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const p = randomBytes(1_000_000 + i * 77_777);
    pieces.push(p);
    frames.push(i % 2 ? rawZstdFrame(p) : await zstdCompress(p));
  }
  return { decoded: Buffer.concat(pieces), object: Buffer.concat(frames) };
}

test('offload: a large object comes as parallel ranges, decoded in order', async () => {
  const { decoded, object } = await bigObject(12);
  assert.ok(object.length > 8 * 1024 * 1024 + 1, 'more than one range');
  let open = 0;
  let mostOpen = 0;
  const ranges: string[] = [];
  const router = await fakeRouter(async (req, res) => {
    if (req.url?.startsWith('/bucket/')) {
      const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range));
      assert.ok(m, `a Range header: ${req.headers.range}`);
      ranges.push(m[0]);
      open++;
      mostOpen = Math.max(mostOpen, open);
      // Held a moment so ranges asked for together are seen together.
      await new Promise((r) => setTimeout(r, 50));
      const from = Number(m[1]);
      const to = Math.min(Number(m[2]), object.length - 1);
      res.writeHead(206, { 'content-range': `bytes ${from}-${to}/${object.length}`, 'content-length': to - from + 1 });
      res.end(object.subarray(from, to + 1));
      open--;
      return;
    }
    json(res, 200, { status: 'success', request_id: RID, download_url: `http://${req.headers.host}/bucket/big`, expires_at: 'later', bytes: decoded.length, checksum: xxh64(decoded), content_encoding: 'zstd' });
  });
  try {
    const { out, data } = collector();
    const r = await requestOffload({ routerUrl: router.url, apiKey: 'k' }, req, out);
    assert.equal(r.verified, true);
    assert.ok(data().equals(decoded));
    const step = 8 * 1024 * 1024;
    assert.deepEqual(
      ranges.sort((a, b) => Number(a.split(/[=-]/)[1]) - Number(b.split(/[=-]/)[1])),
      Array.from({ length: Math.ceil(object.length / step) }, (_, i) => `bytes=${i * step}-${Math.min((i + 1) * step, object.length) - 1}`).map((x, i) => (i === 0 ? `bytes=0-${step - 1}` : x)),
    );
    assert.ok(mostOpen > 1, `ranges were fetched one at a time (${mostOpen} at most)`);
  } finally {
    await router.close();
  }
});

/**
 * A store that holds back the answer to the first range until another range is asked for (or
 * 500 ms have passed), and a router whose answer says the object's size is `storedBytes`.
 */
async function rangeStore(object: Buffer, decoded: Buffer, storedBytes: number | undefined) {
  const seen: { range: string; firstAnswered: boolean }[] = [];
  let firstAnswered = false;
  let another: () => void = () => undefined;
  const anotherAsked = new Promise<void>((r) => (another = r));
  const router = await fakeRouter(async (req, res) => {
    if (req.url?.startsWith('/bucket/')) {
      const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range))!;
      const from = Number(m[1]);
      seen.push({ range: m[0], firstAnswered });
      if (from === 0) await Promise.race([anotherAsked, new Promise((r) => setTimeout(r, 500))]);
      else another();
      if (from >= object.length) {
        res.writeHead(416, { 'content-range': `bytes */${object.length}` });
        return void res.end();
      }
      const to = Math.min(Number(m[2]), object.length - 1);
      res.writeHead(206, { 'content-range': `bytes ${from}-${to}/${object.length}`, 'content-length': to - from + 1 });
      res.end(object.subarray(from, to + 1));
      if (from === 0) firstAnswered = true;
      return;
    }
    json(res, 200, { status: 'success', request_id: RID, download_url: `http://${req.headers.host}/bucket/big`, expires_at: 'later', bytes: decoded.length, checksum: xxh64(decoded), content_encoding: 'zstd', ...(storedBytes === undefined ? {} : { stored_bytes: storedBytes }) });
  });
  return { router, seen };
}

test('offload: with the stored size in the answer (stored_bytes), every range is asked for at once', async () => {
  const { decoded, object } = await bigObject();
  const { router, seen } = await rangeStore(object, decoded, object.length);
  try {
    const { out, data } = collector();
    const r = await requestOffload({ routerUrl: router.url, apiKey: 'k' }, req, out);
    assert.equal(r.verified, true);
    assert.ok(data().equals(decoded));
    assert.equal(seen.length, Math.ceil(object.length / (8 * 1024 * 1024)));
    assert.ok(seen.length > 1);
    assert.ok(seen.every((x) => !x.firstAnswered), `a range was asked for only after the first was answered: ${JSON.stringify(seen)}`);
  } finally {
    await router.close();
  }
  // Without it, the later ranges wait for the first answer's Content-Range.
  const plain = await rangeStore(object, decoded, undefined);
  try {
    const { out, data } = collector();
    await requestOffload({ routerUrl: plain.router.url, apiKey: 'k' }, req, out);
    assert.ok(data().equals(decoded));
    assert.ok(plain.seen.slice(1).every((x) => x.firstAnswered));
  } finally {
    await plain.router.close();
  }
});

test('offload: a stored_bytes the store disagrees with is not trusted: the size the store says is used', async () => {
  const { decoded, object } = await bigObject();
  for (const wrong of [object.length - 9 * 1024 * 1024, object.length + 20 * 1024 * 1024, -5, 'x']) {
    const { router } = await rangeStore(object, decoded, wrong as number);
    try {
      const { out, data } = collector();
      const r = await requestOffload({ routerUrl: router.url, apiKey: 'k' }, req, out);
      assert.equal(r.verified, true, `stored_bytes ${wrong}`);
      assert.ok(data().equals(decoded), `stored_bytes ${wrong}`);
    } finally {
      await router.close();
    }
  }
});

test('offload: an empty object (416 for byte 0) is an empty result', async () => {
  const router = await fakeRouter((req, res) => {
    if (req.url?.startsWith('/bucket/')) {
      res.writeHead(416, { 'content-range': 'bytes */0' });
      return void res.end();
    }
    json(res, 200, { status: 'success', request_id: RID, download_url: `http://${req.headers.host}/bucket/empty`, expires_at: 'later', bytes: 0, checksum: xxh64(Buffer.alloc(0)), content_encoding: 'identity' });
  });
  try {
    const { out, data } = collector();
    const r = await requestOffload({ routerUrl: router.url, apiKey: 'k' }, req, out);
    assert.equal(r.verified, true);
    assert.equal(data().length, 0);
  } finally {
    await router.close();
  }
});

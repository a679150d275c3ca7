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

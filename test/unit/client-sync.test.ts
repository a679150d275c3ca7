import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { requestSync, closeHttp } from '../../src/client/index.js';
import { RelayError, xxh64 } from '../../src/protocol/index.js';
import { fakeRouter, syncAnswer, collector, json, errorBody, statusBody, RID } from './client-fake-router.js';

after(() => closeHttp());

const req = { connector: 'cc-28-aa-01', dataset: 'sales/3mb.bin' };

test('sync: bytes reach the output, checksum header verified, request fields sent', async () => {
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const router = await fakeRouter((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length, 'x-relay-request-id': RID, 'x-relay-checksum': xxh64(data) });
    res.end(data);
  });
  try {
    const { out, data: got } = collector();
    const progress: [number, number | null][] = [];
    const r = await requestSync({ routerUrl: router.url, apiKey: 'k1' }, req, out, {
      idempotencyKey: 'idem-1',
      onProgress: (b, t) => progress.push([b, t]),
    });
    assert.deepEqual(got(), data);
    assert.equal(r.requestId, RID);
    assert.equal(r.bytes, data.length);
    assert.equal(r.checksum, xxh64(data));
    assert.equal(r.verified, true);
    assert.deepEqual(progress.at(-1), [data.length, data.length]);
    const call = router.calls[0]!;
    assert.equal(call.method, 'POST');
    assert.equal(call.url, '/v1/datasets/request-sync');
    assert.equal(call.headers.authorization, 'Bearer k1');
    assert.equal(call.headers['idempotency-key'], 'idem-1');
    assert.notEqual(call.headers.accept, 'application/json');
    assert.deepEqual(JSON.parse(call.body), req);
  } finally {
    await router.close();
  }
});

test('sync: a body that does not match X-Relay-Checksum is CHECKSUM_MISMATCH', async () => {
  const data = randomBytes(100_000);
  const router = await fakeRouter((_req, res) => {
    const bad = Buffer.from(data);
    bad[500] ^= 1;
    res.writeHead(200, { 'content-length': bad.length, 'x-relay-request-id': RID, 'x-relay-checksum': xxh64(data) });
    res.end(bad);
  });
  try {
    await assert.rejects(requestSync({ routerUrl: router.url, apiKey: 'k' }, req, collector().out), (err: unknown) => {
      assert.ok(err instanceof RelayError);
      assert.equal(err.code, 'CHECKSUM_MISMATCH');
      assert.equal(err.requestId, RID);
      return true;
    });
  } finally {
    await router.close();
  }
});

test('sync: a router path prefix is kept', async () => {
  const data = Buffer.from('a,b\n1,2\n');
  const router = await fakeRouter(syncAnswer(data));
  try {
    await requestSync({ routerUrl: `${router.url}/relay`, apiKey: 'k' }, req, collector().out);
    assert.equal(router.calls[0]!.url, '/relay/v1/datasets/request-sync');
  } finally {
    await router.close();
  }
});

test('sync: a response cut short reports the error in the request status', async () => {
  const router = await fakeRouter((req, res) => {
    if (req.method === 'GET') return json(res, 200, statusBody(RID, 'failed', { error: { code: 'CONNECTOR_ERROR', message: 'disk read failed' } }));
    res.writeHead(200, { 'content-length': 1_000_000, 'x-relay-request-id': RID, 'x-relay-checksum': '0000000000000000' });
    res.write(randomBytes(10_000), () => res.socket?.destroy());
  });
  try {
    await assert.rejects(requestSync({ routerUrl: router.url, apiKey: 'k' }, req, collector().out), (err: unknown) => {
      assert.ok(err instanceof RelayError);
      assert.equal(err.code, 'CONNECTOR_ERROR');
      assert.equal(err.message, 'disk read failed');
      assert.equal(err.requestId, RID);
      return true;
    });
    assert.ok(router.calls.some((c) => c.method === 'GET' && c.url === `/v1/requests/${RID}`));
  } finally {
    await router.close();
  }
});

test('sync: RESULT_TOO_LARGE from the router keeps its code and request id', async () => {
  const router = await fakeRouter((_req, res) => json(res, 413, errorBody('RESULT_TOO_LARGE', 'result over 256 MiB', RID)));
  try {
    await assert.rejects(requestSync({ routerUrl: router.url, apiKey: 'k' }, req, collector().out), {
      code: 'RESULT_TOO_LARGE',
      status: 413,
      requestId: RID,
      message: 'result over 256 MiB',
    });
  } finally {
    await router.close();
  }
});

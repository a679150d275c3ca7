import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { requestStream, closeHttp } from '../../src/client/index.js';
import { RelayError, rawZstdFrame, xxh64, zstdCompress } from '../../src/protocol/index.js';
import { fakeRouter, collector, json, statusBody, RID } from './client-fake-router.js';

after(() => closeHttp());

const req = { connector: 'cc-28-aa-01', dataset: 'big.csv' };

/** Chunks as a connector makes them: compressible text as zstd, random bytes as raw frames. */
async function frames(): Promise<{ decoded: Buffer; encoded: Buffer[] }> {
  const parts = [
    Buffer.from('id,region,amount\n'.repeat(30_000)),
    randomBytes(300_000),
    Buffer.from('x'.repeat(524_288)),
    Buffer.alloc(0),
    randomBytes(1234),
  ];
  const encoded = [await zstdCompress(parts[0]!), rawZstdFrame(parts[1]!), await zstdCompress(parts[2]!), rawZstdFrame(parts[3]!), rawZstdFrame(parts[4]!)];
  return { decoded: Buffer.concat(parts), encoded };
}

/** Writes the encoded stream in awkward pieces so frames straddle reads. */
async function writeCut(res: ServerResponse, data: Buffer, piece = 7777): Promise<void> {
  for (let o = 0; o < data.length; o += piece) {
    if (!res.write(data.subarray(o, o + piece))) await once(res, 'drain');
  }
}

test('stream: zstd frames are decoded in order and verified against the trailer', async () => {
  const { decoded, encoded } = await frames();
  const router = await fakeRouter(async (req, res) => {
    assert.equal(req.headers['accept-encoding'], 'zstd');
    res.writeHead(200, { 'content-type': 'text/csv', 'content-encoding': 'zstd', 'x-relay-request-id': RID, trailer: 'X-Relay-Checksum' });
    await writeCut(res, Buffer.concat(encoded));
    res.addTrailers({ 'X-Relay-Checksum': xxh64(decoded) });
    res.end();
  });
  try {
    const { out, data } = collector();
    const r = await requestStream({ routerUrl: router.url, apiKey: 'k' }, req, out);
    assert.equal(data().length, decoded.length);
    assert.ok(data().equals(decoded));
    assert.equal(r.verified, true);
    assert.equal(r.bytes, decoded.length);
    assert.equal(r.requestId, RID);
    // The trailer sufficed: no status lookup.
    assert.equal(router.calls.filter((c) => c.method === 'GET').length, 0);
  } finally {
    await router.close();
  }
});

test('stream: a wrong trailer checksum is CHECKSUM_MISMATCH', async () => {
  const { encoded } = await frames();
  const router = await fakeRouter(async (_req, res) => {
    res.writeHead(200, { 'content-encoding': 'zstd', 'x-relay-request-id': RID, trailer: 'X-Relay-Checksum' });
    await writeCut(res, Buffer.concat(encoded));
    res.addTrailers({ 'X-Relay-Checksum': 'deadbeefdeadbeef' });
    res.end();
  });
  try {
    await assert.rejects(requestStream({ routerUrl: router.url, apiKey: 'k' }, req, collector().out), { code: 'CHECKSUM_MISMATCH', requestId: RID });
  } finally {
    await router.close();
  }
});

test('stream: without a trailer the checksum comes from GET /v1/requests/{id}', async () => {
  const data = randomBytes(700_000);
  let statusChecksum = xxh64(data);
  const router = await fakeRouter((req, res) => {
    if (req.method === 'GET') return json(res, 200, statusBody(RID, 'complete', { checksum: statusChecksum, bytes: data.length }));
    assert.equal(req.headers['accept-encoding'], 'identity');
    res.writeHead(200, { 'x-relay-request-id': RID });
    res.end(data);
  });
  try {
    const cfg = { routerUrl: router.url, apiKey: 'k' };
    const { out, data: got } = collector();
    const r = await requestStream(cfg, req, out, { zstd: false });
    assert.ok(got().equals(data));
    assert.equal(r.verified, true);
    assert.ok(router.calls.some((c) => c.method === 'GET' && c.url === `/v1/requests/${RID}` && c.headers.authorization === 'Bearer k'));
    // And the status's checksum is really compared.
    statusChecksum = '0123456789abcdef';
    await assert.rejects(requestStream(cfg, req, collector().out, { zstd: false }), { code: 'CHECKSUM_MISMATCH' });
  } finally {
    await router.close();
  }
});

test('stream: a truncated body throws the error the request status carries', async () => {
  const { encoded } = await frames();
  let gets = 0;
  const router = await fakeRouter(async (req, res) => {
    if (req.method === 'GET') {
      // The router may record the failure a moment after cutting the response.
      if (++gets === 1) return json(res, 200, statusBody(RID, 'running'));
      return json(res, 200, statusBody(RID, 'failed', { error: { code: 'DATASET_NOT_FOUND', message: 'file vanished: big.csv' } }));
    }
    res.writeHead(200, { 'content-encoding': 'zstd', 'x-relay-request-id': RID });
    const all = Buffer.concat(encoded);
    // Ends in the middle of a frame, then the connection is cut.
    await writeCut(res, all.subarray(0, encoded[0]!.length + 1000));
    // Once what was written has left, so the client sees a body cut mid-way.
    res.write(Buffer.alloc(0), () => res.socket?.destroy());
  });
  try {
    await assert.rejects(requestStream({ routerUrl: router.url, apiKey: 'k' }, req, collector().out), (err: unknown) => {
      assert.ok(err instanceof RelayError);
      assert.equal(err.code, 'DATASET_NOT_FOUND');
      assert.equal(err.message, 'file vanished: big.csv');
      assert.equal(err.requestId, RID);
      return true;
    });
    assert.equal(gets, 2);
  } finally {
    await router.close();
  }
});

test('stream: a truncated body with no recorded error is a "truncated" failure, never success', async () => {
  const router = await fakeRouter(async (req, res) => {
    if (req.method === 'GET') return json(res, 200, statusBody(RID, 'complete', { checksum: '0000000000000000' }));
    res.writeHead(200, { 'content-encoding': 'zstd', 'x-relay-request-id': RID });
    const frame = rawZstdFrame(randomBytes(200_000));
    // A clean end of the HTTP body, but inside a zstd frame.
    res.end(frame.subarray(0, 150_000));
  });
  try {
    await assert.rejects(requestStream({ routerUrl: router.url, apiKey: 'k' }, req, collector().out), (err: unknown) => {
      assert.ok(err instanceof RelayError);
      assert.equal(err.code, 'INTERNAL');
      assert.match(err.message, /truncated/);
      return true;
    });
  } finally {
    await router.close();
  }
});

test('stream: a slow output stops the reading (bounded memory), and nothing is lost', async () => {
  const frame = rawZstdFrame(randomBytes(512 * 1024));
  const total = 64; // 32 MiB on the wire
  let sent = 0;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const router = await fakeRouter(async (_req, res) => {
    res.writeHead(200, { 'content-encoding': 'zstd', 'x-relay-request-id': RID, trailer: 'X-Relay-Checksum' });
    for (let i = 0; i < total; i++) {
      sent++;
      if (!res.write(frame)) await once(res, 'drain');
    }
    res.addTrailers({ 'X-Relay-Checksum': 'ffffffffffffffff' });
    res.end();
  });
  try {
    let got = 0;
    let first = true;
    const out = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _e, cb) {
        got += chunk.length;
        if (first) {
          first = false;
          void released.then(() => cb());
        } else cb();
      },
    });
    const p = requestStream({ routerUrl: router.url, apiKey: 'k' }, req, out);
    p.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(sent < total / 2, `reading should stop while the output is stuck (router sent ${sent}/${total} frames)`);
    release();
    await assert.rejects(p, { code: 'CHECKSUM_MISMATCH' });
    assert.equal(got, total * 512 * 1024);
  } finally {
    await router.close();
  }
});

// Real router + real connector processes: every mode returns byte-identical results.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { request } from 'undici';
import { requestOffload, requestStream, requestSync, closeHttp } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { RelayError } from '../../src/protocol/errors.js';
import { zstdDecompress } from '../../src/protocol/codec.js';
import { Stack, CHUNK, csv } from '../helpers/stack.js';

let s: Stack;
const files = new Map<string, Buffer>();

before(async () => {
  s = await Stack.start({ routerEnv: { RELAY_PROGRESS_TIMEOUT_S: '3', RELAY_BACKOFF_S: '0.2' } });
  files.set('empty.bin', await s.writeData('empty.bin', Buffer.alloc(0)));
  files.set('one.bin', await s.writeData('one.bin', Buffer.from([0x2a])));
  files.set('two-chunks.bin', await s.writeData('two-chunks.bin', randomBytes(2 * CHUNK)));
  files.set('sales/10mb.csv', await s.writeData('sales/10mb.csv', csv(10 * 1024 * 1024)));
  files.set('random-3mb.bin', await s.writeData('random-3mb.bin', randomBytes(3 * 1024 * 1024)));
});
after(async () => {
  await closeHttp();
  await s?.stop();
});

/** Collects what the client writes. */
function collector() {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (d: Buffer) => parts.push(d));
  return { out, bytes: () => Buffer.concat(parts) };
}

const modes = {
  sync: requestSync,
  stream: requestStream,
  offload: (cfg: Parameters<typeof requestOffload>[0], req: Parameters<typeof requestOffload>[1], out: PassThrough) => requestOffload(cfg, req, out),
} as const;

for (const [mode, fetchIt] of Object.entries(modes)) {
  describe(`${mode} mode`, () => {
    for (const name of ['empty.bin', 'one.bin', 'two-chunks.bin', 'sales/10mb.csv', 'random-3mb.bin']) {
      test(`${name} arrives byte-identical`, async () => {
        const c = collector();
        const r = await fetchIt(s.clientCfg(), { connector: s.connectorId, dataset: name }, c.out);
        const want = files.get(name)!;
        assert.equal(r.bytes, want.length);
        assert.equal(r.checksum, xxh64(want));
        assert.ok(r.verified, 'checksum verified end to end');
        assert.ok(c.bytes().equals(want), 'same bytes');
        const st = (await (await fetch(`${s.routerUrl}/v1/requests/${r.requestId}`, { headers: { authorization: `Bearer ${s.clientKey}` } })).json()) as { status: string; checksum: string };
        assert.equal(st.status, 'complete');
        assert.equal(st.checksum, xxh64(want));
      });
    }
  });
}

test('offload: the connector logs the zstd level of the stored frames and the bytes it stored', async () => {
  const want = files.get('sales/10mb.csv')!;
  const r = await requestOffload(s.clientCfg(), { connector: s.connectorId, dataset: 'sales/10mb.csv' }, new PassThrough().resume());
  const stored = Buffer.from(await (await fetch(r.downloadUrl!)).arrayBuffer());
  let delivered: Record<string, unknown> | undefined;
  for (let i = 0; i < 50 && !delivered; i++) {
    delivered = s.connector!.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.request === r.requestId && l.msg === 'result delivered');
    if (!delivered) await new Promise((res) => setTimeout(res, 100));
  }
  assert.ok(delivered, 'the connector logged the delivery');
  // The configured level (1), or one the chooser climbed to (compression.ts LADDER).
  assert.ok([1, 3, 6].includes(delivered.zstdLevel as number), `zstd level ${String(delivered.zstdLevel)}`);
  assert.equal(delivered.storedBytes, stored.length, 'the bytes it stored are the object');
  assert.ok(stored.length < want.length / 2, `compressed (${stored.length} of ${want.length} bytes)`);
});

test('offload: the answer says the size of the stored object (stored_bytes), the length the download URL serves', async () => {
  const res = await request(`${s.routerUrl}/v1/datasets/request-offload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.clientKey}`, accept: 'application/json' },
    body: JSON.stringify({ connector: s.connectorId, dataset: 'random-3mb.bin' }),
  });
  assert.equal(res.statusCode, 200);
  const answer = (await res.body.json()) as { download_url: string; bytes: number; stored_bytes: number };
  const stored = Buffer.from(await (await fetch(answer.download_url)).arrayBuffer());
  assert.equal(answer.bytes, files.get('random-3mb.bin')!.length);
  assert.equal(answer.stored_bytes, stored.length);
});

describe('errors from the connector', () => {
  for (const mode of ['sync', 'stream', 'offload'] as const) {
    test(`${mode}: a missing dataset is DATASET_NOT_FOUND (404)`, async () => {
      const res = await request(`${s.routerUrl}/v1/datasets/request-${mode}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.clientKey}` },
        body: JSON.stringify({ connector: s.connectorId, dataset: 'nope/missing.csv' }),
      });
      assert.equal(res.statusCode, 404);
      const b = (await res.body.json()) as { error: { code: string }; request_id: string };
      assert.equal(b.error.code, 'DATASET_NOT_FOUND');
      assert.match(b.request_id, /^r_/);
    });
  }
  test('a path outside the data directory is FORBIDDEN (403)', async () => {
    for (const dataset of ['../etc/passwd', '/etc/passwd', 'sales/../../x']) {
      await assert.rejects(requestSync(s.clientCfg(), { connector: s.connectorId, dataset }, new PassThrough()), (e: RelayError) => e.code === 'FORBIDDEN' && e.status === 403);
    }
  });
});

describe('stream pass-through', () => {
  async function passThrough(dataset: string): Promise<{ body: Buffer; trailer: unknown }> {
    const res = await request(`${s.routerUrl}/v1/datasets/request-stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.clientKey}`, 'accept-encoding': 'zstd' },
      body: JSON.stringify({ connector: s.connectorId, dataset }),
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-encoding'], 'zstd');
    const body = Buffer.from(await res.body.arrayBuffer());
    return { body, trailer: res.trailers['x-relay-checksum'] };
  }

  test('Accept-Encoding: zstd gets one valid zstd stream whatever the connector chose per chunk (adaptive: raw on loopback)', async () => {
    const want = files.get('sales/10mb.csv')!;
    const { body, trailer } = await passThrough('sales/10mb.csv');
    assert.ok((await zstdDecompress(body)).equals(want));
    assert.equal(trailer, xxh64(want));
  });

  test('with RELAY_ZSTD=always the connector frames go through untouched (compressed on the wire)', async () => {
    await s.killConnector('SIGTERM');
    await s.startConnector({ RELAY_ZSTD: 'always' });
    try {
      const want = files.get('sales/10mb.csv')!;
      const { body, trailer } = await passThrough('sales/10mb.csv');
      assert.ok(body.length < want.length / 2, `compressed on the wire (${body.length} bytes)`);
      assert.ok((await zstdDecompress(body)).equals(want));
      assert.equal(trailer, xxh64(want));
    } finally {
      await s.killConnector('SIGTERM');
      await s.startConnector();
    }
  });
});

describe('a client that is not authorised', () => {
  test("another tenant's key cannot reach this connector", async () => {
    await assert.rejects(requestStream(s.clientCfg(s.otherClientKey), { connector: s.connectorId, dataset: 'one.bin' }, new PassThrough()), (e: RelayError) => e.code === 'NOT_FOUND');
  });
});

describe('the connector dies mid-request', () => {
  test('killed after receiving the command and started again: the request completes byte-identical', async () => {
    const big = await s.writeData('big-40mb.bin', randomBytes(40 * 1024 * 1024));
    // A client that does not read yet: the stream window fills, the connector is held back by
    // BACKPRESSURE, so it is certainly mid-transfer when it is killed.
    const res = await request(`${s.routerUrl}/v1/datasets/request-stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.clientKey}` },
      body: JSON.stringify({ connector: s.connectorId, dataset: 'big-40mb.bin' }),
    });
    assert.equal(res.statusCode, 200);
    const id = res.headers['x-relay-request-id'] as string;
    res.body.pause();
    let st: { status: string; chunks: number } = { status: '', chunks: 0 };
    for (let i = 0; i < 100 && st.chunks < 4; i++) {
      st = (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: { authorization: `Bearer ${s.clientKey}` } })).json()) as typeof st;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(st.status, 'running');
    await s.killConnector('SIGKILL');
    await s.startConnector();
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.equal(body.length, big.length);
    assert.ok(body.equals(big), 'byte-identical after the restart');
    assert.equal(res.trailers['x-relay-checksum'], xxh64(big));
    const final = (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: { authorization: `Bearer ${s.clientKey}` } })).json()) as { status: string; attempt: number };
    assert.equal(final.status, 'complete');
    assert.ok(final.attempt >= 2, `a new attempt was dispatched (attempt ${final.attempt})`);
    // Resume, not restart: the new attempt starts past the chunks the router already had and
    // uploads only the rest.
    const logs = s.connector!.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.request === id);
    const started = logs.find((l) => l.msg === 'command started');
    const delivered = logs.find((l) => l.msg === 'result delivered');
    assert.ok(started && delivered, 'the restarted connector ran the command');
    const resumeFrom = Number(started.resumeFrom ?? 0);
    assert.ok(resumeFrom >= 4, `resumed from chunk ${resumeFrom}, after the ≥ 4 chunks stored before the kill`);
    assert.equal(delivered.chunks, 80);
    assert.equal(delivered.sentChunks, 80 - resumeFrom, 'chunks already stored were not sent again');
    assert.equal(delivered.sentBytes, big.length - resumeFrom * CHUNK);
  });
});

// The router against the wire protocol, driven step by step by a bare protocol connector.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { request } from 'undici';
import { xxh64 } from '../../src/protocol/checksum.js';
import { zstdDecompress } from '../../src/protocol/codec.js';
import { Requests } from '../../src/router/requests.js';
import { Stack, CHUNK, sleep } from '../helpers/stack.js';
import { rawChunkHeaders, WireConnector } from '../helpers/wire.js';

let s: Stack;
let wire: WireConnector;

before(async () => {
  s = await Stack.start({
    connector: false,
    routerEnv: { RELAY_ACK_TIMEOUT_S: '1', RELAY_ATTEMPTS: '2', RELAY_BACKOFF_S: '0.1', RELAY_STREAM_WINDOW_CHUNKS: '4', RELAY_SYNC_LIMIT_BYTES: String(3 * CHUNK), RELAY_BODY_IDLE_TIMEOUT_S: '3' },
  });
  wire = await new WireConnector(s.routerUrl, s.connectorToken).connect();
});
after(async () => {
  wire?.close();
  await s?.stop();
});

const client = (mode: string, body: unknown, key = s.clientKey, headers: Record<string, string> = {}) =>
  request(`${s.routerUrl}/v1/datasets/request-${mode}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

async function errorOf(res: { statusCode: number; body: { json(): Promise<unknown> } }) {
  const b = (await res.body.json()) as { status: string; error: { code: string; message: string }; request_id?: string };
  assert.equal(b.status, 'error');
  return { status: res.statusCode, code: b.error.code, message: b.error.message, requestId: b.request_id };
}

describe('event stream', () => {
  test('hello first, with a spread retry and anti-buffering headers', async () => {
    const res = await fetch(`${s.routerUrl}/v1/connectors/events`, { headers: { authorization: `Bearer ${s.connectorToken}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /text\/event-stream/);
    assert.equal(res.headers.get('cache-control'), 'no-cache, no-transform');
    assert.equal(res.headers.get('x-accel-buffering'), 'no');
    const text = await new Promise<string>((resolve) => {
      const reader = res.body!.getReader();
      void reader.read().then(({ value }) => {
        void reader.cancel();
        resolve(new TextDecoder().decode(value));
      });
    });
    assert.match(text, /^retry: \d+\nevent: hello\ndata: \{"connector_id":"cc-28-aa-01","session_id":"s_[^"]+","heartbeat_s":30,"max_age_s":300\}\n\n/);
    // That second stream replaced `wire`'s: reconnect it.
    wire.close();
    wire = await new WireConnector(s.routerUrl, s.connectorToken).connect();
  });
});

describe('sync request, chunk by chunk', () => {
  test('idempotent chunks, checksum and conflict errors, and a byte-identical answer', async () => {
    const data = randomBytes(2 * CHUNK);
    const text = Buffer.from('a,b\n'.repeat(CHUNK / 4));
    const pending = client('sync', { connector: s.connectorId, dataset: 'x.bin' });
    const { data: cmd } = await wire.command();
    assert.equal(cmd.mode, 'sync');
    assert.equal(cmd.dataset, 'x.bin');
    assert.equal(cmd.format, 'raw');
    assert.equal(cmd.chunk_size, CHUNK);
    assert.equal(cmd.resume_from, 0);
    assert.equal(cmd.compression, 'zstd');
    const id = cmd.request_id;
    assert.equal((await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 })).status, 204);
    assert.equal((await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 })).status, 204, 'a repeated ack is harmless');
    assert.equal((await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: 3 * CHUNK, total_chunks: 3 })).status, 204);
    assert.equal((await wire.chunk(id, 1, data.subarray(CHUNK))).status, 201, 'out of order is fine');
    assert.equal((await wire.chunk(id, 1, data.subarray(CHUNK))).status, 200, 'duplicate chunk');
    const corrupt = await wire.chunk(id, 0, data.subarray(0, CHUNK), { checksum: '0123456789abcdef' });
    assert.equal(corrupt.status, 422);
    assert.equal(((await corrupt.json()) as { error: { code: string } }).error.code, 'CHECKSUM_MISMATCH');
    assert.equal((await wire.chunk(id, 0, data.subarray(0, CHUNK))).status, 201);
    const conflict = await wire.chunk(id, 0, randomBytes(CHUNK));
    assert.equal(conflict.status, 409);
    assert.equal((await wire.chunk(id, 2, text, { zstd: true })).status, 201);
    const stale = await wire.chunk(id, 2, text, { attempt: 2 });
    assert.equal(stale.status, 410, 'an attempt that is not current gets GONE');
    const whole = Buffer.concat([data, text]);
    const bad = await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks: 3, bytes: whole.length, checksum: xxh64(whole) });
    assert.equal(bad.status, 204);
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks: 3, bytes: whole.length, checksum: xxh64(whole) })).status, 204, 'a repeated complete is harmless');
    const res = await pending;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-relay-request-id'], id);
    assert.equal(res.headers['x-relay-checksum'], xxh64(whole));
    assert.equal(res.headers['content-length'], String(whole.length));
    assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), whole);
    assert.equal((await wire.chunk(id, 3, text)).status, 410, 'uploads after completion get GONE');
    const st = (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: { authorization: `Bearer ${s.clientKey}` } })).json()) as Record<string, unknown>;
    assert.equal(st.status, 'complete');
    assert.equal(st.checksum, xxh64(whole));
    assert.equal(st.bytes, whole.length);
    assert.equal(st.mode, 'sync');
  });

  // Redis restarted while a chunk's record was on its way (the soak's Redis restarts): the
  // script ran, its reply was lost, and the copy never reached the client's answer. Recorded
  // here by hand, as that copy would have been; its repeat must still reach the answer.
  for (const mode of ['sync', 'stream'] as const) {
    test(`${mode}: a chunk recorded in Redis whose copy never reached the answer is taken from its repeat`, async () => {
      const data = randomBytes(2 * CHUNK);
      const pending = client(mode, { connector: s.connectorId, dataset: 'x.bin' });
      const { data: cmd } = await wire.command();
      const id = cmd.request_id;
      assert.equal((await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 })).status, 204);
      assert.equal((await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream' })).status, 204);
      const first = data.subarray(0, CHUNK);
      assert.equal(await new Requests(s.redis, 600).putChunk(id, s.connectorId, 1, 0, xxh64(first), first.length), 'NEW');
      assert.equal((await wire.chunk(id, 0, first)).status, 200, 'Redis has it: a repeat');
      assert.equal((await wire.chunk(id, 1, data.subarray(CHUNK))).status, 201);
      assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks: 2, bytes: data.length, checksum: xxh64(data) })).status, 204);
      const res = await pending;
      assert.equal(res.statusCode, 200);
      assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), data);
    });
  }

  test('a result over the sync limit fails with RESULT_TOO_LARGE', async () => {
    const pending = client('sync', { connector: s.connectorId, dataset: 'big.bin' });
    const { data: cmd } = await wire.command();
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    const init = await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: 10 * CHUNK, total_chunks: 10 });
    assert.equal(init.status, 413);
    const e = await errorOf(await pending);
    assert.deepEqual([e.status, e.code, e.requestId], [413, 'RESULT_TOO_LARGE', id]);
  });

  test('a connector error reaches the client with its code', async () => {
    const pending = client('sync', { connector: s.connectorId, dataset: 'missing.csv' });
    const { data: cmd } = await wire.command();
    await wire.post(`/v1/requests/${cmd.request_id}/ack`, { attempt: 1 });
    const report = { attempt: 1, code: 'DATASET_NOT_FOUND', message: 'no such file: missing.csv' };
    assert.equal((await wire.post(`/v1/requests/${cmd.request_id}/error`, report)).status, 204);
    assert.equal((await wire.post(`/v1/requests/${cmd.request_id}/error`, report)).status, 204, 'a repeated error is harmless');
    const e = await errorOf(await pending);
    assert.deepEqual([e.status, e.code, e.message], [404, 'DATASET_NOT_FOUND', 'no such file: missing.csv']);
  });
});

describe('Idempotency-Key', () => {
  test('the same key names the same request: its error again, no second command; another mode is CONFLICT', async () => {
    const key = { 'idempotency-key': `k-${Date.now()}` };
    const pending = client('sync', { connector: s.connectorId, dataset: 'gone.csv' }, s.clientKey, key);
    const { data: cmd } = await wire.command();
    await wire.post(`/v1/requests/${cmd.request_id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${cmd.request_id}/error`, { attempt: 1, code: 'DATASET_NOT_FOUND', message: 'no such file: gone.csv' });
    const first = await errorOf(await pending);
    const again = await errorOf(await client('sync', { connector: s.connectorId, dataset: 'gone.csv' }, s.clientKey, key));
    assert.deepEqual(again, first);
    assert.equal(again.requestId, cmd.request_id);
    await assert.rejects(wire.command(undefined, 1000), /no matching event/, 'no second command was sent');
    const other = await errorOf(await client('offload', { connector: s.connectorId, dataset: 'gone.csv' }, s.clientKey, key));
    assert.deepEqual([other.status, other.code], [409, 'CONFLICT']);
  });
});

describe('stream request', () => {
  test('zstd frames pass through to a client that accepts zstd; checksum in the trailer', async () => {
    const a = Buffer.from('x,y\n'.repeat(CHUNK / 4));
    const b = randomBytes(1000);
    const pending = client('stream', { connector: s.connectorId, dataset: 'x.csv' }, s.clientKey, { 'accept-encoding': 'zstd' });
    const { data: cmd } = await wire.command();
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'text/csv', total_bytes: null, total_chunks: null });
    const res = await pending;
    assert.equal(res.statusCode, 200, 'answers as soon as the result has started');
    assert.equal(res.headers['content-encoding'], 'zstd');
    assert.equal(res.headers['content-type'], 'text/csv');
    assert.equal((await wire.chunk(id, 1, b)).status, 201);
    assert.equal((await wire.chunk(id, 0, a, { zstd: true })).status, 201);
    const whole = Buffer.concat([a, b]);
    const bodyP = res.body.arrayBuffer();
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks: 2, bytes: whole.length, checksum: xxh64(whole) })).status, 204);
    const body = Buffer.from(await bodyP);
    assert.ok(body.length < whole.length, 'compressed on the wire');
    assert.deepEqual(await zstdDecompress(body), whole);
    assert.equal(res.trailers['x-relay-checksum'], xxh64(whole));
  });

  // A connector resends a chunk when its first try failed on its side, and the router may still
  // be receiving that try (a connection cut on the way, bytes still queued). The second copy was
  // answered as delivered while the first was only being received; the first then failed, and
  // the chunk never reached the client: the stream stalled until its deadline (the soak saw one).
  test('a chunk sent again while its first copy is still being received is not lost when that copy fails', { timeout: 20_000 }, async () => {
    const a = randomBytes(64 * 1024);
    const b = randomBytes(1000);
    const { id, body: bodyP } = await startedStream('twice.bin');
    // The first copy: its head and half its body, then nothing.
    const first = halfSentChunk(id, 0, a);
    await sleep(300);
    // The second copy, whole; the first is cut while the second waits.
    const second = wire.chunk(id, 0, a);
    await sleep(300);
    first.destroy();
    assert.equal((await second).status, 201, 'the second copy is the one stored');
    assert.equal((await wire.chunk(id, 1, b)).status, 201);
    const whole = Buffer.concat([a, b]);
    await completeStarted(id, bodyP, whole, 2, 'the client got both chunks');
  });

  // A chunk that waits for room in the window may lose its connection while it waits. Once the
  // room came, the route read the body of a request that had already said 'aborted': it waited
  // for bytes that never came and held the chunk's place until the body idle timeout, so the
  // chunk's repeat got BACKPRESSURE (the soak's stream stalls; before the idle timeout, for good).
  test('a chunk whose connection closed while it waited for room does not hold its place', { timeout: 20_000 }, async () => {
    const parts = Array.from({ length: 5 }, () => randomBytes(1000));
    const { id, body: bodyP } = await startedStream('cut-while-waiting.bin');
    for (const i of [1, 2, 3]) assert.equal((await wire.chunk(id, i, parts[i]!)).status, 201);
    // Chunk 4 is past the window (4 chunks from chunk 0): it waits for room, then its link dies.
    const waiting = halfSentChunk(id, 4, parts[4]!);
    await sleep(300);
    waiting.destroy();
    await sleep(100);
    assert.equal((await wire.chunk(id, 0, parts[0]!)).status, 201, 'chunk 0 makes room for chunk 4');
    const started = performance.now();
    assert.equal((await wire.chunk(id, 4, parts[4]!)).status, 201, 'the repeat of chunk 4 is stored');
    assert.ok(performance.now() - started < 1000, `at once, not after the idle timeout (${Math.round(performance.now() - started)} ms)`);
    const whole = Buffer.concat(parts);
    await completeStarted(id, bodyP, whole, 5, 'the client got every chunk');
  });

  // A peer that vanished without closing its connection (or a proxy that never closes its side)
  // leaves a body that never ends: the router gives it up after RELAY_BODY_IDLE_TIMEOUT_S (3 s
  // here) and closes the connection, so it holds no window place for good (the soak's 180 s
  // TIMEOUT).
  test('a chunk whose body stops coming is given up after the idle timeout', { timeout: 20_000 }, async () => {
    const a = randomBytes(64 * 1024);
    const { id, body: bodyP } = await startedStream('stuck.bin');
    const started = performance.now();
    const stuck = halfSentChunk(id, 0, a);
    await new Promise<void>((r) => stuck.on('close', () => r()));
    const waited = performance.now() - started;
    assert.ok(waited > 2500 && waited < 5000, `closed after the 3 s idle timeout (${Math.round(waited)} ms)`);
    assert.equal((await wire.chunk(id, 0, a)).status, 201, 'the chunk sent again is stored');
    await completeStarted(id, bodyP, a, 1, 'the client got the chunk');
  });

  // A repeat means its sender gave the first copy up. A copy whose connection then reads
  // nothing for a second is closed and the repeat takes its place, within the repeat's own wait
  // for room (2 s); before, the repeat got BACKPRESSURE until the idle timeout closed the copy.
  test('a repeat replaces a copy of its chunk that has stopped coming', { timeout: 20_000 }, async () => {
    const a = randomBytes(64 * 1024);
    const { id, body: bodyP } = await startedStream('superseded.bin');
    const stuck = halfSentChunk(id, 0, a);
    const closed = new Promise<void>((r) => stuck.on('close', () => r()));
    await sleep(200);
    const started = performance.now();
    assert.equal((await wire.chunk(id, 0, a)).status, 201, 'the repeat is stored');
    const waited = performance.now() - started;
    assert.ok(waited > 900 && waited < 2000, `after a second without a byte, well before the 3 s idle timeout (${Math.round(waited)} ms)`);
    await closed;
    await completeStarted(id, bodyP, a, 1, 'the client got the chunk');
  });

  // ...but a copy whose bytes are still coming (a slow link) is left to finish: the repeat is
  // told to come back, and the first copy is the one stored.
  test('a repeat does not replace a copy of its chunk whose bytes are still coming', { timeout: 20_000 }, async () => {
    const a = randomBytes(64 * 1024);
    const { id, body: bodyP } = await startedStream('slow.bin');
    const slow = halfSentChunk(id, 0, a);
    const answer = new Promise<number>((resolve, reject) => {
      slow.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      slow.on('error', reject);
    });
    // The rest of the body, 1 KiB every 100 ms: never a second without a byte.
    let off = a.length / 2;
    const drip = setInterval(() => {
      const next = Math.min(a.length, off + 1024);
      if (next === a.length) {
        clearInterval(drip);
        slow.end(a.subarray(off, next));
      } else slow.write(a.subarray(off, next));
      off = next;
    }, 100);
    await sleep(200);
    const repeat = await wire.chunk(id, 0, a);
    assert.equal(repeat.status, 503, 'the repeat is told to come back');
    assert.equal(((await repeat.json()) as { error: { code: string } }).error.code, 'BACKPRESSURE');
    assert.equal(await answer, 201, 'the slow copy was left to finish and is the one stored');
    await completeStarted(id, bodyP, a, 1, 'the client got the chunk');
  });

  test('a chunk far ahead of the window gets BACKPRESSURE with Retry-After', async () => {
    const pending = client('stream', { connector: s.connectorId, dataset: 'y.bin' });
    const { data: cmd } = await wire.command();
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream' });
    const res = await wire.chunk(id, 10, randomBytes(100));
    assert.equal(res.status, 503);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'BACKPRESSURE');
    assert.ok(Number(res.headers.get('retry-after')) >= 1);
    assert.ok(Number(res.headers.get('retry-after-ms')) > 0);
    const cancel = await fetch(`${s.routerUrl}/v1/requests/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${s.clientKey}` } });
    assert.equal(((await cancel.json()) as { status: string }).status, 'cancelled');
    const ev = await wire.next((e) => e.event === 'cancel' && JSON.parse(e.data).request_id === id);
    assert.ok(ev.id, 'cancel events carry an id');
    assert.equal((await wire.chunk(id, 0, randomBytes(10))).status, 410, 'uploads after cancel get GONE');
    (await pending).body.resume();
  });
});

describe('offload request', () => {
  test('the command brings URLs for parts 1-4 that the object store takes; the answer follows complete', async () => {
    const answer = client('offload', { connector: s.connectorId, dataset: 'x.bin' });
    const { data: cmd } = await wire.command();
    const off = (cmd as unknown as { offload: { urls: Record<string, string>; expires_at: string; part_size: number } }).offload;
    assert.deepEqual(Object.keys(off.urls).sort(), ['1', '2', '3', '4']);
    assert.ok(Date.parse(off.expires_at) > Date.now() + 60_000, 'good for the part URL lifetime');
    await wire.post(`/v1/requests/${cmd.request_id}/ack`, { attempt: 1 });
    const data = randomBytes(10_000);
    const put = await fetch(off.urls['1']!, { method: 'PUT', body: new Uint8Array(data) });
    assert.equal(put.status, 200, 'a part URL from the command is accepted by the store');
    const etag = put.headers.get('etag')!;
    const done = await wire.post(`/v1/requests/${cmd.request_id}/offload/complete`, { attempt: 1, parts: [{ part: 1, etag }], bytes: data.length, checksum: xxh64(data), content_encoding: 'identity' });
    assert.equal(done.status, 204);
    const body = (await (await answer).body.json()) as { download_url: string; bytes: number };
    assert.equal(body.bytes, data.length);
    assert.deepEqual(Buffer.from(await (await fetch(body.download_url)).arrayBuffer()), data);
  });

  // A router killed while the store completed the upload: the store finished it, but nobody
  // recorded it. The connector's complete, repeated to the restarted router, completes it again:
  // S3 and MinIO answer NoSuchUpload, s3rver 500, and the request failed (the soak's router
  // kills). The object under the request's own key can only come from that complete.
  test('a complete whose upload the store already completed (for a call that got no answer) is taken as done', async () => {
    const answer = client('offload', { connector: s.connectorId, dataset: 'completed-before.bin' });
    const { data: cmd } = await wire.command();
    const id = cmd.request_id;
    const url = new URL((cmd as unknown as { offload: { urls: Record<string, string> } }).offload.urls['1']!);
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    const data = randomBytes(10_000);
    const put = await fetch(url, { method: 'PUT', body: new Uint8Array(data) });
    const etag = put.headers.get('etag')!;
    // The complete of the call that got no answer, straight to the store.
    const direct = await fetch(`${url.origin}${url.pathname}?uploadId=${encodeURIComponent(url.searchParams.get('uploadId')!)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/xml' },
      body: `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${etag}</ETag></Part></CompleteMultipartUpload>`,
    });
    assert.equal(direct.status, 200, await direct.text());
    const done = await wire.post(`/v1/requests/${id}/offload/complete`, { attempt: 1, parts: [{ part: 1, etag }], bytes: data.length, checksum: xxh64(data), content_encoding: 'identity' });
    assert.equal(done.status, 204, await done.text());
    const body = (await (await answer).body.json()) as { download_url: string; bytes: number };
    assert.deepEqual(Buffer.from(await (await fetch(body.download_url)).arrayBuffer()), data);
  });

  // A connector whose complete got no answer (a reset, a timeout) sends it again, possibly while
  // the first is still being completed by the store. Completing the upload twice at once made
  // s3rver write the object twice over: the client, answered after the first, downloaded it
  // while the second rewrote it (the soak saw a 100 MB offload fail its zstd check).
  test('a complete repeated while the first is under way completes the upload once, and the object is whole when the answer comes', { timeout: 60_000 }, async () => {
    const answer = client('offload', { connector: s.connectorId, dataset: 'twice.bin', timeout_s: 60 });
    const { data: cmd } = await wire.command();
    const id = cmd.request_id;
    const partSize = (cmd as unknown as { offload: { part_size: number } }).offload.part_size;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    const n = 16;
    const data = randomBytes(partSize * n);
    const parts = Array.from({ length: n }, (_, i) => i + 1);
    const { urls } = (await (await wire.post(`/v1/requests/${id}/offload/parts`, { attempt: 1, parts })).json()) as { urls: Record<string, string> };
    const etags: { part: number; etag: string }[] = [];
    for (let i = 0; i < n; i += 4) {
      await Promise.all(
        parts.slice(i, i + 4).map(async (part) => {
          const put = await fetch(urls[String(part)]!, { method: 'PUT', body: new Uint8Array(data.subarray((part - 1) * partSize, part * partSize)) });
          assert.equal(put.status, 200);
          etags.push({ part, etag: put.headers.get('etag')! });
        }),
      );
    }
    const outBefore = await metricValue('relay_bytes_out_total{mode="offload"}');
    const complete = () => wire.post(`/v1/requests/${id}/offload/complete`, { attempt: 1, parts: etags, bytes: data.length, checksum: xxh64(data), content_encoding: 'identity' });
    const completes = [complete(), complete()];
    const body = (await (await answer).body.json()) as { download_url: string; bytes: number };
    const got = Buffer.from(await (await fetch(body.download_url)).arrayBuffer());
    assert.ok(got.equals(data), `the object as soon as the client was answered: ${got.length} bytes, ${got.equals(data) ? 'same' : 'different'}`);
    assert.deepEqual((await Promise.all(completes)).map((r) => r.status), [204, 204], 'both completes are answered 204');
    assert.equal((await metricValue('relay_bytes_out_total{mode="offload"}')) - outBefore, data.length, 'the upload was completed once');
    assert.ok(Buffer.from(await (await fetch(body.download_url)).arrayBuffer()).equals(data), 'and is still whole after both');
  });
});

/** A stream request taken, acked and started by the wire connector; the client's body, awaited by the caller. */
async function startedStream(dataset: string): Promise<{ id: string; body: Promise<ArrayBuffer> }> {
  const pending = client('stream', { connector: s.connectorId, dataset });
  const { data: cmd } = await wire.command();
  const id = cmd.request_id;
  await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
  await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: null, total_chunks: null });
  const body = (await pending).body.arrayBuffer();
  body.catch(() => undefined); // a failure is seen where the caller awaits it
  return { id, body };
}

/** Completes a stream from startedStream (attempt 1, `chunks` chunks): 204, and the client got `whole`. */
async function completeStarted(id: string, body: Promise<ArrayBuffer>, whole: Buffer, chunks: number, what: string): Promise<void> {
  const done = await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks, bytes: whole.length, checksum: xxh64(whole) }, AbortSignal.timeout(5000));
  assert.equal(done.status, 204);
  assert.ok(Buffer.from(await body).equals(whole), what);
}

/** A chunk upload that sends its head and half its body, then nothing (until destroyed). */
function halfSentChunk(id: string, index: number, data: Buffer): ClientRequest {
  const u = new URL(`${s.routerUrl}/v1/requests/${id}/stream/chunk/${index}`);
  const req = httpRequest({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'POST',
    headers: rawChunkHeaders(s.connectorToken, data),
  });
  req.on('error', () => undefined);
  req.write(data.subarray(0, data.length / 2));
  return req;
}

async function metricValue(series: string): Promise<number> {
  const text = await (await fetch(`${s.routerUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('delivery', () => {
  test('a reconnecting connector gets every command not yet acknowledged', async () => {
    const pending = client('sync', { connector: s.connectorId, dataset: 'z.txt', timeout_s: 30 });
    const first = await wire.command();
    wire.close();
    wire = await new WireConnector(s.routerUrl, s.connectorToken).connect(first.id);
    const again = await wire.command(first.data.request_id);
    assert.equal(again.id, first.id, 'same event id');
    const id = first.data.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    const body = Buffer.from('hello');
    const res = await fetch(`${s.routerUrl}/v1/requests/${id}/result`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.connectorToken}`, 'x-relay-attempt': '1', 'x-relay-checksum': xxh64(body), 'x-relay-decoded-length': '5', 'x-relay-content-type': 'text/plain' },
      body,
    });
    assert.equal(res.status, 204);
    const answer = await pending;
    assert.equal(answer.headers['content-type'], 'text/plain');
    assert.equal(await answer.body.text(), 'hello');
  });

  test('a result may come before the ack; the late ack still takes the command off the pending list', async () => {
    const pending = client('sync', { connector: s.connectorId, dataset: 'late-ack.txt', timeout_s: 30 });
    const { data } = await wire.command();
    const id = data.request_id;
    const body = Buffer.from('early');
    const res = await fetch(`${s.routerUrl}/v1/requests/${id}/result`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.connectorToken}`, 'x-relay-attempt': '1', 'x-relay-checksum': xxh64(body), 'x-relay-decoded-length': '5', 'x-relay-content-type': 'text/plain' },
      body,
    });
    assert.equal(res.status, 204);
    assert.equal(await (await pending).body.text(), 'early');
    assert.equal(await s.redis.hexists(`relay:pending:${s.connectorId}`, id), 1, 'still pending before its ack');
    assert.equal((await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 })).status, 204);
    assert.equal(await s.redis.hexists(`relay:pending:${s.connectorId}`, id), 0, 'a reconnect would send it again');
  });

  test('an offline connector fails with CONNECTOR_OFFLINE after the retries', async () => {
    wire.close();
    await s.waitOnline(s.connectorId, false);
    const t0 = Date.now();
    const e = await errorOf(await client('sync', { connector: s.connectorId, dataset: 'a.csv' }));
    assert.deepEqual([e.status, e.code], [503, 'CONNECTOR_OFFLINE']);
    assert.ok(Date.now() - t0 >= 2000, 'waited for two ack timeouts');
    wire = await new WireConnector(s.routerUrl, s.connectorToken).connect();
  });
});

describe('who may do what', () => {
  const body = () => ({ connector: s.connectorId, dataset: 'a.csv' });
  test('no secret or an unknown one: 401', async () => {
    const none = await request(`${s.routerUrl}/v1/datasets/request-sync`, { method: 'POST', body: JSON.stringify(body()) });
    assert.deepEqual(Object.values(await errorOf(none)).slice(0, 2), [401, 'UNAUTHORIZED']);
    assert.deepEqual(Object.values(await errorOf(await client('sync', body(), 'nope-nope-nope-nope'))).slice(0, 2), [401, 'UNAUTHORIZED']);
    const ev = await fetch(`${s.routerUrl}/v1/connectors/events`, { headers: { authorization: 'Bearer wrong-token-wrong' } });
    assert.equal(ev.status, 401);
  });
  test("another tenant's connector and an unknown connector: 404", async () => {
    assert.deepEqual(Object.values(await errorOf(await client('sync', body(), s.otherClientKey))).slice(0, 2), [404, 'NOT_FOUND']);
    assert.deepEqual(Object.values(await errorOf(await client('stream', { connector: 'no-such', dataset: 'a' }))).slice(0, 2), [404, 'NOT_FOUND']);
  });
  test('a client key on connector routes and a connector token on client routes: 403', async () => {
    const ev = await fetch(`${s.routerUrl}/v1/connectors/events`, { headers: { authorization: `Bearer ${s.clientKey}` } });
    assert.equal(ev.status, 403);
    assert.deepEqual(Object.values(await errorOf(await client('sync', body(), s.connectorToken))).slice(0, 2), [403, 'FORBIDDEN']);
  });
  test('bad input gets BAD_REQUEST in the error format', async () => {
    for (const b of [{}, { connector: s.connectorId }, { connector: s.connectorId, dataset: 'a', sql: 'select 1' }, { connector: s.connectorId, dataset: 'a', format: 'xml' }]) {
      assert.deepEqual(Object.values(await errorOf(await client('sync', b))).slice(0, 2), [400, 'BAD_REQUEST']);
    }
    const notJson = await request(`${s.routerUrl}/v1/datasets/request-sync`, { method: 'POST', headers: { authorization: `Bearer ${s.clientKey}` }, body: '{nope' });
    assert.deepEqual(Object.values(await errorOf(notJson)).slice(0, 2), [400, 'BAD_REQUEST']);
    const route = await request(`${s.routerUrl}/v1/nothing`);
    assert.deepEqual(Object.values(await errorOf(route)).slice(0, 2), [404, 'NOT_FOUND']);
  });
});

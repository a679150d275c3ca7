// Two router instances on one Redis, as behind a load balancer: the connector's event stream
// and uploads reach one, the client's request the other. The instance holding the client's
// answer gets the uploads passed on (router/handoff.ts), and a client re-attaching through the
// other instance takes its answer over there.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import { request } from 'undici';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { keys } from '../../src/router/redis.js';
import { startBalancer } from '../helpers/balancer.js';
import { CHUNK, csv, sleep, Stack } from '../helpers/stack.js';
import { rawChunkHeaders, WireConnector } from '../helpers/wire.js';

let s: Stack;
/** The second instance. */
let b: string;
let bLines: string[];
/** The connector's event stream, on the second instance; its uploads go there too. */
let wire: WireConnector;
/** The same connector's uploads to the first instance. */
let wireA: WireConnector;
const GRACE_S = 2;

before(async () => {
  const routerEnv = { RELAY_REATTACH_GRACE_S: String(GRACE_S), RELAY_PROGRESS_TIMEOUT_S: '30' };
  s = await Stack.start({ connector: false, routerEnv });
  const peer = await s.startPeerRouter();
  b = peer.url;
  bLines = peer.proc.lines;
  wire = await new WireConnector(b, s.connectorToken).connect();
  wireA = new WireConnector(s.routerUrl, s.connectorToken);
});
after(async () => {
  wire?.close();
  await closeHttp();
  await s?.stop();
});

const auth = () => ({ authorization: `Bearer ${s.clientKey}` });
const ask = (router: string, mode: string, dataset: string, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  request(`${router}/v1/datasets/request-${mode}`, {
    method: 'POST',
    headers: { ...auth(), 'content-type': 'application/json', accept: '*/*', ...headers },
    body: JSON.stringify({ connector: s.connectorId, dataset }),
    signal,
  });
const status = async (id: string) => (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: auth() })).json()) as { status: string; error: { code: string } | null };
const commandFor = async (dataset: string) => {
  const e = await wire.next((e) => e.event === 'command' && JSON.parse(e.data).dataset === dataset);
  return JSON.parse(e.data) as { request_id: string; attempt: number; resume_from?: number };
};
const init = (w: WireConnector, id: string, attempt: number, data: Buffer) =>
  w.post(`/v1/requests/${id}/stream/init`, { attempt, content_type: 'application/octet-stream', total_bytes: data.length, total_chunks: Math.ceil(data.length / CHUNK) });
const complete = (w: WireConnector, id: string, attempt: number, data: Buffer) =>
  w.post(`/v1/requests/${id}/stream/complete`, { attempt, chunks: Math.ceil(data.length / CHUNK), bytes: data.length, checksum: xxh64(data) });
/**
 * Chunk 0 of a request posted to the second instance, its second half 300 ms after its first
 * (`between` runs in that pause): long enough to be passed on while still arriving.
 */
function slowChunk(id: string, data: Buffer, opts: { signal?: AbortSignal; between?: () => void } = {}) {
  return request(`${b}/v1/requests/${id}/stream/chunk/0`, {
    method: 'POST',
    headers: rawChunkHeaders(s.connectorToken, data),
    signal: opts.signal,
    body: Readable.from(
      (async function* () {
        yield data.subarray(0, data.length / 2);
        await sleep(300);
        opts.between?.();
        yield data.subarray(data.length / 2);
      })(),
    ),
  });
}
async function forwarded(router: string): Promise<number> {
  const text = await (await fetch(`${router}/metrics`, { headers: { authorization: `Bearer ${s.adminToken}` } })).text();
  return [...text.matchAll(/^relay_uploads_forwarded_total\{outcome="2\d\d"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

describe('uploads that reach another instance than the client', () => {
  test('stream: init, chunks (a repeat included) and complete are passed to the instance holding the answer', async () => {
    const data = randomBytes(3 * CHUNK + 1000);
    const before = await forwarded(b);
    const pending = ask(s.routerUrl, 'stream', 'handoff-stream.bin');
    const cmd = await commandFor('handoff-stream.bin');
    const id = cmd.request_id;
    assert.equal((await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 })).status, 204);
    assert.equal((await init(wire, id, 1, data)).status, 204);
    for (let i = 0; i < 4; i++) assert.equal((await wire.chunk(id, i, data.subarray(i * CHUNK, (i + 1) * CHUNK), { zstd: i === 1 })).status, 201, `chunk ${i} stored`);
    assert.equal((await wire.chunk(id, 2, data.subarray(2 * CHUNK, 3 * CHUNK))).status, 200, 'a repeat is a duplicate at the holder');
    assert.equal((await complete(wire, id, 1, data)).status, 204);
    const res = await pending;
    assert.equal(res.statusCode, 200);
    assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(data), 'byte-identical');
    assert.equal((await status(id)).status, 'complete');
    assert.equal((await forwarded(b)) - before, 7, 'init, 5 chunks and complete went through the second instance');
  });

  test('sync: the one-call /result is passed on and the client gets the bytes with their checksum', async () => {
    const data = Buffer.from('id,name\n1,alpha\n2,beta\n');
    const pending = ask(s.routerUrl, 'sync', 'handoff-small.csv');
    const { request_id: id } = await commandFor('handoff-small.csv');
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    const up = await fetch(`${b}/v1/requests/${id}/result`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.connectorToken}`, 'content-type': 'text/csv', 'x-relay-attempt': '1', 'x-relay-checksum': xxh64(data), 'x-relay-decoded-length': String(data.length) },
      body: new Uint8Array(data),
    });
    assert.equal(up.status, 204);
    const res = await pending;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-relay-checksum'], xxh64(data));
    assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(data));
  });

  test("the holder's refusal comes back as it was given: a damaged chunk is CHECKSUM_MISMATCH", async () => {
    const data = randomBytes(CHUNK);
    const pending = ask(s.routerUrl, 'stream', 'handoff-damaged.bin');
    const { request_id: id } = await commandFor('handoff-damaged.bin');
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await init(wire, id, 1, data);
    const bad = await wire.chunk(id, 0, data, { checksum: '0123456789abcdef' });
    assert.equal(bad.status, 422);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'CHECKSUM_MISMATCH');
    assert.equal((await wire.chunk(id, 0, data)).status, 201, 'the resend is stored');
    assert.equal((await complete(wire, id, 1, data)).status, 204);
    assert.ok(Buffer.from(await (await pending).body.arrayBuffer()).equals(data));
  });
});

describe('a client re-attaching through the other instance', () => {
  test('takes its answer over there; the instance it left does not cancel the request after the grace period', { timeout: 30_000 }, async () => {
    const data = randomBytes(3 * CHUNK);
    const key = { 'idempotency-key': `handoff-reattach-${Date.now()}` };
    const ac = new AbortController();
    const first = ask(s.routerUrl, 'stream', 'handoff-reattach.bin', key, ac.signal);
    const { request_id: id } = await commandFor('handoff-reattach.bin');
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await init(wire, id, 1, data);
    assert.equal((await wire.chunk(id, 0, data.subarray(0, CHUNK))).status, 201);
    const res1 = await first;
    ac.abort();
    await res1.body.arrayBuffer().catch(() => undefined);
    // Back through the second instance within the grace period.
    const second = ask(b, 'stream', 'handoff-reattach.bin', key);
    const again = await commandFor('handoff-reattach.bin');
    assert.equal(again.attempt, 2);
    assert.equal(again.resume_from, 0);
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 2 });
    // The new attempt's uploads go to the first instance now, which passes them back.
    assert.equal((await init(wireA, id, 2, data)).status, 204);
    assert.equal((await wireA.chunk(id, 0, data.subarray(0, CHUNK), { attempt: 2 })).status, 201);
    // Past the first instance's grace period: the request must still be live.
    await sleep((GRACE_S + 1.5) * 1000);
    assert.equal((await status(id)).status, 'running', 'not cancelled by the instance the client left');
    for (let i = 1; i < 3; i++) assert.equal((await wireA.chunk(id, i, data.subarray(i * CHUNK, (i + 1) * CHUNK), { attempt: 2 })).status, 201);
    assert.equal((await complete(wireA, id, 2, data)).status, 204);
    const res2 = await second;
    assert.equal(res2.headers['x-relay-request-id'], id);
    assert.ok(Buffer.from(await res2.body.arrayBuffer()).equals(data), 'byte-identical');
    assert.equal((await status(id)).status, 'complete');
  });

  test('a repeat through the other instance ends the answer still open on the first', { timeout: 20_000 }, async () => {
    const key = { 'idempotency-key': `handoff-repeat-${Date.now()}` };
    const pending = ask(s.routerUrl, 'stream', 'handoff-repeat.bin', key);
    const { request_id: id } = await commandFor('handoff-repeat.bin');
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    const data = randomBytes(1000);
    await init(wire, id, 1, data);
    const first = await pending;
    const firstBody = first.body.arrayBuffer().then(
      () => 'ended',
      () => 'cut',
    );
    const second = ask(b, 'stream', 'handoff-repeat.bin', key);
    const ended = await Promise.race([firstBody, sleep(5000).then(() => 'still open')]);
    assert.notEqual(ended, 'still open', 'the older answer ends when the repeat takes over');
    await commandFor('handoff-repeat.bin');
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 2 });
    await init(wire, id, 2, data);
    assert.equal((await wire.chunk(id, 0, data, { attempt: 2 })).status, 201);
    assert.equal((await complete(wire, id, 2, data)).status, 204);
    assert.ok(Buffer.from(await (await second).body.arrayBuffer()).equals(data));
  });
});

describe('a real connector on the other instance', () => {
  test('every mode, 12 MB of CSV: byte-identical, with the connector\'s parallel, compressed uploads', { timeout: 60_000 }, async () => {
    wire.close();
    const want = await s.writeData('sales/12mb.csv', csv(12 * 1024 * 1024));
    await s.startConnector({}, b);
    try {
      for (const [mode, fetchIt] of [['sync', requestSync], ['stream', requestStream], ['offload', requestOffload]] as const) {
        const out = new PassThrough();
        const parts: Buffer[] = [];
        out.on('data', (d: Buffer) => parts.push(d));
        const r = await fetchIt(s.clientCfg(), { connector: s.connectorId, dataset: 'sales/12mb.csv' }, out);
        assert.ok(r.verified, `${mode}: checksum verified end to end`);
        assert.ok(Buffer.concat(parts).equals(want), `${mode}: byte-identical`);
      }
    } finally {
      await s.killConnector('SIGTERM');
      wire = await new WireConnector(b, s.connectorToken).connect();
    }
  });
});

describe('behind a round-robin balancer', () => {
  test('a real connector and clients whose connections alternate between the instances: every mode byte-identical', { timeout: 90_000 }, async () => {
    wire.close();
    const want = await s.writeData('sales/6mb.csv', csv(6 * 1024 * 1024));
    const lb = await startBalancer([s.routerUrl, b]);
    await s.startConnector({ RELAY_HTTP_CONNECTIONS: '8' }, lb.url);
    try {
      const runs = [];
      for (let i = 0; i < 4; i++) {
        for (const fetchIt of [requestSync, requestStream, requestOffload]) {
          const out = new PassThrough();
          const parts: Buffer[] = [];
          out.on('data', (d: Buffer) => parts.push(d));
          runs.push(fetchIt({ ...s.clientCfg(), routerUrl: lb.url }, { connector: s.connectorId, dataset: 'sales/6mb.csv' }, out).then((r) => ({ r, bytes: () => Buffer.concat(parts) })));
        }
      }
      for (const { r, bytes } of await Promise.all(runs)) {
        assert.ok(r.verified);
        assert.ok(bytes().equals(want), `${r.requestId}: byte-identical`);
      }
      assert.ok((await forwarded(s.routerUrl)) + (await forwarded(b)) > 0, 'some uploads were passed between the instances');
    } finally {
      await s.killConnector('SIGTERM');
      await lb.close();
      wire = await new WireConnector(b, s.connectorToken).connect();
    }
  });
});

describe('the instance holding the answer is gone', () => {
  test("a holder that drops the connection, mid-body or after it: retry later (500, Retry-After), not the connector's fault", { timeout: 30_000 }, async () => {
    // Stands in for an instance killed while it reads an upload, or before it answers.
    for (const when of ['mid-body', 'after the body'] as const) {
      const holder = createServer((req, res) => {
        let n = 0;
        req.on('data', (d: Buffer) => {
          n += d.length;
          if (when === 'mid-body' && n >= 64 * 1024) res.socket?.destroy();
        });
        req.on('end', () => res.socket?.destroy());
      });
      await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
      try {
        const dataset = `handoff-dropped-${when.replace(/ /g, '-')}.bin`;
        const pending = ask(s.routerUrl, 'stream', dataset).catch(() => null);
        const { request_id: id } = await commandFor(dataset);
        await s.redis.hset(keys.request(id), 'answer_at', `http://127.0.0.1:${(holder.address() as AddressInfo).port}`);
        // The passing instance is still reading the chunk from the connector when a holder
        // dies mid-body.
        const res = await slowChunk(id, randomBytes(CHUNK));
        const body = (await res.body.json()) as { error: { code: string; message: string } };
        assert.equal(res.statusCode, 500, `${when}: ${JSON.stringify(body)}`);
        assert.equal(body.error.code, 'INTERNAL');
        assert.equal(res.headers['retry-after'], '1');
        await sleep(100);
        const logged = bLines.filter((l) => l.includes(id));
        assert.equal(logged.filter((l) => l.includes('asked to retry')).length, 1, `one warning: ${logged.join('\n')}`);
        assert.ok(!logged.some((l) => l.includes('internal error')), 'not logged as a bug');
        await fetch(`${s.routerUrl}/v1/requests/${id}`, { method: 'DELETE', headers: auth() });
        await pending;
      } finally {
        holder.close();
      }
    }
  });

  test("a connector whose own link breaks mid-body is not taken for a failing holder; its retry goes through", { timeout: 30_000 }, async () => {
    const pending = ask(s.routerUrl, 'stream', 'handoff-cut.bin').catch(() => null);
    const { request_id: id } = await commandFor('handoff-cut.bin');
    const data = randomBytes(CHUNK);
    const cut = new AbortController();
    const first = slowChunk(id, data, { signal: cut.signal, between: () => cut.abort() });
    await assert.rejects(first);
    await sleep(300);
    assert.ok(!bLines.some((l) => l.includes(id) && l.includes('asked to retry')), 'not logged as a failure of the hand-off');
    const retry = await wire.chunk(id, 0, data);
    assert.equal(retry.status, 201);
    await fetch(`${s.routerUrl}/v1/requests/${id}`, { method: 'DELETE', headers: auth() });
    await pending;
  });

  test('an upload for it is answered GONE (the connector stops)', { timeout: 30_000 }, async () => {
    const pending = ask(s.routerUrl, 'stream', 'handoff-gone.bin').catch(() => null);
    const { request_id: id } = await commandFor('handoff-gone.bin');
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    s.router.child.kill('SIGKILL');
    await s.router.exited;
    await pending;
    const data = randomBytes(1000);
    const res = await init(wire, id, 1, data);
    assert.equal(res.status, 410);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'GONE');
    assert.match(body.error.message, /cannot be reached/);
    await sleep(200);
    assert.ok(bLines.some((l) => l.includes(id) && l.includes('cannot be reached')), 'the passing instance says so in its log (a wrong RELAY_ADVERTISE_URL shows there)');
  });
});

// Recovery at the wire level, driven by a bare protocol connector: cancel, idempotent
// ack/complete/error, stale attempts, resume_from on a new attempt, and a client re-attaching
// with its Idempotency-Key.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'undici';
import { xxh64 } from '../../src/protocol/checksum.js';
import { keys } from '../../src/router/redis.js';
import { Stack, CHUNK } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

let s: Stack;
let wire: WireConnector;

before(async () => {
  s = await Stack.start({
    connector: false,
    routerEnv: { RELAY_ACK_TIMEOUT_S: '2', RELAY_PROGRESS_TIMEOUT_S: '1', RELAY_ATTEMPTS: '3', RELAY_BACKOFF_S: '0.1', RELAY_REATTACH_GRACE_S: '2' },
  });
  wire = await new WireConnector(s.routerUrl, s.connectorToken).connect();
});
after(async () => {
  wire?.close();
  await s?.stop();
});

const auth = () => ({ authorization: `Bearer ${s.clientKey}` });
const client = (mode: string, body: unknown, headers: Record<string, string> = {}) =>
  request(`${s.routerUrl}/v1/datasets/request-${mode}`, {
    method: 'POST',
    headers: { ...auth(), 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
/** The next command for a dataset (earlier tests' retries may still be in the stream). */
const commandFor = async (dataset: string, ms = 10_000) => {
  const e = await wire.next((e) => e.event === 'command' && JSON.parse(e.data).dataset === dataset, ms);
  return { id: e.id!, data: JSON.parse(e.data) as Record<string, unknown> & { request_id: string; attempt: number } };
};
const status = async (id: string) => (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: auth() })).json()) as { status: string; attempt: number; error: { code: string } | null };

describe('DELETE /v1/requests/{id}', () => {
  test('cancels: the connector gets a cancel event and later uploads get GONE', async () => {
    const pending = client('stream', { connector: s.connectorId, dataset: 'x.bin' });
    const { data: cmd } = await commandFor('x.bin');
    const id = cmd.request_id;
    assert.equal((await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 })).status, 204);
    assert.equal((await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: null, total_chunks: null })).status, 204);
    assert.equal((await wire.chunk(id, 0, randomBytes(1000))).status, 201);
    const del = await fetch(`${s.routerUrl}/v1/requests/${id}`, { method: 'DELETE', headers: auth() });
    assert.equal(del.status, 200);
    assert.equal(((await del.json()) as { status: string }).status, 'cancelled');
    const cancel = await wire.next((e) => e.event === 'cancel');
    assert.equal(JSON.parse(cancel.data).request_id, id);
    const late = await wire.chunk(id, 1, randomBytes(1000));
    assert.equal(late.status, 410);
    assert.equal(((await late.json()) as { error: { code: string } }).error.code, 'GONE');
    const res = await pending;
    await res.body.arrayBuffer().catch(() => undefined);
  });
});

describe('idempotent connector calls and stale attempts', () => {
  test('ack, complete and error repeat harmlessly; an older attempt gets GONE', async () => {
    const data = randomBytes(2 * CHUNK);
    const pending = client('sync', { connector: s.connectorId, dataset: 'two.bin' });
    const first = await commandFor('two.bin');
    const id = first.data.request_id;
    // No ack: after the ack timeout the router sends attempt 2; attempt 1 is then stale.
    const second = await commandFor('two.bin');
    assert.equal(second.data.attempt, 2);
    const stale = await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    assert.equal(stale.status, 410, 'an older attempt gets GONE');
    for (let i = 0; i < 2; i++) assert.equal((await wire.post(`/v1/requests/${id}/ack`, { attempt: 2 })).status, 204, 'ack again is harmless');
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 2, content_type: 'application/octet-stream', total_bytes: data.length, total_chunks: 2 });
    assert.equal((await wire.chunk(id, 0, data.subarray(0, CHUNK), { attempt: 2 })).status, 201);
    assert.equal((await wire.chunk(id, 1, data.subarray(CHUNK), { attempt: 2 })).status, 201);
    const complete = { attempt: 2, chunks: 2, bytes: data.length, checksum: xxh64(data) };
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, complete)).status, 204);
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, complete)).status, 204, 'complete again is harmless');
    const res = await pending;
    assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(data));
    const err = await wire.post(`/v1/requests/${id}/error`, { attempt: 2, code: 'CONNECTOR_ERROR', message: 'late' });
    assert.equal(err.status, 409, 'an error after complete is CONFLICT: the request stays complete');
    assert.equal((await status(id)).status, 'complete');
  });

  test('a lapsed lease brings a new attempt that resumes past the chunks stored', async () => {
    const data = randomBytes(5 * CHUNK);
    const pending = client('stream', { connector: s.connectorId, dataset: 'five.bin' });
    const { data: cmd } = await commandFor('five.bin');
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: data.length, total_chunks: 5 });
    for (let i = 0; i < 3; i++) assert.equal((await wire.chunk(id, i, data.subarray(i * CHUNK, (i + 1) * CHUNK))).status, 201);
    // Silence: the lease (progress timeout 1 s) lapses and attempt 2 is sent, resuming at chunk 3.
    const again = await commandFor('five.bin');
    assert.equal(again.data.attempt, 2);
    assert.equal(again.data.resume_from, 3);
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 2 });
    for (let i = 3; i < 5; i++) assert.equal((await wire.chunk(id, i, data.subarray(i * CHUNK, (i + 1) * CHUNK), { attempt: 2 })).status, 201);
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 2, chunks: 5, bytes: data.length, checksum: xxh64(data) })).status, 204);
    const res = await pending;
    assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(data), 'byte-identical across attempts');
  });

  // A new attempt resumes after the contiguous chunks, so a chunk stored out of order past them
  // comes again, and our connector may encode it otherwise this time (zstd instead of raw, or
  // another level): it is a duplicate, not a CONFLICT (the soak saw one fail the request).
  test('a new attempt may send a chunk stored by an earlier one in another encoding; other bytes in one attempt are still a CONFLICT', async () => {
    const data = Buffer.alloc(3 * CHUNK, 'id,name,amount\n1,widget,3.50\n');
    const part = (i: number) => data.subarray(i * CHUNK, (i + 1) * CHUNK);
    const pending = client('stream', { connector: s.connectorId, dataset: 'reencoded.csv' });
    const { data: cmd } = await commandFor('reencoded.csv');
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'text/csv', total_bytes: data.length, total_chunks: 3 });
    assert.equal((await wire.chunk(id, 0, part(0))).status, 201);
    assert.equal((await wire.chunk(id, 2, part(2))).status, 201, 'chunk 2 before chunk 1, raw');
    assert.equal((await wire.chunk(id, 2, part(2), { zstd: true })).status, 409, 'other bytes in the same attempt');
    const again = await commandFor('reencoded.csv');
    assert.equal(again.data.attempt, 2);
    assert.equal(again.data.resume_from, 1, 'resumes after the contiguous chunks');
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 2 });
    assert.equal((await wire.chunk(id, 1, part(1), { attempt: 2, zstd: true })).status, 201);
    assert.equal((await wire.chunk(id, 2, part(2), { attempt: 2, zstd: true })).status, 200, 'chunk 2 again, compressed this time: already stored');
    assert.equal((await wire.chunk(id, 2, part(1).subarray(1), { attempt: 2 })).status, 409, 'another length is not the same chunk');
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 2, chunks: 3, bytes: data.length, checksum: xxh64(data) })).status, 204);
    const res = await pending;
    assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(data), 'byte-identical across attempts');
  });
});

describe('a client re-attaches with its Idempotency-Key', () => {
  test('after dropping its connection: the same request, restarted from chunk 0, answers the new connection', async () => {
    const data = randomBytes(3 * CHUNK);
    const key = { 'idempotency-key': `reattach-${Date.now()}` };
    const ac = new AbortController();
    const first = request(`${s.routerUrl}/v1/datasets/request-stream`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json', ...key },
      body: JSON.stringify({ connector: s.connectorId, dataset: 'three.bin' }),
      signal: ac.signal,
    });
    const { data: cmd } = await commandFor('three.bin');
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: data.length, total_chunks: 3 });
    await wire.chunk(id, 0, data.subarray(0, CHUNK));
    const res1 = await first;
    ac.abort();
    await res1.body.arrayBuffer().catch(() => undefined);
    // Back within the grace period, same key.
    const second = client('stream', { connector: s.connectorId, dataset: 'three.bin' }, key);
    const again = await commandFor('three.bin');
    assert.equal(again.data.attempt, 2);
    assert.equal(again.data.resume_from, 0, 'the bytes sent so far went to the lost answer: start over');
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 2 });
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 2, content_type: 'application/octet-stream', total_bytes: data.length, total_chunks: 3 });
    for (let i = 0; i < 3; i++) assert.equal((await wire.chunk(id, i, data.subarray(i * CHUNK, (i + 1) * CHUNK), { attempt: 2 })).status, 201);
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 2, chunks: 3, bytes: data.length, checksum: xxh64(data) })).status, 204);
    const res2 = await second;
    assert.equal(res2.headers['x-relay-request-id'], id, 'the same request');
    assert.ok(Buffer.from(await res2.body.arrayBuffer()).equals(data));
  });

  // The router stores the key before the request's record (an offload's record needs its
  // multipart upload first). A router killed in between leaves a key naming nothing: the
  // client's retry with the same key got GONE "expired" (the soak's router kills).
  test('a key naming a request that was never stored is taken over after a short wait, by a new request', { timeout: 30_000 }, async () => {
    const key = `unstored-${Date.now()}`;
    const idemKey = keys.idempotency(s.tenant, createHash('sha256').update(key).digest('hex'));
    await s.redis.set(idemKey, 'r_neverstored0000000', 'EX', 600);
    const started = performance.now();
    const pending = client('stream', { connector: s.connectorId, dataset: 'unstored.bin' }, { 'idempotency-key': key });
    const { data: cmd } = await commandFor('unstored.bin', 15_000);
    const waited = performance.now() - started;
    assert.notEqual(cmd.request_id, 'r_neverstored0000000', 'a new request');
    assert.ok(waited > 4000, `after waiting for the record that never came (${Math.round(waited)} ms)`);
    assert.equal(await s.redis.get(idemKey), cmd.request_id, 'the key names the new request now');
    const data = randomBytes(1000);
    await wire.post(`/v1/requests/${cmd.request_id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${cmd.request_id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: data.length, total_chunks: 1 });
    assert.equal((await wire.chunk(cmd.request_id, 0, data)).status, 201);
    assert.equal((await wire.post(`/v1/requests/${cmd.request_id}/stream/complete`, { attempt: 1, chunks: 1, bytes: data.length, checksum: xxh64(data) })).status, 204);
    const res = await pending;
    assert.equal(res.statusCode, 200);
    assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(data));
  });

  test('a client that does not come back within the grace period has its request cancelled', async () => {
    const ac = new AbortController();
    const first = request(`${s.routerUrl}/v1/datasets/request-stream`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json', 'idempotency-key': `gone-${Date.now()}` },
      body: JSON.stringify({ connector: s.connectorId, dataset: 'y.bin' }),
      signal: ac.signal,
    });
    const { data: cmd } = await commandFor('y.bin');
    await wire.post(`/v1/requests/${cmd.request_id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${cmd.request_id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: null, total_chunks: null });
    const res = await first;
    ac.abort();
    await res.body.arrayBuffer().catch(() => undefined);
    const cancel = await wire.next((e) => e.event === 'cancel' && JSON.parse(e.data).request_id === cmd.request_id, 10_000);
    assert.ok(cancel);
    assert.equal((await status(cmd.request_id)).status, 'cancelled');
  });
});

// Fault (c): Redis is restarted (AOF on) while requests are being dispatched, and the router's
// link to Redis is cut through the fault proxy. Every request
// ends byte-identical or with an explicit protocol error (none hangs, none is corrupt), and the
// relay works normally once Redis is back.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { RelayError } from '../../src/protocol/errors.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { RedisServer } from '../helpers/redis-server.js';
import { Stack, sleep } from '../helpers/stack.js';

let redis: RedisServer;
let s: Stack;
before(async () => {
  redis = await RedisServer.start();
  s = await Stack.start({ redisUrl: redis.url, routerEnv: { RELAY_PROGRESS_TIMEOUT_S: '5', RELAY_ACK_TIMEOUT_S: '3', RELAY_BACKOFF_S: '0.5' } });
});
after(async () => {
  await closeHttp();
  await s.stop();
  await redis.stop();
});

type Outcome = { kind: 'ok' } | { kind: 'error'; code: string } | { kind: 'corrupt'; why: string };

async function fetchOne(mode: 'sync' | 'stream' | 'offload', dataset: string, want: Buffer, stack: Stack = s): Promise<Outcome> {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (d: Buffer) => parts.push(d));
  const fn = mode === 'sync' ? requestSync : mode === 'stream' ? requestStream : requestOffload;
  try {
    await fn(stack.clientCfg(), { connector: stack.connectorId, dataset, timeout_s: 60 }, out, { idempotencyKey: randomUUID() });
    const got = Buffer.concat(parts);
    return got.equals(want) ? { kind: 'ok' } : { kind: 'corrupt', why: `${got.length} bytes, xxh64 ${xxh64(got)} ≠ ${xxh64(want)}` };
  } catch (err) {
    // An explicit error has a protocol code and a message; CHECKSUM_MISMATCH would be a caught corruption.
    if (err instanceof RelayError && err.message) return { kind: 'error', code: err.code };
    return { kind: 'corrupt', why: `not a protocol error: ${String(err)}` };
  }
}

test('Redis restarted during dispatch: every request ends byte-identical or with an explicit error', async () => {
  const data = await s.writeData('r.bin', randomBytes(6 * 1024 * 1024));
  const modes = ['sync', 'stream', 'offload'] as const;
  const runs = Array.from({ length: 9 }, (_, i) => fetchOne(modes[i % 3]!, 'r.bin', data));
  await sleep(150);
  await redis.restart('SIGTERM', 1500);
  const outcomes = await Promise.all(runs);
  const corrupt = outcomes.filter((o) => o.kind === 'corrupt');
  assert.deepEqual(corrupt, [], 'no request is corrupt');
  const ok = outcomes.filter((o) => o.kind === 'ok').length;
  const errors = outcomes.filter((o): o is { kind: 'error'; code: string } => o.kind === 'error').map((o) => o.code);
  // Nothing is lost: Promise.all settled, so every request ended one way or the other.
  assert.equal(ok + errors.length, 9);
  assert.ok(ok >= 1, `some requests survive the restart (ok ${ok}, errors ${errors.join(',')})`);

  // Redis is back: the relay works normally again.
  await s.waitOnline(s.connectorId, true, 20_000);
  for (const mode of modes) assert.deepEqual(await fetchOne(mode, 'r.bin', data), { kind: 'ok' }, `${mode} after the restart`);
});

test('the router\'s link to Redis is cut and refused for 2 s (fault proxy): nothing lost, nothing corrupt', async () => {
  // A second relay, on a Redis of its own, whose router and connector reach it through the
  // fault proxy (two relays on one Redis would share jobs and event-stream takeovers).
  const own = await RedisServer.start();
  const link = await FaultProxy.start({ target: { host: '127.0.0.1', port: own.port } });
  const viaProxy = `redis://127.0.0.1:${link.port}`;
  const t = await Stack.start({ redisUrl: viaProxy, routerEnv: { RELAY_PROGRESS_TIMEOUT_S: '5', RELAY_ACK_TIMEOUT_S: '3', RELAY_BACKOFF_S: '0.5' } });
  try {
    const data = await t.writeData('link.bin', randomBytes(4 * 1024 * 1024));
    const modes = ['sync', 'stream', 'offload'] as const;
    const fetchVia = (mode: (typeof modes)[number]) => fetchOne(mode, 'link.bin', data, t);
    const runs = Array.from({ length: 6 }, (_, i) => fetchVia(modes[i % 3]!));
    await sleep(100);
    link.cutAll();
    link.set({ refuse: true });
    await sleep(2000);
    link.set({ refuse: false });
    const outcomes = await Promise.all(runs);
    assert.deepEqual(outcomes.filter((o) => o.kind === 'corrupt'), [], 'no request is corrupt');
    assert.ok(link.stats.resets + link.stats.refused >= 1, 'the link was cut');
    await t.waitOnline(t.connectorId, true, 20_000);
    for (const mode of modes) assert.deepEqual(await fetchVia(mode), { kind: 'ok' }, `${mode} once the link is back`);
  } finally {
    await t.stop();
    await link.close();
    await own.stop();
  }
});

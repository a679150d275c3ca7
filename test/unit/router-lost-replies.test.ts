// Redis restarted after running a command but before its reply reached the router: ioredis
// sends the command again on the new connection, so it runs twice. Each of the router's
// non-idempotent steps must take its own second run as its own. Reproduced against a real Redis
// reached through the fault proxy: 1 s of latency each way, the connection cut once the
// command has run (its reply still on the way).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../src/log.js';
import { claimKey } from '../../src/router/idempotency.js';
import { Limiter } from '../../src/router/limits.js';
import { connectRedis, keys, type Redis } from '../../src/router/redis.js';
import { Requests } from '../../src/router/requests.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { REDIS_URL } from '../helpers/stack.js';

let direct: Redis;
let proxy: FaultProxy;
let viaProxy: Redis;
const log = createLogger('test-lost-replies', 'silent');

before(async () => {
  direct = connectRedis(REDIS_URL, 'test-lost-replies', () => undefined);
  const u = new URL(REDIS_URL);
  proxy = await FaultProxy.start({ target: { host: u.hostname, port: Number(u.port) } });
  viaProxy = connectRedis(`redis://127.0.0.1:${proxy.port}`, 'test-lost-replies-proxy', () => undefined, { autoPipelining: true });
  await viaProxy.ping();
});
after(async () => {
  viaProxy.disconnect();
  await proxy.close();
  await direct.quit();
});

/** Runs call through the proxy; once ran() sees its effect in Redis, cuts the connection. */
async function withLostReply<T>(call: () => Promise<T>, ran: () => Promise<boolean>): Promise<T> {
  proxy.set({ latencyMs: 1000 });
  const pending = call();
  pending.catch(() => undefined);
  let seen = false;
  for (let i = 0; i < 150 && !(seen = await ran()); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(seen, 'the command ran');
  proxy.clear();
  proxy.cutAll();
  return pending;
}

// Before: the second run counted the slot the first had taken; with one slot, the request got
// RATE_LIMITED and the slot stayed until its lease lapsed.
test('a concurrency slot: the same slot, not a second one', { timeout: 20_000 }, async () => {
  const connector = `cc-lost-${randomBytes(4).toString('hex')}`;
  const limiter = new Limiter(viaProxy, { perClass: { sync: 1, stream: 1, offload: 1 }, perConnector: 5, leaseS: 30, retryAfterMs: 1000 }, log);
  await direct.del(keys.limitClass('offload'), keys.limitConnector(connector));
  const slot = await withLostReply(() => limiter.acquire('offload', 't1', connector, 'r_lost_reply'), async () => (await direct.zcard(keys.limitClass('offload'))) === 1);
  assert.equal(await direct.zcard(keys.limitClass('offload')), 1);
  assert.equal(await direct.zcard(keys.limitConnector(connector)), 1);
  await slot.release();
  assert.equal(await direct.zcard(keys.limitClass('offload')), 0, 'released');
  await limiter.close();
});

// Before: the second run found the request ended and said "not by you", so a cancel was not
// sent on to the connector and the instance's end listeners were not told.
test('the end of a request: this call ended it', { timeout: 20_000 }, async () => {
  const requests = new Requests(viaProxy, 600);
  const id = `r_lost_${randomBytes(6).toString('hex')}`;
  await direct.hset(keys.request(id), { id, connector: 'cc-lost', status: 'running' });
  const ended: string[] = [];
  requests.onEnd((rid) => ended.push(rid));
  try {
    const mine = await withLostReply(() => requests.finish(id, 'cancelled'), async () => (await direct.hget(keys.request(id), 'status')) === 'cancelled');
    assert.equal(mine, true);
    assert.deepEqual(ended, [id]);
    assert.equal(await new Requests(direct, 600).finish(id, 'failed'), false, 'another call still finds it ended');
  } finally {
    await direct.del(keys.request(id));
  }
});

// Before: the second run found the request already restarted, so a completed request's
// re-attach was not seen as one, and no queue job was made to watch (and retry) its new attempt.
test('a re-attach restart: the status it had, and one new attempt', { timeout: 20_000 }, async () => {
  const requests = new Requests(viaProxy, 600);
  const id = `r_lost_${randomBytes(6).toString('hex')}`;
  await direct.hset(keys.request(id), { id, connector: 'cc-lost', status: 'complete', attempt: 1, bytes: 10, chunks: 1, checksum: '0123456789abcdef' });
  try {
    const restarted = await withLostReply(() => requests.restart(id), async () => (await direct.hget(keys.request(id), 'status')) === 'dispatched');
    assert.deepEqual(restarted, { attempt: 2, wasComplete: true });
    assert.equal(await direct.hget(keys.request(id), 'attempt'), '2');
    assert.deepEqual(await new Requests(direct, 600).restart(id), { attempt: 3, wasComplete: false }, 'another re-attach is a restart of its own');
  } finally {
    await direct.del(keys.request(id));
  }
});

// Before: the second SET NX found the claim taken (by itself), and the offload complete waited
// for a completion that nobody was doing until the claim lapsed (30 s).
test('the completion claim of an offload: held by this call', { timeout: 20_000 }, async () => {
  const requests = new Requests(viaProxy, 600);
  const id = `r_lost_${randomBytes(6).toString('hex')}`;
  const claim = await withLostReply(() => requests.claimCompletion(id), async () => (await direct.exists(keys.completing(id))) === 1);
  assert.ok(claim, 'claimed');
  assert.equal(await new Requests(direct, 600).claimCompletion(id), null, 'another call is refused');
  await claim.release();
  assert.equal(await direct.exists(keys.completing(id)), 0);
});

// Before: the request waited 5 s for its own record, then took the key over from itself.
test('an Idempotency-Key: names this request at once', { timeout: 20_000 }, async () => {
  const key = `relay:idem:test:${randomBytes(8).toString('hex')}`;
  const t0 = Date.now();
  const owner = await withLostReply(() => claimKey(viaProxy, log, key, 'r_lost_key', 600), async () => (await direct.exists(key)) === 1);
  assert.equal(owner, null, 'a new request');
  assert.ok(Date.now() - t0 < 4000, `claimed after ${Date.now() - t0} ms`);
  assert.equal(await direct.get(key), 'r_lost_key');
  await direct.del(key);
});

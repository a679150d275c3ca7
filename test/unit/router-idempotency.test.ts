// Idempotency-Key claims (router/idempotency.ts) against a real Redis.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../src/log.js';
import { claimKey, dropKey } from '../../src/router/idempotency.js';
import { connectRedis, keys, type Redis } from '../../src/router/redis.js';
import { REDIS_URL } from '../helpers/stack.js';

let redis: Redis;
const log = createLogger('test-idempotency', 'silent');
const fresh = () => `relay:idem:test:${randomBytes(8).toString('hex')}`;

before(() => {
  redis = connectRedis(REDIS_URL, 'test-idempotency', () => undefined);
});
after(async () => {
  await redis.quit();
});

test('a new key names the new request; a repeat gets the stored request it names', async () => {
  const key = fresh();
  assert.equal(await claimKey(redis, log, key, 'r_first', 600), null);
  await redis.hset(keys.request('r_first'), 'id', 'r_first');
  try {
    assert.equal(await claimKey(redis, log, key, 'r_second', 600), 'r_first');
    assert.equal(await redis.get(key), 'r_first');
    assert.ok((await redis.ttl(key)) <= 600, 'the key does not outlive the record');
  } finally {
    await redis.del(keys.request('r_first'), key);
  }
});

// SET NX ran, its reply was lost when Redis restarted, and ioredis sent it again: the key
// names this very request, which has no record yet. Before, the claim waited for that record
// (5 s), then "took the key over" from itself with a warning.
test('a key that already names the claiming request is its own, at once', async () => {
  const key = fresh();
  await redis.set(key, 'r_mine', 'EX', 600);
  const t0 = Date.now();
  assert.equal(await claimKey(redis, log, key, 'r_mine', 600, 5000), null);
  assert.ok(Date.now() - t0 < 1000, `claimed after ${Date.now() - t0} ms`);
  await redis.del(key);
});

test('a key naming a request that was never stored is taken over after the wait', async () => {
  const key = fresh();
  await redis.set(key, 'r_unstored', 'EX', 600);
  const t0 = Date.now();
  assert.equal(await claimKey(redis, log, key, 'r_new', 600, 300), null);
  assert.ok(Date.now() - t0 >= 300);
  assert.equal(await redis.get(key), 'r_new');
  await redis.del(key);
});

test('dropKey frees only a key that still names the request', async () => {
  const key = fresh();
  await redis.set(key, 'r_a', 'EX', 600);
  await dropKey(redis, key, 'r_b');
  assert.equal(await redis.get(key), 'r_a');
  await dropKey(redis, key, 'r_a');
  assert.equal(await redis.get(key), null);
});

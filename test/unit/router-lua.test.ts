// LuaScript (router/lua.ts): EVALSHA first, EVAL when Redis does not have the script, against a
// real Redis.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { LuaScript } from '../../src/router/lua.js';
import { connectRedis, type Redis } from '../../src/router/redis.js';
import { REDIS_URL } from '../helpers/stack.js';

let redis: Redis;
const key = `relay:test:lua:${randomBytes(6).toString('hex')}`;
// A script of this test's own: flushing Redis's script cache would not disturb other tests'.
const incr = new LuaScript(1, `return redis.call('INCRBY', KEYS[1], ARGV[1]) -- ${key}`);

before(() => {
  redis = connectRedis(REDIS_URL, 'test-lua', () => undefined, { autoPipelining: true });
});
after(async () => {
  await redis.del(key);
  await redis.quit();
});

test('a script Redis does not have runs by EVAL and is there for the next EVALSHA', { timeout: 20_000 }, async () => {
  assert.deepEqual(await redis.script('EXISTS', incr.sha), [0], 'never loaded');
  assert.equal(await incr.run<number>(redis, key, 2), 2);
  assert.deepEqual(await redis.script('EXISTS', incr.sha), [1], 'EVAL stored it');
  assert.equal(await incr.run<number>(redis, key, 3), 5);
});

test('calls in one auto-pipelined write all fall back, each once', { timeout: 20_000 }, async () => {
  await redis.set(key, 0);
  const fresh = new LuaScript(1, `return redis.call('INCR', KEYS[1]) -- ${key} pipelined`);
  const results = await Promise.all(Array.from({ length: 20 }, () => fresh.run<number>(redis, key)));
  assert.deepEqual([...results].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1), 'each ran exactly once');
});

test("a script's own error is not retried as EVAL", { timeout: 20_000 }, async () => {
  await redis.set(key, 0);
  const failing = new LuaScript(1, `redis.call('INCR', KEYS[1]) return redis.error_reply('ERR on purpose') -- ${key}`);
  await assert.rejects(failing.run(redis, key), /on purpose/);
  assert.equal(await redis.get(key), '1', 'ran once (EVAL after the NOSCRIPT), not again for its error');
  await assert.rejects(failing.run(redis, key), /on purpose/);
  assert.equal(await redis.get(key), '2', 'the second call ran it once, by EVALSHA');
});

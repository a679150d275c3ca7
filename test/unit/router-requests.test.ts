// Requests (router/requests.ts) against a real Redis: a new record's fields go to Redis as one
// JSON argument (relayCreate) and must come back exactly, whatever the SQL text holds.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connectRedis, keys, type Redis } from '../../src/router/redis.js';
import { Requests } from '../../src/router/requests.js';
import { REDIS_URL } from '../helpers/stack.js';

let redis: Redis;
const ids: string[] = [];
const connector = `cc-test-${randomBytes(4).toString('hex')}`;

before(() => {
  redis = connectRedis(REDIS_URL, 'test-requests', () => undefined, { autoPipelining: true });
});
after(async () => {
  await redis.del(...ids.map((id) => keys.request(id)), keys.inFlight(connector));
  await redis.quit();
});

test('a created request reads back field for field, SQL text and large numbers intact', { timeout: 20_000 }, async () => {
  const requests = new Requests(redis, 600);
  const id = `r_test${randomBytes(6).toString('hex')}`;
  ids.push(id);
  // Quotes, backslashes, newlines, a NUL, non-ASCII, a lone surrogate (JSON.parse lets one through
  // from a client's body) and a Lua pattern character: all through cjson.
  const sql = `SELECT 'a"b\\c', E'\\n' AS "x"\n-- ünïcødé ✓ %d \u0000 \ud800 end`;
  // 15+ significant digits: a Lua number would lose them (HSET writes numbers as %.14g).
  const deadline = 9_007_199_254_740_991;
  const t0 = Date.now();
  await requests.create({
    id,
    tenant: 't-x',
    connector,
    mode: 'offload',
    spec: { sql, database: 'pg', format: 'arrow' },
    deadline,
    offload: { uploadId: 'up/1+2=3', key: `results/${id}.arrow.zst`, partSize: 5 * 1024 * 1024 },
  });
  const rec = await requests.get(id);
  assert.ok(rec);
  assert.equal(rec.id, id);
  assert.equal(rec.tenant, 't-x');
  assert.equal(rec.connector, connector);
  assert.equal(rec.mode, 'offload');
  assert.deepEqual(rec.spec, { sql, database: 'pg', format: 'arrow' });
  assert.equal(rec.status, 'dispatched');
  assert.equal(rec.attempt, 1);
  assert.equal(rec.ackedAttempt, 0);
  assert.equal(rec.deadline, deadline);
  assert.ok(rec.leaseAt >= t0 && rec.leaseAt <= Date.now(), `lease_at ${rec.leaseAt}`);
  assert.equal(rec.createdAt, rec.updatedAt);
  assert.deepEqual(rec.offload, { uploadId: 'up/1+2=3', key: `results/${id}.arrow.zst`, partSize: 5 * 1024 * 1024 });
  assert.equal(rec.contiguous, 0);
  assert.equal(rec.bytes, 0);
  assert.equal(rec.chunks, 0);
  // Every field a string as written, none as a Lua number's text.
  const raw = await redis.hgetall(keys.request(id));
  assert.equal(raw.deadline, String(deadline));
  assert.equal(raw.part_size, String(5 * 1024 * 1024));
  assert.deepEqual(await redis.smembers(keys.inFlight(connector)), [id]);
  assert.ok((await redis.ttl(keys.request(id))) > 590, 'the record has its TTL');
});

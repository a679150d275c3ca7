// Hub (router/commands.ts) against a real Redis and real responses on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../src/log.js';
import { Bus } from '../../src/router/bus.js';
import { CommandLog, Hub } from '../../src/router/commands.js';
import { createMetrics } from '../../src/router/metrics.js';
import { connectRedis, keys, type Redis } from '../../src/router/redis.js';
import { closedResponse } from '../helpers/responses.js';
import { REDIS_URL } from '../helpers/stack.js';

let redis: Redis;
let sub: Redis;
let hub: Hub;

before(async () => {
  redis = connectRedis(REDIS_URL, 'test-hub', () => undefined);
  sub = connectRedis(REDIS_URL, 'test-hub-sub', () => undefined);
  const log = createLogger('test-hub', 'silent');
  const bus = new Bus(sub, log);
  await bus.start();
  hub = new Hub(redis, new CommandLog(redis), bus, { heartbeatS: 1, maxAgeS: 3600, instanceId: 'test-hub' }, createMetrics(), log);
});
after(async () => {
  hub.closeAll();
  await Promise.all([redis.quit(), sub.quit()]);
});

// The events route awaits auth before it opens the stream. A connection closed meanwhile had
// said 'close' already: the session stayed for good, pinging a dead socket, and the connector
// looked online (its presence refreshed by those pings) until a newer stream replaced it.
test('an event stream whose connection closed before it was opened leaves no session and no presence', async () => {
  const connector = `cc-hub-${randomBytes(4).toString('hex')}`;
  const { res, stop } = await closedResponse();
  try {
    await hub.open(connector, res, { lastEventId: null, version: null, concurrency: null });
    assert.equal(hub.isLocal(connector), false, 'no session kept for a closed connection');
    assert.equal(await redis.exists(keys.presence(connector)), 0, 'not marked online');
  } finally {
    stop();
    await redis.del(keys.presence(connector), keys.connector(connector));
  }
});

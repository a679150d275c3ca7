// A connector's presence (PROTOCOL.md §4: online while its event stream is open) is refreshed
// by its stream's heartbeats, written for all streams at once every second, and is gone with
// the stream.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { keys } from '../../src/router/redis.js';
import { Stack, sleep } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

let s: Stack;
before(async () => {
  s = await Stack.start({ connector: false, routerEnv: { RELAY_HEARTBEAT_S: '1' } });
});
after(async () => {
  await s?.stop();
});

test('heartbeats refresh a stream’s presence; a closed stream’s presence stays gone', async () => {
  const wire = await new WireConnector(s.routerUrl, s.connectorToken).connect();
  const key = keys.presence(s.connectorId);
  const first = await s.redis.hget(key, 'last_seen');
  assert.ok(first, 'presence written when the stream opened');
  // heartbeat_s 1: presence lives 2 × 1 + 5 = 7 s. After 3.5 s, two or three pings and at least
  // two flushes later, it was refreshed: a later last_seen and a TTL topped up.
  await sleep(3500);
  const seen = await s.redis.hget(key, 'last_seen');
  assert.ok(seen && seen > first, `last_seen ${seen} after ${first}`);
  const ttl = await s.redis.pttl(key);
  assert.ok(ttl > 7000 - 2500, `presence TTL ${ttl} ms: refreshed`);
  assert.ok(await s.redis.hget(keys.connector(s.connectorId), 'last_seen'), 'the connector record has last_seen too');
  wire.close();
  const end = Date.now() + 5000;
  while (Date.now() < end && (await s.redis.exists(key)) === 1) await sleep(50);
  assert.equal(await s.redis.exists(key), 0, 'presence removed with the stream');
  // A ping queued before the stream closed must not bring it back at the next flush.
  await sleep(2200);
  assert.equal(await s.redis.exists(key), 0, 'presence still gone after the next flushes');
});

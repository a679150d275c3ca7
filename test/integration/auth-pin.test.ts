// Auth against a real Redis: a connector with an open event stream stays resolved (pinStream)
// until its last stream closes, and a revocation ends that at once and for streams opened late.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Auth, sha256 } from '../../src/router/auth.js';
import { connectRedis, keys, type Redis } from '../../src/router/redis.js';
import { REDIS_URL, sleep } from '../helpers/stack.js';

let redis: Redis;
before(() => {
  redis = connectRedis(REDIS_URL, 'auth-pin-test');
});
after(async () => {
  await redis.quit();
});

/** A connector secret stored as `relay admin` would, under a fresh id; returns its header. */
async function connector(): Promise<{ header: string; hash: string; principal: { kind: 'connector'; tenant: string; id: string } }> {
  const secret = `ct_pin_${randomBytes(12).toString('hex')}`;
  const id = `cc-pin-${randomBytes(4).toString('hex')}`;
  const hash = sha256(secret);
  await redis.hset(keys.secret(hash), { kind: 'connector', tenant: 't-pin', id });
  await redis.hset(keys.connector(id), { tenant: 't-pin', token_hash: hash });
  return { header: `Bearer ${secret}`, hash, principal: { kind: 'connector', tenant: 't-pin', id } };
}

/** Removes the stored records, so that only a pin can still resolve them (the 2 s cache expires first). */
async function unprovision(c: { hash: string; principal: { id: string } }): Promise<void> {
  await redis.del(keys.secret(c.hash), keys.connector(c.principal.id));
  await sleep(2100);
}

test('a pinned connector resolves without its records until its last stream closes', async () => {
  const auth = new Auth(redis, undefined);
  const c = await connector();
  assert.deepEqual(await auth.authenticate(c.header), c.principal);
  const first = auth.pinStream(c.header, c.principal);
  const second = auth.pinStream(c.header, c.principal); // a newer stream before the old one closed
  await unprovision(c);
  assert.deepEqual(await auth.authenticate(c.header), c.principal);
  assert.equal(await auth.connectorTenant(c.principal.id), 't-pin');
  first();
  first(); // ending the same stream twice counts once
  assert.deepEqual(await auth.authenticate(c.header), c.principal, 'the second stream still holds it');
  second();
  await assert.rejects(auth.authenticate(c.header), /unknown or revoked/);
  assert.equal(await auth.connectorTenant(c.principal.id), null);
});

test('a revocation drops the pin at once, and a stream that authenticated just before it is not pinned', async () => {
  const auth = new Auth(redis, undefined);
  const c = await connector();
  await auth.authenticate(c.header);
  const end = auth.pinStream(c.header, c.principal);
  await unprovision(c);
  auth.forget(c.hash); // the bus's revoke event
  await assert.rejects(auth.authenticate(c.header), /unknown or revoked/);
  end(); // the stream closing afterwards changes nothing
  // A stream whose lookup raced the revocation: pinning it is refused.
  auth.pinStream(c.header, c.principal);
  await sleep(2100); // past the cached refusal
  await assert.rejects(auth.authenticate(c.header), /unknown or revoked/);
});

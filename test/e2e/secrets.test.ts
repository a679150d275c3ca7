// Secrets: stored only as SHA-256 hashes, never logged (a fingerprint is), and `relay admin
// revoke` (or rotating a connector token) takes effect within seconds, open event streams included.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { closeHttp, requestSync } from '../../src/client/index.js';
import { RelayError } from '../../src/protocol/errors.js';
import { fingerprint } from '../../src/log.js';
import { addClient, addConnector, sha256 } from '../../src/router/auth.js';
import { REDIS_URL, run, sleep, Stack } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

let s: Stack;

before(async () => {
  s = await Stack.start();
  await s.writeData('a.csv', 'id\n1\n');
});
after(async () => {
  await closeHttp();
  await s?.stop();
});

async function admin(...args: string[]): Promise<{ code: number | null; out: string }> {
  const p = run(['admin', ...args], { RELAY_REDIS_URL: REDIS_URL });
  const code = await p.exited;
  return { code, out: p.lines.join('\n') };
}

/** Every string Redis holds, keys and values. */
async function everythingInRedis(): Promise<string> {
  const out: string[] = [];
  for (const key of await s.redis.keys('*')) {
    out.push(key);
    const type = await s.redis.type(key);
    if (type === 'string') out.push((await s.redis.get(key)) ?? '');
    else if (type === 'hash') out.push(JSON.stringify(await s.redis.hgetall(key)));
    else if (type === 'set') out.push(...(await s.redis.smembers(key)));
    else if (type === 'zset') out.push(...(await s.redis.zrange(key, '0', '-1')));
    else if (type === 'list') out.push(...(await s.redis.lrange(key, 0, -1)));
    else if (type === 'stream') out.push(JSON.stringify(await s.redis.xrange(key, '-', '+')));
  }
  return out.join('\n');
}

const sync = (key: string) => requestSync({ routerUrl: s.routerUrl, apiKey: key }, { connector: s.connectorId, dataset: 'a.csv' }, new PassThrough());

test('secrets are stored as SHA-256 hashes only', async () => {
  assert.equal((await sync(s.clientKey)).bytes, 5);
  const all = await everythingInRedis();
  for (const secret of [s.clientKey, s.connectorToken, s.otherClientKey, s.otherConnectorToken, s.adminToken]) {
    assert.ok(!all.includes(secret), 'no secret in Redis in clear');
  }
  assert.ok(all.includes(`relay:secret:${sha256(s.clientKey)}`), 'the hash is the lookup key');
});

test('a revoked client key stops working within a second', async () => {
  const key = `rk_revoke_${randomBytes(12).toString('hex')}`;
  await addClient(s.redis, s.tenant, key);
  assert.equal((await sync(key)).bytes, 5, 'works before');
  const r = await admin('revoke', '--key', key);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /revoked client of tenant t1/);
  const t0 = Date.now();
  for (;;) {
    try {
      await sync(key);
    } catch (err) {
      assert.ok(err instanceof RelayError && err.code === 'UNAUTHORIZED', String(err));
      break;
    }
    assert.ok(Date.now() - t0 < 1000, 'revoked within a second');
    await sleep(50);
  }
  assert.notEqual((await admin('revoke', '--key', key)).code, 0, 'revoking twice says it is unknown');
});

test('revoking a connector token closes its open event stream within seconds; it cannot reconnect', async () => {
  const before = s.router.lines.length;
  const r = await admin('revoke', '--token', s.connectorToken);
  assert.equal(r.code, 0, r.out);
  const t0 = Date.now();
  await s.waitOnline(s.connectorId, false, 5000);
  assert.ok(Date.now() - t0 < 5000);
  assert.ok(s.router.lines.slice(before).some((l) => /"reason":"token revoked"/.test(l)), 'closed because of the revocation');
  const again = await fetch(`${s.routerUrl}/v1/connectors/events`, { headers: { authorization: `Bearer ${s.connectorToken}` } });
  assert.equal(again.status, 401);
  await again.body?.cancel();
});

test('rotating a connector token (add-connector with a new one) retires the old token and its stream', async () => {
  const wire = await new WireConnector(s.routerUrl, s.otherConnectorToken).connect();
  try {
    const fresh = `ct_rotated_${randomBytes(12).toString('hex')}`;
    await addConnector(s.redis, 't2', s.otherConnectorId, fresh);
    const t0 = Date.now();
    while (!wire.ended && Date.now() - t0 < 5000) await sleep(50);
    assert.ok(wire.ended, 'the old stream was closed');
    const old = await fetch(`${s.routerUrl}/v1/connectors/events`, { headers: { authorization: `Bearer ${s.otherConnectorToken}` } });
    assert.equal(old.status, 401);
    await old.body?.cancel();
    const renewed = await new WireConnector(s.routerUrl, fresh).connect();
    assert.equal(renewed.status, 200);
    renewed.close();
  } finally {
    wire.close();
  }
});

/** A connector call with `token`: the status of an ack for a request that does not exist (401 when the token is not accepted). */
async function ackStatus(token: string): Promise<number> {
  const r = await fetch(`${s.routerUrl}/v1/requests/r_nosuchrequest1/ack`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"attempt":1}' });
  await r.body?.cancel();
  return r.status;
}

test('a connector with its event stream open is authenticated without Redis until the stream closes; revoking it stops it at once', async () => {
  const id = `cc-pin-${randomBytes(3).toString('hex')}`;
  const token = `ct_pin_${randomBytes(12).toString('hex')}`;
  await addConnector(s.redis, s.tenant, id, token);
  const wire = await new WireConnector(s.routerUrl, token).connect();
  assert.equal(wire.status, 200);
  try {
    assert.notEqual(await ackStatus(token), 401, 'accepted while provisioned');
    // Its record removed behind the router's back: no lookup can resolve the token any more,
    // but the open stream keeps it known (the 2 s lookup cache has expired by then).
    const record = await s.redis.hgetall(`relay:secret:${sha256(token)}`);
    await s.redis.del(`relay:secret:${sha256(token)}`);
    await sleep(2200);
    assert.notEqual(await ackStatus(token), 401, 'still accepted: its stream is open');
    wire.close();
    const t0 = Date.now();
    while ((await ackStatus(token)) !== 401) {
      assert.ok(Date.now() - t0 < 3000, 'refused once its stream has closed');
      await sleep(50);
    }
    // Back in place, a second stream; a revocation ends it and the token at once.
    await s.redis.hset(`relay:secret:${sha256(token)}`, record);
    await sleep(2100); // the refusals above are cached for 2 s too
    const again = await new WireConnector(s.routerUrl, token).connect();
    assert.equal(again.status, 200);
    try {
      assert.notEqual(await ackStatus(token), 401);
      const r = await admin('revoke', '--token', token);
      assert.equal(r.code, 0, r.out);
      const t1 = Date.now();
      while ((await ackStatus(token)) !== 401) {
        assert.ok(Date.now() - t1 < 1000, 'revoked within a second');
        await sleep(50);
      }
    } finally {
      again.close();
    }
  } finally {
    wire.close();
  }
});

test('no secret ever appears in the logs; the connector names its token by fingerprint', async () => {
  const logs = [...s.router.lines, ...(s.connector?.lines ?? [])].join('\n');
  assert.ok(logs.length > 1000, 'there are logs to look at');
  for (const secret of [s.clientKey, s.connectorToken, s.otherClientKey, s.otherConnectorToken, s.adminToken]) {
    assert.ok(!logs.includes(secret), 'a secret was logged');
  }
  assert.ok(s.connector!.lines.some((l) => l.includes(`"tokenFingerprint":"${fingerprint(s.connectorToken)}"`)), 'fingerprint logged');
  assert.ok(s.router.lines.some((l) => l.includes(`"client":"${sha256(s.clientKey).slice(0, 12)}"`)), 'the router names the client key by its fingerprint');
});

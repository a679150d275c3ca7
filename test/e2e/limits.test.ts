// Concurrency limits through Redis: RATE_LIMITED with Retry-After across router instances,
// slots given back on every ending (and by a crashed router's lapsing leases), per-tenant
// fairness, the per-connector cap; and the size limits on headers and JSON.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { request } from 'undici';
import { xxh64 } from '../../src/protocol/checksum.js';
import { addConnector } from '../../src/router/auth.js';
import { keys } from '../../src/router/redis.js';
import { REDIS_URL, run, sleep, Stack, type Proc } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

let s: Stack;
let wireA: WireConnector;
let wireSibling: WireConnector;
let wireB: WireConnector;
const sibling = { id: 'cc-28-aa-03', token: `ct_sibling_${randomBytes(8).toString('hex')}` };
const LEASE_S = 2;

const routerEnv = {
  RELAY_LIMIT_SYNC: '4',
  RELAY_LIMIT_STREAM: '10',
  RELAY_LIMIT_PER_CONNECTOR: '3',
  RELAY_LIMIT_LEASE_S: String(LEASE_S),
  RELAY_ACK_TIMEOUT_S: '60',
};

before(async () => {
  s = await Stack.start({ connector: false, routerEnv });
  await addConnector(s.redis, s.tenant, sibling.id, sibling.token);
  wireA = await new WireConnector(s.routerUrl, s.connectorToken).connect();
  wireSibling = await new WireConnector(s.routerUrl, sibling.token).connect();
  wireB = await new WireConnector(s.routerUrl, s.otherConnectorToken).connect();
});
after(async () => {
  for (const w of [wireA, wireSibling, wireB]) w?.close();
  await s?.stop();
});

interface Ask {
  res: Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>;
  abort(): void;
}

function ask(mode: string, key: string, connector: string, opts: { url?: string; timeoutS?: number; idempotencyKey?: string } = {}): Ask {
  const ctrl = new AbortController();
  const res = request(`${opts.url ?? s.routerUrl}/v1/datasets/request-${mode}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {}),
    },
    body: JSON.stringify({ connector, dataset: 'd.csv', timeout_s: opts.timeoutS ?? 60 }),
    signal: ctrl.signal,
  }).then(async (r) => ({ status: r.statusCode, headers: r.headers, text: await r.body.text() }));
  res.catch(() => undefined);
  return { res, abort: () => ctrl.abort() };
}

/** A request that was let through: its command reached the connector. */
async function admitted(wire: WireConnector, a: Ask): Promise<{ id: string; ask: Ask }> {
  const first = await Promise.race([wire.command(undefined, 5000), a.res.then((r) => Promise.reject(new Error(`answered ${r.status} ${r.text}`)))]);
  return { id: first.data.request_id, ask: a };
}

async function limited(a: Ask): Promise<{ retryAfter: number; retryAfterMs: number; message: string }> {
  const r = await a.res;
  assert.equal(r.status, 429, r.text);
  const body = JSON.parse(r.text) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'RATE_LIMITED');
  return { retryAfter: Number(r.headers['retry-after']), retryAfterMs: Number(r.headers['retry-after-ms']), message: body.error.message };
}

// Live leases only: a lapsed one (score = expiry in the past) is free, whether or not an
// acquire has pruned it yet (the key itself expires later, at twice the lease time).
const held = async (mode = 'sync') => s.redis.zcount(keys.limitClass(mode), Date.now(), '+inf');

/** A second router instance on the same Redis; returns it and its URL. */
async function secondRouter(env: Record<string, string> = {}): Promise<{ proc: Proc; url: string }> {
  const proc = run(['router'], { RELAY_PORT: '0', RELAY_HOST: '127.0.0.1', RELAY_REDIS_URL: REDIS_URL, RELAY_S3_DIR: join(s.dir, 's3-second'), RELAY_ADMIN_TOKEN: s.adminToken, ...routerEnv, ...env });
  const end = Date.now() + 20_000;
  let line: string | undefined;
  while (!line && Date.now() < end) {
    line = proc.lines.find((l) => /router listening/.test(l));
    await sleep(50);
  }
  assert.ok(line, 'second router started');
  return { proc, url: (JSON.parse(line) as { url: string }).url };
}

async function stopRouter(p: Proc | null): Promise<void> {
  if (p && p.child.exitCode === null) {
    p.child.kill('SIGTERM');
    await p.exited;
  }
}

async function until(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

const cancel = (id: string) => fetch(`${s.routerUrl}/v1/requests/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${s.clientKey}` } });
const cancelB = (id: string) => fetch(`${s.routerUrl}/v1/requests/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${s.otherClientKey}` } });

test('a slot is given back on every ending: complete, error, cancel, client gone, deadline', async () => {
  assert.equal(await held(), 0);
  // complete
  const done = await admitted(wireA, ask('sync', s.clientKey, s.connectorId));
  assert.equal(await held(), 1);
  await wireA.post(`/v1/requests/${done.id}/ack`, { attempt: 1 });
  const body = Buffer.from('ok');
  await fetch(`${s.routerUrl}/v1/requests/${done.id}/result`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.connectorToken}`, 'x-relay-attempt': '1', 'x-relay-checksum': xxh64(body), 'x-relay-decoded-length': '2' },
    body,
  });
  assert.equal((await done.ask.res).text, 'ok');
  await until('release after complete', async () => (await held()) === 0);
  // error
  const failed = await admitted(wireA, ask('sync', s.clientKey, s.connectorId));
  await wireA.post(`/v1/requests/${failed.id}/error`, { attempt: 1, code: 'DATASET_NOT_FOUND', message: 'no' });
  assert.equal((await failed.ask.res).status, 404);
  await until('release after error', async () => (await held()) === 0);
  // cancel
  const cancelled = await admitted(wireA, ask('stream', s.clientKey, s.connectorId));
  assert.equal(await held('stream'), 1);
  await cancel(cancelled.id);
  assert.equal((await cancelled.ask.res).status, 410);
  await until('release after cancel', async () => (await held('stream')) === 0);
  // client gone
  const gone = await admitted(wireA, ask('sync', s.clientKey, s.connectorId));
  gone.ask.abort();
  await until('release after the client went away', async () => (await held()) === 0);
  // deadline
  const late = await admitted(wireA, ask('sync', s.clientKey, s.connectorId, { timeoutS: 1 }));
  assert.equal((await late.ask.res).status, 504);
  await until('release after the deadline', async () => (await held()) === 0);
  assert.equal(await s.redis.zcard(keys.limitConnector(s.connectorId)), 0, 'the connector cap too');
});

test('the per-connector cap: a fourth command for one connector is RATE_LIMITED, another connector is not held back', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await admitted(wireA, ask('stream', s.clientKey, s.connectorId))).id);
  const r = await limited(ask('stream', s.clientKey, s.connectorId));
  assert.match(r.message, /connector cc-28-aa-01 has 3 commands in flight/);
  const other = await admitted(wireSibling, ask('stream', s.clientKey, sibling.id));
  for (const id of [...ids, other.id]) await cancel(id);
  await until('all released', async () => (await held('stream')) === 0);
});

test('one tenant flooding cannot starve another: freed slots go to the waiting tenant up to its fair share', async () => {
  // Tenant t1 takes all 4 sync slots (over two connectors: the per-connector cap is 3).
  const t1: string[] = [];
  for (const [wire, id] of [[wireA, s.connectorId], [wireA, s.connectorId], [wireSibling, sibling.id], [wireSibling, sibling.id]] as const) {
    t1.push((await admitted(wire, ask('sync', s.clientKey, id))).id);
  }
  const full = await limited(ask('sync', s.clientKey, s.connectorId));
  assert.match(full.message, /4 sync requests are running, the limit is 4/);
  assert.ok(full.retryAfter >= 1 && full.retryAfterMs >= 1000 && full.retryAfterMs <= 1500, `Retry-After ${full.retryAfter} / ${full.retryAfterMs} ms`);
  // Tenant t2 arrives: everything is taken, so it waits (and is remembered as waiting).
  await limited(ask('sync', s.otherClientKey, s.otherConnectorId));

  // t1 keeps flooding; each time one of its requests ends, t2 (not t1) gets the slot, until
  // each holds its fair share of 2.
  const t2: string[] = [];
  for (let round = 0; round < 2; round++) {
    // t2 retries while everything is taken (and so stays known as waiting)...
    await limited(ask('sync', s.otherClientKey, s.otherConnectorId));
    await cancel(t1.shift()!);
    await until('a slot freed', async () => (await held()) === 3);
    const flood = await limited(ask('sync', s.clientKey, round === 0 ? s.connectorId : sibling.id));
    assert.match(flood.message, /fair share while others wait is 2/);
    t2.push((await admitted(wireB, ask('sync', s.otherClientKey, s.otherConnectorId))).id);
  }
  // 2 and 2: neither tenant gets more while the other waits.
  await limited(ask('sync', s.clientKey, sibling.id));
  await limited(ask('sync', s.otherClientKey, s.otherConnectorId));
  for (const id of t1) await cancel(id);
  for (const id of t2) await cancelB(id);
  await until('all released', async () => (await held()) === 0);
  // Alone again (the waiting marks lapse), a tenant may use every slot.
  await sleep(5200);
  const alone: string[] = [];
  for (const [wire, id] of [[wireA, s.connectorId], [wireA, s.connectorId], [wireSibling, sibling.id], [wireSibling, sibling.id]] as const) {
    alone.push((await admitted(wire, ask('sync', s.clientKey, id))).id);
  }
  for (const id of alone) await cancel(id);
  await until('all released', async () => (await held()) === 0);
});

test('size limits: headers, JSON depth and body size answer BAD_REQUEST in the error format', async () => {
  const huge = await request(`${s.routerUrl}/v1/connectors`, { headers: { authorization: `Bearer ${s.clientKey}`, 'x-pad': 'p'.repeat(20_000) } });
  assert.equal(huge.statusCode, 400);
  const hb = (await huge.body.json()) as { error: { code: string; message: string } };
  assert.equal(hb.error.code, 'BAD_REQUEST');
  assert.match(hb.error.message, /headers are over the limit of 16384 bytes/);

  const post = async (path: string, key: string, body: string) => {
    const r = await request(`${s.routerUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
    return { status: r.statusCode, body: (await r.body.json()) as { error: { code: string; message: string } } };
  };
  const deep = await post('/v1/datasets/request-sync', s.clientKey, `{"connector":"${s.connectorId}","dataset":"a","x":${'['.repeat(5000)}${']'.repeat(5000)}}`);
  assert.deepEqual([deep.status, deep.body.error.code], [400, 'BAD_REQUEST']);
  assert.match(deep.body.error.message, /nested deeper than 16/);
  // Brackets inside strings are text, not nesting.
  const text = await post('/v1/datasets/request-sync', s.clientKey, JSON.stringify({ connector: 'no-such', dataset: '['.repeat(100) }));
  assert.deepEqual([text.status, text.body.error.code], [404, 'NOT_FOUND']);
  const big = await post('/v1/requests/r_abcdefghijkl/ack', s.connectorToken, JSON.stringify({ attempt: 1, pad: 'x'.repeat(100_000) }));
  assert.deepEqual([big.status, big.body.error.code], [400, 'BAD_REQUEST']);
  assert.match(big.body.error.message, /over the limit of 65536 bytes/);
  const bigClient = await post('/v1/datasets/request-sync', s.clientKey, JSON.stringify({ connector: s.connectorId, sql: 'x'.repeat(1_200_000) }));
  assert.deepEqual([bigClient.status, bigClient.body.error.code], [400, 'BAD_REQUEST']);
});

test('a repeat takes over the slot of its request: re-attaching after a router crash is not held back by the dead router\'s slots', async () => {
  // The second router's leases last 30 s, so only a take-over can free them in this test.
  const second = await secondRouter({ RELAY_LIMIT_LEASE_S: '30' });
  try {
    const connectorSlots = async () => s.redis.zcount(keys.limitConnector(s.connectorId), Date.now(), '+inf');
    const repeatKeys = ['slot-a', 'slot-b', 'slot-c'].map((k) => `${k}-${randomBytes(4).toString('hex')}`);
    const first: string[] = [];
    for (const k of repeatKeys) first.push((await admitted(wireA, ask('stream', s.clientKey, s.connectorId, { url: second.url, idempotencyKey: k }))).id);
    assert.equal(await connectorSlots(), 3, 'the connector cap (3) is full');
    second.proc.child.kill('SIGKILL');
    await second.proc.exited;
    // Each client re-attaches through the first router: its request's slot moves with it.
    const again: string[] = [];
    for (const k of repeatKeys) again.push((await admitted(wireA, ask('stream', s.clientKey, s.connectorId, { idempotencyKey: k }))).id);
    assert.deepEqual(again, first, 'the same requests, re-attached');
    assert.equal(await held('stream'), 3, 'one slot per request, not one per answer');
    assert.equal(await connectorSlots(), 3);
    // A new request refused for the cap leaves no key behind: once there is room, its retry
    // with the same key is a new request at once (not after the wait for an unstored record).
    const fourth = `slot-d-${randomBytes(4).toString('hex')}`;
    await limited(ask('stream', s.clientKey, s.connectorId, { idempotencyKey: fourth }));
    await cancel(first[0]!);
    await until('a slot freed', async () => (await connectorSlots()) === 2);
    const t0 = Date.now();
    const admittedFourth = await admitted(wireA, ask('stream', s.clientKey, s.connectorId, { idempotencyKey: fourth }));
    assert.ok(Date.now() - t0 < 2000, `admitted after ${Date.now() - t0} ms`);
    assert.ok(!first.includes(admittedFourth.id));
    for (const id of [...first.slice(1), admittedFourth.id]) await cancel(id);
    await until('all released', async () => (await held('stream')) === 0 && (await connectorSlots()) === 0);
  } finally {
    await stopRouter(second.proc);
  }
});

test('limits hold across router instances through Redis, and a crashed router\'s slots come back when their leases lapse', async () => {
  let second: Proc | null = null;
  try {
    const started = await secondRouter();
    second = started.proc;
    const url2 = started.url;

    // Four slots taken through the first router...
    for (const [wire, id] of [[wireA, s.connectorId], [wireA, s.connectorId], [wireSibling, sibling.id], [wireSibling, sibling.id]] as const) {
      await admitted(wire, ask('sync', s.clientKey, id));
    }
    // ...are full for the second one too.
    const r = await limited(ask('sync', s.clientKey, s.connectorId, { url: url2 }));
    assert.ok(r.retryAfter >= 1);
    // Leases are renewed while the requests run: still full after twice the lease time.
    await sleep(LEASE_S * 2 * 1000);
    await limited(ask('sync', s.clientKey, s.connectorId, { url: url2 }));

    // The first router crashes holding all four: they come back once the leases lapse.
    s.router.child.kill('SIGKILL');
    await s.router.exited;
    const t0 = Date.now();
    await until('slots back after the crash', async () => (await held()) === 0, (LEASE_S + 3) * 1000);
    assert.ok(Date.now() - t0 <= (LEASE_S + 2) * 1000);
    // The second router admits again (not answered 429; its slot is taken).
    const a = ask('sync', s.clientKey, s.connectorId, { url: url2 });
    await until('admitted by the second router', async () => (await held()) === 1);
    assert.equal(await Promise.race([a.res.then((x) => x.status), sleep(500).then(() => 'waiting')]), 'waiting');
    a.abort();
    await until('released by the second router', async () => (await held()) === 0);
  } finally {
    await stopRouter(second);
  }
});

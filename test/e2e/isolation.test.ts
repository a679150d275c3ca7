// The isolation matrix: every route, every wrong principal. Three live requests of tenant t1
// (sync, stream, offload) are held open on connector A at attempt 2 while every other secret
// pokes at them; each poke must be refused (401/403/404/410) with nothing but an error in the
// body, and afterwards all three requests still complete byte-identical.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { xxh64 } from '../../src/protocol/checksum.js';
import { addConnector } from '../../src/router/auth.js';
import { Stack, CHUNK } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

let s: Stack;
let wireA: WireConnector;
/** A second connector of the same tenant, and the other tenant's connector. */
const sibling = { id: 'cc-28-aa-03', token: `ct_sibling_${randomBytes(8).toString('hex')}` };
const MARKER = 'TOP-SECRET-MARKER-7f3a';
const DATASET = 'finance/payroll-2026.csv';

before(async () => {
  s = await Stack.start({
    connector: false,
    routerEnv: { RELAY_ACK_TIMEOUT_S: '1', RELAY_ATTEMPTS: '4', RELAY_BACKOFF_S: '0.1', RELAY_SYNC_LIMIT_BYTES: String(2.5 * CHUNK) },
  });
  await addConnector(s.redis, s.tenant, sibling.id, sibling.token);
  wireA = await new WireConnector(s.routerUrl, s.connectorToken).connect();
});
after(async () => {
  wireA?.close();
  await s?.stop();
});

const payload = (n: number) => Buffer.concat([Buffer.from(`${MARKER}\n`), randomBytes(n)]).subarray(0, n);

function clientPost(mode: string) {
  return request(`${s.routerUrl}/v1/datasets/request-${mode}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.clientKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ connector: s.connectorId, dataset: DATASET, timeout_s: 120 }),
  });
}

/** Starts a request and lets attempt 1 lapse (never acked), so attempt 1 is stale; acks attempt 2. */
async function liveAtAttempt2(mode: string) {
  const answer = clientPost(mode);
  const first = await wireA.command();
  const id = first.data.request_id;
  assert.equal(first.data.attempt, 1);
  const second = await wireA.next((e) => e.event === 'command' && JSON.parse(e.data).request_id === id && JSON.parse(e.data).attempt === 2, 15_000);
  assert.equal((await wireA.post(`/v1/requests/${id}/ack`, { attempt: 2 })).status, 204);
  return { id, answer, command: JSON.parse(second.data) as { offload?: { key: string } } };
}

interface Poke {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

function uploadHeaders(body: Buffer, attempt: number): Record<string, string> {
  return { 'x-relay-attempt': String(attempt), 'x-relay-checksum': xxh64(body), 'x-relay-decoded-length': String(body.length), 'content-type': 'application/octet-stream' };
}

/** Every connector route for request `id`, as sent for `attempt`. */
function connectorRoutes(id: string, attempt: number): Poke[] {
  const chunk = payload(CHUNK);
  const json = (path: string, body: unknown): Poke => ({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return [
    json(`/v1/requests/${id}/ack`, { attempt }),
    json(`/v1/requests/${id}/stream/init`, { attempt, content_type: 'text/csv', total_bytes: null }),
    // Index 2 with a full chunk: on the sync request it would go over the sync limit, which
    // must not let a stranger (or a stale attempt) fail the request.
    { method: 'POST', path: `/v1/requests/${id}/stream/chunk/2`, headers: uploadHeaders(chunk, attempt), body: chunk },
    { method: 'POST', path: `/v1/requests/${id}/stream/chunk/0`, headers: uploadHeaders(chunk, attempt), body: chunk },
    json(`/v1/requests/${id}/stream/complete`, { attempt, chunks: 1, bytes: 1, checksum: '0000000000000000' }),
    { method: 'POST', path: `/v1/requests/${id}/result`, headers: uploadHeaders(Buffer.from('evil'), attempt), body: 'evil' },
    json(`/v1/requests/${id}/error`, { attempt, code: 'CONNECTOR_ERROR', message: 'injected' }),
    json(`/v1/requests/${id}/offload/parts`, { attempt, parts: [1] }),
    json(`/v1/requests/${id}/offload/complete`, { attempt, parts: [{ part: 1, etag: '"x"' }], bytes: 4, checksum: '0000000000000000', content_encoding: 'identity' }),
  ];
}

function clientRoutes(id: string): Poke[] {
  const body = JSON.stringify({ connector: s.connectorId, dataset: DATASET });
  return [
    ...['sync', 'stream', 'offload'].map((m) => ({ method: 'POST', path: `/v1/datasets/request-${m}`, headers: { 'content-type': 'application/json' }, body })),
    { method: 'GET', path: `/v1/requests/${id}` },
    { method: 'DELETE', path: `/v1/requests/${id}` },
  ];
}

async function poke(p: Poke, secret: string | null, authHeader?: string) {
  const headers: Record<string, string> = { ...p.headers };
  if (authHeader) headers.authorization = authHeader;
  else if (secret !== null) headers.authorization = `Bearer ${secret}`;
  const res = await fetch(`${s.routerUrl}${p.path}`, { method: p.method, headers, ...(p.body !== undefined ? { body: typeof p.body === 'string' ? p.body : new Uint8Array(p.body) } : {}) });
  const text = await res.text();
  return { status: res.status, text };
}

const secretsOf = () => ({
  none: null,
  unknown: `rk_${randomBytes(24).toString('base64url')}`,
  adminLike: `${s.adminToken}x`,
});

/** A refusal: allowed status, the error format, and nothing of the request in it. */
function assertRefused(what: string, r: { status: number; text: string }, allowed: number[], objectKey: string) {
  assert.ok(allowed.includes(r.status), `${what}: status ${r.status} not in ${allowed} (${r.text})`);
  const body = JSON.parse(r.text) as Record<string, unknown>;
  assert.equal(body.status, 'error', what);
  for (const k of Object.keys(body)) assert.ok(['status', 'error', 'request_id'].includes(k), `${what}: unexpected field ${k}`);
  assert.deepEqual(Object.keys(body.error as object).sort(), ['code', 'message'], what);
  for (const leak of [MARKER, DATASET, objectKey, 'payroll', s.clientKey, s.connectorToken]) assert.ok(!r.text.includes(leak), `${what}: body leaks ${leak}: ${r.text}`);
}

test('every route refuses every wrong principal, and the live requests finish untouched', async () => {
  const wireB = await new WireConnector(s.routerUrl, s.otherConnectorToken).connect();
  const wireSibling = await new WireConnector(s.routerUrl, sibling.token).connect();
  try {
    const sync = await liveAtAttempt2('sync');
    const stream = await liveAtAttempt2('stream');
    const offload = await liveAtAttempt2('offload');
    const objectKey = offload.command.offload!.key;

    // Some real progress first, so a stray call has something to damage.
    const syncData = payload(2 * CHUNK);
    assert.equal((await wireA.post(`/v1/requests/${sync.id}/stream/init`, { attempt: 2, content_type: 'text/csv', total_bytes: syncData.length })).status, 204);
    assert.equal((await wireA.chunk(sync.id, 0, syncData.subarray(0, CHUNK), { attempt: 2 })).status, 201);
    assert.equal((await wireA.chunk(sync.id, 1, syncData.subarray(CHUNK), { attempt: 2 })).status, 201);
    const streamData = payload(CHUNK);
    assert.equal((await wireA.post(`/v1/requests/${stream.id}/stream/init`, { attempt: 2, content_type: 'text/csv' })).status, 204);
    const streamAnswer = await stream.answer;
    assert.equal(streamAnswer.statusCode, 200);
    const streamBody = streamAnswer.body.arrayBuffer();

    let checked = 0;
    const anon = secretsOf();
    for (const live of [sync, stream, offload]) {
      // Connector routes.
      for (const route of connectorRoutes(live.id, 2)) {
        const what = (who: string) => `${who} ${route.method} ${route.path}`;
        for (const [who, secret] of Object.entries(anon)) {
          assertRefused(what(who), await poke(route, secret), [401], objectKey);
          checked++;
        }
        assertRefused(what('basic auth'), await poke(route, null, `Basic ${Buffer.from(`x:${s.connectorToken}`).toString('base64')}`), [401], objectKey);
        assertRefused(what('client key'), await poke(route, s.clientKey), [403], objectKey);
        assertRefused(what('other tenant client key'), await poke(route, s.otherClientKey), [403], objectKey);
        assertRefused(what('admin secret'), await poke(route, s.adminToken), [403], objectKey);
        assertRefused(what("the other tenant's connector"), await poke(route, s.otherConnectorToken), [403], objectKey);
        assertRefused(what('a sibling connector of the same tenant'), await poke(route, sibling.token), [403], objectKey);
        checked += 6;
      }
      // The right connector, a stale attempt: GONE, for every upload route.
      for (const route of connectorRoutes(live.id, 1)) {
        assertRefused(`stale attempt ${route.path}`, await poke(route, s.connectorToken), [410], objectKey);
        checked++;
      }
      // The right connector, a request id that does not exist.
      for (const route of connectorRoutes(`r_${randomBytes(12).toString('base64url')}`, 2)) {
        assertRefused(`unknown request ${route.path}`, await poke(route, s.connectorToken), [404], objectKey);
        checked++;
      }
      // Client routes.
      for (const route of clientRoutes(live.id)) {
        const what = (who: string) => `${who} ${route.method} ${route.path}`;
        for (const [who, secret] of Object.entries(anon)) {
          assertRefused(what(who), await poke(route, secret), [401], objectKey);
          checked++;
        }
        assertRefused(what('connector token'), await poke(route, s.connectorToken), [403], objectKey);
        assertRefused(what("another tenant's client key"), await poke(route, s.otherClientKey), [404], objectKey);
        checked += 2;
      }
    }
    // The event stream and the fleet list.
    for (const [who, secret, status] of [['none', null, 401], ['unknown', anon.unknown, 401], ['client key', s.clientKey, 403], ['admin', s.adminToken, 403]] as const) {
      assertRefused(`${who} GET events`, await poke({ method: 'GET', path: '/v1/connectors/events' }, secret), [status], objectKey);
    }
    assertRefused('connector token GET /v1/connectors', await poke({ method: 'GET', path: '/v1/connectors' }, s.connectorToken), [403], objectKey);
    assertRefused('none GET /v1/connectors', await poke({ method: 'GET', path: '/v1/connectors' }, null), [401], objectKey);
    const fleet = JSON.parse((await poke({ method: 'GET', path: '/v1/connectors' }, s.otherClientKey)).text) as { connector_id: string; tenant: string }[];
    assert.deepEqual(fleet.map((c) => c.tenant), ['t2'], "a client sees its own tenant's connectors only");
    for (const secret of [s.clientKey, s.connectorToken, null]) {
      const r = await poke({ method: 'GET', path: '/admin/queues/' }, secret);
      assert.equal(r.status, 401, 'the dashboard needs the admin secret');
    }
    assert.ok(checked > 300, `walked ${checked} combinations`);

    // Nothing above changed anything: every request is still live, at attempt 2.
    for (const live of [sync, stream, offload]) {
      const st = JSON.parse((await poke({ method: 'GET', path: `/v1/requests/${live.id}` }, s.clientKey)).text) as { status: string; attempt: number };
      assert.ok(['dispatched', 'running'].includes(st.status), `${live.id} is ${st.status}`);
      assert.equal(st.attempt, 2);
    }

    // Finish all three the right way: byte-identical answers.
    assert.equal((await wireA.post(`/v1/requests/${sync.id}/stream/complete`, { attempt: 2, chunks: 2, bytes: syncData.length, checksum: xxh64(syncData) })).status, 204);
    const syncAnswer = await sync.answer;
    assert.equal(syncAnswer.statusCode, 200);
    assert.deepEqual(Buffer.from(await syncAnswer.body.arrayBuffer()), syncData);

    assert.equal((await wireA.chunk(stream.id, 0, streamData, { attempt: 2 })).status, 201);
    assert.equal((await wireA.post(`/v1/requests/${stream.id}/stream/complete`, { attempt: 2, chunks: 1, bytes: streamData.length, checksum: xxh64(streamData) })).status, 204);
    assert.deepEqual(Buffer.from(await streamBody), streamData);

    const offData = payload(1000);
    const parts = (await (await wireA.post(`/v1/requests/${offload.id}/offload/parts`, { attempt: 2, parts: [1] })).json()) as { urls: Record<string, string> };
    const put = await fetch(parts.urls['1']!, { method: 'PUT', body: new Uint8Array(offData) });
    assert.equal(put.status, 200);
    const etag = put.headers.get('etag')!;
    const done = await wireA.post(`/v1/requests/${offload.id}/offload/complete`, { attempt: 2, parts: [{ part: 1, etag }], bytes: offData.length, checksum: xxh64(offData), content_encoding: 'identity' });
    assert.equal(done.status, 204);
    const offAnswer = (await (await offload.answer).body.json()) as { download_url: string; checksum: string };
    assert.equal(offAnswer.checksum, xxh64(offData));
    assert.deepEqual(Buffer.from(await (await fetch(offAnswer.download_url)).arrayBuffer()), offData);

    // The strangers' event streams never saw a command of tenant t1's connector.
    assert.ok(!wireB.events.some((e) => e.event === 'command'), 'connector B got no command');
    assert.ok(!wireSibling.events.some((e) => e.event === 'command'), 'the sibling connector got no command');
  } finally {
    wireB.close();
    wireSibling.close();
  }
});

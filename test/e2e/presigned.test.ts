// Presigned URLs against a real S3 endpoint (s3rver): part URLs and GET URLs expire and an
// expired one is refused; a fresh part URL is handed out on request; object keys are
// unguessable; the connector copes with part URLs that live only a second.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { request } from 'undici';
import { closeHttp, requestOffload } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { addConnector } from '../../src/router/auth.js';
import { sleep, Stack } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

let s: Stack;
let wire: WireConnector;
const wireConn = { id: 'cc-28-aa-0d', token: `ct_wire_${randomBytes(8).toString('hex')}` };

before(async () => {
  s = await Stack.start({ routerEnv: { RELAY_PART_URL_TTL_S: '1', RELAY_GET_URL_TTL_S: '2' } });
  await addConnector(s.redis, s.tenant, wireConn.id, wireConn.token);
  wire = await new WireConnector(s.routerUrl, wireConn.token).connect();
});
after(async () => {
  wire?.close();
  await closeHttp();
  await s?.stop();
});

test('an expired part URL is refused; asking again gives a fresh one; an expired GET URL is refused', async () => {
  const answer = request(`${s.routerUrl}/v1/datasets/request-offload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.clientKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ connector: wireConn.id, dataset: 'x.bin', timeout_s: 60 }),
  });
  const { data: cmd } = await wire.command();
  const id = cmd.request_id;
  const key = (cmd as unknown as { offload: { key: string } }).offload.key;
  assert.match(key, new RegExp(`^t1/\\d{4}-\\d{2}-\\d{2}/${id}-[0-9a-f]{32}$`), 'tenant/day/request-<128 random bits>');
  await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
  const parts = async () => (await (await wire.post(`/v1/requests/${id}/offload/parts`, { attempt: 1, parts: [1] })).json()) as { urls: Record<string, string>; expires_at: string };
  const first = await parts();
  assert.match(first.urls['1']!, /X-Amz-Expires=1&/);
  assert.ok(Date.parse(first.expires_at) - Date.now() <= 1000);
  const data = randomBytes(4096);
  await sleep(2100);
  const expired = await fetch(first.urls['1']!, { method: 'PUT', body: new Uint8Array(data) });
  assert.equal(expired.status, 403, 'an expired part URL is refused');
  await expired.body?.cancel();

  // S3 dates a signature to the whole second (X-Amz-Date), so a 1-second URL signed late in a
  // second lives only what is left of it: ask for the fresh one just after a second begins.
  await sleep(1000 - (Date.now() % 1000) + 20);
  const fresh = await parts();
  const put = await fetch(fresh.urls['1']!, { method: 'PUT', body: new Uint8Array(data) });
  assert.equal(put.status, 200);
  const etag = put.headers.get('etag')!;
  assert.equal((await wire.post(`/v1/requests/${id}/offload/complete`, { attempt: 1, parts: [{ part: 1, etag }], bytes: data.length, checksum: xxh64(data), content_encoding: 'identity' })).status, 204);
  const body = (await (await answer).body.json()) as { download_url: string; expires_at: string };
  assert.match(body.download_url, /X-Amz-Expires=2&/);
  assert.ok(Date.parse(body.expires_at) - Date.now() <= 2000);
  const got = await fetch(body.download_url);
  assert.deepEqual(Buffer.from(await got.arrayBuffer()), data, 'works while fresh');
  await sleep(2600);
  const late = await fetch(body.download_url);
  assert.equal(late.status, 403, 'an expired GET URL is refused');
  await late.body?.cancel();
});

test('the connector uploads through part URLs that live one second; its download URL expires', async () => {
  const file = await s.writeData('parts.bin', randomBytes(11 * 1024 * 1024 + 5));
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (d: Buffer) => chunks.push(d));
  const r = await requestOffload(s.clientCfg(), { connector: s.connectorId, dataset: 'parts.bin' }, out);
  assert.equal(r.bytes, file.length);
  assert.ok(Buffer.concat(chunks).equals(file));
  const urlOnly = await requestOffload(s.clientCfg(), { connector: s.connectorId, dataset: 'parts.bin' }, new PassThrough(), { urlOnly: true });
  await sleep(2600);
  const res = await fetch(urlOnly.downloadUrl!);
  assert.equal(res.status, 403);
  await res.body?.cancel();
});

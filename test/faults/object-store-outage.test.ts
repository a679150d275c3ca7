// Fault (f): the object store is unreachable from the connector for a few seconds during an
// offload (its presigned part PUTs go through a proxy that refuses connections). The connector
// retries the parts; the result must arrive byte-identical.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { closeHttp, requestOffload } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { Stack, sleep } from '../helpers/stack.js';

let s: Stack;
let proxy: FaultProxy;
before(async () => {
  // The proxy's port goes into the presigned URLs; its target (the embedded store's port) is
  // known only once the router has started it.
  proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: 9 } });
  s = await Stack.start({ routerEnv: { RELAY_S3_PUBLIC_ENDPOINT: proxy.url() } });
  const line = s.router.lines.find((l) => l.includes('embedded S3-compatible store'));
  const endpoint = new URL((JSON.parse(line!) as { endpoint: string }).endpoint);
  proxy.retarget({ host: endpoint.hostname, port: Number(endpoint.port) });
});
after(async () => {
  await closeHttp();
  await s.stop();
  await proxy.close();
});

test('the store is unreachable for 3 s during an offload: the result still arrives byte-identical', async () => {
  const data = await s.writeData('offload-outage.bin', randomBytes(16 * 1024 * 1024));
  proxy.set({ refuse: true });
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (d: Buffer) => parts.push(d));
  const pending = requestOffload(s.clientCfg(), { connector: s.connectorId, dataset: 'offload-outage.bin' }, out, { idempotencyKey: randomUUID() });
  await sleep(3000);
  const refused = proxy.stats.refused;
  proxy.set({ refuse: false });
  const r = await pending;
  assert.ok(refused >= 1, 'the connector did try the store during the outage');
  assert.equal(r.checksum, xxh64(data));
  assert.ok(Buffer.concat(parts).equals(data), 'byte-identical');
});

test('a download cut mid-way is fetched again and compared, not written twice', async () => {
  const data = await s.writeData('offload-cut.bin', randomBytes(16 * 1024 * 1024));
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (d: Buffer) => parts.push(d));
  let cut = false;
  const retries: string[] = [];
  // Downloads at 32 MB/s: unshaped, loopback could hand the client every byte of the ranges
  // before the cut (kernel and stream buffers hold MBs), and the cut would cut nothing.
  proxy.set({ bandwidthDownBytesPerSec: 32 << 20 });
  let r;
  try {
    r = await requestOffload(s.clientCfg(), { connector: s.connectorId, dataset: 'offload-cut.bin' }, out, {
      idempotencyKey: randomUUID(),
      onRetry: (err) => retries.push(err.message),
      onProgress: (n) => {
        if (n > 4 * 1024 * 1024 && !cut) {
          cut = true;
          proxy.cutAll();
        }
      },
    });
  } finally {
    proxy.set({ bandwidthDownBytesPerSec: 0 });
  }
  assert.ok(cut && retries.length >= 1, `the download was cut and retried (${retries.join('; ')})`);
  assert.equal(r.checksum, xxh64(data));
  assert.ok(Buffer.concat(parts).equals(data), 'byte-identical, every byte once');
});

// Faults (d) and (e): the connector reaches the router through a fault-injecting proxy.
// (d) its event stream is cut every two seconds; (e) 5 % of chunk uploads are answered 502 by
// the proxy and 5 % arrive corrupted. Every request must end byte-identical.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { Stack, csv } from '../helpers/stack.js';

let s: Stack;
let proxy: FaultProxy;
before(async () => {
  s = await Stack.start({ connector: false, routerEnv: { RELAY_PROGRESS_TIMEOUT_S: '10', RELAY_ACK_TIMEOUT_S: '5', RELAY_BACKOFF_S: '0.5', RELAY_ATTEMPTS: '5' } });
  const router = new URL(s.routerUrl);
  proxy = await FaultProxy.start({ target: { host: router.hostname, port: Number(router.port) }, seed: 42 });
  await s.startConnector({}, proxy.url());
});
after(async () => {
  await closeHttp();
  await s.stop();
  await proxy.close();
});

async function fetchAll(datasets: [string, Buffer][]): Promise<void> {
  const modes = ['sync', 'stream', 'offload'] as const;
  await Promise.all(
    datasets.flatMap(([name, want]) =>
      modes.map(async (mode) => {
        const out = new PassThrough();
        const parts: Buffer[] = [];
        out.on('data', (d: Buffer) => parts.push(d));
        const fn = mode === 'sync' ? requestSync : mode === 'stream' ? requestStream : requestOffload;
        const r = await fn(s.clientCfg(), { connector: s.connectorId, dataset: name, timeout_s: 120 }, out, { idempotencyKey: randomUUID() });
        const got = Buffer.concat(parts);
        assert.equal(got.length, want.length, `${mode} ${name}: length`);
        assert.ok(got.equals(want), `${mode} ${name}: byte-identical`);
        assert.equal(r.checksum, xxh64(want));
      }),
    ),
  );
}

describe('the event stream is cut every 2 s', () => {
  test('requests sent meanwhile all complete', async () => {
    const data: [string, Buffer][] = [
      ['cut-a.csv', await s.writeData('cut-a.csv', csv(3 * 1024 * 1024))],
      ['cut-b.bin', await s.writeData('cut-b.bin', randomBytes(2 * 1024 * 1024))],
    ];
    const cutter = setInterval(() => proxy.cutAll(), 2000);
    const until = Date.now() + 7000;
    try {
      // Rounds of requests for 7 s: several cuts land in the middle of them.
      while (Date.now() < until) await fetchAll(data);
    } finally {
      clearInterval(cutter);
    }
    assert.ok(proxy.stats.resets >= 1, 'the proxy did cut connections');
  });
});

describe('5 % of chunk uploads fail (502) and 5 % arrive corrupted', () => {
  test('every result is byte-identical', async () => {
    const data: [string, Buffer][] = [
      ['chunks-a.bin', await s.writeData('chunks-a.bin', randomBytes(8 * 1024 * 1024))],
      ['chunks-b.csv', await s.writeData('chunks-b.csv', csv(6 * 1024 * 1024))],
    ];
    proxy.set({ http502Rate: 0.05, corruptRate: 0.05, matchPath: /\/stream\/chunk\/|\/result$/ });
    try {
      await fetchAll(data);
    } finally {
      proxy.clear();
    }
    assert.ok(proxy.stats.answered502 >= 1 && proxy.stats.corrupted >= 1, `faults were injected (502: ${proxy.stats.answered502}, corrupted: ${proxy.stats.corrupted})`);
  });
});

// Graceful restarts: SIGTERM on the connector finishes the command in flight before it exits;
// SIGTERM on the router lets an open answer finish (or the client re-attaches); a silent event
// stream is noticed by the connector's heartbeat watchdog, which reconnects.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { closeHttp, requestStream } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { Stack, sleep } from '../helpers/stack.js';

let s: Stack;
let proxy: FaultProxy;
before(async () => {
  s = await Stack.start({ connector: false, routerEnv: { RELAY_HEARTBEAT_S: '1', RELAY_SHUTDOWN_GRACE_S: '20', RELAY_STREAM_WINDOW_CHUNKS: '2' } });
  const router = new URL(s.routerUrl);
  proxy = await FaultProxy.start({ target: { host: router.hostname, port: Number(router.port) } });
  await s.startConnector({}, proxy.url());
});
after(async () => {
  await closeHttp();
  await s.stop();
  await proxy.close();
});

/** An output that reads at about `bytesPerSec`, so a transfer is certainly running when we act. */
function slowOutput(bytesPerSec: number): { out: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const out = new Writable({
    highWaterMark: 256 * 1024,
    write(chunk: Buffer, _e, cb) {
      parts.push(chunk);
      setTimeout(cb, (chunk.length / bytesPerSec) * 1000);
    },
  });
  return { out, bytes: () => Buffer.concat(parts) };
}

const logs = (lines: string[]) => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

describe('SIGTERM on the connector', () => {
  test('the command in flight is finished before the process exits', async () => {
    // A small stream window and a slow reader keep the connector busy for seconds.
    const data = await s.writeData('graceful-c.bin', randomBytes(16 * 1024 * 1024));
    const { out, bytes } = slowOutput(3e6);
    let signalled = false;
    const conn = s.connector!;
    const run = requestStream(s.clientCfg(), { connector: s.connectorId, dataset: 'graceful-c.bin' }, out, {
      idempotencyKey: randomUUID(),
      onProgress: (n) => {
        if (n > 1024 * 1024 && !signalled) {
          signalled = true;
          conn.child.kill('SIGTERM');
        }
      },
    });
    try {
      const r = await run;
      out.end();
      await finished(out);
      assert.equal(await conn.exited, 0, 'the connector exited cleanly');
      assert.equal(r.checksum, xxh64(data));
      assert.ok(bytes().equals(data));
      const msgs = logs(conn.lines).map((l) => l.msg);
      assert.ok(msgs.indexOf('connector stopping') < msgs.lastIndexOf('result delivered'), 'the result was delivered after the signal');
      assert.ok(!msgs.includes('grace period over: aborting running commands'));
    } finally {
      // The next tests need a connector, also when this one failed.
      if (conn.child.exitCode === null) conn.child.kill('SIGKILL');
      await conn.exited;
      await s.startConnector({}, proxy.url());
    }
  });
});

describe('SIGTERM on the router', () => {
  test('an open stream answer finishes (or re-attaches) and the router comes back', async () => {
    const data = await s.writeData('graceful-r.bin', randomBytes(16 * 1024 * 1024));
    const { out, bytes } = slowOutput(3e6);
    let restarted: Promise<void> | undefined;
    const r = await requestStream(s.clientCfg(), { connector: s.connectorId, dataset: 'graceful-r.bin' }, out, {
      idempotencyKey: randomUUID(),
      onProgress: (n) => {
        if (n > 1024 * 1024 && !restarted) restarted = s.restartRouter('SIGTERM');
      },
    });
    out.end();
    await finished(out);
    await restarted;
    assert.equal(r.checksum, xxh64(data));
    assert.ok(bytes().equals(data), 'byte-identical across the restart');
    // The connector logs its delivery once stream/complete is answered, which may be just after
    // the client has its last byte; and the next test needs it back on the restarted router.
    const delivered = async () => {
      for (const end = Date.now() + 10_000; Date.now() < end; await sleep(100)) {
        if (logs(s.connector!.lines).some((l) => l.msg === 'result delivered')) return true;
      }
      return false;
    };
    const [wasDelivered] = await Promise.all([delivered(), s.waitOnline(s.connectorId, true, 20_000)]);
    assert.ok(wasDelivered, 'the connector delivered the result');
  });
});

describe('heartbeat watchdog', () => {
  test('a silent event stream is dropped by the connector, which reconnects', async () => {
    const before = logs(s.connector!.lines).filter((l) => l.msg === 'event stream open').length;
    // The router freezes (SIGSTOP): its event stream goes silent without closing.
    s.router.child.kill('SIGSTOP');
    await sleep(3500); // > 2 × heartbeat_s (1 s)
    s.router.child.kill('SIGCONT');
    const end = Date.now() + 15_000;
    let lost = false;
    let reopened = false;
    while (Date.now() < end && !(lost && reopened)) {
      const l = logs(s.connector!.lines);
      lost = l.some((x) => x.msg === 'event stream lost' && String(x.err).includes('no data on the event stream'));
      reopened = l.filter((x) => x.msg === 'event stream open').length > before;
      await sleep(200);
    }
    assert.ok(lost, 'the watchdog noticed the silence');
    assert.ok(reopened, 'the connector reconnected');
  });
});

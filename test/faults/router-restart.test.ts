// Fault (b): the router is killed (SIGKILL) in the middle of a sync and of a stream transfer and
// started again on the same port. The client library retries with its Idempotency-Key, the
// router hands it the same request and restarts the transfer; the bytes already written are
// compared, not duplicated. The file must end byte-identical.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import { closeHttp, requestStream, requestSync } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { Stack } from '../helpers/stack.js';

let s: Stack;
before(async () => {
  s = await Stack.start({ routerEnv: { RELAY_PROGRESS_TIMEOUT_S: '5', RELAY_ACK_TIMEOUT_S: '3' } });
});
after(async () => {
  await closeHttp();
  await s.stop();
});

/** A file-like output that takes its time, so the transfer is certainly running at the kill. */
function slowOutput(): { out: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const out = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      setTimeout(cb, 2);
    },
  });
  return { out, bytes: () => Buffer.concat(parts) };
}

for (const mode of ['sync', 'stream'] as const) {
  describe(`router killed during ${mode}`, () => {
    test('the client re-attaches with its Idempotency-Key and ends with the right bytes', async () => {
      const data = await s.writeData(`restart-${mode}.bin`, randomBytes(24 * 1024 * 1024));
      const { out, bytes } = slowOutput();
      let killed: Promise<void> | undefined;
      const retries: string[] = [];
      const fetch = mode === 'sync' ? requestSync : requestStream;
      const req = fetch(s.clientCfg(), { connector: s.connectorId, dataset: `restart-${mode}.bin` }, out, {
        idempotencyKey: randomUUID(),
        onRetry: (err) => retries.push(err.message),
        // Kill once the answer is under way (sync: the router has the whole result and is sending it).
        onProgress: (n) => {
          if (n > 2 * 1024 * 1024 && !killed) killed = s.restartRouter('SIGKILL');
        },
      });
      const r = await req;
      await killed;
      out.end();
      await finished(out);
      assert.ok(retries.length >= 1, 'the client saw the connection drop and retried');
      assert.equal(r.bytes, data.length);
      assert.equal(r.checksum, xxh64(data));
      assert.ok(r.verified);
      assert.ok(bytes().equals(data), 'the output holds every byte exactly once');
    });
  });
}

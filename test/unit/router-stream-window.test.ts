import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamSink } from '../../src/router/results.js';
import { RelayError } from '../../src/protocol/errors.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { closedResponse } from '../helpers/responses.js';

/** A StreamSink writing to a real response that a local client reads as fast as it can. */
async function withSink(windowChunks: number, fn: (sink: StreamSink) => Promise<void>): Promise<string> {
  let resolveRes!: (res: ServerResponse) => void;
  const gotRes = new Promise<ServerResponse>((r) => (resolveRes = r));
  const server = createServer((_req, res) => resolveRes(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const answer = fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`).then((r) => r.text()).catch((err: unknown) => `cut: ${String(err)}`);
    const sink = new StreamSink('r_window', await gotRes, windowChunks, false, () => undefined);
    sink.init({ contentType: 'text/plain', totalBytes: null });
    await fn(sink);
    return await answer;
  } finally {
    server.close();
  }
}

const chunk = (index: number) => ({ index, body: Buffer.from(`c${index};`), encoding: 'identity' as const, decodedLength: 3 });

test('stream window: chunks waiting for room all get in as the client reads, none is turned away while time is left', async () => {
  const text = await withSink(2, async (sink) => {
    assert.equal(await sink.admitWithin(0, 3, 2000), 'ok');
    assert.equal(await sink.admitWithin(1, 3, 2000), 'ok');
    // The window is full: these wait. Freeing one slot wakes both; only one may take it, and the
    // other must go on waiting for the next slot instead of being answered BACKPRESSURE.
    // Each admitted chunk is put at once, as the chunk route does.
    const waiting = [2, 3, 4, 5].map((i) =>
      sink.admitWithin(i, 3, 2000).then(
        (r) => {
          sink.put(chunk(i));
          return { i, r };
        },
        (err: unknown) => ({ i, err }),
      ),
    );
    sink.put(chunk(0));
    sink.put(chunk(1));
    for (const w of await Promise.all(waiting)) assert.ok(!('err' in w) && w.r === 'ok', `chunk ${w.i} was turned away: ${'err' in w ? String(w.err) : ''}`);
    await sink.complete({ chunks: 6, bytes: 18, checksum: xxh64(Buffer.from('c0;c1;c2;c3;c4;c5;')) });
  });
  assert.equal(text, 'c0;c1;c2;c3;c4;c5;');
});

test('stream window: a chunk still without room when its wait ends is answered BACKPRESSURE with a retry hint', async () => {
  await withSink(1, async (sink) => {
    assert.equal(await sink.admitWithin(0, 3, 100), 'ok');
    const started = performance.now();
    const err = await sink.admitWithin(1, 3, 150).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof RelayError && err.code === 'BACKPRESSURE', String(err));
    assert.ok(performance.now() - started >= 140, 'it waited for its time first');
    assert.ok((err as RelayError).retryAfterMs! > 0);
    sink.put(chunk(0));
    sink.fail(new RelayError('GONE', 'test over'));
  });
});

test('stream window: a repeat of a chunk still being received waits for that copy: delivered once it is stored, admitted once it failed', async () => {
  await withSink(4, async (sink) => {
    assert.equal(sink.admit(0), 'ok');
    // A repeat while the first copy is being received is not told it was delivered.
    assert.throws(() => sink.admit(0), (err: unknown) => err instanceof RelayError && err.code === 'BACKPRESSURE');
    const stored = sink.admitWithin(0, 3, 2000);
    sink.put(chunk(0));
    assert.equal(await stored, 'delivered', 'the first copy was stored');
    assert.equal(sink.admit(1), 'ok');
    const retried = sink.admitWithin(1, 3, 2000);
    sink.release(1);
    assert.equal(await retried, 'ok', 'the first copy failed: the repeat is the one received');
    sink.put(chunk(1));
    await sink.complete({ chunks: 2, bytes: 6, checksum: xxh64(Buffer.from('c0;c1;')) });
  });
});

test('stream window: a complete repeated while the first waits for the window to drain gets the same outcome (neither hangs)', { timeout: 20_000 }, async () => {
  const big = Buffer.alloc(8 * 1024 * 1024, 7);
  const text = await withSink(4, async (sink) => {
    assert.equal(sink.admit(0), 'ok');
    // 8 MiB is more than the socket takes at once: the window is still draining when the
    // completes come, so both wait.
    sink.put({ index: 0, body: big, encoding: 'identity', decodedLength: big.length });
    const meta = { chunks: 1, bytes: big.length, checksum: xxh64(big) };
    const outcomes = await Promise.all([sink.complete(meta), sink.complete(meta)]);
    assert.equal(outcomes.length, 2);
  });
  assert.equal(text.length, big.length);
});

// The client route awaits (auth, limits, Redis) before it makes the sink; a client that went
// away meanwhile had said 'close' already, and the sink waited for a 'close' that never came:
// the command ran and its result went to nobody until the connector's uploads were refused.
test('a sink made after its client went away ends at once and tells the route', async () => {
  const { res, stop } = await closedResponse();
  try {
    const sink = new StreamSink('r_gone', res, 4, false, () => undefined);
    let told = 0;
    sink.whenClientGone(() => told++);
    assert.equal(told, 1, 'the route is told the client has gone');
    assert.ok(sink.isEnded, 'the sink takes no chunks');
    await sink.done;
  } finally {
    stop();
  }
});

// A sync answer gives every pooled chunk buffer back exactly once, and only once nothing uses it:
// each release here scribbles over the buffer at once, as the next upload into it would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyncSink } from '../../src/router/results.js';
import { SyncSpill } from '../../src/router/spill.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { zstdCompress } from '../../src/protocol/codec.js';

for (const encoding of ['identity', 'zstd'] as const) {
  // A raw chunk's pooled buffer is its body; a zstd chunk's is the buffer the route decoded it into.
  test(`sync sink: pooled chunk buffers (${encoding} chunks) go back once, after their spill write or their delivery, never while in use`, () => syncBuffers(encoding));
}

async function syncBuffers(encoding: 'identity' | 'zstd'): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'relay-sync-buffers-'));
  const CHUNK = 64 * 1024;
  // Room in memory for 2 chunks: the other 6 are spilled.
  const spill = await SyncSpill.open({ root, memoryBytes: 2 * CHUNK });
  let resolveRes!: (res: ServerResponse) => void;
  const gotRes = new Promise<ServerResponse>((r) => (resolveRes = r));
  const server = createServer((_req, res) => resolveRes(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const answer = fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`).then(async (r) => Buffer.from(await r.arrayBuffer()));
    const sink = new SyncSink('r_buffers', await gotRes, 1 << 30, false, () => undefined, spill);
    sink.init({ contentType: 'application/octet-stream', totalBytes: null });
    const chunks = Array.from({ length: 8 }, () => randomBytes(CHUNK));
    const released = new Map<number, number>();
    for (const [index, data] of chunks.entries()) {
      const pooled = Buffer.from(data); // the pooled buffer the route hands over
      assert.equal(sink.admit(index, CHUNK), 'ok');
      sink.put({
        index,
        // A raw chunk decodes to its body itself.
        body: encoding === 'zstd' ? await zstdCompress(data) : pooled,
        encoding,
        decodedLength: CHUNK,
        decoded: pooled,
        release: () => {
          released.set(index, (released.get(index) ?? 0) + 1);
          pooled.fill(0xee); // the next upload reusing it
        },
      });
    }
    // A chunk sent twice: the copy is not kept, and its buffer goes back at once.
    const again = Buffer.from(chunks[3]!);
    let againReleased = 0;
    sink.put({ index: 3, body: again, encoding: 'identity', decodedLength: CHUNK, decoded: again, release: () => void againReleased++ });
    assert.equal(againReleased, 1);
    const whole = Buffer.concat(chunks);
    await sink.complete({ chunks: 8, bytes: whole.length, checksum: xxh64(whole) });
    const got = await answer;
    assert.equal(got.length, whole.length);
    assert.ok(got.equals(whole), 'the answer is intact although every buffer was overwritten once released');
    // Every body back exactly once (the spilled ones after their write, the rest after delivery).
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual([...released.keys()].sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.ok([...released.values()].every((n) => n === 1), JSON.stringify([...released]));
  } finally {
    server.close();
    await spill.close();
    await rm(root, { recursive: true, force: true });
  }
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../../src/protocol/buffer-pool.js';

test('BufferPool: a released buffer is handed out again, a lease releases once, the free list is bounded', () => {
  const pool = new BufferPool(1024, 2);
  const a = pool.acquire();
  assert.equal(a.buf.length, 1024);
  a.release();
  a.release(); // a second release must not put the same buffer in the free list twice
  const b = pool.acquire();
  assert.equal(b.buf, a.buf, 'reused');
  const c = pool.acquire();
  assert.notEqual(c.buf, b.buf, 'a buffer in use is never handed out twice');

  const leases = [b, c, pool.acquire()];
  for (const l of leases) l.release();
  const again = [pool.acquire(), pool.acquire(), pool.acquire()];
  const reused = again.filter((l) => leases.some((x) => x.buf === l.buf)).length;
  assert.equal(reused, 2, 'only maxFree buffers were kept');
  assert.equal(new Set(again.map((l) => l.buf)).size, 3);
});

test('BufferPool: free buffers past `keep` go once the pool has handed none out for `ms`, not while it is busy', async () => {
  const pool = new BufferPool(1024, 8, { keep: 2, ms: 300 });
  const burst = Array.from({ length: 6 }, () => pool.acquire());
  for (const l of burst) l.release();
  assert.equal(pool.freeCount, 6, 'a burst is kept for reuse');
  // Busy: a buffer is taken within every interval, so nothing is dropped.
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 100));
    pool.acquire().release();
  }
  assert.equal(pool.freeCount, 6);
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(pool.freeCount, 2, 'idle: down to keep');
  const again = [pool.acquire(), pool.acquire(), pool.acquire()];
  assert.ok(burst.some((l) => l.buf === again[0]!.buf) && burst.some((l) => l.buf === again[1]!.buf), 'the kept ones are reused');
  assert.ok(!burst.some((l) => l.buf === again[2]!.buf), 'the rest were let go');
});

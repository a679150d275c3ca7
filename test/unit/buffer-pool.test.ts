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

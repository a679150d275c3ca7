import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompressionChooser } from '../../src/connector/compression.js';

const MB = 1024 * 1024;

/** Runs n chunks of 512 KiB whose cost is given per choice (ms), returns how many were compressed. */
function drive(c: CompressionChooser, n: number, msFor: (compressed: boolean, i: number) => number): number {
  let zstd = 0;
  for (let i = 0; i < n; i++) {
    const z = c.compressNext();
    if (z) zstd++;
    c.record(z, MB / 2, msFor(z, i));
  }
  return zstd;
}

test('always and never do what they say', () => {
  assert.equal(drive(new CompressionChooser('always'), 50, () => 1), 50);
  assert.equal(drive(new CompressionChooser('never'), 50, () => 1), 0);
});

test('auto starts with zstd and tries both before choosing', () => {
  const c = new CompressionChooser('auto');
  const first = [c.compressNext(), c.compressNext(), c.compressNext(), c.compressNext()];
  assert.equal(first[0], true, 'the first chunk is compressed (safe on a slow link)');
  // Nothing recorded yet: the next ones keep asking for zstd until samples come back...
  const c2 = new CompressionChooser('auto');
  const seen: boolean[] = [];
  for (let i = 0; i < 4; i++) {
    const z = c2.compressNext();
    seen.push(z);
    c2.record(z, MB / 2, 5);
  }
  assert.deepEqual(seen, [true, false, true, false], 'alternates while warming up');
});

test('auto sends raw on a fast link (compression is the slower path), probing zstd now and then', () => {
  const c = new CompressionChooser('auto');
  // Loopback: compressing costs 3 ms, sending raw 1 ms.
  const zstd = drive(c, 200, (z) => (z ? 3 : 1));
  assert.ok(zstd <= 2 + Math.ceil(200 / 16) + 1, `compressed ${zstd} of 200`);
  assert.ok(zstd >= 2 + 5, 'still probes zstd');
  assert.ok(c.estimates.rawMBps > c.estimates.zstdMBps);
});

test('auto compresses on a slow link', () => {
  const c = new CompressionChooser('auto');
  // WAN: 512 KiB raw take 160 ms, compressed 50 ms.
  const zstd = drive(c, 200, (z) => (z ? 50 : 160));
  assert.ok(zstd >= 200 - 2 - Math.ceil(200 / 16) - 1, `compressed only ${zstd} of 200`);
});

test('auto follows a link that changes speed', () => {
  const c = new CompressionChooser('auto');
  drive(c, 100, (z) => (z ? 3 : 1)); // fast first: raw
  // The link slows down: the periodic probe notices within a few probes.
  const later = drive(c, 200, (z) => (z ? 50 : 160));
  assert.ok(later > 150, `compressed ${later} of the last 200`);
});

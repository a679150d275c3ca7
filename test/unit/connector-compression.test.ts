import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompressionChooser, SMALL_CHUNK_BYTES } from '../../src/connector/compression.js';

const CHUNK = 512 * 1024;

/**
 * Simulates n chunks on a link of `linkMBps` (wire) with a compressor of `zstdMBps` per core and
 * a compression ratio `ratio`, one upload at a time, on a fake clock. Returns how many chunks
 * were compressed.
 */
function drive(c: CompressionChooser, clock: { t: number }, n: number, linkMBps: number, zstdMBps = 300, ratio = 0.28): number {
  let zstd = 0;
  for (let i = 0; i < n; i++) {
    const z = c.compressNext();
    const wire = z ? Math.round(CHUNK * ratio) : CHUNK;
    if (z) {
      zstd++;
      const ms = CHUNK / (zstdMBps * 1000);
      clock.t += ms;
      c.encoded(true, CHUNK, wire, ms);
    } else c.encoded(false, CHUNK, wire, 0);
    c.uploadStarted();
    clock.t += wire / (linkMBps * 1000);
    c.uploaded(wire);
  }
  return zstd;
}

const chooser = (mode: 'auto' | 'always' | 'never' = 'auto') => {
  const clock = { t: 0 };
  return { c: new CompressionChooser(mode, () => clock.t), clock };
};

test('always and never do what they say', () => {
  const a = chooser('always');
  assert.equal(drive(a.c, a.clock, 50, 10_000), 50);
  const n = chooser('never');
  assert.equal(drive(n.c, n.clock, 50, 1), 0);
});

test('auto compresses the first chunks (safe on a slow link) while it measures', () => {
  const { c } = chooser();
  assert.deepEqual([c.compressNext(), c.compressNext(), c.compressNext()], [true, true, true]);
});

test('auto sends a small chunk raw (not worth two thread-pool trips); always still compresses it', () => {
  const { c } = chooser();
  assert.equal(c.compressNext(1024), false);
  assert.equal(c.compressNext(SMALL_CHUNK_BYTES - 1), false);
  assert.equal(c.compressNext(SMALL_CHUNK_BYTES), true);
  assert.equal(chooser('always').c.compressNext(1024), true);
});

test('a slow link (100 Mbit/s): every chunk compressed, no raw probe at all', () => {
  const { c, clock } = chooser();
  assert.equal(drive(c, clock, 200, 12.5), 200);
  assert.equal(c.estimates.rawWins, false);
  assert.ok(Math.abs(c.estimates.linkMBps - 12.5) < 0.1, `link ${c.estimates.linkMBps}`);
});

test('a link much faster than the compressor: raw, with every 16th chunk compressed to stay current', () => {
  const { c, clock } = chooser();
  const zstd = drive(c, clock, 200, 3000);
  assert.equal(c.estimates.rawWins, true);
  assert.ok(zstd >= 2 + Math.floor(198 / 16) - 1 && zstd <= 2 + Math.ceil(198 / 16) + 1, `compressed ${zstd} of 200`);
});

test('incompressible data on a fast link goes raw; on a slow link zstd still costs more than it saves', () => {
  const fast = chooser();
  drive(fast.c, fast.clock, 50, 500, 300, 1.0);
  assert.equal(fast.c.estimates.rawWins, true);
  const slow = chooser();
  drive(slow.c, slow.clock, 50, 12.5, 300, 1.0);
  assert.equal(slow.c.estimates.rawWins, true, 'a ratio of 1 saves nothing on any link');
});

test('auto follows a link that slows down', () => {
  const { c, clock } = chooser();
  drive(c, clock, 100, 3000); // fast: raw
  assert.equal(c.estimates.rawWins, true);
  const later = drive(c, clock, 300, 12.5); // the link slows: the measured rate falls, zstd wins
  assert.equal(c.estimates.rawWins, false);
  assert.ok(later > 200, `compressed ${later} of the last 300`);
});

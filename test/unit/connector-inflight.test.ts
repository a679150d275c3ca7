import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InFlight } from '../../src/connector/inflight.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

test('InFlight: the byte budget bounds big tasks, and a task that shrinks lets the next start', async () => {
  const f = new InFlight(16, new AbortController().signal, 1000);
  const release: (() => void)[] = [];
  let running = 0;
  let peak = 0;
  const start = async (bytes: number, shrinkTo?: number) => {
    await f.slot(bytes);
    f.launch(async (_s, resize) => {
      running++;
      peak = Math.max(peak, running);
      if (shrinkTo !== undefined) resize(shrinkTo);
      await new Promise<void>((r) => release.push(r));
      running--;
    }, bytes);
  };
  // Four tasks of 400 bytes: only two fit in 1000 at once.
  const big = (async () => {
    for (let i = 0; i < 4; i++) await start(400);
  })();
  await tick();
  assert.equal(running, 2);
  release.shift()!();
  await tick();
  assert.equal(running, 2, 'one ended, the next started');
  release.splice(0).forEach((r) => r());
  await big;
  await tick();
  release.splice(0).forEach((r) => r());
  await f.drain();
  assert.equal(peak, 2);

  // Tasks that shrink to 100 bytes once started: the next may start while the shrunk ones
  // leave room for its unshrunk 400, so seven run at once (6 × 100 + 400 ≤ 1000).
  peak = 0;
  const small = (async () => {
    for (let i = 0; i < 12; i++) await start(400, 100);
  })();
  await tick();
  assert.equal(running, 7);
  while (release.length) {
    release.splice(0).forEach((r) => r());
    await tick();
  }
  await small;
  await f.drain();
});

test('InFlight: one task always runs, even when bigger than the budget; the count limit still holds', async () => {
  const f = new InFlight(2, new AbortController().signal, 10);
  let ran = 0;
  await f.slot(100);
  f.launch(async () => void ran++, 100);
  await f.drain();
  assert.equal(ran, 1);
  const g = new InFlight(2, new AbortController().signal);
  const hold: (() => void)[] = [];
  for (let i = 0; i < 2; i++) {
    await g.slot();
    g.launch(() => new Promise<void>((r) => hold.push(r)));
  }
  let third = false;
  const p = g.slot().then(() => (third = true));
  await tick();
  assert.equal(third, false);
  hold.shift()!();
  await p;
  hold.forEach((r) => r());
  await g.drain();
});

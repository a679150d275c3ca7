import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { YoungGc } from '../../src/protocol/young-gc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function counted(everyBytes: number, maxDelayMs: number) {
  const calls: (string | undefined)[] = [];
  const y = new YoungGc(everyBytes, maxDelayMs, (opts) => calls.push(opts?.type));
  return { y, calls };
}

test('YoungGc: a scavenge once everyBytes have been read, and none before', () => {
  const { y, calls } = counted(1000, 60_000);
  y.read(400);
  y.read(500);
  assert.deepEqual(calls, [], 'under everyBytes: no scavenge yet');
  y.read(100);
  assert.deepEqual(calls, ['minor'], 'a young-generation collection, not a full one');
  y.read(999);
  assert.equal(calls.length, 1, 'the count starts again after each scavenge');
  y.read(1);
  assert.equal(calls.length, 2);
});

test('YoungGc: bytes that trickle in are collected maxDelayMs after the first of them, once', async () => {
  const { y, calls } = counted(1 << 20, 40);
  y.read(10);
  y.read(10);
  assert.equal(calls.length, 0);
  await sleep(150);
  assert.equal(calls.length, 1, 'one scavenge for what was pending');
  await sleep(100);
  assert.equal(calls.length, 1, 'nothing pending, no timer: no more');
  y.read(10);
  await sleep(150);
  assert.equal(calls.length, 2, 'a later trickle gets its own');
});

test('YoungGc: after a scavenge by count the timer finds nothing pending and does not scavenge again', async () => {
  const { y, calls } = counted(100, 40);
  y.read(50); // starts the timer
  y.read(50); // reaches everyBytes: scavenges at once
  assert.equal(calls.length, 1);
  await sleep(150);
  assert.equal(calls.length, 1);
});

test('YoungGc: a pending timer does not keep a process alive', { timeout: 20_000 }, async () => {
  const mod = pathToFileURL(join(import.meta.dirname, '../../src/protocol/young-gc.js')).href;
  const script = `const { YoungGc } = await import(${JSON.stringify(mod)}); new YoungGc(1 << 30, 60000).read(1);`;
  const t0 = performance.now();
  await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 15_000 });
  assert.ok(performance.now() - t0 < 10_000, 'the process exited without waiting for the 60 s timer');
});

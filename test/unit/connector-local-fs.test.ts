import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { currentMode, fsCalls, SLOW_SYNC_MS, timed, useLocalFs, usePool } from '../../src/connector/local-fs.js';

afterEach(() => usePool());

test('only a data directory on a known local file system gets synchronous calls', (t) => {
  if (process.platform !== 'linux') {
    assert.deepEqual(useLocalFs(tmpdir()), { sync: false, reason: `not on Linux (${process.platform})` });
    return t.skip('statfs types are checked on Linux only');
  }
  const local = useLocalFs(tmpdir());
  if (local.sync) assert.match(local.reason, /^(ext2\/3\/4|xfs|btrfs|tmpfs|ramfs|overlayfs|zfs|f2fs|bcachefs|squashfs|reiserfs|jfs)$/);
  assert.deepEqual(useLocalFs('/proc'), { sync: false, reason: 'file system type 0x9fa0 is not a known local one' });
  assert.equal(currentMode(), 'pool');
  assert.deepEqual(useLocalFs(path.join(tmpdir(), `relay-no-such-dir-${process.pid}`)), { sync: false, reason: 'statfs failed: ENOENT' });
  assert.equal(currentMode(), 'pool');
});

test('synchronous calls settle before the event loop turns, with the same results and errors as the pool', async (t) => {
  if (!useLocalFs(tmpdir()).sync) return t.skip(`${tmpdir()} is not on a local file system here`);
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-local-fs-'));
  try {
    const file = path.join(dir, 'a.csv');
    await writeFile(file, 'id\n1\n');
    const order: string[] = [];
    setImmediate(() => order.push('event loop turned'));
    const st = await fsCalls.stat(file);
    order.push('stat');
    assert.deepEqual(order, ['stat'], 'no turn of the event loop in between');
    const viaSync = { real: await fsCalls.realpath(file), size: st.size };
    const fd = await fsCalls.open(file, constants.O_RDONLY);
    const buf = Buffer.alloc(5);
    assert.equal(await fsCalls.read(fd, buf, 0, 5, 0), 5);
    assert.equal(buf.toString(), 'id\n1\n');
    assert.equal((await fsCalls.fstat(fd)).ino, st.ino);
    await fsCalls.close(fd);
    const syncErr = await fsCalls.stat(path.join(dir, 'missing')).catch((e: NodeJS.ErrnoException) => e.code);

    usePool();
    assert.deepEqual({ real: await fsCalls.realpath(file), size: (await fsCalls.stat(file)).size }, viaSync);
    assert.equal(await fsCalls.stat(path.join(dir, 'missing')).catch((e: NodeJS.ErrnoException) => e.code), syncErr);
    assert.equal(syncErr, 'ENOENT');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a slow synchronous call sends the next calls to the thread pool, and says so', (t) => {
  if (!useLocalFs(tmpdir(), (what, ms) => slow.push({ what, ms })).sync) return t.skip(`${tmpdir()} is not on a local file system here`);
  const slow: { what: string; ms: number }[] = [];
  assert.equal(timed('stat', () => 1), 1);
  assert.equal(currentMode(), 'sync', 'a fast call changes nothing');
  timed('realpath', () => {
    const end = performance.now() + SLOW_SYNC_MS + 5;
    while (performance.now() < end);
  });
  assert.equal(currentMode(), 'pool');
  assert.equal(slow.length, 1);
  assert.equal(slow[0]!.what, 'realpath');
  assert.ok(slow[0]!.ms > SLOW_SYNC_MS);
});

// The benchmark suite's own arithmetic and /proc readers (bench/lib): what its tables rest on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closedLoop } from '../../bench/lib/load.js';
import { cpuSeconds, rssMb, treeCpu } from '../../bench/lib/procs.js';
import { commandsCpu, runCommand, stopSpawner } from '../../bench/lib/spawner.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { median, percentile } from '../../bench/lib/stats.js';
import { renderTable } from '../../bench/lib/table.js';

test('percentile is nearest-rank; median averages the middle pair', () => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted input
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile(xs, 100), 100);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});

test('renderTable right-aligns numeric columns only and keeps every row', () => {
  const text = renderTable({ title: 'T', notes: ['n'], head: ['case', 'MB/s', 'met'], rows: [['a', '12.5', 'yes'], ['bb', '-', 'NO']], after: ['x'] });
  const lines = text.split('\n');
  assert.equal(lines[0], '### T');
  assert.ok(lines.includes('| case | MB/s | met |'));
  assert.ok(lines.includes('|------|-----:|-----|'));
  assert.ok(lines.includes('| a    | 12.5 | yes |'));
  assert.ok(lines.includes('| bb   |    - | NO  |'));
  assert.equal(lines.at(-1), 'x');
});

test('cpuSeconds and treeCpu read /proc: a busy child counts for its parent tree', async () => {
  // The child burns CPU, then stays alive (idle) until it is killed: a /proc scan on a busy
  // machine can take longer than a child that exits on its own would live.
  const child = spawn(process.execPath, ['-e', 'const end = Date.now() + 300; while (Date.now() < end); setTimeout(() => {}, 60_000);'], { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  await new Promise((r) => setTimeout(r, 500));
  // Read before the tree, whose total then includes at least both (CPU time only grows).
  const own = await cpuSeconds(child.pid);
  const self = await cpuSeconds(process.pid);
  const tree = await treeCpu(process.pid);
  child.kill();
  await exited;
  assert.ok(own !== null && own > 0.05, `child used CPU: ${own}`);
  assert.ok(tree !== null && self !== null && tree >= self + own! - 0.02, `tree ${tree} ≥ self ${self} + child ${own}`);
  assert.equal(await cpuSeconds(child.pid), null, 'gone once exited');
  assert.ok((await rssMb(process.pid)) > 10);
});

test('closedLoop checks every baseline answer against the file\'s checksum and length', async () => {
  const body = Buffer.from('a,b\n1,2\n');
  const server = createServer((_req, res) => res.end(body));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const good = await closedLoop(origin, { workers: 2, count: 6, next: () => ({ path: '/f.csv', expectBytes: body.length, expectChecksum: xxh64(body) }) });
    assert.equal(good.ok, 6);
    assert.equal(good.errors.size, 0);
    assert.equal(good.latenciesMs.length, 6);
    const wrongSum = await closedLoop(origin, { workers: 2, count: 4, next: () => ({ path: '/f.csv', expectBytes: body.length, expectChecksum: '0000000000000000' }) });
    assert.equal(wrongSum.ok, 0);
    assert.deepEqual([...wrongSum.errors], [['checksum mismatch', 4]]);
    const wrongLength = await closedLoop(origin, { workers: 1, count: 2, next: () => ({ path: '/f.csv', expectBytes: 1, expectChecksum: xxh64(body) }) });
    assert.deepEqual([...wrongLength.errors], [[`${body.length} bytes, expected 1`, 2]]);
  } finally {
    server.close();
  }
});

test('runCommand runs commands in the spawner helper: exit code, output, and the CPU they used', async () => {
  try {
    const echo = await runCommand('sh', ['-c', 'echo hi; exit 3']);
    assert.equal(echo.code, 3);
    assert.deepEqual(echo.lines, ['hi']);
    const before = commandsCpu();
    const busy = await runCommand(process.execPath, ['-e', 'const end = Date.now() + 300; while (Date.now() < end);']);
    assert.equal(busy.code, 0);
    assert.ok(busy.cpuS >= 0.15, `the busy command's CPU is counted: ${busy.cpuS}`);
    assert.ok(commandsCpu() - before >= busy.cpuS - 1e-9);
    const missing = await runCommand('/nonexistent/relay-bench-cmd', []);
    assert.notEqual(missing.code, 0);
  } finally {
    await stopSpawner();
  }
});

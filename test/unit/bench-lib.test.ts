// The benchmark suite's own arithmetic and /proc readers (bench/lib): what its tables rest on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpuSeconds, rssMb, treeCpu } from '../../bench/lib/procs.js';
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
  const child = spawn(process.execPath, ['-e', 'const end = Date.now() + 400; while (Date.now() < end);'], { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  await new Promise((r) => setTimeout(r, 300));
  const own = await cpuSeconds(child.pid);
  const tree = await treeCpu(process.pid);
  const self = await cpuSeconds(process.pid);
  await exited;
  assert.ok(own !== null && own > 0.05, `child used CPU: ${own}`);
  assert.ok(tree !== null && self !== null && tree >= self + own! - 0.02, `tree ${tree} ≥ self ${self} + child ${own}`);
  assert.equal(await cpuSeconds(child.pid), null, 'gone once exited');
  assert.ok((await rssMb(process.pid)) > 10);
});

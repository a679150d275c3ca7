import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSampleData, salesCsvBytes, SALES_HEADER, SMALL_CSV_ROWS } from '../../src/cli/sample-data.js';

const BOUND = 300_000;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'relay-sample-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function checkSalesCsv(text: string, expectedRows?: number): number {
  assert.ok(text.startsWith(SALES_HEADER), 'header line');
  assert.ok(text.endsWith('\n'), 'ends at a line boundary');
  const lines = text.slice(SALES_HEADER.length, -1).split('\n');
  if (expectedRows !== undefined) assert.equal(lines.length, expectedRows);
  lines.forEach((line, i) => {
    const f = line.split(',');
    assert.equal(f.length, 7, `row ${i + 1}: ${line}`);
    assert.equal(f[0], String(i + 1), 'ids count up from 1: row count = last id');
    assert.match(f[1]!, /^202[45]-\d\d-\d\d$/);
    assert.match(f[4]!, /^[1-9]\d?$/);
    assert.match(f[5]!, /^\d+\.\d\d$/);
    assert.ok(f[6]!.length > 0);
  });
  return lines.length;
}

test('writes every file with the reported sizes; the big CSV is the largest full-row prefix under the bound', async () => {
  await withDir(async (dir) => {
    const { files } = await generateSampleData(dir, { bigCsvBytes: BOUND, blockBytes: 64 * 1024 });
    assert.deepEqual(files.map((f) => f.name), ['sales/100mb.csv', 'sales/small.csv', 'empty.bin', 'one.bin', 'random-3mb.bin', 'events.json']);
    for (const f of files) assert.equal((await stat(join(dir, f.name))).size, f.bytes, f.name);
    const size = Object.fromEntries(files.map((f) => [f.name, f.bytes]));
    assert.equal(size['empty.bin'], 0);
    assert.equal(size['one.bin'], 1);
    assert.equal(size['random-3mb.bin'], 3 * 1024 * 1024);

    const big = await readFile(join(dir, 'sales/100mb.csv'), 'latin1');
    const expected = salesCsvBytes(BOUND);
    assert.equal(big.length, expected.bytes);
    assert.ok(big.length <= BOUND && big.length > BOUND - 120, `size ${big.length} close under ${BOUND}`);
    checkSalesCsv(big, expected.rows);

    const small = await readFile(join(dir, 'sales/small.csv'), 'latin1');
    checkSalesCsv(small, SMALL_CSV_ROWS);

    const events: unknown = JSON.parse(await readFile(join(dir, 'events.json'), 'utf8'));
    assert.ok(Array.isArray(events) && events.length > 0);
  });
});

test('the big CSV does not depend on the block size and is deterministic', async () => {
  await withDir(async (dir) => {
    await generateSampleData(join(dir, 'a'), { bigCsvBytes: BOUND, blockBytes: 1 });
    await generateSampleData(join(dir, 'b'), { bigCsvBytes: BOUND, blockBytes: 7777 });
    await generateSampleData(join(dir, 'c'), { bigCsvBytes: BOUND });
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((d) => readFile(join(dir, d, 'sales/100mb.csv'))));
    assert.ok(a!.equals(b!) && a!.equals(c!));
    // A larger bound extends the same rows.
    await generateSampleData(join(dir, 'd'), { bigCsvBytes: BOUND * 2 });
    const d = await readFile(join(dir, 'd', 'sales/100mb.csv'));
    assert.ok(d.subarray(0, a!.length).equals(a!));
  });
});

test('is idempotent: files with the expected size are kept, wrong ones are rewritten', async () => {
  await withDir(async (dir) => {
    const first = await generateSampleData(dir, { bigCsvBytes: BOUND });
    const rnd = await readFile(join(dir, 'random-3mb.bin'));
    const before = await stat(join(dir, 'sales/100mb.csv'));

    const second = await generateSampleData(dir, { bigCsvBytes: BOUND });
    assert.deepEqual(second, first);
    assert.ok((await readFile(join(dir, 'random-3mb.bin'))).equals(rnd), 'random file kept');
    assert.equal((await stat(join(dir, 'sales/100mb.csv'))).mtimeMs, before.mtimeMs, 'big CSV not rewritten');

    await truncate(join(dir, 'sales/100mb.csv'), 1000);
    await writeFile(join(dir, 'one.bin'), 'too long');
    const third = await generateSampleData(dir, { bigCsvBytes: BOUND });
    assert.deepEqual(third, first);
    checkSalesCsv(await readFile(join(dir, 'sales/100mb.csv'), 'latin1'));

    // A different bound means a different expected size: regenerated.
    const fourth = await generateSampleData(dir, { bigCsvBytes: BOUND / 2 });
    assert.ok(fourth.files[0]!.bytes <= BOUND / 2);
  });
});

test('rejects a bound smaller than the header', async () => {
  await withDir(async (dir) => {
    await assert.rejects(generateSampleData(dir, { bigCsvBytes: 10 }), RangeError);
  });
});

// DuckDB over the data directory: the sandbox holds (nothing outside the directory is read,
// nothing is written), types survive, datasets convert to other formats, timeouts stop queries.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Databases } from '../../src/connector/databases.js';
import { resolveDataset } from '../../src/connector/sandbox.js';
import { DataDirDuckDB } from '../../src/connector/tables/duckdb.js';
import { RelayError } from '../../src/protocol/errors.js';
import { encode, rawColumn, readArrow, readCsv, readNdjson, readParquet } from '../helpers/tables.js';

let root: string;
let data: string;
let db: DataDirDuckDB;

const q = (sql: string, timeoutMs = 10_000) => db.query({ database: 'files', sql, timeoutMs, limits: { rows: 1000, bytes: 8 << 20 } });

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await encode('arrow', (await p) as Awaited<ReturnType<typeof q>>);
    return { code: 'OK', message: '' };
  } catch (err) {
    assert.ok(err instanceof RelayError, String(err));
    return { code: err.code, message: err.message };
  }
}

before(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'relay-duck-')));
  data = join(root, 'data');
  await mkdir(join(data, 'sales'), { recursive: true });
  await writeFile(join(root, 'secret.csv'), 'secret\nTOP-SECRET\n');
  await writeFile(join(data, 'sales', 'q1.csv'), 'id,region,amount,day\n1,north,10.50,2024-01-02\n2,süd,20.25,2024-01-03\n3,east,,2024-01-04\n');
  await writeFile(join(data, 'events.ndjson'), '{"id":1,"name":"a"}\n{"id":2,"name":"b"}\n');
  await writeFile(join(data, 'notes.txt'), 'not a table');
  await symlink(join(root, 'secret.csv'), join(data, 'link-out.csv'));
  await symlink(root, join(data, 'dir-out'));
  db = await DataDirDuckDB.open({ dataDir: data, memoryLimit: '256MB', threads: 1 });
});
after(async () => {
  await db?.close();
  await rm(root, { recursive: true, force: true });
});

describe('sandbox', () => {
  test('reading /etc/passwd (or any file outside the data directory) fails with FORBIDDEN', async () => {
    for (const sql of [
      "SELECT * FROM read_csv('/etc/passwd')",
      "SELECT * FROM read_text('/etc/passwd')",
      "SELECT * FROM read_csv_auto('/etc/passwd', header = false)",
      `SELECT * FROM read_csv('${root}/secret.csv')`,
      `SELECT * FROM read_csv('${data}/../secret.csv')`,
      `SELECT * FROM read_csv('${data}/link-out.csv')`,
      `SELECT * FROM read_csv('${data}/dir-out/secret.csv')`,
      "SELECT * FROM glob('/etc/*')",
    ]) {
      const r = await failure(q(sql));
      assert.equal(r.code, 'FORBIDDEN', `${sql}: ${r.code} ${r.message}`);
      assert.match(r.message, /Permission Error/);
      assert.doesNotMatch(r.message, /TOP-SECRET|root:/);
    }
    // A bare path without a known extension is not even looked up as a file.
    const bare = await failure(q("SELECT * FROM '/etc/passwd'"));
    assert.notEqual(bare.code, 'OK');
    assert.doesNotMatch(bare.message, /root:/);
  });

  test('files inside the data directory are readable', async () => {
    const t = readArrow(await encode('arrow', await q(`SELECT * FROM read_csv('${data}/sales/q1.csv') ORDER BY id`)));
    assert.equal(t.numRows, 3);
    assert.deepEqual(rawColumn(t, 'region'), ['north', 'süd', 'east']);
  });

  test('only one SELECT runs: COPY TO, ATTACH, SET, INSTALL and several statements are refused', async () => {
    for (const [sql, re] of [
      [`COPY (SELECT 42) TO '${data}/written.csv'`, /only SELECT statements.*COPY/],
      [`ATTACH '${data}/x.duckdb'`, /only SELECT statements/],
      ['SET enable_external_access = true', /only SELECT statements/],
      ['INSTALL httpfs', /only SELECT statements/],
      ['SELECT 1; SELECT 2', /exactly one SQL statement, got 2/],
    ] as const) {
      const r = await failure(q(sql));
      assert.equal(r.code, 'BAD_REQUEST', sql);
      assert.match(r.message, re);
    }
    assert.equal(existsSync(join(data, 'written.csv')), false, 'nothing was written');
    assert.equal(existsSync(join(data, 'x.duckdb')), false);
  });

  test('the configuration is locked', async () => {
    const r = await failure(q("SELECT current_setting('enable_external_access') AS v"));
    assert.equal(r.code, 'OK');
    const t = readArrow(await encode('arrow', await q("SELECT current_setting('enable_external_access')::VARCHAR AS a, current_setting('lock_configuration')::VARCHAR AS b")));
    assert.deepEqual([rawColumn(t, 'a')[0], rawColumn(t, 'b')[0]], ['false', 'true']);
  });
});

describe('types and formats', () => {
  const sql = `SELECT 1::TINYINT AS ti, 2::SMALLINT AS si, 3::INTEGER AS i, 9223372036854775807::BIGINT AS bi, 18446744073709551615::UBIGINT AS ubi,
    1.5::FLOAT AS f, -0.1::DOUBLE AS d, 123.45::DECIMAL(5,2) AS dec, 'ünïcødé ✓'::VARCHAR AS s, '\\x00\\xFF'::BLOB AS bl, true AS b,
    DATE '2024-02-29' AS dt, TIMESTAMP '2024-02-29 12:34:56.123456' AS ts, TIMESTAMPTZ '2024-02-29 12:34:56+00' AS tz,
    TIMESTAMP_NS '2024-02-29 12:34:56.123456789' AS tns, [1, 2] AS l, NULL::INTEGER AS n`;

  test('arrow keeps each type', async () => {
    const t = readArrow(await encode('arrow', await q(sql)));
    assert.deepEqual(Object.fromEntries(t.schema.fields.map((f) => [f.name, String(f.type)])), {
      ti: 'Int16',
      si: 'Int16',
      i: 'Int32',
      bi: 'Int64',
      ubi: 'Decimal[20e0]',
      f: 'Float32',
      d: 'Float64',
      dec: 'Decimal[5e+2]',
      s: 'Utf8',
      bl: 'Binary',
      b: 'Bool',
      dt: 'Date32<DAY>',
      ts: 'Timestamp<MICROSECOND>',
      tz: 'Timestamp<MICROSECOND, UTC>',
      tns: 'Timestamp<MICROSECOND>',
      l: 'Utf8',
      n: 'Int32',
    });
    assert.equal(rawColumn(t, 'bi')[0], 9223372036854775807n);
    assert.equal(rawColumn(t, 'ubi')[0], 18446744073709551615n);
    assert.equal(rawColumn(t, 'dec')[0], 12345n);
    assert.equal(rawColumn(t, 's')[0], 'ünïcødé ✓');
    assert.equal(Buffer.from(rawColumn(t, 'bl')[0] as Uint8Array).toString('hex'), '00ff');
    assert.equal(rawColumn(t, 'dt')[0], Date.UTC(2024, 1, 29) / 86_400_000);
    assert.equal(rawColumn(t, 'ts')[0], BigInt(Date.UTC(2024, 1, 29, 12, 34, 56)) * 1000n + 123456n);
    assert.equal(rawColumn(t, 'tns')[0], BigInt(Date.UTC(2024, 1, 29, 12, 34, 56)) * 1000n + 123456n);
    assert.equal(rawColumn(t, 'l')[0], '[1, 2]');
    assert.equal(rawColumn(t, 'n')[0], null);
  });

  test('csv, ndjson and parquet carry the same values', async () => {
    const { header, rows } = readCsv(await encode('csv', await q(sql)));
    assert.equal(header.length, 17);
    assert.deepEqual(rows[0], ['1', '2', '3', '9223372036854775807', '18446744073709551615', '1.5', '-0.1', '123.45', 'ünïcødé ✓', '\\x00ff', 'true', '2024-02-29', '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56+00', '2024-02-29 12:34:56.123456', '[1, 2]', null]);
    const nd = readNdjson(await encode('ndjson', await q(sql)));
    assert.match(nd.lines[0]!, /"bi":9223372036854775807,/);
    assert.equal(nd.rows[0]!.dec, '123.45');
    assert.equal(nd.rows[0]!.tz, '2024-02-29T12:34:56Z');
    assert.equal(nd.rows[0]!.n, null);
    const p = readParquet(await encode('parquet', await q(sql)));
    assert.equal(rawColumn(p, 'bi')[0], 9223372036854775807n);
    assert.equal(rawColumn(p, 'dec')[0], 12345n);
    assert.equal(String(p.getChild('tz')!.type), 'Timestamp<MICROSECOND, UTC>');
  });

  test('a large result streams in batches', async () => {
    const t = readArrow(await encode('arrow', await q('SELECT i, i * 2 AS j FROM range(100000) t(i)')));
    assert.equal(t.numRows, 100000);
    // DuckDB hands over 2048-row chunks: a batch is cut at the first chunk past 1000 rows.
    assert.ok(t.batches.length >= 40, `${t.batches.length} batches`);
    assert.equal((rawColumn(t, 'j') as bigint[]).reduce((a, b) => a + b, 0n), 2n * ((99999n * 100000n) / 2n));
  });
});

describe('failures', () => {
  test('bad SQL is BAD_REQUEST carrying DuckDB\'s message', async () => {
    const r = await failure(q('SELEC 1'));
    assert.equal(r.code, 'BAD_REQUEST');
    assert.match(r.message, /Parser Error: syntax error at or near "SELEC"/);
    const missing = await failure(q('SELECT * FROM nowhere'));
    assert.equal(missing.code, 'BAD_REQUEST');
    assert.match(missing.message, /Table with name nowhere does not exist/);
  });

  test('a query over its timeout is interrupted: TIMEOUT', async () => {
    const started = Date.now();
    const r = await failure(q('SELECT sum(hash(a.i + b.i)) FROM range(100000000) a(i), range(1000) b(i)', 300));
    assert.equal(r.code, 'TIMEOUT');
    assert.ok(Date.now() - started < 10_000, `stopped after ${Date.now() - started} ms`);
  });
});

describe('datasets in another format', () => {
  const log = pino({ level: 'silent' });
  let dbs: Databases;
  before(() => {
    dbs = new Databases([], { dataDir: data, sqlTimeoutS: 10, sqlBatchRows: 1000, duckdbMemoryLimit: '256MB', duckdbThreads: 1 }, log);
  });
  after(async () => {
    await dbs.close();
  });

  test('a CSV file as Arrow, with the types DuckDB detects', async () => {
    const t = readArrow(await encode('arrow', await dbs.dataset(await resolveDataset(data, 'sales/q1.csv'))));
    assert.deepEqual(t.schema.fields.map((f) => `${f.name}:${String(f.type)}`), ['id:Int64', 'region:Utf8', 'amount:Float64', 'day:Date32<DAY>']);
    assert.deepEqual(rawColumn(t, 'amount'), [10.5, 20.25, null]);
  });

  test('an NDJSON file as Parquet', async () => {
    const t = readParquet(await encode('parquet', await dbs.dataset(await resolveDataset(data, 'events.ndjson'))));
    assert.deepEqual(rawColumn(t, 'name'), ['a', 'b']);
  });

  test('a file that is not a table is BAD_REQUEST; a SQL request without databases too', async () => {
    await assert.rejects(dbs.dataset(await resolveDataset(data, 'notes.txt')), (e: RelayError) => e.code === 'BAD_REQUEST' && /only CSV, Parquet and JSON/.test(e.message));
    await assert.rejects(dbs.query(undefined, 'SELECT 1'), (e: RelayError) => e.code === 'BAD_REQUEST' && /no databases/.test(e.message));
  });

  test('an unknown database name is BAD_REQUEST listing the configured ones', async () => {
    const named = new Databases([{ name: 'files', kind: 'duckdb' }], { dataDir: data, sqlTimeoutS: 10, sqlBatchRows: 1000, duckdbMemoryLimit: '256MB', duckdbThreads: 1 }, log);
    try {
      await assert.rejects(named.query('main', 'SELECT 1'), (e: RelayError) => e.code === 'BAD_REQUEST' && /unknown database "main".*files/.test(e.message));
      const t = readArrow(await encode('arrow', await named.query(undefined, 'SELECT 42 AS x')));
      assert.equal(rawColumn(t, 'x')[0], 42);
    } finally {
      await named.close();
    }
  });
});

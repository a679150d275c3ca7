// SQL on a real PostgreSQL (started by scripts/test.sh): every type survives each format, the
// cursor reads in batches, and failures map to the protocol's codes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type pg from 'pg';
import { RelayError } from '../../src/protocol/errors.js';
import { queryPostgres } from '../../src/connector/tables/postgres.js';
import { NO_PG, PG_URL, createTypesTable, encode, pgAdmin, rawColumn, readArrow, readCsv, readNdjson, readParquet } from '../helpers/tables.js';

const schema = `relay_t_${randomBytes(4).toString('hex')}`;
let admin: pg.Client;
let types: string;

const q = (sql: string, over: Partial<Parameters<typeof queryPostgres>[0]> = {}) =>
  queryPostgres({ database: 'main', url: PG_URL!, sql, statementTimeoutMs: 10_000, limits: { rows: 1000, bytes: 8 << 20 }, ...over });

const day = (y: number, m: number, d: number) => {
  const t = new Date(0);
  t.setUTCFullYear(y, m - 1, d);
  return t.getTime() / 86_400_000;
};
const micros = (y: number, mo: number, d: number, h: number, mi: number, s: number, us: number) => BigInt(day(y, mo, d) * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000) * 1000n + BigInt(us);

describe('PostgreSQL', { skip: NO_PG }, () => {
  before(async () => {
    admin = await pgAdmin();
    types = await createTypesTable(admin, schema);
  });
  after(async () => {
    await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin?.end();
  });

  const arrowTypes = {
    id: 'Int32',
    i2: 'Int16',
    i4: 'Int32',
    i8: 'Int64',
    f4: 'Float32',
    f8: 'Float64',
    num: 'Decimal[20e+4]',
    num_free: 'Utf8',
    txt: 'Utf8',
    b: 'Bool',
    d: 'Date32<DAY>',
    ts: 'Timestamp<MICROSECOND>',
    tstz: 'Timestamp<MICROSECOND, UTC>',
    by: 'Binary',
  };
  const PI = '3.14159265358979323846264338327950288419716939937510';
  const TEXT = 'héllo, "wörld"\n😀 日本';

  function checkArrowValues(t: ReturnType<typeof readArrow>) {
    assert.deepEqual(Object.fromEntries(t.schema.fields.map((f) => [f.name, String(f.type)])), arrowTypes);
    assert.equal(t.numRows, 3);
    assert.deepEqual(rawColumn(t, 'id'), [1, 2, 3]);
    assert.deepEqual(rawColumn(t, 'i2'), [-32768, null, 0]);
    assert.deepEqual(rawColumn(t, 'i4'), [2147483647, null, -1]);
    assert.deepEqual(rawColumn(t, 'i8'), [9223372036854775807n, null, -9223372036854775808n]);
    assert.deepEqual(rawColumn(t, 'f4'), [1.5, null, Infinity]);
    const f8 = rawColumn(t, 'f8');
    assert.equal(f8[0], -0.1);
    assert.equal(f8[1], null);
    assert.ok(Number.isNaN(f8[2]));
    assert.deepEqual(rawColumn(t, 'num'), [12345678901234567891n, null, -1n]);
    assert.deepEqual(rawColumn(t, 'num_free'), [PI, null, '0']);
    assert.deepEqual(rawColumn(t, 'txt'), [TEXT, null, '']);
    assert.deepEqual(rawColumn(t, 'b'), [true, null, false]);
    assert.deepEqual(rawColumn(t, 'd'), [day(2024, 2, 29), null, day(-43, 3, 15)]);
    assert.deepEqual(rawColumn(t, 'ts'), [micros(2024, 2, 29, 12, 34, 56, 123456), null, 0n]);
    assert.deepEqual(rawColumn(t, 'tstz'), [micros(2024, 2, 29, 10, 34, 56, 123456), null, -1n]);
    const by = rawColumn(t, 'by') as (Uint8Array | null)[];
    assert.deepEqual(by.map((b) => (b ? Buffer.from(b).toString('hex') : b)), ['00ff10', null, '']);
  }

  test('arrow: every type and NULL read back with apache-arrow, values and types equal', async () => {
    checkArrowValues(readArrow(await encode('arrow', await q(`SELECT * FROM ${types} ORDER BY id`))));
  });

  test('parquet: the same values and types (parquet-wasm), and DuckDB reads the file with the SQL types', async () => {
    const buf = await encode('parquet', await q(`SELECT * FROM ${types} ORDER BY id`));
    assert.equal(buf.subarray(0, 4).toString(), 'PAR1');
    checkArrowValues(readParquet(buf));
    const dir = await mkdtemp(join(tmpdir(), 'relay-pq-'));
    try {
      await writeFile(join(dir, 'r.parquet'), buf);
      const duck = await DuckDBInstance.create(':memory:');
      const c = await duck.connect();
      const r = await c.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${join(dir, 'r.parquet')}')`);
      const described = Object.fromEntries(r.getRowObjectsJson().map((o) => [o.column_name, o.column_type]));
      assert.deepEqual(described, {
        id: 'INTEGER',
        i2: 'SMALLINT',
        i4: 'INTEGER',
        i8: 'BIGINT',
        f4: 'FLOAT',
        f8: 'DOUBLE',
        num: 'DECIMAL(20,4)',
        num_free: 'VARCHAR',
        txt: 'VARCHAR',
        b: 'BOOLEAN',
        d: 'DATE',
        ts: 'TIMESTAMP',
        tstz: 'TIMESTAMP WITH TIME ZONE',
        by: 'BLOB',
      });
      const v = await c.runAndReadAll(`SELECT i8::VARCHAR, num::VARCHAR, txt FROM read_parquet('${join(dir, 'r.parquet')}') ORDER BY id`);
      assert.deepEqual(v.getRows()[0], ['9223372036854775807', '1234567890123456.7891', TEXT]);
      c.closeSync();
      duck.closeSync();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('csv: PostgreSQL text forms; NULL is an empty field and "" an empty string', async () => {
    const { header, rows } = readCsv(await encode('csv', await q(`SELECT * FROM ${types} ORDER BY id`)));
    assert.deepEqual(header, Object.keys(arrowTypes));
    assert.deepEqual(rows[0], ['1', '-32768', '2147483647', '9223372036854775807', '1.5', '-0.1', '1234567890123456.7891', PI, TEXT, 'true', '2024-02-29', '2024-02-29 12:34:56.123456', '2024-02-29 10:34:56.123456+00', '\\x00ff10']);
    assert.deepEqual(rows[1], ['2', ...Array(13).fill(null)]);
    assert.deepEqual(rows[2], ['3', '0', '-1', '-9223372036854775808', 'Infinity', 'NaN', '-0.0001', '0', '', 'false', '0044-03-15 BC', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00', '\\x']);
  });

  test('csv: the text loads back into PostgreSQL with COPY and compares equal', async () => {
    const buf = await encode('csv', await q(`SELECT * FROM ${types} ORDER BY id`));
    await admin.query(`CREATE TABLE ${schema}.back (LIKE ${types})`);
    // Each parsed field goes back as text: PostgreSQL's own input functions read it.
    const { rows } = readCsv(buf);
    for (const r of rows) await admin.query(`INSERT INTO ${schema}.back VALUES (${r.map((_, i) => `$${i + 1}`).join(',')})`, r);
    const diff = await admin.query(`(SELECT * FROM ${types} EXCEPT SELECT * FROM ${schema}.back) UNION ALL (SELECT * FROM ${schema}.back EXCEPT SELECT * FROM ${types})`);
    assert.equal(diff.rowCount, 0, `rows differ after the round trip: ${JSON.stringify(diff.rows)}`);
  });

  test('ndjson: one object per row, exact 64-bit integers, decimals as strings, ISO times, base64 bytes', async () => {
    const { lines, rows } = readNdjson(await encode('ndjson', await q(`SELECT * FROM ${types} ORDER BY id`)));
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /"i8":9223372036854775807,/);
    assert.match(lines[2]!, /"i8":-9223372036854775808,/);
    assert.deepEqual({ ...rows[0], i8: undefined }, {
      id: 1,
      i2: -32768,
      i4: 2147483647,
      i8: undefined,
      f4: 1.5,
      f8: -0.1,
      num: '1234567890123456.7891',
      num_free: PI,
      txt: TEXT,
      b: true,
      d: '2024-02-29',
      ts: '2024-02-29T12:34:56.123456',
      tstz: '2024-02-29T10:34:56.123456Z',
      by: Buffer.from('00ff10', 'hex').toString('base64'),
    });
    assert.deepEqual(rows[1], { id: 2, i2: null, i4: null, i8: null, f4: null, f8: null, num: null, num_free: null, txt: null, b: null, d: null, ts: null, tstz: null, by: null });
    assert.equal(rows[2]!.f4, 'Infinity');
    assert.equal(rows[2]!.f8, 'NaN');
    assert.equal(rows[2]!.d, '-000043-03-15');
    assert.equal(rows[2]!.txt, '');
  });

  test('an empty result keeps its columns in every format', async () => {
    const sql = `SELECT * FROM ${types} WHERE false`;
    const a = readArrow(await encode('arrow', await q(sql)));
    assert.equal(a.numRows, 0);
    assert.deepEqual(a.schema.fields.map((f) => String(f.type)), Object.values(arrowTypes));
    const p = readParquet(await encode('parquet', await q(sql)));
    assert.equal(p.numRows, 0);
    assert.deepEqual(p.schema.fields.map((f) => f.name), Object.keys(arrowTypes));
    assert.equal((await encode('csv', await q(sql))).toString(), `${Object.keys(arrowTypes).join(',')}\n`);
    assert.equal((await encode('ndjson', await q(sql))).length, 0);
  });

  test('rows are fetched and encoded in batches of the configured size', async () => {
    const t = await q('SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 25000) g ORDER BY g', { limits: { rows: 1000, bytes: 8 << 20 } });
    const buf = await encode('arrow', t);
    const table = readArrow(buf);
    assert.equal(table.numRows, 25000);
    assert.equal(table.batches.length, 25, 'one Arrow record batch per cursor fetch');
    const ids = rawColumn(table, 'id') as number[];
    assert.equal(ids.reduce((a, b) => a + b, 0), (25000 * 25001) / 2);
    // Long values cut a batch before the row count does.
    const wide = readArrow(await encode('arrow', await q("SELECT repeat('x', 100000) AS big FROM generate_series(1, 200)", { limits: { rows: 1000, bytes: 1 << 20 } })));
    assert.equal(wide.numRows, 200);
    assert.ok(wide.batches.length >= 10, `cut by bytes: ${wide.batches.length} batches`);
  });

  describe('failures', () => {
    const code = async (p: Promise<unknown>) => {
      try {
        const t = (await p) as Awaited<ReturnType<typeof q>>;
        await encode('arrow', t);
        return { code: 'OK', message: '' };
      } catch (err) {
        assert.ok(err instanceof RelayError, String(err));
        return { code: err.code, message: err.message };
      }
    };

    test('bad SQL is BAD_REQUEST carrying the database message', async () => {
      const r = await code(q('SELEC 1'));
      assert.equal(r.code, 'BAD_REQUEST');
      assert.match(r.message, /syntax error at or near "SELEC"/);
      const missing = await code(q('SELECT * FROM no_such_table'));
      assert.equal(missing.code, 'BAD_REQUEST');
      assert.match(missing.message, /relation "no_such_table" does not exist/);
      const div = await code(q('SELECT 1 / 0'));
      assert.equal(div.code, 'BAD_REQUEST');
      assert.match(div.message, /division by zero/);
    });

    test('the transaction is read-only and takes one statement', async () => {
      const write = await code(q(`CREATE TABLE ${schema}.nope (a int)`));
      assert.equal(write.code, 'BAD_REQUEST');
      assert.match(write.message, /read-only transaction/);
      const insert = await code(q(`INSERT INTO ${types} (id) VALUES (99) RETURNING id`));
      assert.match(insert.message, /read-only transaction/);
      const two = await code(q(`SELECT 1; DROP TABLE ${types}`));
      assert.equal(two.code, 'BAD_REQUEST');
      assert.match(two.message, /multiple commands/);
      const escape = await code(q(`COMMIT; DROP TABLE ${types}`));
      assert.equal(escape.code, 'BAD_REQUEST');
      const still = await admin.query(`SELECT count(*)::int AS n FROM ${types}`);
      assert.equal(still.rows[0].n, 3, 'the table is untouched');
    });

    test('a query over the statement timeout is TIMEOUT', async () => {
      const started = Date.now();
      const r = await code(q('SELECT pg_sleep(10)', { statementTimeoutMs: 300 }));
      assert.equal(r.code, 'TIMEOUT');
      assert.match(r.message, /statement timeout/);
      assert.ok(Date.now() - started < 5000);
    });

    test('a connection failure is CONNECTOR_ERROR, and the message keeps the password out', async () => {
      const r = await code(q('SELECT 1', { url: 'postgres://relay:s3cret@127.0.0.1:1/postgres', connectTimeoutMs: 2000 }));
      assert.equal(r.code, 'CONNECTOR_ERROR');
      assert.match(r.message, /cannot connect/);
      assert.doesNotMatch(r.message, /s3cret/);
      const noDb = await code(q('SELECT 1', { url: PG_URL!.replace(/\/[^/]*$/, '/no_such_db') }));
      assert.equal(noDb.code, 'CONNECTOR_ERROR');
    });

    test('a value Arrow cannot hold is BAD_REQUEST naming the column', async () => {
      const r = await code(q("SELECT 'NaN'::numeric(10,2) AS x"));
      assert.equal(r.code, 'BAD_REQUEST');
      assert.match(r.message, /column "x"/);
    });

    test('an abort closes the connection mid-result', async () => {
      const ac = new AbortController();
      const t = await q('SELECT g FROM generate_series(1, 1000000) g', { signal: ac.signal, limits: { rows: 100, bytes: 1 << 20 } });
      const it = t.batches()[Symbol.asyncIterator]();
      await it.next();
      ac.abort(new Error('cancelled'));
      await assert.rejects(async () => {
        for (;;) if ((await it.next()).done) break;
      });
      await t.close();
      // The backend is gone (no connection left behind in the database).
      let left = 1;
      for (let i = 0; i < 50 && left > 0; i++) {
        left = (await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'relay-connector'")).rows[0].n;
        if (left) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(left, 0);
    });
  });
});

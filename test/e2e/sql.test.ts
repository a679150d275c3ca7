// SQL requests through the whole stack: real router, real connector process configured with a
// real PostgreSQL and DuckDB, the client library and the CLI.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import type pg from 'pg';
import { request } from 'undici';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import { queryPostgres } from '../../src/connector/tables/postgres.js';
import type { RelayError } from '../../src/protocol/errors.js';
import { BIN, Stack } from '../helpers/stack.js';
import { NO_PG, PG_URL, createTypesTable, encode, pgAdmin, rawColumn, readArrow, readCsv, readParquet } from '../helpers/tables.js';

const run = promisify(execFile);
const schema = `relay_e_${randomBytes(4).toString('hex')}`;
let s: Stack;
let admin: pg.Client;
let types: string;

function collector() {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (d: Buffer) => parts.push(d));
  return { out, bytes: () => Buffer.concat(parts) };
}

async function status(id: string): Promise<{ status: string; attempt: number; schema?: { name: string; type: string }[]; error: { code: string } | null }> {
  return (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: { authorization: `Bearer ${s.clientKey}` } })).json()) as never;
}

describe('SQL through the router', { skip: NO_PG }, () => {
  before(async () => {
    admin = await pgAdmin();
    types = await createTypesTable(admin, schema);
    s = await Stack.start({
      connectorEnv: {
        RELAY_DATABASES: `main=${PG_URL},files=duckdb,down=postgres://relay@127.0.0.1:1/postgres`,
        RELAY_SQL_TIMEOUT_S: '1',
        RELAY_SQL_BATCH_ROWS: '2000',
      },
    });
    await s.writeData('sales/q1.csv', 'id,region,amount\n1,north,10.5\n2,süd,20.25\n3,east,\n');
  });
  after(async () => {
    await closeHttp();
    await s?.stop();
    await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin?.end();
  });

  test('stream, arrow (the default for SQL): many chunks, rows intact, schema in stream/init', async () => {
    const c = collector();
    const sql = 'SELECT g AS id, md5(g::text) AS h, g::numeric(12,2) / 4 AS q FROM generate_series(1, 40000) g ORDER BY g';
    const r = await requestStream(s.clientCfg(), { connector: s.connectorId, sql }, c.out);
    assert.ok(r.verified);
    assert.ok(r.bytes > 2 * 512 * 1024, `several chunks (${r.bytes} bytes)`);
    const t = readArrow(c.bytes());
    assert.equal(t.numRows, 40000);
    assert.equal((rawColumn(t, 'id') as number[]).reduce((a, b) => a + b, 0), (40000 * 40001) / 2);
    assert.equal(rawColumn(t, 'h')[0], 'c4ca4238a0b923820dcc509a6f75849b');
    const st = await status(r.requestId);
    assert.equal(st.status, 'complete');
    assert.deepEqual(st.schema, [
      { name: 'id', type: 'int32', nullable: true },
      { name: 'h', type: 'string', nullable: true },
      { name: 'q', type: 'string', nullable: true },
    ]);
  });

  test('sync, csv: byte-identical to the connector-side encoding of the same query', async () => {
    const sql = `SELECT * FROM ${types} ORDER BY id`;
    const res = await request(`${s.routerUrl}/v1/datasets/request-sync`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.clientKey}` },
      body: JSON.stringify({ connector: s.connectorId, sql, database: 'main', format: 'csv' }),
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/csv');
    const body = Buffer.from(await res.body.arrayBuffer());
    const direct = await encode('csv', await queryPostgres({ database: 'main', url: PG_URL!, sql, statementTimeoutMs: 5000, limits: { rows: 100, bytes: 1 << 20 } }));
    assert.ok(body.equals(direct));
    assert.equal(readCsv(body).rows[0]![3], '9223372036854775807');
  });

  test('offload, parquet from DuckDB over a file named relative to the data directory', async () => {
    const c = collector();
    const r = await requestOffload(s.clientCfg(), { connector: s.connectorId, sql: "SELECT region, amount FROM 'sales/q1.csv' ORDER BY id", database: 'files', format: 'parquet' }, c.out);
    assert.ok(r.verified);
    const t = readParquet(c.bytes());
    assert.deepEqual(rawColumn(t, 'region'), ['north', 'süd', 'east']);
    assert.deepEqual(rawColumn(t, 'amount'), [10.5, 20.25, null]);
  });

  test('a CSV dataset asked for as Arrow', async () => {
    const res = await request(`${s.routerUrl}/v1/datasets/request-stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.clientKey}` },
      body: JSON.stringify({ connector: s.connectorId, dataset: 'sales/q1.csv', format: 'arrow' }),
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/vnd.apache.arrow.stream');
    const t = readArrow(Buffer.from(await res.body.arrayBuffer()));
    assert.deepEqual(t.schema.fields.map((f) => `${f.name}:${String(f.type)}`), ['id:Int64', 'region:Utf8', 'amount:Float64']);
    // The same file as csv is served as stored.
    const c = collector();
    await requestSync(s.clientCfg(), { connector: s.connectorId, dataset: 'sales/q1.csv', format: 'csv' }, c.out);
    assert.equal(c.bytes().toString(), 'id,region,amount\n1,north,10.5\n2,süd,20.25\n3,east,\n');
  });

  test('failures: each with its code and the database message, none retried', async () => {
    const cases: [Record<string, unknown>, string, number, RegExp][] = [
      [{ sql: 'SELECT 1', database: 'nope' }, 'BAD_REQUEST', 400, /unknown database "nope"/],
      [{ sql: 'SELEC 1' }, 'BAD_REQUEST', 400, /syntax error at or near "SELEC"/],
      [{ sql: 'SELECT pg_sleep(5)' }, 'TIMEOUT', 504, /statement timeout/],
      [{ sql: 'SELECT 1', database: 'down' }, 'CONNECTOR_ERROR', 502, /cannot connect/],
      [{ sql: "SELECT * FROM read_csv('/etc/passwd')", database: 'files' }, 'FORBIDDEN', 403, /Permission Error/],
      [{ sql: 'SELECT 1', format: 'raw' }, 'BAD_REQUEST', 400, /format "raw" is for datasets/],
    ];
    for (const [body, code, httpStatus, message] of cases) {
      const res = await request(`${s.routerUrl}/v1/datasets/request-sync`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.clientKey}` },
        body: JSON.stringify({ connector: s.connectorId, ...body }),
      });
      const b = (await res.body.json()) as { request_id: string; error: { code: string; message: string } };
      assert.equal(res.statusCode, httpStatus, JSON.stringify(b));
      assert.equal(b.error.code, code);
      assert.match(b.error.message, message);
      const st = await status(b.request_id);
      assert.equal(st.status, 'failed');
      assert.equal(st.attempt, 1, `${code} was not retried`);
    }
    // Through the client library too.
    await assert.rejects(requestStream(s.clientCfg(), { connector: s.connectorId, sql: 'SELECT 1', database: 'nope' }, new PassThrough()), (e: RelayError) => e.code === 'BAD_REQUEST');
  });

  describe('CLI', () => {
    const env = () => ({ ...process.env, RELAY_ROUTER_URL: s.routerUrl, RELAY_API_KEY: s.clientKey });

    test('request-sync --format csv writes only the CSV on stdout (pipes cleanly)', async () => {
      const { stdout, stderr } = await run(process.execPath, [BIN, 'request-sync', s.connectorId, '--sql', `SELECT id, txt FROM ${types} ORDER BY id`, '--database', 'main', '--format', 'csv'], { env: env() });
      assert.equal(stdout, 'id,txt\n1,"héllo, ""wörld""\n😀 日本"\n2,\n3,""\n');
      assert.match(stderr, /checksum verified/);
    });

    test('request-stream --preview N prints the first N rows as a table, whatever the format', async () => {
      for (const format of ['arrow', 'csv', 'ndjson', 'parquet']) {
        const { stdout } = await run(process.execPath, [BIN, 'request-stream', s.connectorId, '--sql', `SELECT id, i8, num, txt, d FROM ${types} ORDER BY id`, '--format', format, '--preview', '2'], { env: env() });
        const lines = stdout.trimEnd().split('\n');
        assert.match(lines[1]!, /id.*i8.*num.*txt.*d/, `${format}: header\n${stdout}`);
        assert.match(stdout, /9223372036854775807/, format);
        assert.match(stdout, /1234567890123456\.7891/, format);
        assert.match(stdout, /2024-02-29/, format);
        assert.doesNotMatch(stdout, /-9223372036854775808/, `${format}: only 2 rows`);
      }
    });

    test('--preview of a CSV dataset, and -o FILE keeps the bytes', async () => {
      const out = `${s.dir}/q1-copy.csv`;
      const { stdout } = await run(process.execPath, [BIN, 'request-sync', s.connectorId, 'sales/q1.csv', '--preview', '1', '-o', out], { env: env() });
      assert.match(stdout, /north/);
      assert.doesNotMatch(stdout, /süd/);
      const { readFile } = await import('node:fs/promises');
      assert.equal(await readFile(out, 'utf8'), 'id,region,amount\n1,north,10.5\n2,süd,20.25\n3,east,\n');
    });
  });
});

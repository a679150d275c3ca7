// Reading table results back with independent readers: apache-arrow for Arrow IPC,
// parquet-wasm (then apache-arrow) for Parquet, csv-parse for CSV, line-by-line JSON for NDJSON.
import { tableFromIPC, Type, type Table } from 'apache-arrow';
import { parse } from 'csv-parse/sync';
import * as pq from 'parquet-wasm/node';
import pg from 'pg';
import type { Format } from '../../src/protocol/wire.js';
import { encodeTable } from '../../src/connector/encoders/index.js';
import type { TableResult } from '../../src/connector/tables/table.js';

export const PG_URL = process.env.RELAY_TEST_PG_URL;
/** Why PostgreSQL tests are skipped, or false when they run. */
export const NO_PG = PG_URL ? false : 'RELAY_TEST_PG_URL is not set: run through npm test (scripts/test.sh starts PostgreSQL)';

export async function encode(format: Exclude<Format, 'raw'>, t: TableResult): Promise<Buffer> {
  const parts: Buffer[] = [];
  try {
    for await (const p of encodeTable(format, t)) parts.push(p);
  } finally {
    await t.close();
  }
  return Buffer.concat(parts);
}

export function readArrow(buf: Uint8Array): Table {
  return tableFromIPC(buf);
}

export function readParquet(buf: Uint8Array): Table {
  return tableFromIPC(pq.readParquet(buf).intoIPCStream());
}

/** Records as arrays of strings; NULL (an empty unquoted field) is null, "" stays ''. */
export function readCsv(buf: Buffer): { header: string[]; rows: (string | null)[][] } {
  const records = parse(buf, { cast: (value, ctx) => (value === '' && !ctx.quoting ? null : value) }) as (string | null)[][];
  return { header: records[0] as string[], rows: records.slice(1) };
}

export function readNdjson(buf: Buffer): { lines: string[]; rows: Record<string, unknown>[] } {
  const lines = buf.toString('utf8').split('\n').filter((l) => l !== '');
  return { lines, rows: lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** A column's raw Arrow values: bigint for 64-bit and decimals (unscaled), days for dates, µs for timestamps. */
export function rawColumn(t: Table, name: string): unknown[] {
  const col = t.getChild(name);
  if (!col) throw new Error(`no column ${name}`);
  const out: unknown[] = [];
  for (const data of col.data) {
    const values = data.values as ArrayLike<unknown>;
    for (let i = 0; i < data.length; i++) {
      if (!data.getValid(i)) {
        out.push(null);
        continue;
      }
      switch (data.type.typeId) {
        case Type.Decimal: {
          const u32 = values as Uint32Array;
          const w = new BigUint64Array(u32.buffer, u32.byteOffset + i * 16, 2);
          out.push(BigInt.asIntN(128, (w[1]! << 64n) | w[0]!));
          break;
        }
        case Type.Utf8:
        case Type.Binary:
        case Type.Bool:
          out.push(col.get(out.length));
          break;
        default:
          out.push(values[i]);
      }
    }
  }
  return out;
}

/** A direct (read-write) connection for fixtures. */
export async function pgAdmin(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  return c;
}

/** The all-types fixture: a table in its own schema, three rows (values, NULLs, edge values). */
export async function createTypesTable(c: pg.Client, schema: string): Promise<string> {
  await c.query(`CREATE SCHEMA ${schema}`);
  await c.query(`CREATE TABLE ${schema}.types (
    id int4, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, num numeric(20,4), num_free numeric,
    txt text, b bool, d date, ts timestamp, tstz timestamptz, by bytea)`);
  await c.query(`INSERT INTO ${schema}.types VALUES
    (1, -32768, 2147483647, 9223372036854775807, 1.5, -0.1, 1234567890123456.7891, 3.14159265358979323846264338327950288419716939937510,
     E'héllo, "wörld"\\n😀 日本', true, '2024-02-29', '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56.123456+02', '\\x00ff10'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, 0, -1, -9223372036854775808, 'Infinity', 'NaN', -0.0001, 0, '', false, '0044-03-15 BC', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00', '\\x')`);
  return `${schema}.types`;
}

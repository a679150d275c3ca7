// SQL over the files in the data directory, with DuckDB. The instance is locked into the data
// directory like dataset names are: external access off except for that directory (DuckDB
// resolves symbolic links before the check), configuration locked so a query cannot undo it,
// extensions never installed or loaded, and only single SELECT statements run (COPY ... TO
// would otherwise write into the data directory).
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DuckDBBlobValue,
  DuckDBDateValue,
  DuckDBDecimalType,
  DuckDBDecimalValue,
  DuckDBInstance,
  DuckDBTimestampMillisecondsValue,
  DuckDBTimestampNanosecondsValue,
  DuckDBTimestampSecondsValue,
  DuckDBTimestampTZValue,
  DuckDBTimestampValue,
  DuckDBTypeId,
  StatementType,
  type DuckDBConnection,
  type DuckDBResult,
  type DuckDBType,
  type DuckDBValue,
} from '@duckdb/node-api';
import { RelayError } from '../../protocol/errors.js';
import { BatchBuilder, type ColumnSpec, type ColumnValue } from './columns.js';
import type { BatchLimits, TableResult } from './table.js';

export interface DuckDBOptions {
  dataDir: string;
  memoryLimit: string;
  threads: number;
}

const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** One sandboxed in-memory DuckDB for a data directory; connections are per query. */
export class DataDirDuckDB {
  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly tempDir: string,
  ) {}

  static async open(opts: DuckDBOptions): Promise<DataDirDuckDB> {
    const root = await realpath(opts.dataDir);
    // Spill files go to a private directory, never into the data directory (the default is cwd).
    const tempDir = await mkdtemp(join(tmpdir(), 'relay-duckdb-'));
    const instance = await DuckDBInstance.create(':memory:', {
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      memory_limit: opts.memoryLimit,
      threads: String(opts.threads),
      temp_directory: tempDir,
    });
    const conn = await instance.connect();
    try {
      // Order matters: the allowed directory first, then external access off, then the lock.
      await conn.run(`SET allowed_directories = [${sqlString(`${root}/`)}]`);
      await conn.run('SET enable_external_access = false');
      await conn.run('SET lock_configuration = true');
    } catch (err) {
      conn.closeSync();
      instance.closeSync();
      await rm(tempDir, { recursive: true, force: true });
      throw new RelayError('CONNECTOR_ERROR', `cannot set up DuckDB's sandbox: ${(err as Error).message}`, { cause: err });
    }
    conn.closeSync();
    return new DataDirDuckDB(instance, tempDir);
  }

  async close(): Promise<void> {
    this.instance.closeSync();
    await rm(this.tempDir, { recursive: true, force: true });
  }

  /** Runs one SELECT; relative file names resolve against the process's working directory. */
  async query(q: { database: string; sql: string; timeoutMs: number; limits: BatchLimits; signal?: AbortSignal }): Promise<TableResult> {
    q.signal?.throwIfAborted();
    const conn = await this.instance.connect();
    let timedOut = false;
    let closed = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.interrupt();
    }, q.timeoutMs);
    const onAbort = () => conn.interrupt();
    q.signal?.addEventListener('abort', onAbort, { once: true });
    const close = async () => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      q.signal?.removeEventListener('abort', onAbort);
      conn.interrupt();
      conn.closeSync();
    };
    const fail = (err: unknown): RelayError => {
      if (timedOut) return new RelayError('TIMEOUT', `database ${q.database}: query ran past its timeout of ${q.timeoutMs / 1000} s`, { cause: err });
      return duckdbError(err, q.database);
    };

    try {
      const result = await startSelect(conn, q.sql);
      const specs = resultSpecs(result);
      const builder = new BatchBuilder(specs);
      const convert = specs.map((s, i) => converter(s, result.columnType(i)));

      async function* batches() {
        try {
          for (;;) {
            const chunk = await result.fetchChunk();
            if (!chunk || chunk.rowCount === 0) break;
            const n = chunk.rowCount;
            if (specs.length === 0) for (let r = 0; r < n; r++) builder.pushEmptyRow();
            for (let i = 0; i < specs.length; i++) {
              const values = chunk.getColumnValues(i);
              const conv = convert[i]!;
              for (let r = 0; r < n; r++) {
                const v = values[r];
                builder.push(i, v === null || v === undefined ? null : conv(v));
              }
            }
            if (builder.rows >= q.limits.rows || builder.bytes >= q.limits.bytes) yield builder.flush()!;
          }
          const last = builder.flush();
          if (last) yield last;
        } catch (err) {
          q.signal?.throwIfAborted();
          throw fail(err);
        }
      }
      return { specs, schema: builder.schema, batches, close };
    } catch (err) {
      await close();
      q.signal?.throwIfAborted();
      throw fail(err);
    }
  }

  /** A dataset file as a table: the reader follows the file's extension. */
  static datasetSql(realPath: string): string | null {
    const p = realPath.toLowerCase();
    const reader = /\.(csv|tsv)(\.gz|\.zst)?$/.test(p)
      ? 'read_csv'
      : /\.parquet$/.test(p)
        ? 'read_parquet'
        : /\.(json|ndjson|jsonl)(\.gz|\.zst)?$/.test(p)
          ? 'read_json'
          : null;
    return reader ? `SELECT * FROM ${reader}(${sqlString(realPath)})` : null;
  }
}

async function startSelect(conn: DuckDBConnection, sql: string): Promise<DuckDBResult> {
  const extracted = await conn.extractStatements(sql);
  if (extracted.count !== 1) throw new RelayError('BAD_REQUEST', `expected exactly one SQL statement, got ${extracted.count}`);
  const prepared = await extracted.prepare(0);
  const type = prepared.statementType;
  if (type !== StatementType.SELECT) {
    throw new RelayError('BAD_REQUEST', `only SELECT statements may run here, not ${StatementType[type] ?? type}`);
  }
  return prepared.stream();
}

/** DuckDB's message starts with its error class: "Parser Error: ...", "Permission Error: ...". */
export function duckdbError(err: unknown, database: string): RelayError {
  if (err instanceof RelayError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const text = `database ${database}: ${message}`;
  if (/^Permission Error/i.test(message)) return new RelayError('FORBIDDEN', text, { cause: err });
  if (/^(INTERRUPT|Out of Memory|FATAL|INTERNAL|Connection) Error/i.test(message)) return new RelayError('CONNECTOR_ERROR', text, { cause: err });
  return new RelayError('BAD_REQUEST', text, { cause: err });
}

function resultSpecs(result: DuckDBResult): ColumnSpec[] {
  const specs: ColumnSpec[] = [];
  for (let i = 0; i < result.columnCount; i++) specs.push(columnSpec(result.columnName(i), result.columnType(i)));
  return specs;
}

export function columnSpec(name: string, type: DuckDBType): ColumnSpec {
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return { name, kind: 'bool' };
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.UTINYINT:
      return { name, kind: 'int16' };
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.USMALLINT:
      return { name, kind: 'int32' };
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UINTEGER:
      return { name, kind: 'int64' };
    case DuckDBTypeId.UBIGINT:
      return { name, kind: 'decimal', precision: 20, scale: 0 };
    case DuckDBTypeId.FLOAT:
      return { name, kind: 'float32' };
    case DuckDBTypeId.DOUBLE:
      return { name, kind: 'float64' };
    case DuckDBTypeId.DECIMAL: {
      const t = type as DuckDBDecimalType;
      return { name, kind: 'decimal', precision: t.width, scale: t.scale };
    }
    case DuckDBTypeId.BLOB:
      return { name, kind: 'binary' };
    case DuckDBTypeId.DATE:
      return { name, kind: 'date' };
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_S:
    case DuckDBTypeId.TIMESTAMP_MS:
    case DuckDBTypeId.TIMESTAMP_NS:
      return { name, kind: 'timestamp' };
    case DuckDBTypeId.TIMESTAMP_TZ:
      return { name, kind: 'timestamptz' };
    default:
      // VARCHAR, and what has no column kind of its own (HUGEINT, TIME, INTERVAL, UUID, LIST,
      // STRUCT, ...): DuckDB's text for it.
      return { name, kind: 'utf8' };
  }
}

function converter(spec: ColumnSpec, type: DuckDBType): (v: DuckDBValue) => ColumnValue {
  const infinite = (v: DuckDBValue) => new RelayError('BAD_REQUEST', `column "${spec.name}": ${String(v)} has no Arrow representation; cast it to text`);
  switch (spec.kind) {
    case 'bool':
      return (v) => v as boolean;
    case 'int16':
    case 'int32':
      return (v) => Number(v);
    case 'int64':
      return (v) => BigInt(v as number | bigint);
    case 'float32':
    case 'float64':
      return (v) => v as number;
    case 'decimal':
      return type.typeId === DuckDBTypeId.DECIMAL ? (v) => (v as DuckDBDecimalValue).value : (v) => BigInt(v as bigint);
    case 'binary':
      return (v) => (v as DuckDBBlobValue).bytes;
    case 'date':
      return (v) => {
        const days = (v as DuckDBDateValue).days;
        if (!Number.isFinite(days) || Math.abs(days) >= 2 ** 31 - 1) throw infinite(v);
        return days;
      };
    case 'timestamp':
    case 'timestamptz':
      return (v) => {
        let micros: bigint;
        if (v instanceof DuckDBTimestampValue || v instanceof DuckDBTimestampTZValue) micros = v.micros;
        else if (v instanceof DuckDBTimestampSecondsValue) micros = v.seconds * 1_000_000n;
        else if (v instanceof DuckDBTimestampMillisecondsValue) micros = v.millis * 1000n;
        else if (v instanceof DuckDBTimestampNanosecondsValue) micros = v.nanos / 1000n;
        else throw infinite(v);
        // ±infinity are the extreme int64 values.
        if (micros >= 2n ** 63n - 1n || micros <= -(2n ** 63n - 1n)) throw infinite(v);
        return micros;
      };
    default:
      return (v) => (typeof v === 'string' ? v : String(v));
  }
}

// SQL on PostgreSQL: one connection per query (no session state leaks between requests), a
// read-only transaction with a statement timeout, and a server-side cursor (pg-cursor: the
// extended protocol's portal, which also refuses several statements in one string) read a
// batch at a time, so memory stays bounded whatever the result's size.
import pg from 'pg';
import Cursor from 'pg-cursor';
import type { FieldDef, QueryResult } from 'pg';
import { RelayError } from '../../protocol/errors.js';
import { BatchBuilder, MAX_DECIMAL_PRECISION, type ColumnSpec, type ColumnValue } from './columns.js';
import type { BatchLimits, TableResult } from './table.js';

export interface PostgresQuery {
  /** Database name as configured on the connector (for messages). */
  database: string;
  url: string;
  sql: string;
  statementTimeoutMs: number;
  limits: BatchLimits;
  signal?: AbortSignal;
  connectTimeoutMs?: number;
}

// Every value arrives as PostgreSQL's text output and is converted here, per column type: the
// session settings make that text unambiguous (ISO dates, UTC, hex bytea, exact floats).
const SESSION_OPTIONS = [
  'default_transaction_read_only=on',
  'DateStyle=ISO,YMD',
  'TimeZone=UTC',
  'IntervalStyle=iso_8601',
  'bytea_output=hex',
  'extra_float_digits=3',
  // A retried attempt resumes past the chunks already delivered: the rows must come in the same
  // order again, and a synchronized scan would start where another scan happens to be.
  'synchronize_seqscans=off',
].map((o) => `-c ${o}`).join(' ');

const raw = (v: string) => v;

/** SQLSTATE classes that mean "the database or the link failed", not "your query is wrong". */
const CONNECTION_CLASSES = ['08', '28', '3D', '53', '57', '58', 'XX', 'F0', 'HV'];

/** Maps a pg error to the protocol: the query's fault is BAD_REQUEST with the database's message. */
export function postgresError(err: unknown, database: string): RelayError {
  if (err instanceof RelayError) return err;
  const e = err as { code?: string; message?: string; severity?: string };
  const message = e.message ?? String(err);
  const code = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  if (code === '57014' && /statement timeout/i.test(message)) return new RelayError('TIMEOUT', `database ${database}: ${message}`, { cause: err });
  if (code && !CONNECTION_CLASSES.includes(code.slice(0, 2))) return new RelayError('BAD_REQUEST', `database ${database}: ${message} (SQLSTATE ${code})`, { cause: err });
  return new RelayError('CONNECTOR_ERROR', `database ${database}: ${message}${code ? ` (SQLSTATE ${code})` : ''}`, { cause: err });
}

export async function queryPostgres(q: PostgresQuery): Promise<TableResult> {
  q.signal?.throwIfAborted();
  const client = new pg.Client({
    connectionString: q.url,
    // Text as sent: conversion happens per column kind below.
    types: { getTypeParser: () => raw } as unknown as pg.CustomTypesConfig,
    options: SESSION_OPTIONS,
    application_name: 'relay-connector',
    connectionTimeoutMillis: q.connectTimeoutMs ?? 10_000,
  });
  // A connection error after connect (server restart) arrives as an event; without a listener it would crash the process.
  let linkError: unknown;
  client.on('error', (err) => (linkError ??= err));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    q.signal?.removeEventListener('abort', onAbort);
    await Promise.race([client.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
  };
  const onAbort = () => void close();
  q.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    try {
      await client.connect();
    } catch (err) {
      throw new RelayError('CONNECTOR_ERROR', `database ${q.database}: cannot connect: ${(err as Error).message}`, { cause: err });
    }
    await client.query('BEGIN READ ONLY');
    await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.round(q.statementTimeoutMs))}`);
    const cursor = client.query(new Cursor(q.sql, [], { rowMode: 'array' }));
    const read = (n: number) =>
      new Promise<{ rows: unknown[][]; fields: FieldDef[] }>((resolve, reject) =>
        cursor.read(n, (err: Error | undefined, rows: unknown[][], result: QueryResult) => (err ? reject(err) : resolve({ rows, fields: result?.fields ?? [] }))),
      );
    // The first read runs the query: a bad query fails here, before anything is uploaded.
    const first = await read(q.limits.rows);
    const specs = first.fields.map(columnSpec);
    const builder = new BatchBuilder(specs);
    const convert = specs.map(converter);

    async function* batches() {
      let rows = first.rows;
      let done = rows.length < q.limits.rows;
      try {
        for (;;) {
          for (const row of rows) {
            if (specs.length === 0) builder.pushEmptyRow();
            for (let i = 0; i < specs.length; i++) {
              const v = row[i];
              builder.push(i, v === null || v === undefined ? null : convert[i]!(v as string));
            }
            if (builder.bytes >= q.limits.bytes) yield builder.flush()!;
          }
          if (builder.rows >= q.limits.rows) yield builder.flush()!;
          if (done) break;
          q.signal?.throwIfAborted();
          ({ rows } = await read(q.limits.rows));
          done = rows.length < q.limits.rows;
        }
        const last = builder.flush();
        if (last) yield last;
        await new Promise<void>((r) => cursor.close(() => r()));
        await client.query('COMMIT');
      } catch (err) {
        q.signal?.throwIfAborted();
        throw postgresError(linkError ?? err, q.database);
      }
    }

    return { specs, schema: builder.schema, batches, close };
  } catch (err) {
    await close();
    q.signal?.throwIfAborted();
    throw postgresError(linkError ?? err, q.database);
  }
}

// ---- PostgreSQL types → column kinds ------------------------------------------------------

const OID = {
  bool: 16,
  bytea: 17,
  int8: 20,
  int2: 21,
  int4: 23,
  oid: 26,
  float4: 700,
  float8: 701,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
} as const;

export function columnSpec(f: Pick<FieldDef, 'name' | 'dataTypeID' | 'dataTypeModifier'>): ColumnSpec {
  const name = f.name;
  switch (f.dataTypeID) {
    case OID.bool:
      return { name, kind: 'bool' };
    case OID.bytea:
      return { name, kind: 'binary' };
    case OID.int2:
      return { name, kind: 'int16' };
    case OID.int4:
      return { name, kind: 'int32' };
    case OID.int8:
    case OID.oid:
      return { name, kind: 'int64' };
    case OID.float4:
      return { name, kind: 'float32' };
    case OID.float8:
      return { name, kind: 'float64' };
    case OID.date:
      return { name, kind: 'date' };
    case OID.timestamp:
      return { name, kind: 'timestamp' };
    case OID.timestamptz:
      return { name, kind: 'timestamptz' };
    case OID.numeric: {
      // numeric(p,s) carries typmod ((p << 16) | s) + 4; a bare numeric has no fixed scale and
      // may hold any number of digits, so it stays exact as text.
      const mod = f.dataTypeModifier;
      if (mod >= 4) {
        const precision = ((mod - 4) >> 16) & 0xffff;
        const scale = (mod - 4) & 0xffff;
        if (precision >= 1 && precision <= MAX_DECIMAL_PRECISION && scale <= precision) return { name, kind: 'decimal', precision, scale };
      }
      return { name, kind: 'utf8' };
    }
    default:
      // text, varchar, char, name, json(b), uuid, xml, time, interval, arrays, enums...: their text.
      return { name, kind: 'utf8' };
  }
}

function converter(spec: ColumnSpec): (text: string) => ColumnValue {
  switch (spec.kind) {
    case 'bool':
      return (t) => t === 't';
    case 'int16':
    case 'int32':
      return (t) => Number(t);
    case 'int64':
      return (t) => BigInt(t);
    case 'float32':
    case 'float64':
      return (t) => Number(t);
    case 'decimal':
      return (t) => parseDecimal(t, spec.scale ?? 0, spec.name);
    case 'binary':
      return (t) => Buffer.from(t.slice(2), 'hex');
    case 'date':
      return (t) => parseDate(t, spec.name);
    case 'timestamp':
    case 'timestamptz':
      return (t) => parseTimestamp(t, spec.name);
    default:
      return (t) => t;
  }
}

function unrepresentable(column: string, text: string, kind: string): RelayError {
  return new RelayError('BAD_REQUEST', `column "${column}": ${kind} value ${text} has no Arrow representation; cast it to text`);
}

export function parseDecimal(text: string, scale: number, column = '?'): bigint {
  const m = /^(-?)(\d*)(?:\.(\d*))?$/.exec(text);
  if (!m) throw unrepresentable(column, text, 'numeric');
  const frac = (m[3] ?? '').padEnd(scale, '0');
  if (frac.length > scale) throw unrepresentable(column, text, 'numeric');
  const n = BigInt(`${m[2] || '0'}${frac}`);
  return m[1] ? -n : n;
}

const DAY_MS = 86_400_000;

function epochMs(year: number, month: number, day: number): number {
  const d = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0..99 to 1900..1999.
  d.setUTCFullYear(year, month - 1, day);
  return d.getTime();
}

export function parseDate(text: string, column = '?'): number {
  const m = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/.exec(text);
  if (!m) throw unrepresentable(column, text, 'date');
  const year = m[4] ? 1 - Number(m[1]) : Number(m[1]);
  return Math.round(epochMs(year, Number(m[2]), Number(m[3])) / DAY_MS);
}

/** 'YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]' → µs since the epoch, UTC. */
export function parseTimestamp(text: string, column = '?'): bigint {
  const m = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$/.exec(text);
  if (!m) throw unrepresentable(column, text, 'timestamp');
  const year = m[12] ? 1 - Number(m[1]) : Number(m[1]);
  const ms = epochMs(year, Number(m[2]), Number(m[3])) + ((Number(m[4]) * 60 + Number(m[5])) * 60 + Number(m[6])) * 1000;
  let micros = BigInt(ms) * 1000n + BigInt((m[7] ?? '').padEnd(6, '0') || '0');
  if (m[8]) {
    const offsetS = (Number(m[9]) * 60 + Number(m[10] ?? 0)) * 60 + Number(m[11] ?? 0);
    micros -= BigInt(m[8] === '-' ? -offsetS : offsetS) * 1_000_000n;
  }
  return micros;
}

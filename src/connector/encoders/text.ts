// How values are written in the text formats (CSV and NDJSON), per column kind.
import { formatDate, formatDecimal, formatTimestamp, type ColumnSpec, type ColumnValue } from '../tables/columns.js';

/** CSV: PostgreSQL's own text forms (COPY ... CSV), so the files load back into it as they are. */
export function csvText(spec: ColumnSpec): (v: ColumnValue) => string {
  switch (spec.kind) {
    case 'bool':
      return (v) => (v ? 'true' : 'false');
    case 'decimal':
      return (v) => formatDecimal(v as bigint, spec.scale ?? 0);
    case 'binary':
      return (v) => `\\x${Buffer.from(v as Uint8Array).toString('hex')}`;
    case 'date':
      return (v) => formatDate(v as number, 'pg');
    case 'timestamp':
      return (v) => formatTimestamp(v as bigint, false, 'pg');
    case 'timestamptz':
      return (v) => formatTimestamp(v as bigint, true, 'pg');
    case 'utf8':
      return (v) => v as string;
    default:
      // Integers (bigint included) and floats: shortest text that reads back to the same value.
      return (v) => String(v);
  }
}

/**
 * NDJSON: a JSON value per kind. 64-bit integers are written as JSON numbers with every digit
 * (exact in the text; parse with a big-number-aware reader past 2^53); decimals as strings
 * (exact); binary as base64; dates and timestamps as ISO 8601 strings; non-finite floats as
 * the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers).
 */
export function jsonText(spec: ColumnSpec): (v: ColumnValue) => string {
  switch (spec.kind) {
    case 'bool':
      return (v) => (v ? 'true' : 'false');
    case 'int16':
    case 'int32':
    case 'int64':
      return (v) => String(v);
    case 'float32':
    case 'float64':
      return (v) => (Number.isFinite(v) ? String(v) : `"${String(v)}"`);
    case 'decimal':
      return (v) => `"${formatDecimal(v as bigint, spec.scale ?? 0)}"`;
    case 'binary':
      return (v) => `"${Buffer.from(v as Uint8Array).toString('base64')}"`;
    case 'date':
      return (v) => `"${formatDate(v as number, 'iso')}"`;
    case 'timestamp':
      return (v) => `"${formatTimestamp(v as bigint, false, 'iso')}"`;
    case 'timestamptz':
      return (v) => `"${formatTimestamp(v as bigint, true, 'iso')}"`;
    case 'utf8':
      return (v) => JSON.stringify(v);
  }
}

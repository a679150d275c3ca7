// The column model every SQL source converts into, and its Arrow form. Sources hand over
// plain JS values per column kind; the builder packs them into Arrow buffers with makeData
// (fast, and exactly the physical layout the IPC stream and Parquet writers expect).
import {
  Binary,
  Bool,
  DateDay,
  Decimal,
  Field,
  Float32,
  Float64,
  Int16,
  Int32,
  Int64,
  RecordBatch,
  Schema,
  Struct,
  TimestampMicrosecond,
  Utf8,
  makeData,
  type DataType,
} from 'apache-arrow';

/**
 * What a column holds, and the JS value a source hands over for it:
 * bool → boolean · int16/int32 → number · int64 → bigint · float32/float64 → number ·
 * decimal → bigint (unscaled: 12.34 at scale 2 is 1234n) · utf8 → string · binary → Uint8Array ·
 * date → number (days since 1970-01-01) · timestamp/timestamptz → bigint (µs since the epoch, UTC).
 * null is NULL in every kind.
 */
export type ColumnKind = 'bool' | 'int16' | 'int32' | 'int64' | 'float32' | 'float64' | 'decimal' | 'utf8' | 'binary' | 'date' | 'timestamp' | 'timestamptz';

export type ColumnValue = boolean | number | bigint | string | Uint8Array | null;

export interface ColumnSpec {
  name: string;
  kind: ColumnKind;
  /** decimal only: total digits (1..38) and digits after the point. */
  precision?: number;
  scale?: number;
}

/** Arrow Decimal128 holds at most 38 digits. */
export const MAX_DECIMAL_PRECISION = 38;

export function arrowType(spec: ColumnSpec): DataType {
  switch (spec.kind) {
    case 'bool':
      return new Bool();
    case 'int16':
      return new Int16();
    case 'int32':
      return new Int32();
    case 'int64':
      return new Int64();
    case 'float32':
      return new Float32();
    case 'float64':
      return new Float64();
    case 'decimal':
      return new Decimal(spec.scale ?? 0, spec.precision ?? MAX_DECIMAL_PRECISION, 128);
    case 'utf8':
      return new Utf8();
    case 'binary':
      return new Binary();
    case 'date':
      return new DateDay();
    case 'timestamp':
      return new TimestampMicrosecond(null);
    case 'timestamptz':
      return new TimestampMicrosecond('UTC');
  }
}

/** Field names as given; a duplicate name (SELECT 1 AS a, 2 AS a) would be ambiguous in every format. */
export function arrowSchema(specs: readonly ColumnSpec[]): Schema {
  const seen = new Map<string, number>();
  const fields = specs.map((s) => {
    // Duplicates get a suffix, as DuckDB and pandas do, so NDJSON keys and Parquet columns stay unique.
    const n = seen.get(s.name) ?? 0;
    seen.set(s.name, n + 1);
    const name = n === 0 ? s.name : `${s.name}_${n}`;
    return new Field(name, arrowType(s), true);
  });
  return new Schema(fields);
}

const utf8 = new TextEncoder();

/** Accumulates rows column by column and cuts them into RecordBatches. */
export class BatchBuilder {
  readonly schema: Schema;
  private cols: ColumnValue[][];
  /** Rough bytes held (variable-length values dominate), so a batch of huge texts is cut early. */
  private heldBytes = 0;

  constructor(readonly specs: readonly ColumnSpec[]) {
    this.schema = arrowSchema(specs);
    this.cols = specs.map(() => []);
  }

  get rows(): number {
    return this.cols[0]?.length ?? this.rowCountNoCols;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /** Rows of a result without columns (SELECT FROM t) still count. */
  private rowCountNoCols = 0;

  /** Appends one value to column i; callers append whole rows, column by column. */
  push(i: number, v: ColumnValue): void {
    this.cols[i]!.push(v);
    if (typeof v === 'string') this.heldBytes += v.length + 16;
    else if (v instanceof Uint8Array) this.heldBytes += v.length + 16;
    else this.heldBytes += 8;
  }

  pushEmptyRow(): void {
    this.rowCountNoCols++;
  }

  /** A batch of no rows with this schema (what Parquet needs to write an empty result's columns). */
  empty(): RecordBatch {
    const children = this.specs.map((spec, i) => buildData(spec, this.schema.fields[i]!.type, []));
    return new RecordBatch(this.schema, makeData({ type: new Struct(this.schema.fields), length: 0, nullCount: 0, children }));
  }

  /** The rows so far as one batch (null when there are none); the builder starts over. */
  flush(): RecordBatch | null {
    const length = this.rows;
    if (length === 0) return null;
    const children = this.specs.map((spec, i) => buildData(spec, this.schema.fields[i]!.type, this.cols[i]!));
    this.cols = this.specs.map(() => []);
    this.heldBytes = 0;
    this.rowCountNoCols = 0;
    const data = makeData({ type: new Struct(this.schema.fields), length, nullCount: 0, children });
    return new RecordBatch(this.schema, data);
  }
}

function validity(values: readonly ColumnValue[]): { nullBitmap: Uint8Array | undefined; nullCount: number } {
  let nullCount = 0;
  for (const v of values) if (v === null) nullCount++;
  if (nullCount === 0) return { nullBitmap: undefined, nullCount };
  const bitmap = new Uint8Array((values.length + 7) >> 3);
  for (let i = 0; i < values.length; i++) if (values[i] !== null) bitmap[i >> 3]! |= 1 << (i & 7);
  return { nullBitmap: bitmap, nullCount };
}

function buildData(spec: ColumnSpec, type: DataType, values: ColumnValue[]) {
  const length = values.length;
  const { nullBitmap, nullCount } = validity(values);
  const base = { type, length, nullCount, nullBitmap } as const;
  switch (spec.kind) {
    case 'bool': {
      const bits = new Uint8Array((length + 7) >> 3);
      for (let i = 0; i < length; i++) if (values[i] === true) bits[i >> 3]! |= 1 << (i & 7);
      return makeData({ ...base, type: type as Bool, data: bits });
    }
    case 'int16':
      return makeData({ ...base, type: type as Int16, data: Int16Array.from(values, (v) => (v === null ? 0 : (v as number))) });
    case 'int32':
      return makeData({ ...base, type: type as Int32, data: Int32Array.from(values, (v) => (v === null ? 0 : (v as number))) });
    case 'date':
      return makeData({ ...base, type: type as DateDay, data: Int32Array.from(values, (v) => (v === null ? 0 : (v as number))) });
    case 'int64':
      return makeData({ ...base, type: type as Int64, data: BigInt64Array.from(values, (v) => (v === null ? 0n : (v as bigint))) });
    case 'timestamp':
    case 'timestamptz':
      return makeData({ ...base, type: type as TimestampMicrosecond, data: BigInt64Array.from(values, (v) => (v === null ? 0n : (v as bigint))) });
    case 'float32':
      return makeData({ ...base, type: type as Float32, data: Float32Array.from(values, (v) => (v === null ? 0 : (v as number))) });
    case 'float64':
      return makeData({ ...base, type: type as Float64, data: Float64Array.from(values, (v) => (v === null ? 0 : (v as number))) });
    case 'decimal': {
      // 128-bit little-endian two's complement, as two 64-bit halves.
      const words = new BigUint64Array(length * 2);
      for (let i = 0; i < length; i++) {
        const v = values[i];
        if (v === null) continue;
        const n = v as bigint;
        words[2 * i] = BigInt.asUintN(64, n);
        words[2 * i + 1] = BigInt.asUintN(64, n >> 64n);
      }
      return makeData({ ...base, type: type as Decimal, data: new Uint32Array(words.buffer) });
    }
    case 'utf8':
    case 'binary': {
      const parts: Uint8Array[] = new Array(length);
      let total = 0;
      for (let i = 0; i < length; i++) {
        const v = values[i];
        const b = v === null ? EMPTY : typeof v === 'string' ? utf8.encode(v) : (v as Uint8Array);
        parts[i] = b;
        total += b.length;
      }
      if (total > 0x7fffffff) throw new RangeError(`a batch of column "${spec.name}" holds over 2 GiB`);
      const valueOffsets = new Int32Array(length + 1);
      const data = new Uint8Array(total);
      let off = 0;
      for (let i = 0; i < length; i++) {
        data.set(parts[i]!, off);
        off += parts[i]!.length;
        valueOffsets[i + 1] = off;
      }
      return spec.kind === 'utf8'
        ? makeData({ ...base, type: type as Utf8, data, valueOffsets })
        : makeData({ ...base, type: type as Binary, data, valueOffsets });
    }
  }
}

const EMPTY = new Uint8Array(0);

/**
 * How dates are written: 'iso' is ISO 8601 (year 0 is 1 BC, earlier years negative and
 * expanded: -000043-03-15); 'pg' is PostgreSQL's ('0044-03-15 BC').
 */
export type DateStyle = 'iso' | 'pg';

/** Days since 1970-01-01 → 'YYYY-MM-DD' (proleptic Gregorian). */
export function formatDate(days: number, style: DateStyle = 'iso'): string {
  const [day, bc] = dayText(new Date(days * 86_400_000), style);
  return day + bc;
}

function dayText(d: Date, style: DateStyle): [string, string] {
  const y = d.getUTCFullYear();
  const md = `-${String(d.getUTCMonth() + 1).padStart(2, '0')}-${String(d.getUTCDate()).padStart(2, '0')}`;
  if (style === 'pg') return y >= 1 ? [String(y).padStart(4, '0') + md, ''] : [String(1 - y).padStart(4, '0') + md, ' BC'];
  const year = y >= 0 && y <= 9999 ? String(y).padStart(4, '0') : (y < 0 ? '-' : '+') + String(Math.abs(y)).padStart(6, '0');
  return [year + md, ''];
}

/**
 * µs since the epoch → 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC); 'pg' style adds '+00' for
 * timestamptz (and ' BC' last, as PostgreSQL does), 'iso' style uses 'T' and 'Z'.
 */
export function formatTimestamp(micros: bigint, withZone: boolean, style: DateStyle = 'pg'): string {
  let ms = micros / 1000n;
  let us = micros % 1000n;
  if (us < 0n) {
    us += 1000n;
    ms -= 1n;
  }
  const d = new Date(Number(ms));
  const frac = Number(ms % 1000n < 0n ? (ms % 1000n) + 1000n : ms % 1000n) * 1000 + Number(us);
  const time = `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}:${String(d.getUTCSeconds()).padStart(2, '0')}`;
  const fraction = frac === 0 ? '' : `.${String(frac).padStart(6, '0').replace(/0+$/, '')}`;
  const [day, bc] = dayText(d, style);
  if (style === 'iso') return `${day}T${time}${fraction}${withZone ? 'Z' : ''}`;
  return `${day} ${time}${fraction}${withZone ? '+00' : ''}${bc}`;
}

/** Unscaled decimal → its exact text ('-12.30' for -1230n at scale 2). */
export function formatDecimal(unscaled: bigint, scale: number): string {
  const neg = unscaled < 0n;
  let digits = (neg ? -unscaled : unscaled).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0');
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return neg ? `-${digits}` : digits;
}

/** Reads column i of a batch this module built back as JS values (raw buffers: no lossy getters). */
export function columnReader(batch: RecordBatch, i: number, spec: ColumnSpec): (row: number) => ColumnValue {
  const data = batch.data.children[i]!;
  const { values, valueOffsets, nullBitmap, nullCount } = data as unknown as {
    values: ArrayLike<number | bigint> & { subarray(a: number, b: number): Uint8Array };
    valueOffsets: Int32Array;
    nullBitmap: Uint8Array | undefined;
    nullCount: number;
  };
  const isNull = nullCount > 0 && nullBitmap ? (r: number) => (nullBitmap[r >> 3]! & (1 << (r & 7))) === 0 : () => false;
  let get: (r: number) => ColumnValue;
  switch (spec.kind) {
    case 'bool':
      get = (r) => ((values as unknown as Uint8Array)[r >> 3]! & (1 << (r & 7))) !== 0;
      break;
    case 'decimal': {
      const words = new BigUint64Array((values as unknown as Uint32Array).buffer, (values as unknown as Uint32Array).byteOffset, data.length * 2);
      get = (r) => BigInt.asIntN(128, (words[2 * r + 1]! << 64n) | words[2 * r]!);
      break;
    }
    case 'utf8': {
      const dec = new TextDecoder();
      get = (r) => dec.decode(values.subarray(valueOffsets[r]!, valueOffsets[r + 1]!));
      break;
    }
    case 'binary':
      get = (r) => values.subarray(valueOffsets[r]!, valueOffsets[r + 1]!);
      break;
    default:
      get = (r) => values[r] as number | bigint;
  }
  return (r) => (isNull(r) ? null : get(r));
}

/** The columns as stream/init announces them (pyarrow's type names). */
export function describeColumns(schema: Schema, specs: readonly ColumnSpec[]): { name: string; type: string; nullable: boolean }[] {
  return specs.map((s, i) => ({ name: schema.fields[i]!.name, type: typeName(s), nullable: true }));
}

function typeName(s: ColumnSpec): string {
  switch (s.kind) {
    case 'float32':
      return 'float';
    case 'float64':
      return 'double';
    case 'decimal':
      return `decimal128(${s.precision ?? MAX_DECIMAL_PRECISION}, ${s.scale ?? 0})`;
    case 'utf8':
      return 'string';
    case 'date':
      return 'date32[day]';
    case 'timestamp':
      return 'timestamp[us]';
    case 'timestamptz':
      return 'timestamp[us, tz=UTC]';
    default:
      return s.kind;
  }
}

// What a SQL source hands to the encoders: the columns, then the rows in Arrow batches.
import type { RecordBatch, Schema } from 'apache-arrow';
import type { ColumnSpec } from './columns.js';

export interface TableResult {
  readonly specs: readonly ColumnSpec[];
  readonly schema: Schema;
  /** Batches in order, fetched as they are asked for (a server-side cursor, a DuckDB stream). */
  batches(): AsyncIterable<RecordBatch>;
  /** Releases the connection; safe to call more than once, and while a fetch is pending. */
  close(): Promise<void>;
}

/** Bounds on one batch: whichever comes first cuts it. */
export interface BatchLimits {
  rows: number;
  /** Rough bytes of values held (long texts and blobs cut a batch before `rows`). */
  bytes: number;
}

export const BATCH_BYTES = 8 * 1024 * 1024;

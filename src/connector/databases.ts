// The databases a connector was configured with, by name. A request can only name one of
// these: the router never makes a connector open a connection it was not given.
import type { DatabaseSpec } from '../config.js';
import type { Logger } from '../log.js';
import { RelayError } from '../protocol/errors.js';
import type { ResolvedDataset } from './sandbox.js';
import { DataDirDuckDB } from './tables/duckdb.js';
import { queryPostgres } from './tables/postgres.js';
import { BATCH_BYTES, type BatchLimits, type TableResult } from './tables/table.js';

export interface DatabasesOptions {
  dataDir: string;
  sqlTimeoutS: number;
  sqlBatchRows: number;
  duckdbMemoryLimit: string;
  duckdbThreads: number;
}

export class Databases {
  private duck: Promise<DataDirDuckDB> | undefined;
  private readonly limits: BatchLimits;

  constructor(
    readonly specs: readonly DatabaseSpec[],
    private readonly opts: DatabasesOptions,
    private readonly log: Logger,
  ) {
    this.limits = { rows: opts.sqlBatchRows, bytes: BATCH_BYTES };
  }

  /** What the start-up log shows: names and kinds, never URLs (they may hold passwords). */
  describe(): string[] {
    return this.specs.map((d) => `${d.name}=${d.kind}`);
  }

  /** Runs `sql` on the named database (default: the first configured). */
  async query(name: string | undefined, sql: string, signal?: AbortSignal): Promise<TableResult> {
    if (this.specs.length === 0) throw new RelayError('BAD_REQUEST', 'no databases are configured on this connector');
    const db = name === undefined ? this.specs[0]! : this.specs.find((d) => d.name === name);
    if (!db) throw new RelayError('BAD_REQUEST', `unknown database "${name}"; this connector has: ${this.specs.map((d) => d.name).join(', ')}`);
    const timeoutMs = this.opts.sqlTimeoutS * 1000;
    if (db.kind === 'postgres') {
      return queryPostgres({ database: db.name, url: db.url, sql, statementTimeoutMs: timeoutMs, limits: this.limits, signal });
    }
    return (await this.duckdb()).query({ database: db.name, sql, timeoutMs, limits: this.limits, signal });
  }

  /** A dataset file (CSV, Parquet, JSON) read as a table, for a format other than its own. */
  async dataset(dataset: ResolvedDataset, signal?: AbortSignal): Promise<TableResult> {
    const sql = DataDirDuckDB.datasetSql(dataset.realPath);
    if (!sql) throw new RelayError('BAD_REQUEST', `${dataset.name}: only CSV, Parquet and JSON files can be converted to another format; ask for format "raw"`);
    const t = await (await this.duckdb()).query({ database: 'datasets', sql, timeoutMs: this.opts.sqlTimeoutS * 1000, limits: this.limits, signal });
    return t;
  }

  private duckdb(): Promise<DataDirDuckDB> {
    this.duck ??= DataDirDuckDB.open({ dataDir: this.opts.dataDir, memoryLimit: this.opts.duckdbMemoryLimit, threads: this.opts.duckdbThreads }).then(
      (d) => {
        this.log.info({ dataDir: this.opts.dataDir }, 'DuckDB opened (sandboxed to the data directory)');
        return d;
      },
      (err: unknown) => {
        this.duck = undefined;
        throw err;
      },
    );
    return this.duck;
  }

  async close(): Promise<void> {
    const d = await this.duck?.catch(() => undefined);
    this.duck = undefined;
    await d?.close();
  }
}

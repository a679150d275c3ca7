// `--preview N`: the first N rows of a result as a table on the terminal, whatever the format.
// The bytes pass through a Writable that parses only as far as it needs (Parquet, whose
// footer comes last, is kept in a temporary file and read at the end).
import { createWriteStream, openAsBlob, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { RecordBatchReader, tableFromIPC, Type, type DataType, type Table as ArrowTable } from 'apache-arrow';
import { parse as parseCsv, type Parser } from 'csv-parse';
import Table from 'cli-table3';
import * as pq from 'parquet-wasm/node';

import { formatOfName, type PreviewFormat } from './formats.js';

export { formatOfName, type PreviewFormat };

export interface PreviewTable {
  columns: string[];
  rows: string[][];
}

const MAX_CELL = 40;

function cell(s: string): string {
  const one = s.replace(/[\r\n\t]/g, ' ');
  return one.length > MAX_CELL ? `${one.slice(0, MAX_CELL - 1)}…` : one;
}

/** A pushed byte stream as an async iterable (what RecordBatchReader reads from). */
class ByteQueue implements AsyncIterable<Uint8Array> {
  private items: Uint8Array[] = [];
  private ended = false;
  private wake: (() => void) | undefined;

  push(b: Uint8Array): void {
    this.items.push(b);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const b = this.items.shift();
      if (b) yield b;
      else if (this.ended) return;
      else await new Promise<void>((r) => (this.wake = r));
    }
  }
}

/**
 * Collects the first `limit` rows of the bytes written to it; forwards every byte to `next`
 * (the -o file) when there is one.
 */
export class PreviewWriter extends Writable {
  private readonly rows: string[][] = [];
  private columns: string[] = [];
  private failure: Error | undefined;
  private readonly done: Promise<void>;
  private feed: (b: Buffer) => void = () => undefined;
  private close: () => Promise<void> = async () => undefined;
  private tmp: { dir: string; file: WriteStream } | undefined;

  constructor(
    private readonly format: PreviewFormat,
    private readonly limit: number,
    private readonly next?: Writable,
  ) {
    super();
    this.done = this.start().catch((err: unknown) => {
      this.failure ??= err as Error;
    });
  }

  private get full(): boolean {
    return this.rows.length >= this.limit;
  }

  private async start(): Promise<void> {
    switch (this.format) {
      case 'arrow': {
        const q = new ByteQueue();
        this.feed = (b) => q.push(b);
        this.close = async () => q.end();
        const reader = await RecordBatchReader.from(q);
        await reader.open();
        this.columns = reader.schema.fields.map((f) => f.name);
        for await (const batch of reader) {
          const fmt = reader.schema.fields.map((f) => arrowCell(f.type));
          for (let r = 0; r < batch.numRows && !this.full; r++) {
            this.rows.push(fmt.map((f, i) => f(batch.getChildAt(i)?.get(r))));
          }
          // Enough: the rest of the stream is not parsed (the queue is drained, not kept).
          if (this.full) {
            this.feed = () => undefined;
            q.end();
            break;
          }
        }
        return;
      }
      case 'csv': {
        const parser: Parser = parseCsv({ relax_column_count: true, relax_quotes: true, bom: true });
        this.feed = (b) => void (this.full ? undefined : parser.write(b));
        this.close = async () => {
          parser.end();
        };
        let header = true;
        for await (const rec of parser as AsyncIterable<string[]>) {
          if (header) {
            this.columns = rec;
            header = false;
          } else if (!this.full) this.rows.push(rec.map(cell));
          if (this.full) {
            this.feed = () => undefined;
            parser.end();
          }
        }
        return;
      }
      case 'ndjson': {
        let pending = '';
        const cols = new Map<string, number>();
        const take = (line: string) => {
          if (!line.trim() || this.full) return;
          const obj = JSON.parse(quoteLongNumbers(line)) as Record<string, unknown>;
          for (const k of Object.keys(obj)) if (!cols.has(k)) cols.set(k, cols.size);
          const row: string[] = [];
          for (const [k, i] of cols) row[i] = obj[k] === null || obj[k] === undefined ? 'NULL' : cell(typeof obj[k] === 'string' ? (obj[k] as string) : JSON.stringify(obj[k]));
          this.rows.push(row);
          this.columns = [...cols.keys()];
        };
        this.feed = (b) => {
          if (this.full) return;
          pending += b.toString('utf8');
          const lines = pending.split('\n');
          pending = lines.pop()!;
          for (const l of lines) take(l);
        };
        this.close = async () => take(pending);
        return;
      }
      case 'parquet': {
        const dir = await mkdtemp(join(tmpdir(), 'relay-preview-'));
        const file = createWriteStream(join(dir, 'result.parquet'));
        this.tmp = { dir, file };
        this.feed = (b) => void file.write(b);
        this.close = async () => {
          file.end();
          await finished(file);
          const pf = await pq.ParquetFile.fromFile(await openAsBlob(join(dir, 'result.parquet')));
          const t = arrowPreview(tableFromIPC((await pf.read({ limit: this.limit })).intoIPCStream()), this.limit);
          this.columns = t.columns;
          this.rows.push(...t.rows);
        };
        return;
      }
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      this.feed(chunk);
    } catch (err) {
      this.failure ??= err as Error;
    }
    if (!this.next) return cb();
    if (this.next.write(chunk)) cb();
    else this.next.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.close().then(
      () => cb(),
      (err: unknown) => {
        this.failure ??= err as Error;
        cb();
      },
    );
  }

  /** The rows once everything was written; throws when the bytes did not parse as the format. */
  async table(): Promise<PreviewTable> {
    if (!this.writableFinished) {
      this.end();
      await finished(this).catch(() => undefined);
    }
    await this.done;
    if (this.tmp) await rm(this.tmp.dir, { recursive: true, force: true });
    if (this.failure && this.rows.length === 0) throw new Error(`cannot read the result as ${this.format}: ${this.failure.message}`);
    return { columns: this.columns, rows: this.rows };
  }
}

/**
 * JSON numbers past 2^53 lose digits in JSON.parse: those with 16 or more digits are turned
 * into strings first (outside string literals), so a 64-bit integer shows exactly.
 */
export function quoteLongNumbers(json: string): string {
  let out = '';
  let i = 0;
  while (i < json.length) {
    const ch = json[i]!;
    if (ch === '"') {
      let j = i + 1;
      while (j < json.length && json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      out += json.slice(i, j + 1);
      i = j + 1;
    } else if (ch === '-' || (ch >= '0' && ch <= '9')) {
      const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(json.slice(i, i + 400))!;
      const digits = m[0].replace(/\D/g, '').length;
      out += digits >= 16 && !m[1] && !m[2] ? `"${m[0]}"` : m[0];
      i += m[0].length || 1;
    } else {
      out += ch;
      i++;
    }
  }
  return out;
}

/** An Arrow table's first rows as preview text. */
export function arrowPreview(t: ArrowTable, limit = Infinity): PreviewTable {
  const fmt = t.schema.fields.map((f) => arrowCell(f.type));
  const rows: string[][] = [];
  for (let r = 0; r < t.numRows && r < limit; r++) rows.push(fmt.map((f, i) => f(t.getChildAt(i)?.get(r))));
  return { columns: t.schema.fields.map((f) => f.name), rows };
}

/** Text for one Arrow value in a preview cell. */
function arrowCell(type: DataType): (v: unknown) => string {
  return (v) => {
    if (v === null || v === undefined) return 'NULL';
    switch (type.typeId) {
      case Type.Decimal: {
        const scale = (type as unknown as { scale: number }).scale;
        const digits = String(v);
        const neg = digits.startsWith('-');
        const abs = (neg ? digits.slice(1) : digits).padStart(scale + 1, '0');
        return cell(`${neg ? '-' : ''}${scale > 0 ? `${abs.slice(0, -scale)}.${abs.slice(-scale)}` : abs}`);
      }
      case Type.Date:
        return new Date(v as number).toISOString().slice(0, 10);
      case Type.Timestamp:
        return new Date(v as number).toISOString().replace('T', ' ').replace('Z', '');
      case Type.Binary:
      case Type.LargeBinary:
        return cell(`\\x${Buffer.from(v as Uint8Array).toString('hex')}`);
      default:
        return cell(typeof v === 'object' ? JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) : String(v));
    }
  };
}

export function renderTable(t: PreviewTable): string {
  const table = new Table({ head: t.columns.map(cell), style: { head: [], border: [] } });
  for (const r of t.rows) table.push(t.columns.map((_, i) => r[i] ?? ''));
  return table.toString();
}

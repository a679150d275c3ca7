// A table in the format a request asked for, as a stream of bytes.
import type { Format } from '../../protocol/wire.js';
import type { TableResult } from '../tables/table.js';
import { encodeArrow } from './arrow.js';
import { encodeCsv } from './csv.js';
import { encodeNdjson } from './ndjson.js';
import { encodeParquet } from './parquet.js';

export type TableFormat = Exclude<Format, 'raw'>;

export function encodeTable(format: TableFormat, table: TableResult): AsyncGenerator<Buffer> {
  switch (format) {
    case 'arrow':
      return encodeArrow(table);
    case 'csv':
      return encodeCsv(table);
    case 'ndjson':
      return encodeNdjson(table);
    case 'parquet':
      return encodeParquet(table);
  }
}

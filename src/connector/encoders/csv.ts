// CSV (RFC 4180): a header row, then one record per row, '\n' line ends. NULL is an empty
// field and an empty string is "" so the two stay apart (csv-stringify writes both as "" with
// quoted_empty, and neither quoted without: hence the few lines of quoting here).
import { columnReader } from '../tables/columns.js';
import type { TableResult } from '../tables/table.js';
import { csvText } from './text.js';

const NEEDS_QUOTES = /[",\r\n]|^$|^\s|\s$/;

export function csvField(s: string): string {
  return NEEDS_QUOTES.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export async function* encodeCsv(table: TableResult): AsyncGenerator<Buffer> {
  yield Buffer.from(`${table.schema.fields.map((f) => csvField(f.name)).join(',')}\n`);
  const text = table.specs.map(csvText);
  for await (const batch of table.batches()) {
    const read = table.specs.map((s, i) => columnReader(batch, i, s));
    const lines: string[] = new Array(batch.numRows);
    for (let r = 0; r < batch.numRows; r++) {
      let line = '';
      for (let i = 0; i < read.length; i++) {
        const v = read[i]!(r);
        if (i > 0) line += ',';
        if (v !== null) line += csvField(text[i]!(v));
      }
      lines[r] = `${line}\n`;
    }
    yield Buffer.from(lines.join(''));
  }
}
